"""Who traded with whom: the bilateral trade matrix and the feeder picture of one interval.

Both are drawn from what the run stored: the interval's trades, and the `network` part of the
clearing report (buses, lines, each peer's bus, the AC power flow's voltages) that the
network-aware mechanisms write.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from dashboards.palette import peer_colour


def trade_matrix(trades: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kWh, money) from each seller (columns) to each buyer (rows); every peer that traded
    appears as a row and as a column."""
    peers = sorted(set(trades["buyer"]) | set(trades["seller"]))
    amount = trades["quantity_kwh"] * trades["price"]
    kwh = trades.pivot_table(
        index="buyer", columns="seller", values="quantity_kwh", aggfunc="sum", fill_value=0.0
    )
    money = (
        trades.assign(amount=amount)
        .pivot_table(index="buyer", columns="seller", values="amount", aggfunc="sum")
        .fillna(0.0)
    )
    shape = {"index": peers, "columns": peers, "fill_value": 0.0}
    return kwh.reindex(**shape), money.reindex(**shape)


def trade_matrix_figure(kwh: pd.DataFrame, money: pd.DataFrame, currency: str) -> go.Figure:
    """Heatmap of kWh bought by each buyer (rows) from each seller (columns)."""
    text = [
        [
            f"{kwh.iat[i, j]:.3f} kWh<br>{money.iat[i, j]:.2f} {currency}" if kwh.iat[i, j] else ""
            for j in range(kwh.shape[1])
        ]
        for i in range(kwh.shape[0])
    ]
    fig = go.Figure(
        go.Heatmap(
            z=kwh.to_numpy().tolist(),
            x=list(kwh.columns),
            y=list(kwh.index),
            text=text,
            texttemplate="%{text}",
            colorscale="Greens",
            colorbar={"title": {"text": "energy (kWh)"}},
            hovertemplate="seller %{x} → buyer %{y}: %{z:.3f} kWh<extra></extra>",
            name="trade matrix",
        )
    )
    fig.update_xaxes(type="category", title_text="seller (peer)")
    fig.update_yaxes(type="category", autorange="reversed", title_text="buyer (peer)")
    fig.update_layout(height=360, margin={"l": 60, "r": 20, "t": 30, "b": 50})
    return fig


def feeder_layout(buses: list[str], lines: list[list[str]]) -> dict[str, tuple[float, float]]:
    """Tree layout: the slack (first bus) on top, each level one row lower, leaves side by side,
    a bus above the middle of its children."""
    children: dict[str, list[str]] = {bus: [] for bus in buses}
    for from_bus, to_bus in lines:
        children.setdefault(from_bus, []).append(to_bus)
    position: dict[str, tuple[float, float]] = {}
    next_leaf = [0.0]

    def place(bus: str, depth: int) -> float:
        kids = children.get(bus, [])
        if not kids:
            x = next_leaf[0]
            next_leaf[0] += 1.0
        else:
            xs = [place(kid, depth + 1) for kid in kids]
            x = (min(xs) + max(xs)) / 2
        position[bus] = (x, -float(depth))
        return x

    place(buses[0], 0)
    return position


def feeder_figure(network: dict[str, Any], trades: pd.DataFrame) -> go.Figure:
    """The feeder as a tree: buses coloured by voltage (per unit of nominal, AC power flow),
    peers at their buses, and an arrow from seller to buyer for each pair that traded."""
    buses = list(network["feeder_buses"])
    lines = [list(line) for line in network.get("feeder_lines", [])]
    check = network.get("check", {})
    volts = check.get("voltages_v", {})
    position = feeder_layout(buses, lines)
    fig = go.Figure()
    for from_bus, to_bus in lines:
        (x0, y0), (x1, y1) = position[from_bus], position[to_bus]
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                line={"color": "#999", "width": 3},
                hoverinfo="skip",
                showlegend=False,
            )
        )
    nominal = None
    if volts and check.get("max_voltage_pu"):
        nominal = max(volts.values()) / float(check["max_voltage_pu"])
    band = float(network.get("voltage_band_pct") or 6.0) / 100.0
    labels, colours = [], []
    for bus in buses:
        v = volts.get(bus)
        labels.append(bus if v is None else f"{bus}<br>{v:.1f} V")
        colours.append(v / nominal if v is not None and nominal else 1.0)
    fig.add_trace(
        go.Scatter(
            x=[position[b][0] for b in buses],
            y=[position[b][1] for b in buses],
            mode="markers+text",
            text=labels,
            textposition="middle right",
            marker={
                "size": 18,
                "color": colours,
                "colorscale": "RdBu_r",
                "cmin": 1.0 - band,  # the colour scale spans the allowed band
                "cmax": 1.0 + band,
                "colorbar": {"title": {"text": "voltage (pu)"}},
                "line": {"color": "#333", "width": 1},
            },
            name="buses",
            hovertemplate="%{text}<extra></extra>",
        )
    )
    peer_bus = network.get("peer_buses", {})
    for peer, bus in peer_bus.items():
        x, y = position[bus]
        fig.add_trace(
            go.Scatter(
                x=[x],
                y=[y - 0.35],
                mode="markers+text",
                text=[peer],
                textposition="bottom center",
                marker={"size": 14, "symbol": "square", "color": peer_colour(peer)},
                name=f"peer {peer}",
                showlegend=False,
            )
        )
    if not trades.empty:
        pairs = trades.groupby(["seller", "buyer"])["quantity_kwh"].sum()
        largest = float(pairs.max()) or 1.0
        for (seller, buyer), kwh in pairs.items():
            if seller not in peer_bus or buyer not in peer_bus:
                continue
            (x0, y0), (x1, y1) = position[peer_bus[seller]], position[peer_bus[buyer]]
            fig.add_annotation(
                x=x1,
                y=y1 - 0.35,
                ax=x0,
                ay=y0 - 0.35,
                xref="x",
                yref="y",
                axref="x",
                ayref="y",
                showarrow=True,
                arrowhead=3,
                arrowwidth=1 + 4 * float(kwh) / largest,
                arrowcolor=peer_colour(seller),
                text="",
            )
            fig.add_annotation(  # the pair's energy at the middle of its arrow
                x=(x0 + x1) / 2,
                y=(y0 + y1) / 2 - 0.35,
                xref="x",
                yref="y",
                showarrow=False,
                text=f"{seller}→{buyer} {kwh:.3f} kWh",
                font={"size": 11},
                bgcolor="rgba(255,255,255,0.8)",
            )
    xs = [x for x, _ in position.values()]
    fig.update_xaxes(visible=False, range=[min(xs) - 0.6, max(xs) + 1.0])
    fig.update_yaxes(visible=False)
    fig.update_layout(height=420, margin={"l": 20, "r": 20, "t": 30, "b": 20}, showlegend=False)
    return fig
