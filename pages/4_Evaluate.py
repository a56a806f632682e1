import streamlit as st

st.title("Evaluate")
st.info("Coming soon.")
