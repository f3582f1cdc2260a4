"""The Streamlit dashboard: a thin client of the analytics package."""
