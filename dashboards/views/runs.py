"""Runs: every run of the folder, one run's config and summary, two runs side by side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from dashboards import aggregate, charts, data
from testbed.runstore import RunListing


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def _runs_table(items: list[RunListing]) -> pd.DataFrame:
    rows = []
    for item in items:
        meta = item.reader.meta if item.reader else None
        rows.append(
            {
                "run": item.name,
                "status": meta.status if meta else "unreadable",
                "mechanism": meta.mechanism if meta else None,
                "seed": meta.seed if meta else None,
                "hours": meta.hours if meta else None,
                "started (UTC)": data.fmt_time(meta.started_at) if meta else "—",
                "finished (UTC)": data.fmt_time(meta.finished_at) if meta else "—",
                "problem": (item.error or "").replace(str(item.path), item.name),
            }
        )
    return pd.DataFrame(rows)


def _peers_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    peers = summary.get("peers") or {}
    frame = pd.DataFrame.from_dict(peers, orient="index")
    frame.index.name = "peer"
    return frame.reset_index()


def _market_line(summary: Mapping[str, Any], currency: str) -> dict[str, str]:
    market = summary.get("market") or {}
    price = market.get("mean_clearing_price")
    traded = market.get("traded_kwh", market.get("traded_energy_kwh"))
    error = summary.get("energy_balance_error_kwh")
    return {
        "Mean clearing price": "—" if price is None else f"{price:.2f} {currency}/kWh",
        "Traded energy": "—" if traded is None else f"{traded:.3f} kWh",
        "Energy balance error": "—" if error is None else f"{error:.6f} kWh",
    }


def _show_summary(run: data.Run, key: str) -> dict[str, Any]:
    summary, stored = data.summary(run)
    if not stored:
        st.caption("No summary.json yet: totals computed from the settled intervals so far.")
    for column, (label, value) in zip(
        st.columns(3), _market_line(summary, run.currency).items(), strict=True
    ):
        column.metric(label, value)
    st.dataframe(_peers_table(summary), hide_index=True, key=f"summary_peers_{key}")
    return summary


def _open(item: RunListing) -> data.Run | None:
    if item.reader is None:
        st.error(f"Run `{item.name}` cannot be shown: {item.error}")
        return None
    try:
        config = item.reader.config()
    except Exception as error:  # a partial run: show what there is
        st.warning(str(error))
        config = {}
    return data.Run(item.name, item.reader, config)


def _compare(items: list[RunListing]) -> None:
    readable = [item for item in items if item.reader]
    if len(readable) < 2:
        st.caption("Compare needs two readable runs in the folder.")
        return
    names = [item.name for item in readable]
    current = st.session_state.get("run")
    first = names.index(current) if current in names else 0
    left, right = st.columns(2)
    name_1 = left.selectbox("Run 1", names, index=first, key="compare_1")
    name_2 = right.selectbox("Run 2", names, index=1 if first == 0 else 0, key="compare_2")
    by_name = {item.name: item for item in readable}
    runs = [_open(by_name[name_1]), _open(by_name[name_2])]
    if None in runs:
        return
    for column, run in zip((left, right), runs, strict=True):
        meta = run.reader.meta
        column.markdown(
            f"**{run.name}**: {meta.mechanism or '?'} market, seed {meta.seed}, "
            f"{meta.hours} h, {meta.status}"
        )
    summaries = [data.summary(run)[0] for run in runs]
    currency = runs[0].currency
    lines = [_market_line(s, currency) for s in summaries]
    st.dataframe(
        pd.DataFrame(
            {
                "figure": list(lines[0]),
                name_1: list(lines[0].values()),
                name_2: list(lines[1].values()),
            }
        ),
        hide_index=True,
        key="compare_market",
    )
    bills_1 = _peers_table(summaries[0])
    bills_2 = _peers_table(summaries[1])
    if "bill" in bills_1 and "bill" in bills_2:
        table = pd.merge(
            bills_1[["peer", "bill"]].rename(columns={"bill": "bill_1"}),
            bills_2[["peer", "bill"]].rename(columns={"bill": "bill_2"}),
            on="peer",
            how="outer",
        ).fillna(0.0)
        table["difference"] = table["bill_2"] - table["bill_1"]
        st.subheader("Bills per peer")
        shown = table
        if aggregate.is_large(table["peer"]):
            named = aggregate.top_peers(table.set_index("peer")["difference"])
            shown = aggregate.grouped_rows(
                table, aggregate.grouping(table["peer"], named), ["bill_1", "bill_2"]
            )
            st.caption(
                f"{len(table)} peers: the {len(named)} whose bill changed the most are named, the "
                "others are summed into one group; the table below has every peer."
            )
        st.plotly_chart(
            charts.compare_bills_figure(shown, (name_1, name_2), currency), key="compare_bills"
        )
        st.dataframe(
            table.rename(columns={"bill_1": f"{name_1} bill", "bill_2": f"{name_2} bill"}),
            hide_index=True,
            key="compare_table",
        )
    config_1, config_2 = (_flatten(run.config) for run in runs)
    differ = sorted(k for k in set(config_1) | set(config_2) if config_1.get(k) != config_2.get(k))
    st.subheader("Configuration differences")
    if differ:
        st.dataframe(
            pd.DataFrame(
                {
                    "key": differ,
                    name_1: [str(config_1.get(k, "—")) for k in differ],
                    name_2: [str(config_2.get(k, "—")) for k in differ],
                }
            ),
            hide_index=True,
            key="config_diff",
        )
    else:
        st.caption("The two runs used the same configuration.")


def _draw(app: data.Settings) -> None:
    items = data.listings(app.runs_root)
    run = data.current_run(app)
    st.subheader("All runs")
    st.dataframe(_runs_table(items), hide_index=True, key="runs_table")
    if run is not None:
        st.subheader(f"Run `{run.name}`")
        data.status_banner(run)
        summary_tab, config_tab = st.tabs(["Summary", "Configuration"])
        with summary_tab:
            _show_summary(run, "selected")
        with config_tab:
            st.code(run.reader.config_text() or "# no config.toml", language="toml")
    st.subheader("Compare two runs")
    _compare(items)


def render() -> None:
    st.title("Runs")
    with data.page_guard():
        _draw(data.settings())


render()
