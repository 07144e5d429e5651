"""Peers and their smart agents: assets, forecasting, scheduling, bidding."""
