from moa_core.ui.challenge import challenge_page

challenge_page()
