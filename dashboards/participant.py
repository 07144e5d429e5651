"""The participants' page (the seed's web application): a registered peer signs in with its
broker password, floats a bid or an ask for the open interval through the platform (signed with
the peer's own key, checked by the operator like an agent's order), and sees its orders' status,
its trades and its wallet.

Served by `testbed platform page --dir PLATFORM_DIR` on the peer's computer (its folder
`keys/peers/<peer>/` and `broker.json` are what it needs). `TESTBED_PLATFORM_DIR` (and, when the
keys live elsewhere, `TESTBED_KEYS_DIR`) tell the page where they are.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pandas as pd
import streamlit as st

from testbed.market.book import Side
from testbed.platform.deployment import PlatformDir
from testbed.platform.participant import Participant, SignInError

st.set_page_config(page_title="P2P trading: my orders", layout="centered")
st.title("P2P energy trading: my orders")

root = Path(os.environ.get("TESTBED_PLATFORM_DIR", "platform"))
keys = os.environ.get("TESTBED_KEYS_DIR")
folder = PlatformDir(root, Path(keys) if keys else None)

participant: Participant | None = st.session_state.get("participant")
if participant is None:
    with st.form("sign_in"):
        peer = st.text_input("Peer id")
        password = st.text_input("Broker password", type="password")
        if st.form_submit_button("Sign in"):
            try:
                st.session_state["participant"] = Participant.sign_in(folder, peer, password)
                st.rerun()
            except (SignInError, OSError, ValueError) as error:
                st.error(f"Not signed in: {error}")
    st.stop()

assert participant is not None
st.caption(f"Signed in as peer {participant.peer}")
status = participant.market_status()
open_interval = status.open_interval if status is not None else None
if open_interval is None:
    st.info("No interval is open for orders now.")
else:
    st.write(f"Open for orders: the interval starting {open_interval.isoformat()}")
    with st.form("order"):
        side = st.radio("Side", ["buy", "sell"], horizontal=True)
        quantity_kwh = st.number_input("Energy, kWh", min_value=0.001, value=0.5, step=0.1)
        price = st.number_input("Limit price per kWh", min_value=0.0, value=6.0, step=0.1)
        if st.form_submit_button("Place order"):
            try:
                ack = participant.place_order(
                    Side(side), float(quantity_kwh), float(price), open_interval
                )
            except (TimeoutError, ValueError, OSError) as error:
                st.error(f"Not placed: {error}")
            else:
                for answer in ack.statuses:
                    if answer.status == "accepted":
                        st.success(f"Order {answer.order_id} accepted")
                    else:
                        st.error(f"Order {answer.order_id} rejected: {answer.reason}")

st.button("Refresh")
account = participant.account()
if account is None:
    st.info("No orders or settlements yet.")
else:
    st.metric("Wallet", f"{account.wallet_balance:,.2f}")
    st.caption(
        f"{account.settled_intervals} intervals settled, bills {account.bill_total:,.2f} in all"
    )
    st.subheader("My orders")
    st.dataframe(pd.DataFrame([o.model_dump(mode="json") for o in account.orders]), hide_index=True)
    st.subheader("My trades")
    st.dataframe(pd.DataFrame([dataclasses.asdict(t) for t in account.trades]), hide_index=True)
