"""Pure analysis code (no Streamlit): preference leaderboards, statistics, charts, review
rankings. Import the submodule you need (``moa_core.analysis.leaderboard`` …): this package
imports nothing itself, so the engine, which needs only ``review_ranking``, does not load
pandas, scipy or plotly.
"""
