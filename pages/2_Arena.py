import streamlit as st

st.title("Arena")
st.info("Coming soon.")
