"""MoA Studio entry point: page config and navigation. All logic lives in moa_core."""

import streamlit as st

import moa_core  # noqa: F401  (offline litellm settings before anything imports litellm)
from moa_core.ui.layout import PAGE_ICON, warm_local_models

st.set_page_config(page_title="MoA Studio", page_icon=PAGE_ICON, layout="wide")
warm_local_models()

# url_path matches the name Streamlit derives from each file in pages/ ("6_History.py" ->
# "History"): on a fresh server's first request the file-based names are checked first,
# and a shared link like /History?run=<id> would otherwise show "Page not found".
PAGES = [
    st.Page(
        "pages/1_Playground.py", title="Playground", icon=":material/science:", url_path="Playground", default=True
    ),
    st.Page("pages/2_Arena.py", title="Arena", icon=":material/swords:", url_path="Arena"),
    st.Page("pages/3_Analysis.py", title="Analysis", icon=":material/leaderboard:", url_path="Analysis"),
    st.Page("pages/4_Evaluate.py", title="Evaluate", icon=":material/fact_check:", url_path="Evaluate"),
    st.Page("pages/5_Challenge.py", title="Daily challenge", icon=":material/emoji_objects:", url_path="Challenge"),
    st.Page("pages/6_History.py", title="History", icon=":material/history:", url_path="History"),
    st.Page("pages/7_Models.py", title="Models", icon=":material/memory:", url_path="Models"),
    st.Page("pages/8_Campaign.py", title="Campaigns", icon=":material/how_to_vote:", url_path="Campaign"),
]

st.navigation(PAGES).run()
