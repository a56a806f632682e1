from moa_core.ui.evaluate_page import evaluate_page

evaluate_page()
