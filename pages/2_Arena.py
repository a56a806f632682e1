from moa_core.ui.arena import arena_page

arena_page()
