from moa_core.ui.analysis_page import analysis_page

analysis_page()
