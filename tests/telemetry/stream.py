"""A synthetic run's document stream, shaped like the orchestrator's: 6 Samples per control step
(~5 fields each), and per market interval an OrderBook, a Clearing with trades and 3 Settlements,
plus an Interlock now and then. Values are a function of the step, so a test can check any of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from peers.interface import AgentDecision, ForecastStep, PlanStep
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
from testbed.market.book import Order, Side, Trade

DEVICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("A", "inverter"): ("power_kw", "pv_power_kw", "battery_power_kw", "soc_pct", "setpoint_kw"),
    ("A", "meter"): ("power_kw", "voltage_v", "current_a", "frequency_hz", "energy_kwh"),
    ("B", "ev_charger"): ("power_kw", "soc_pct", "voltage_v", "current_a", "setpoint_kw"),
    ("B", "meter"): ("power_kw", "voltage_v", "current_a", "frequency_hz", "energy_kwh"),
    ("C", "load"): ("power_kw", "setpoint_kw", "voltage_v", "current_a"),
    ("C", "meter"): ("power_kw", "voltage_v", "current_a", "frequency_hz", "energy_kwh"),
}

# Fields one of which every point of a measurement carries (to COUNT points in InfluxQL): a
# synthetic Sample always has power_kw, unless every value was NaN (then only nonfinite_values).
COUNTED_FIELDS = {
    "telemetry": ("power_kw", "nonfinite_values"),
    "order": ("quantity_kwh",),
    "clearing": ("volume_kwh",),
    "trade": ("quantity_kwh",),
    "settlement": ("bill",),
    "interlock": ("count",),
    "run": ("status",),
    "agent_plan": ("fallback",),  # every agent_plan point has it
}


def reading(step: int, peer: str, device: str, field: str) -> float:
    """The value a synthetic Sample carries: distinct per step, device and field."""
    base = {"A": 1.0, "B": 2.0, "C": 3.0}[peer] + (0.5 if device == "meter" else 0.0)
    return round(base * (1 + step % 1000) / 7 + len(field) * 0.001 + (step // 1000) * 0.5, 6)


def default_start(steps: int, step_s: float = 1.0) -> datetime:
    """A recent start (VictoriaMetrics refuses points outside its retention), whole seconds."""
    now = datetime.now(UTC).replace(microsecond=0)
    return now - timedelta(seconds=steps * step_s + 3600)


def _interval_documents(run_step: int, interval: int, start: datetime) -> list[Document]:
    interval_start = start
    orders = (
        Order(f"{interval}-A-sell", "A", Side.SELL, 1.2, 6.0 + interval % 3, interval_start, 1.0),
        Order(f"{interval}-B-sell", "B", Side.SELL, 0.4, 7.0, interval_start, 2.0),
        Order(f"{interval}-C-buy", "C", Side.BUY, 1.5, 8.0, interval_start, 3.0),
    )
    rejected = ((Order(f"{interval}-B-buy", "B", Side.BUY, 99.0, 0.0, interval_start), "no limit"),)
    trades = (
        Trade(f"{interval}-C-buy", f"{interval}-A-sell", "C", "A", 1.2, 7.0),
        Trade(f"{interval}-C-buy", f"{interval}-B-sell", "C", "B", 0.3, 7.0, network_charge=0.4),
    )
    documents: list[Document] = [
        OrderBook(interval_start, orders, rejected),
        Clearing(interval_start, "uniform_price", 7.0, 1.5, trades, {"welfare": 3.1, "rounds": 2}),
    ]
    for peer, sold in (("A", 1.2), ("B", 0.3), ("C", -1.5)):
        metered = sold + 0.05 * (interval % 5)
        documents.append(
            Settlement(
                interval_start=interval_start,
                peer=peer,
                contracted_kwh=sold,
                metered_kwh=metered,
                p2p_bought_kwh=max(-sold, 0.0),
                p2p_sold_kwh=max(sold, 0.0),
                p2p_paid=max(-sold, 0.0) * 7.0,
                p2p_received=max(sold, 0.0) * 7.0,
                deviation_kwh=metered - sold,
                grid_import_kwh=0.0,
                grid_export_kwh=max(metered - sold, 0.0),
                grid_cost=0.0,
                grid_revenue=max(metered - sold, 0.0) * 3.0,
                penalty=0.01 * interval,
                network_charge=0.2,
                bill=-sold * 7.0 + 0.2 + 0.01 * interval,
                bill_grid_only=-sold * 5.0 + 0.2,
            )
        )
    documents += _agent_plans(interval_start, interval)
    return documents


def _agent_plans(interval_start: datetime, interval: int) -> list[AgentPlan]:
    """A's and B's planned decisions (every field), C's fallback (with its reason)."""
    forecast = ForecastStep(interval_start, load_kw=0.8, pv_kw=2.0)
    battery = PlanStep(
        interval_start, 0.8, 2.0, -0.4, 0.0, 0.8, soc_pct=55.0 + interval, value_per_kwh=6.5
    )
    cart = PlanStep(interval_start, 0.5, 0.0, 0.0, 0.3, -0.2, ev_soc_pct=70.0, ev_plugged=True)
    idle = PlanStep(interval_start, 1.5, 0.0, 0.0, 0.0, -1.5)
    return [
        AgentPlan(
            interval_start,
            "A",
            "optimising",
            AgentDecision(interval_start, (forecast,), (battery,), ()),
        ),
        AgentPlan(
            interval_start,
            "B",
            "optimising",
            AgentDecision(interval_start, (forecast,), (cart,), ()),
        ),
        AgentPlan(
            interval_start,
            "C",
            "baseline",
            AgentDecision(interval_start, (), (idle,), (), "missing history: 0 metered intervals"),
        ),
    ]


def synthetic_run(
    run_id: str,
    steps: int,
    *,
    start: datetime | None = None,
    step_s: float = 1.0,
    interval_steps: int = 60,
    interlock_every: int = 97,
    finish: bool = True,
) -> Iterator[Document]:
    """The documents of a run of `steps` control steps, in the order a controller emits them."""
    start = start or default_start(steps, step_s)
    yield RunStarted(
        run_id, start, {"plant": "hil_sim", "step_s": step_s, "peers": ["A", "B", "C"]}
    )
    for step in range(steps):
        now = start + timedelta(seconds=step * step_s)
        if step % interval_steps == 0:
            yield from _interval_documents(step, step // interval_steps, now)
        for (peer, device), fields in DEVICES.items():
            values = {field: reading(step, peer, device, field) for field in fields}
            yield Sample(now, peer, device, values)
        if interlock_every and step % interlock_every == interlock_every - 1:
            yield Interlock(
                now, "A", "inverter", "power_limit", "setpoint 4.2 kW > 3.5 kW", "clamped"
            )
            yield Interlock(now, "A", "inverter", "power_limit", "read-back 3.6 kW", "clamped")
    if finish:
        end = start + timedelta(seconds=steps * step_s)
        yield RunFinished(run_id, end, "finished", {"steps": steps, "energy_kwh": 12.5})


def expected_points(documents: Iterable[Document]) -> Counter[str]:
    """How many points each measurement must hold for these documents (per the schema)."""
    counts: Counter[str] = Counter()
    for doc in documents:
        match doc:
            case Sample():
                counts["telemetry"] += 1
            case OrderBook():
                counts["order"] += len(doc.orders) + len(doc.rejected)
            case Clearing():
                counts["clearing"] += 1
                counts["trade"] += len(doc.trades)
            case Settlement():
                counts["settlement"] += 1
            case Interlock():
                counts["interlock"] += 1
            case AgentPlan():
                counts["agent_plan"] += 1 if doc.decision.plan else 0
            case RunStarted() | RunFinished():
                counts["run"] += 1
    return counts
