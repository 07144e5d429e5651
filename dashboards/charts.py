"""Plotly figures of the dashboard: DataFrames in, figures out, a unit on every value axis.

Categorical axes (peers) are marked `type="category"`; every other axis title carries its unit in
parentheses. Peers keep their palette colour in every figure.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboards.fields import CONTRACT_FIELD, TARGET_FIELD, is_power, setpoint_pairs
from dashboards.market_curves import Curves, ReportCurves
from dashboards.palette import (
    CLEARING_COLOUR,
    DEMAND_COLOUR,
    GRID_COLOUR,
    NETWORK_COLOUR,
    PENALTY_COLOUR,
    SUPPLY_COLOUR,
    lighter,
    peer_colour,
)

NOMINAL_VOLTAGE_V = 230.0
_FIELD_SHADES = (0.0, 0.35, 0.6, 0.8)


def time_title(frame: pd.DataFrame, column: str = "time", what: str = "time") -> str:
    """An axis title naming the zone of the frame's times: `time (Asia/Kolkata)`."""
    dtype = frame[column].dtype if column in frame else None
    zone = dtype.tz if isinstance(dtype, pd.DatetimeTZDtype) else None
    return f"{what} ({zone or 'UTC'})"


def styled(fig: go.Figure, x_title: str, y_title: str, height: int = 320) -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig


def _unit(field: str) -> str:
    for suffix, unit in (("_kw", "kW"), ("_kwh", "kWh"), ("_pct", "%"), ("_v", "V"), ("_a", "A")):
        if field.endswith(suffix):
            return unit
    if field.endswith("_hz"):
        return "Hz"
    return ""


def _pretty(field: str) -> str:
    """`battery_power_kw` -> `battery power`."""
    unit = _unit(field)
    stem = field[: -len(unit) - 1] if unit and field.lower().endswith(unit.lower()) else field
    if field.endswith("_pct"):
        stem = field[: -len("_pct")]
    return stem.replace("_", " ")


# --------------------------------------------------------------------------------------------
# Live


def pcc_power_figure(
    meter: pd.DataFrame, contracted: pd.DataFrame | None = None, since: pd.Timestamp | None = None
) -> go.Figure:
    """PCC power per peer with the contracted power as a dashed line and, where it differs, the
    dispatcher's target (the contract plus the plan's grid import) as a dotted one.

    The contract comes from the meter samples' `contract_kw` when they carry it, else from the
    interval's trades (`contracted`, drawn from `since`); the target from their `target_kw`.
    """
    fig = go.Figure()
    tracked = CONTRACT_FIELD in meter and meter[CONTRACT_FIELD].notna().any()
    targeted = tracked and TARGET_FIELD in meter and meter[TARGET_FIELD].notna().any()
    for peer, rows in meter.groupby("peer", sort=True):
        fig.add_trace(
            go.Scatter(
                x=rows["time"],
                y=rows["power_kw"],
                name=f"{peer} PCC",
                mode="lines",
                line={"color": peer_colour(str(peer)), "width": 1.5},
            )
        )
        if tracked:
            fig.add_trace(
                go.Scatter(
                    x=rows["time"],
                    y=rows[CONTRACT_FIELD],
                    name=f"{peer} contracted",
                    mode="lines",
                    line={"color": peer_colour(str(peer)), "dash": "dash", "width": 2},
                )
            )
        target = rows[TARGET_FIELD] if targeted else None
        if (
            target is not None
            and target.notna().any()
            and not np.allclose(
                target.to_numpy(float), rows[CONTRACT_FIELD].to_numpy(float), equal_nan=True
            )
        ):
            fig.add_trace(
                go.Scatter(
                    x=rows["time"],
                    y=target,
                    name=f"{peer} target",
                    mode="lines",
                    line={"color": peer_colour(str(peer)), "dash": "dot", "width": 2},
                )
            )
    if not tracked and contracted is not None and not contracted.empty:
        for peer, rows in contracted.groupby("peer", sort=True):
            x, y = [], []
            for row in rows.itertuples():
                begin = row.interval_start if since is None else max(row.interval_start, since)
                x += [begin, row.interval_end, None]
                y += [row.contracted_kw, row.contracted_kw, None]
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    name=f"{peer} contracted",
                    mode="lines",
                    line={"color": peer_colour(str(peer)), "dash": "dash", "width": 2},
                )
            )
    fig.add_hline(y=0, line={"color": "#999", "width": 1})
    return styled(fig, time_title(meter), "PCC power (kW, + = export)")


def device_power_figure(samples: pd.DataFrame, peer: str) -> go.Figure:
    """Every device power of one peer (meter excluded), in the peer's colour."""
    fig = go.Figure()
    colour = peer_colour(peer)
    rows = samples[(samples["peer"] == peer) & (samples["device"] != "meter")]
    for device, device_rows in rows.groupby("device", sort=True):
        fields = [f for f in device_rows.columns if is_power(f) and device_rows[f].notna().any()]
        for shade, field in zip(_FIELD_SHADES, fields, strict=False):
            fig.add_trace(
                go.Scatter(
                    x=device_rows["time"],
                    y=device_rows[field],
                    name=f"{device} {_pretty(field)}",
                    mode="lines",
                    line={"color": lighter(colour, shade) if shade else colour, "width": 1.5},
                )
            )
    return styled(fig, time_title(samples), "power (kW, + = toward grid)", height=280)


def setpoint_figure(samples: pd.DataFrame, peer: str) -> go.Figure:
    """Setpoints (dashed) against their read-backs (solid) for one peer's devices."""
    fig = go.Figure()
    colour = peer_colour(peer)
    rows = samples[samples["peer"] == peer]
    for device, device_rows in rows.groupby("device", sort=True):
        for setpoint, readback in setpoint_pairs(device_rows.columns):
            if device_rows[setpoint].isna().all():
                continue
            fig.add_trace(
                go.Scatter(
                    x=device_rows["time"],
                    y=device_rows[readback],
                    name=f"{device} read-back",
                    mode="lines",
                    line={"color": colour, "width": 1.5},
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=device_rows["time"],
                    y=device_rows[setpoint],
                    name=f"{device} setpoint",
                    mode="lines",
                    line={"color": lighter(colour, 0.45), "width": 2, "dash": "dash"},
                )
            )
    return styled(fig, time_title(samples), "power (kW)", height=280)


def soc_figure(samples: pd.DataFrame) -> go.Figure:
    """Battery and EV state of charge, per peer and device."""
    fig = go.Figure()
    if "soc_pct" in samples:
        rows = samples.dropna(subset=["soc_pct"])
        for (peer, device), group in rows.groupby(["peer", "device"], sort=True):
            fig.add_trace(
                go.Scatter(
                    x=group["time"],
                    y=group["soc_pct"],
                    name=f"{peer} {device}",
                    mode="lines",
                    line={
                        "color": peer_colour(str(peer)),
                        "dash": "solid" if device == "inverter" else "dash",
                    },
                )
            )
    fig.update_yaxes(range=[0, 100])
    return styled(fig, time_title(samples), "state of charge (%)", height=280)


def voltage_figure(meter: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    if "voltage_v" in meter:
        for peer, rows in meter.groupby("peer", sort=True):
            fig.add_trace(
                go.Scatter(
                    x=rows["time"],
                    y=rows["voltage_v"],
                    name=f"{peer} PCC",
                    mode="lines",
                    line={"color": peer_colour(str(peer)), "width": 1.5},
                )
            )
    fig.add_hline(
        y=NOMINAL_VOLTAGE_V,
        line={"color": "#999", "dash": "dot"},
        annotation_text="230 V nominal",
    )
    return styled(fig, time_title(meter), "PCC voltage (V)", height=280)


# --------------------------------------------------------------------------------------------
# Market


def supply_demand_figure(
    curves: Curves,
    clearing_price: float | None,
    volume_kwh: float,
    currency: str,
    reported: ReportCurves | None = None,
    groups: Mapping[str, str] | None = None,
) -> go.Figure:
    """The interval's bids (demand) and asks (supply) as step curves, with the clearing point.

    The lines are the mechanism's own curves (`reported`) when there are some, else the steps of
    the stored orders; markers show each stored order in its peer's colour, or with `groups`
    (`{peer: group}`, dashboards/aggregate.py) in its group's colour.
    """
    fig = go.Figure()
    if reported is not None and reported.price_range is not None:
        low, high = reported.price_range
        fig.add_hrect(
            y0=low,
            y1=high,
            fillcolor="#999999",
            opacity=0.15,
            line_width=0,
            annotation_text="competitive price range",
            annotation_position="top left",
        )
    for name, steps, colour, side in (
        ("demand (bids)", curves.demand, DEMAND_COLOUR, "demand"),
        ("supply (asks)", curves.supply, SUPPLY_COLOUR, "supply"),
    ):
        if reported is not None and getattr(reported, f"{side}_kwh"):
            x, y = getattr(reported, f"{side}_kwh"), getattr(reported, f"{side}_price")
        elif not steps.empty:
            x, y = [], []
            for row in steps.itertuples():
                x += [row.from_kwh, row.to_kwh]
                y += [row.price, row.price]
        else:
            continue
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                name=name,
                mode="lines",
                line={"color": colour, "width": 3, "shape": "hv"},
            )
        )
        if steps.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=(steps["from_kwh"] + steps["to_kwh"]) / 2,
                y=steps["price"],
                mode="markers",
                name=f"{name.split()[0]} orders",
                showlegend=False,
                marker={
                    "color": [peer_colour((groups or {}).get(p, p)) for p in steps["peer"]],
                    "size": 10,
                    "line": {"color": colour, "width": 2},
                },
                customdata=steps[["peer", "order_id", "quantity_kwh"]].to_numpy(),
                hovertemplate=(
                    "peer %{customdata[0]}<br>order %{customdata[1]}<br>"
                    "%{customdata[2]:.3f} kWh at %{y:.2f} " + currency + "/kWh<extra></extra>"
                ),
            )
        )
    if groups:
        book = pd.concat([curves.demand, curves.supply])
        present = {groups.get(p, p) for p in book.get("peer", [])}
        for group in [g for g in dict.fromkeys(groups.values()) if g in present]:
            fig.add_trace(
                go.Scatter(
                    x=[None],
                    y=[None],
                    mode="markers",
                    name=f"orders of {group}",
                    marker={"color": peer_colour(group), "size": 10},
                )
            )
    if clearing_price is not None and volume_kwh > 0:
        fig.add_trace(
            go.Scatter(
                x=[volume_kwh],
                y=[clearing_price],
                name=f"clearing: {volume_kwh:.3f} kWh at {clearing_price:.2f} {currency}/kWh",
                mode="markers",
                marker={"color": CLEARING_COLOUR, "size": 14, "symbol": "x"},
            )
        )
        fig.add_hline(y=clearing_price, line={"color": CLEARING_COLOUR, "dash": "dot", "width": 1})
        fig.add_vline(x=volume_kwh, line={"color": CLEARING_COLOUR, "dash": "dot", "width": 1})
    return styled(fig, "cumulative energy (kWh)", f"price ({currency}/kWh)", height=420)


def clearing_history_figure(
    clearings: pd.DataFrame, currency: str, selected: pd.Timestamp | None = None
) -> go.Figure:
    """Clearing price (top) and cleared volume (bottom) per interval over the run."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    fig.add_trace(
        go.Scatter(
            x=clearings["interval_start"],
            y=clearings["clearing_price"],
            name="clearing price",
            mode="lines+markers",
            line={"color": CLEARING_COLOUR, "shape": "hv"},
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=clearings["interval_start"],
            y=clearings["volume_kwh"],
            name="cleared volume",
            marker={"color": SUPPLY_COLOUR},
        ),
        row=2,
        col=1,
    )
    if selected is not None:
        fig.add_vline(x=selected, line={"color": DEMAND_COLOUR, "dash": "dot"})
    styled(fig, "", "", height=420)
    fig.update_xaxes(title_text="", row=1, col=1)
    title = time_title(clearings, "interval_start", "interval start")
    fig.update_xaxes(title_text=title, row=2, col=1)
    fig.update_yaxes(title_text=f"price ({currency}/kWh)", row=1, col=1)
    fig.update_yaxes(title_text="volume (kWh)", row=2, col=1)
    return fig


# --------------------------------------------------------------------------------------------
# Settlement


def bills_figure(per_peer: pd.DataFrame, currency: str) -> go.Figure:
    """Each peer's bill with the market next to its grid-only bill (negative = earned)."""
    fig = go.Figure()
    colours = [peer_colour(p) for p in per_peer["peer"]]
    fig.add_trace(
        go.Bar(
            x=per_peer["peer"],
            y=per_peer["bill"],
            name="with P2P market",
            marker={"color": colours},
            text=[f"{v:.2f}" for v in per_peer["bill"]],
            textposition="outside",
        )
    )
    fig.add_trace(
        go.Bar(
            x=per_peer["peer"],
            y=per_peer["bill_grid_only"],
            name="grid only (baseline)",
            marker={"color": [lighter(c, 0.6) for c in colours], "pattern": {"shape": "/"}},
            text=[f"{v:.2f}" for v in per_peer["bill_grid_only"]],
            textposition="outside",
        )
    )
    fig.update_layout(barmode="group")
    fig.update_xaxes(type="category")
    fig.add_hline(y=0, line={"color": "#999", "width": 1})
    return styled(fig, "peer", f"bill ({currency}, − = earned)", height=360)


def settlement_timeline_figure(settlements: pd.DataFrame, currency: str) -> go.Figure:
    """Per interval and peer: deviation from the contract, penalty and network charge."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06)
    for peer, rows in settlements.groupby("peer", sort=True):
        colour = peer_colour(str(peer))
        for row, column in enumerate(("deviation_kwh", "penalty", "network_charge"), start=1):
            fig.add_trace(
                go.Bar(
                    x=rows["interval_start"],
                    y=rows[column],
                    name=str(peer),
                    legendgroup=str(peer),
                    showlegend=row == 1,
                    marker={"color": colour},
                ),
                row=row,
                col=1,
            )
    styled(fig, "", "", height=520)
    fig.update_layout(barmode="group")
    title = time_title(settlements, "interval_start", "interval start")
    fig.update_xaxes(title_text=title, row=3, col=1)
    fig.update_yaxes(title_text="deviation (kWh)", row=1, col=1)
    fig.update_yaxes(title_text=f"penalty ({currency})", row=2, col=1)
    fig.update_yaxes(title_text=f"network charge ({currency})", row=3, col=1)
    return fig


def plan_delivery_figure(table: pd.DataFrame) -> go.Figure:
    """Per peer (one row each): forecast, plan, contract and metered energy per interval."""
    peers = sorted(table["peer"].unique())
    fig = make_subplots(
        rows=max(1, len(peers)),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=[f"Peer {peer}" for peer in peers],
    )
    lines = (
        ("forecast_kwh", "forecast (PV - load)", 0.6, "dot"),
        ("planned_kwh", "planned", 0.3, "dash"),
        ("contracted_kwh", "contracted", 0.0, "dashdot"),
        ("metered_kwh", "metered", 0.0, "solid"),
    )
    for row, peer in enumerate(peers, start=1):
        rows = table[table["peer"] == peer]
        colour = peer_colour(str(peer))
        for column, label, shade, dash in lines:
            fig.add_trace(
                go.Scatter(
                    x=rows["interval_start"],
                    y=rows[column],
                    name=f"{peer} {label}",
                    mode="lines+markers",
                    line={
                        "color": lighter(colour, shade) if shade else colour,
                        "dash": dash,
                        "width": 2.5 if column == "metered_kwh" else 1.5,
                    },
                    marker={"size": 4},
                ),
                row=row,
                col=1,
            )
    styled(fig, "", "", height=max(320, 230 * len(peers)))
    for row in range(1, len(peers) + 1):
        fig.update_yaxes(title_text="energy (kWh, + = export)", row=row, col=1)
    title = time_title(table, "interval_start", "interval start")
    fig.update_xaxes(title_text=title, row=max(1, len(peers)), col=1)
    return fig


def optimum_figure(table: pd.DataFrame) -> go.Figure:
    """Per peer (one row each): the run's and the optimum's PCC and storage energy per interval."""
    peers = sorted(table["peer"].unique())
    fig = make_subplots(
        rows=max(1, len(peers)),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=[f"Peer {peer}" for peer in peers],
    )
    lines = (
        ("run_net_kwh", "run: PCC", 0.0, "solid"),
        ("optimum_net_kwh", "optimum: PCC", 0.5, "dash"),
        ("run_storage_kwh", "run: storage", 0.0, "dot"),
        ("optimum_storage_kwh", "optimum: storage", 0.5, "dashdot"),
        ("optimum_p2p_kwh", "optimum: P2P", 0.7, "longdash"),
    )
    for row, peer in enumerate(peers, start=1):
        rows = table[table["peer"] == peer]
        colour = peer_colour(str(peer))
        for column, label, shade, dash in lines:
            fig.add_trace(
                go.Scatter(
                    x=rows["interval_start"],
                    y=rows[column],
                    name=f"{peer} {label}",
                    mode="lines",
                    line={
                        "color": lighter(colour, shade) if shade else colour,
                        "dash": dash,
                        "width": 2.5 if column == "run_net_kwh" else 1.5,
                    },
                ),
                row=row,
                col=1,
            )
    styled(fig, "", "", height=max(320, 230 * len(peers)))
    for row in range(1, len(peers) + 1):
        fig.update_yaxes(title_text="energy (kWh, + = export / discharge)", row=row, col=1)
    title = time_title(table, "interval_start", "interval start")
    fig.update_xaxes(title_text=title, row=max(1, len(peers)), col=1)
    return fig


def _actor_colour(name: str) -> str:
    return {
        "Grid retailer": GRID_COLOUR,
        "Network operator": NETWORK_COLOUR,
        "Penalties": PENALTY_COLOUR,
        "Market operator": PENALTY_COLOUR,
    }.get(name, peer_colour(name))


def money_sankey(flows: pd.DataFrame, currency: str) -> go.Figure:
    """Money from payers (left) to payees (right): P2P energy, grid, network, penalties."""
    flows = flows[flows["amount"] > 1e-9]
    payers = sorted(flows["payer"].unique())
    payees = sorted(flows["payee"].unique())
    labels = [f"{p} pays" for p in payers] + [f"{p} receives" for p in payees]
    colours = [_actor_colour(p) for p in payers] + [_actor_colour(p) for p in payees]
    source = [payers.index(p) for p in flows["payer"]]
    target = [len(payers) + payees.index(p) for p in flows["payee"]]
    fig = go.Figure(
        go.Sankey(
            valueformat=".2f",
            valuesuffix=f" {currency}",
            node={"label": labels, "color": colours, "pad": 18, "thickness": 16},
            textfont={"color": "#222", "size": 13},
            link={
                "source": source,
                "target": target,
                "value": flows["amount"].tolist(),
                "label": flows["kind"].tolist(),
                "color": [lighter(_actor_colour(p), 0.5) for p in flows["payer"]],
            },
        )
    )
    fig.update_layout(height=420, margin={"l": 20, "r": 20, "t": 30, "b": 20})
    return fig


def payment_matrix_figure(matrix: pd.DataFrame, energy: pd.DataFrame, currency: str) -> go.Figure:
    """P2P money paid by each buyer (rows) to each seller (columns), with the kWh behind it."""
    text = [
        [
            f"{matrix.iat[i, j]:.2f} {currency}<br>{energy.iat[i, j]:.3f} kWh"
            for j in range(matrix.shape[1])
        ]
        for i in range(matrix.shape[0])
    ]
    fig = go.Figure(
        go.Heatmap(
            z=matrix.to_numpy(),
            x=list(matrix.columns),
            y=list(matrix.index),
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            colorbar={"title": {"text": f"paid ({currency})"}},
            hovertemplate="buyer %{y} → seller %{x}: %{z:.2f} " + currency + "<extra></extra>",
        )
    )
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    return styled(fig, "seller (peer)", "buyer (peer)", height=360)


# --------------------------------------------------------------------------------------------
# Runs


def compare_bills_figure(table: pd.DataFrame, names: tuple[str, str], currency: str) -> go.Figure:
    """Bills per peer in two runs (columns `peer`, `bill_1`, `bill_2`)."""
    fig = go.Figure()
    colours = [peer_colour(p) for p in table["peer"]]
    for column, name, pattern in (
        ("bill_1", f"{names[0]} (plain)", ""),
        ("bill_2", f"{names[1]} (hatched)", "x"),
    ):
        fig.add_trace(
            go.Bar(
                x=table["peer"],
                y=table[column],
                name=name,
                marker={"color": colours, "pattern": {"shape": pattern}},
                text=[f"{v:.2f}" for v in table[column]],
                textposition="outside",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_xaxes(type="category")
    fig.add_hline(y=0, line={"color": "#999", "width": 1})
    return styled(fig, "peer", f"bill ({currency}, − = earned)", height=360)
