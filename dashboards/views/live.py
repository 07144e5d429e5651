"""Live: what each peer's devices do now, refreshing on its own while the run is in progress."""

from __future__ import annotations

import math
from datetime import timedelta

import pandas as pd
import streamlit as st

from dashboards import charts, data, peer_focus
from dashboards.fields import CONTRACT_FIELD, live_fields, setpoint_pairs
from dashboards.flows import contracted_by_interval
from dashboards.palette import peer_colour

WINDOWS_S = {"last 15 min": 900.0, "last hour": 3600.0, "whole run": None}
MAX_POINTS_PER_TRACE = 1500


def _fmt(value: float | None, unit: str, digits: int = 2) -> str:
    if value is None or pd.isna(value):
        return "—"
    return f"{float(value):.{digits}f} {unit}"


def _value(latest: pd.DataFrame, peer: str, device: str, field: str) -> float | None:
    if field not in latest:
        return None
    rows = latest[(latest["peer"] == peer) & (latest["device"] == device)]
    return None if rows.empty else rows[field].iloc[0]


def _peer_cards(run: data.Run, latest: pd.DataFrame, contracted_now: pd.DataFrame) -> None:
    peers = sorted(latest["peer"].unique())
    for column, peer in zip(st.columns(len(peers)), peers, strict=True):
        with column:
            st.markdown(
                f"<h4 style='color:{peer_colour(peer)};margin:0'>Peer {peer}</h4>",
                unsafe_allow_html=True,
            )
            pcc = _value(latest, peer, "meter", "power_kw")
            st.metric(f"{peer} PCC power", _fmt(pcc, "kW", 3))
            st.metric(
                f"{peer} PCC voltage", _fmt(_value(latest, peer, "meter", "voltage_v"), "V", 1)
            )
            row = contracted_now[contracted_now["peer"] == peer]
            tracked = _value(latest, peer, "meter", CONTRACT_FIELD)
            if tracked is not None and not pd.isna(tracked):
                contracted_kw = float(tracked)
            elif not row.empty:
                contracted_kw = float(row["contracted_kw"].iloc[0])
            else:
                contracted_kw = None
            if contracted_kw is not None:
                delta = None if pcc is None else f"{pcc - contracted_kw:+.3f} kW off contract"
                st.metric(f"{peer} contracted", _fmt(contracted_kw, "kW", 3), delta, "off")
            for device in sorted(latest[latest["peer"] == peer]["device"].unique()):
                soc = _value(latest, peer, device, "soc_pct")
                if soc is not None and not pd.isna(soc):
                    st.metric(f"{peer} {device} SoC", _fmt(soc, "%", 1))


def _community_cards(latest: pd.DataFrame, contracted_now: pd.DataFrame, peer_count: int) -> None:
    """The community's PCC power and contract: every peer's latest, summed."""
    st.markdown(f"<h4 style='margin:0'>Community ({peer_count} peers)</h4>", unsafe_allow_html=True)
    meters = latest[latest["device"] == "meter"]
    power_kw = float(meters["power_kw"].sum()) if "power_kw" in meters else None
    left, right = st.columns(2)
    left.metric("community PCC power", _fmt(power_kw, "kW", 3))
    if not contracted_now.empty:
        right.metric(
            "community contracted", _fmt(float(contracted_now["contracted_kw"].sum()), "kW", 3)
        )


def _draw(run: data.Run, app: data.Settings) -> None:
    data.status_banner(run)
    source = data.telemetry(run, app)
    latest = source.latest_samples()
    if latest.empty:
        st.info("No samples yet: the run has not reached its first control step.")
        return
    last_time = latest["time"].max()
    st.markdown(
        f"**Last sample:** <span id='last-sample'>{data.fmt_time(last_time)}</span> "
        f"(simulation time, read from the {source.label})",
        unsafe_allow_html=True,
    )

    clearings = data.table(run, "clearings")
    trades = data.table(run, "trades")
    all_peers = sorted(latest["peer"].unique())
    contracted = contracted_by_interval(trades, clearings, all_peers, run.interval_s)
    now = contracted[
        (contracted["interval_start"] <= last_time) & (contracted["interval_end"] > last_time)
    ]
    many = peer_focus.is_many(all_peers)
    peers = [peer_focus.pick_peer(all_peers, "live_peer")] if many else all_peers
    if not now.empty:
        st.caption(
            f"Contracted positions for the interval from "
            f"{data.fmt_time(now['interval_start'].iloc[0])} (+ = sold, − = bought)."
        )
    if many:
        _community_cards(latest, now, len(all_peers))
    _peer_cards(run, latest[latest["peer"].isin(peers)], now)

    window_name = st.radio(
        "Window",
        list(WINDOWS_S),
        index=0 if run.is_live() else len(WINDOWS_S) - 1,
        horizontal=True,
        key="live_window",
    )
    window_s = WINDOWS_S[window_name]
    first = run.reader.time_range()
    start = last_time - timedelta(seconds=window_s) if window_s else (first[0] if first else None)
    span_s = window_s or ((first[1] - first[0]).total_seconds() if first else 0.0)
    every_s = None
    if span_s / run.step_s > MAX_POINTS_PER_TRACE:
        every_s = run.step_s * math.ceil(span_s / run.step_s / MAX_POINTS_PER_TRACE)
    fields = live_fields(run.reader.sample_fields())
    end = last_time + timedelta(seconds=1)  # explicit bounds: InfluxDB would stop at its now()
    samples = source.samples(start=start, end=end, fields=fields, every_s=every_s)
    all_meter = samples[samples["device"] == "meter"]
    shown = contracted[contracted["interval_end"] > start] if start is not None else contracted
    if many:
        community = peer_focus.community_meter(all_meter, every_s or run.step_s)
        samples = samples[samples["peer"].isin(peers)]
        meter = samples[samples["device"] == "meter"]
        pcc_meter = pd.concat([community, meter], ignore_index=True)
        shown = pd.concat(
            [peer_focus.community_contracts(shown), shown[shown["peer"].isin(peers)]],
            ignore_index=True,
        )
        st.subheader(f"PCC power and contracted position: the community and peer {peers[0]}")
    else:
        meter = pcc_meter = all_meter
        st.subheader("PCC power and contracted position")
    st.plotly_chart(charts.pcc_power_figure(pcc_meter, shown, start), key="pcc_power")

    st.subheader("Device powers")
    for column, peer in zip(st.columns(len(peers)), peers, strict=True):
        with column:
            st.caption(f"Peer {peer}")
            st.plotly_chart(charts.device_power_figure(samples, peer), key=f"devices_{peer}")

    st.subheader("Setpoints against read-backs")
    with_setpoints = [
        peer
        for peer in peers
        if any(
            samples.loc[samples["peer"] == peer, s].notna().any()
            for s, _ in setpoint_pairs(samples.columns)
        )
    ]
    if with_setpoints:
        for column, peer in zip(st.columns(len(with_setpoints)), with_setpoints, strict=True):
            with column:
                st.caption(f"Peer {peer}")
                st.plotly_chart(charts.setpoint_figure(samples, peer), key=f"setpoints_{peer}")
    else:
        st.caption("No device reported a setpoint in this window.")

    left, right = st.columns(2)
    with left:
        st.subheader("Battery and EV state of charge")
        st.plotly_chart(charts.soc_figure(samples), key="soc")
    with right:
        st.subheader("PCC voltage")
        st.plotly_chart(charts.voltage_figure(meter), key="voltage")

    st.subheader("Active interlocks")
    interval_start = (
        now["interval_start"].iloc[0] if not now.empty else last_time - timedelta(minutes=15)
    )
    active = data.table(run, "interlocks", start=interval_start.to_pydatetime())
    total = len(data.table(run, "interlocks"))
    if active.empty:
        st.success(f"No interlock fired in the current interval ({total} in the whole run).")
    else:
        st.warning(
            f"{len(active)} interlock(s) fired in the current interval ({total} in the run)."
        )
        st.dataframe(active, hide_index=True, key="active_interlocks")


def render() -> None:
    st.title("Live")
    app = data.settings()
    with data.page_guard():
        run = data.current_run(app)
        if run is None:
            return
        live = run.is_live()

        @st.fragment(run_every=app.refresh_s if live else None)
        def live_panel() -> None:
            with data.page_guard():
                fresh = data.current_run(app)
                if fresh is None:
                    return
                if live and not fresh.is_live():
                    st.rerun()  # the run ended: redraw once, without the timer
                _draw(fresh, app)

        live_panel()


render()
