"""What an agent's schedule is worth: agents drive the emulated plant's devices in closed loop.

Run: python3 benchmarks/agents_value_bench.py [--warmup-days 2] [--days 2] [--seed 1]
     [--peers A,B] [--kinds idle,baseline,optimising]

For each peer and agent kind, a fresh `hil_sim.plant.Plant(PlantConfig(seed))` runs `--warmup-days`
with the devices idle (the agent only observes, building its history), then `--days` in which the
agent decides every 15 min and its plan's first step drives the device directly in-process: peer A's
inverter WSet = available PV + planned battery power (re-written every 20 s, so the battery
follows the plan while PV moves), peer B's EV charger setpoint = planned EV power (re-written every
20 s, within the charger's 30-s watchdog). There is no P2P market here: the optimising agent plans
for the grid alone (`p2p_limit_kw=0`), and each peer's bill is its metered import x retail tariff
minus export x feed-in tariff, from the PCC meter's energy registers. `idle` leaves the devices
alone. `--tariff tou` bills imports at a time-of-use retail tariff (8 by day, 12 from 18:00 to
22:00, 5 from 22:00 to 06:00 local), which the agents see as `retail_tariff_profile`. The P2P
value of the agents needs the orchestrator's market runs.
"""

from __future__ import annotations

import argparse
import time
import warnings
from datetime import timedelta

from peers import DeviceState, IntervalObservation, MarketContext, default_assets, make_agent

RETAIL = 8.0
FEED_IN = 3.0
TOU = ((6, 18, 8.0), (18, 22, 12.0), (22, 30, 5.0))  # local hour ranges (22-30 = 22:00-06:00)


def retail_at(moment, zone, tariff: str) -> float:
    """Retail tariff at a moment: flat, or time of use (dear evening peak, cheap night)."""
    if tariff == "flat":
        return RETAIL
    hour = moment.astimezone(zone).hour
    for first, last, price in TOU:
        if first <= hour < last or first <= hour + 24 < last:
            return price
    return RETAIL


INTERVAL_S = 900
WRITE_EVERY_S = 20


def run(
    peer: str, kind: str, warmup_days: float, days: float, seed: int, tariff: str = "flat"
) -> dict[str, float]:
    from hil_sim.config import PlantConfig
    from hil_sim.plant import Plant, SetpointRejected

    plant = Plant(PlantConfig(seed=seed))
    assets = default_assets(peer)
    params = {"p2p_limit_kw": 0.0} if kind == "optimising" else {}
    agent = make_agent("baseline" if kind == "idle" else kind, peer, assets, params, seed)
    meter = plant.meters[peer]
    warmup = int(warmup_days * 86400 / INTERVAL_S)
    total = warmup + int(days * 86400 / INTERVAL_S)
    bill = import_kwh = export_kwh = 0.0
    fallbacks = departures_short = departures = 0
    decide_s = 0.0
    soc_low = soc_high = None
    capacity = (assets.battery or assets.ev).capacity_kwh if assets.has_flexibility else 0.0

    def stored_kwh() -> float:
        if assets.battery is not None:
            return capacity * plant.inverter.soc_pct / 100.0
        if assets.ev is not None:
            return capacity * plant.ev.soc_pct / 100.0
        return 0.0

    stored_start = None
    for interval in range(total):
        start = plant.now
        if interval == warmup:
            stored_start = stored_kwh()
        controlled = interval >= warmup and kind != "idle"
        step = None
        if controlled:
            state = DeviceState(
                time=start,
                battery_soc_pct=plant.inverter.soc_pct if assets.battery else None,
                ev_soc_pct=plant.ev.soc_pct if assets.ev else None,
                ev_plugged=plant.ev.plugged if assets.ev else None,
                ev_departure_time=plant.ev.departure_time if assets.ev else None,
            )
            profile = tuple(
                retail_at(start + timedelta(seconds=INTERVAL_S * k), assets.zone, tariff)
                for k in range(96)
            )
            ctx = MarketContext(
                start,
                retail_tariff=max(profile),
                feed_in_tariff=FEED_IN,
                retail_tariff_profile=profile,
            )
            t0 = time.perf_counter()
            decision = agent.decide(ctx, state)
            decide_s += time.perf_counter() - t0
            fallbacks += decision.fallback_reason is not None
            step = decision.plan[0]
        imported0, exported0 = meter.import_kwh, meter.export_kwh
        pv0 = plant.inverter.pv_energy_kwh
        load_kwh = 0.0
        was_plugged = plant.ev.plugged
        for _ in range(INTERVAL_S // WRITE_EVERY_S):
            if step is not None and assets.battery is not None:
                plant.write_inverter_wset_enabled(True)
                target = plant.inverter.pv_available_kw + step.battery_kw
                rated = plant.inverter.rated_power_kw
                plant.write_inverter_wset(max(-rated, min(rated, target)))
            if step is not None and assets.ev is not None and plant.ev.plugged:
                try:
                    plant.write_ev_setpoint(step.ev_kw)
                except SetpointRejected:
                    plant.write_ev_setpoint(0.0)
            plant.advance(WRITE_EVERY_S)
            load_kwh += -plant.house_load_profiles_kw[peer] * WRITE_EVERY_S / 3600.0
            departed = assets.ev is not None and was_plugged and not plant.ev.plugged
            if departed and interval >= warmup:
                departures += 1
                departures_short += plant.ev.soc_pct < assets.ev.departure_soc_pct - 0.5
            was_plugged = plant.ev.plugged
        imported = meter.import_kwh - imported0
        exported = meter.export_kwh - exported0
        agent.observe(
            IntervalObservation(
                interval_start=start,
                interval_s=INTERVAL_S,
                load_kwh=max(load_kwh, 0.0),
                pv_kwh=max(plant.inverter.pv_energy_kwh - pv0, 0.0) if assets.pv else 0.0,
                net_kwh=exported - imported,
                soc_pct=plant.inverter.soc_pct if assets.battery else None,
                ev_soc_pct=plant.ev.soc_pct if assets.ev else None,
                ev_plugged=plant.ev.plugged if assets.ev else None,
            )
        )
        if interval >= warmup:
            bill += imported * retail_at(start, assets.zone, tariff) - exported * FEED_IN
            import_kwh += imported
            export_kwh += exported
            soc = 100 * stored_kwh() / capacity if capacity else 0.0
            soc_low = soc if soc_low is None else min(soc_low, soc)
            soc_high = soc if soc_high is None else max(soc_high, soc)
    return {
        "bill": bill,
        "stored_change_kwh": stored_kwh() - stored_start,
        "import_kwh": import_kwh,
        "export_kwh": export_kwh,
        "fallbacks": fallbacks,
        "departures": departures,
        "departures_short": departures_short,
        "soc_low": soc_low,
        "soc_high": soc_high,
        "decide_ms": 1000 * decide_s / max(total - warmup, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup-days", type=float, default=2.0)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--peers", default="A,B")
    parser.add_argument("--kinds", default="idle,baseline,optimising")
    parser.add_argument("--tariff", choices=["flat", "tou"], default="flat")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(
        f"grid-only bills over {args.days:g} days after {args.warmup_days:g} days of idle history "
        f"(plant seed {args.seed}; {args.tariff} retail tariff, feed-in {FEED_IN} per kWh)"
    )
    print(
        "peer kind        bill   import kWh  export kWh  stored change kWh  SoC min-max %  "
        "fallbacks  plug-outs short/all  decide ms"
    )
    for peer in args.peers.split(","):
        for kind in args.kinds.split(","):
            t0 = time.perf_counter()
            r = run(peer, kind, args.warmup_days, args.days, args.seed, args.tariff)
            print(
                f"{peer:4} {kind:10} {r['bill']:7.2f} {r['import_kwh']:11.2f} "
                f"{r['export_kwh']:11.2f}  {r['stored_change_kwh']:17.2f}  "
                f"{r['soc_low']:5.1f}-{r['soc_high']:5.1f}  "
                f"{r['fallbacks']:9d}  {r['departures_short']:5d}/{r['departures']:<5d}"
                f"        {r['decide_ms']:6.1f}   ({time.perf_counter() - t0:.0f} s)"
            )


if __name__ == "__main__":
    main()
