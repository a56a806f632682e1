import streamlit as st

st.title("Challenge")
st.info("Coming soon.")
