"""MoA Studio entry point: page config and navigation. All logic lives in moa_core."""

import moa_core  # noqa: F401  (offline litellm settings before anything imports litellm)
import streamlit as st

from moa_core.ui.layout import warm_local_models

st.set_page_config(page_title="MoA Studio", page_icon=":material/hub:", layout="wide")
warm_local_models()

PAGES = [
    st.Page("pages/1_Playground.py", title="Playground", icon=":material/science:", url_path="playground", default=True),
    st.Page("pages/2_Arena.py", title="Arena", icon=":material/swords:", url_path="arena"),
    st.Page("pages/3_Analysis.py", title="Analysis", icon=":material/leaderboard:", url_path="analysis"),
    st.Page("pages/4_Evaluate.py", title="Evaluate", icon=":material/fact_check:", url_path="evaluate"),
    st.Page("pages/5_Challenge.py", title="Daily challenge", icon=":material/emoji_objects:", url_path="challenge"),
    st.Page("pages/6_History.py", title="History", icon=":material/history:", url_path="history"),
    st.Page("pages/7_Models.py", title="Models", icon=":material/memory:", url_path="models"),
]

st.navigation(PAGES).run()
