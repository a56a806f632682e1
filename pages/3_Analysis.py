import streamlit as st

st.title("Analysis")
st.info("Coming soon.")
