"""The only part of moa_core that imports Streamlit: widgets and views the pages compose."""
