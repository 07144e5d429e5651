"""The InfluxDB schema: every run document as line-protocol points (see docs/telemetry.md).

| measurement  | tags                                                  | time                  |
|--------------|-------------------------------------------------------|-----------------------|
| `telemetry`  | run, peer, device [, seq]                             | Sample.time           |
| `order`      | run, peer, side, status, order_id                     | interval start        |
| `clearing`   | run, mechanism                                        | interval start        |
| `trade`      | run, mechanism, buyer, seller, trade (index)          | interval start        |
| `settlement` | run, peer                                             | interval start        |
| `interlock`  | run, peer, device, kind, action [, seq]               | Interlock.time        |
| `agent_plan` | run, peer, agent                                      | interval start        |
| `run`        | run, event (started / finished)                       | RunStarted/Finished   |

Points are unique by measurement + tags + time, so writing a point twice (a retried batch)
overwrites it with itself instead of adding one. Where a document stream could repeat a series at
one time (a second Sample of the same device at the same time, two interlocks of one kind at one
time), the repeat gets a tag `seq` = 1, 2, ...
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from testbed.documents import (
    AgentPlan,
    Clearing,
    Document,
    Interlock,
    OrderBook,
    RunFinished,
    RunStarted,
    Sample,
    Settlement,
)
from testbed.market.book import Order
from testbed.telemetry.line_protocol import (
    escape_tag,
    is_finite,
    series_prefix,
    string_field,
    timestamp_ns,
)

TELEMETRY = "telemetry"
ORDER = "order"
CLEARING = "clearing"
TRADE = "trade"
SETTLEMENT = "settlement"
INTERLOCK = "interlock"
RUN = "run"
AGENT_PLAN = "agent_plan"

SETTLEMENT_FIELDS = (
    "contracted_kwh",
    "metered_kwh",
    "p2p_bought_kwh",
    "p2p_sold_kwh",
    "p2p_paid",
    "p2p_received",
    "deviation_kwh",
    "grid_import_kwh",
    "grid_export_kwh",
    "grid_cost",
    "grid_revenue",
    "penalty",
    "network_charge",
    "bill",
    "bill_grid_only",
    "balancing_bought_kwh",
    "balancing_sold_kwh",
    "balancing_paid",
    "balancing_received",
)

# Readings keep 12 significant digits (far beyond any meter): three times cheaper to format than
# the shortest exact repr of an arbitrary double, which dominated the sink's CPU. Prices, energy
# and money of the market and settlement points are written exactly (repr).
READING_FORMAT = "%.12g"

# InfluxDB 1.x refuses string fields over 64 KiB; a run's config is cut to fit.
MAX_STRING_FIELD_CHARS = 60_000


def _joined(fields: list[str]) -> str:
    """The field set of a point; a point needs at least one field, even when every value was NaN."""
    return ",".join(fields) if fields else "nonfinite_values=1.0"


def _numeric_fields(prefix: str, mapping: Mapping[str, Any]) -> list[str]:
    """`prefix_key=float` for the finite int/float entries of a mapping (bools, text left out)."""
    parts = []
    for key, value in mapping.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if is_finite(number):
                parts.append(f"{escape_tag(prefix + str(key))}={number!r}")
    return parts


class PointFormatter:
    """Turns documents into line-protocol lines (not thread-safe: one spooler thread uses it)."""

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id or "unknown"
        self._prefixes: dict[tuple[str, str], str] = {}
        self._templates: dict[tuple[str, ...], str] = {}
        self._sample_ns: dict[tuple[str, str], int] = {}  # last time of each device's sample
        self._last_time: Any = None
        self._last_ns = 0
        self._repeats: dict[tuple[str, ...], tuple[int, int]] = {}
        self._formatters: dict[type, Callable[[Any, list[str]], None]] = {
            Sample: self._sample,
            OrderBook: self._order_book,
            Clearing: self._clearing,
            Settlement: self._settlement,
            Interlock: self._interlock,
            AgentPlan: self._agent_plan,
            RunStarted: self._run_started,
            RunFinished: self._run_finished,
        }

    def lines(self, doc: Document, out: list[str]) -> int:
        """Append the document's points to `out`; return how many were appended."""
        before = len(out)
        try:
            formatter = self._formatters[type(doc)]
        except KeyError:
            raise TypeError(f"not a run document: {type(doc).__name__}") from None
        formatter(doc, out)
        return len(out) - before

    # -- helpers -------------------------------------------------------------------------------

    def _ns(self, moment: Any) -> int:
        if moment is not self._last_time:
            self._last_ns = timestamp_ns(moment)
            self._last_time = moment
        return self._last_ns

    def _repeat(self, key: tuple[str, ...], ns: int) -> str:
        """`,seq=n` when this series already had n points at this time, else ''."""
        last = self._repeats.get(key)
        count = last[1] + 1 if last is not None and last[0] == ns else 0
        self._repeats[key] = (ns, count)
        return f",seq={count}" if count else ""

    def _sample_repeat(self, key: tuple[str, str], ns: int) -> str:
        """`,seq=n` for the n-th sample of a device at one time (called only for repeats)."""
        last = self._repeats.get(key)
        count = last[1] + 1 if last is not None and last[0] == ns else 1
        self._repeats[key] = (ns, count)
        return f",seq={count}"

    def _prefix(self, measurement: str, tags: dict[str, str], run_id: str | None = None) -> str:
        return series_prefix(measurement, {"run": run_id or self.run_id, **tags})

    # -- documents -----------------------------------------------------------------------------

    def _sample(self, doc: Sample, out: list[str]) -> None:
        out.append(self.sample_line(doc))

    def sample_line(self, doc: Sample) -> str:
        """The one point of a Sample (the hot path: ~6 per control step)."""
        moment = doc.time
        if moment is not self._last_time:
            self._last_ns = timestamp_ns(moment)
            self._last_time = moment
        ns = self._last_ns
        key = (doc.peer, doc.device)
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = self._prefix(TELEMETRY, {"peer": doc.peer, "device": doc.device})
            self._prefixes[key] = prefix
        values = doc.values
        numbers = tuple(map(float, values.values()))
        total = sum(numbers)
        if numbers and total - total == 0.0:  # all finite: one C-level format for all fields
            names = tuple(values)
            template = self._templates.get(names)
            if template is None:
                template = ",".join(f"{escape_tag(name)}={READING_FORMAT}" for name in names)
                self._templates[names] = template
            fields = template % numbers
        else:
            parts = [
                f"{escape_tag(name)}={READING_FORMAT % number}"
                for name, number in zip(values, numbers, strict=True)
                if is_finite(number)
            ]
            fields = _joined(parts)
        if self._sample_ns.get(key) == ns:
            prefix += self._sample_repeat(key, ns)
        else:
            self._sample_ns[key] = ns
        return f"{prefix} {fields} {ns}"

    def _order(self, order: Order, status: str, reason: str | None, out: list[str]) -> None:
        tags = {
            "peer": order.peer,
            "side": str(order.side),
            "status": status,
            "order_id": order.order_id,
        }
        numbers = {
            "quantity_kwh": order.quantity_kwh,
            "price": order.price,
            "submitted_s": order.time,
        }
        fields = _numeric_fields("", numbers)
        if reason is not None:
            fields.append(f"reason={string_field(reason)}")
        out.append(
            f"{self._prefix(ORDER, tags)} {_joined(fields)} {timestamp_ns(order.interval_start)}"
        )

    def _order_book(self, doc: OrderBook, out: list[str]) -> None:
        for order in doc.orders:
            self._order(order, "accepted", None, out)
        for order, reason in doc.rejected:
            self._order(order, "rejected", reason, out)

    def _clearing(self, doc: Clearing, out: list[str]) -> None:
        ns = timestamp_ns(doc.interval_start)
        fields = [
            f"cleared={'true' if doc.clearing_price is not None else 'false'}",
            f"volume_kwh={float(doc.volume_kwh)!r}",
            f"trade_count={len(doc.trades)}i",
        ]
        if doc.clearing_price is not None and is_finite(float(doc.clearing_price)):
            fields.append(f"clearing_price={float(doc.clearing_price)!r}")
        fields += _numeric_fields("report_", doc.report)
        out.append(
            f"{self._prefix(CLEARING, {'mechanism': doc.mechanism})} {','.join(fields)} {ns}"
        )
        for index, trade in enumerate(doc.trades):
            tags = {
                "mechanism": doc.mechanism,
                "buyer": trade.buyer,
                "seller": trade.seller,
                "trade": str(index),
            }
            quantity, price = float(trade.quantity_kwh), float(trade.price)
            trade_fields = [
                f"quantity_kwh={quantity!r}",
                f"price={price!r}",
                f"amount={quantity * price!r}",
                f"buy_order_id={string_field(trade.buy_order_id)}",
                f"sell_order_id={string_field(trade.sell_order_id)}",
            ]
            charge = getattr(trade, "network_charge", None)
            if charge is not None and is_finite(float(charge)):
                trade_fields.append(f"network_charge={float(charge)!r}")
            out.append(f"{self._prefix(TRADE, tags)} {','.join(trade_fields)} {ns}")

    def _settlement(self, doc: Settlement, out: list[str]) -> None:
        fields = _numeric_fields("", {name: getattr(doc, name) for name in SETTLEMENT_FIELDS})
        prefix = self._prefix(SETTLEMENT, {"peer": doc.peer})
        out.append(f"{prefix} {_joined(fields)} {timestamp_ns(doc.interval_start)}")

    def _interlock(self, doc: Interlock, out: list[str]) -> None:
        ns = timestamp_ns(doc.time)
        tags = {"peer": doc.peer, "device": doc.device, "kind": doc.kind, "action": doc.action}
        seq = self._repeat((INTERLOCK, doc.peer, doc.device, doc.kind, doc.action), ns)
        fields = f"reason={string_field(doc.reason)},count=1i"
        out.append(f"{self._prefix(INTERLOCK, tags)}{seq} {fields} {ns}")

    def _agent_plan(self, doc: AgentPlan, out: list[str]) -> None:
        """The traded interval's forecast and plan (the plan's first step); the whole horizon
        stays in the run store."""
        decision = doc.decision
        if not decision.plan:
            return
        step = decision.plan[0]
        values: dict[str, Any] = {
            "load_kw": step.load_kw,
            "pv_kw": step.pv_kw,
            "battery_kw": step.battery_kw,
            "ev_kw": step.ev_kw,
            "net_kw": step.net_kw,
            "soc_pct": step.soc_pct,
            "ev_soc_pct": step.ev_soc_pct,
            "value_per_kwh": step.value_per_kwh,
        }
        if decision.forecast:
            values["forecast_load_kw"] = decision.forecast[0].load_kw
            values["forecast_pv_kw"] = decision.forecast[0].pv_kw
        fields = _numeric_fields("", values)
        fields.append(f"fallback={'true' if decision.fallback_reason else 'false'}")
        if decision.fallback_reason:
            fields.append(f"fallback_reason={string_field(decision.fallback_reason)}")
        prefix = self._prefix(AGENT_PLAN, {"peer": doc.peer, "agent": doc.agent})
        out.append(f"{prefix} {_joined(fields)} {timestamp_ns(doc.interval_start)}")

    def _run_started(self, doc: RunStarted, out: list[str]) -> None:
        self.run_id = doc.run_id
        self._prefixes.clear()
        config_json = json.dumps(doc.config, default=str, sort_keys=True)
        fields = [f"config_json={string_field(config_json[:MAX_STRING_FIELD_CHARS])}"]
        if len(config_json) > MAX_STRING_FIELD_CHARS:
            fields.append("config_truncated=true")
        fields.append(f"status={string_field('running')}")
        prefix = self._prefix(RUN, {"event": "started"}, doc.run_id)
        out.append(f"{prefix} {','.join(fields)} {timestamp_ns(doc.time)}")

    def _run_finished(self, doc: RunFinished, out: list[str]) -> None:
        fields = [f"status={string_field(doc.status)}", *_numeric_fields("summary_", doc.summary)]
        prefix = self._prefix(RUN, {"event": "finished"}, doc.run_id)
        out.append(f"{prefix} {','.join(fields)} {timestamp_ns(doc.time)}")
