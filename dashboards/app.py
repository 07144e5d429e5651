"""The testbed dashboard, a multipage Streamlit app over the run directories of a runs folder.

Start it with `testbed dashboard --runs DIR`, or
`streamlit run dashboards/app.py -- --runs DIR [--refresh-s 2] [--influx-url URL --influx-db DB]`.
"""

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # `streamlit run` puts only this folder on the path
    sys.path.insert(0, str(_REPO))

import streamlit as st  # noqa: E402

from dashboards import data  # noqa: E402

st.set_page_config(page_title="P2P testbed", page_icon=":material/bolt:", layout="wide")
app_settings = data.settings()
data.sidebar_run_picker(app_settings)
pages = [
    st.Page("views/live.py", title="Live", icon=":material/bolt:", default=True),
    st.Page("views/market.py", title="Market", icon=":material/candlestick_chart:"),
    st.Page("views/settlement.py", title="Settlement", icon=":material/payments:"),
    st.Page("views/runs.py", title="Runs", icon=":material/folder_open:"),
]
st.navigation(pages).run()
