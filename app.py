"""MoA Studio entry point: page config and navigation. All logic lives in moa_core."""

import moa_core  # noqa: F401  (offline litellm settings before anything imports litellm)
import streamlit as st

st.set_page_config(page_title="MoA Studio", page_icon=":material/hub:", layout="wide")

PAGES = [
    st.Page("pages/1_Playground.py", title="Playground", icon=":material/science:", url_path="playground", default=True),
    st.Page("pages/6_History.py", title="History", icon=":material/history:", url_path="history"),
    st.Page("pages/7_Models.py", title="Models", icon=":material/memory:", url_path="models"),
]

st.navigation(PAGES).run()
