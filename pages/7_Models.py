from moa_core.ui.models_page import models_page

models_page()
