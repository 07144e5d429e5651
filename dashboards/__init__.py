"""The Streamlit dashboard over the run store (and InfluxDB when configured)."""
