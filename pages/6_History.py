from moa_core.ui.history import history_page

history_page()
