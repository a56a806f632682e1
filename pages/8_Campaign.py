from moa_core.ui.campaign_page import campaign_page

campaign_page()
