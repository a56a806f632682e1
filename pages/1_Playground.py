from moa_core.ui.playground import playground_page

playground_page()
