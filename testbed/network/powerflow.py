"""The pre-dispatch check: an AC power flow (pandapower) of the cleared positions on the feeder.

The feeder's single-phase loop model is solved as pandapower's balanced network with `vn_kv` equal
to the nominal phase voltage (the same per-unit problem, as hil_sim's feeder test shows); a line's
single-phase current is then sqrt(3) times pandapower's `i_ka`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from testbed.network.feeder import Feeder


@dataclass(frozen=True)
class NetworkCheck:
    """The AC power flow's verdict on one interval's positions."""

    ok: bool
    voltages_v: dict[str, float]
    min_voltage_pu: float
    max_voltage_pu: float
    max_loading_pct: float
    losses_kw: float
    violations: list[str] = field(default_factory=list)
    converged: bool = True

    def to_report(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "converged": self.converged,
            "min_voltage_pu": self.min_voltage_pu,
            "max_voltage_pu": self.max_voltage_pu,
            "max_loading_pct": self.max_loading_pct,
            "losses_kw": self.losses_kw,
            "voltages_v": dict(self.voltages_v),
            "violations": list(self.violations),
        }


def ac_check(feeder: Feeder, injections_kw: dict[str, float], band_pct: float) -> NetworkCheck:
    """Bus voltages and line loadings for `injections_kw` (per bus, + = injected into the grid)."""
    import pandapower as pp

    net = pp.create_empty_network(sn_mva=1.0)
    kv = feeder.nominal_voltage_v / 1000.0
    bus = {name: pp.create_bus(net, vn_kv=kv, name=name) for name in feeder.buses}
    slack_pu = feeder.lv_bus_voltage_v / feeder.nominal_voltage_v
    pp.create_ext_grid(net, bus[feeder.slack_bus], vm_pu=slack_pu)
    lines = {}
    for line in feeder.lines:
        lines[line.to_bus] = pp.create_line_from_parameters(
            net,
            bus[line.from_bus],
            bus[line.to_bus],
            length_km=line.length_m / 1000.0,
            r_ohm_per_km=line.r_ohm_per_km,
            x_ohm_per_km=line.x_ohm_per_km,
            c_nf_per_km=0.0,
            max_i_ka=line.max_current_a / 1000.0 / math.sqrt(3),
        )
    for name, power_kw in injections_kw.items():
        if abs(power_kw) > 0:
            pp.create_sgen(net, bus[name], p_mw=power_kw / 1000.0)
    try:
        pp.runpp(net, algorithm="nr", tolerance_mva=1e-10, max_iteration=50, numba=False)
    except Exception as error:  # pandapower raises its own LoadflowNotConverged
        return NetworkCheck(
            ok=False,
            voltages_v={},
            min_voltage_pu=math.nan,
            max_voltage_pu=math.nan,
            max_loading_pct=math.nan,
            losses_kw=math.nan,
            violations=[f"AC power flow did not converge: {error}"],
            converged=False,
        )
    nominal = feeder.nominal_voltage_v  # vm_pu is relative to vn_kv = nominal
    voltages = {name: float(net.res_bus.vm_pu.at[index]) * nominal for name, index in bus.items()}
    low, high = nominal * (1 - band_pct / 100.0), nominal * (1 + band_pct / 100.0)
    violations = [
        f"bus {name} at {volts:.2f} V is outside {low:.1f}-{high:.1f} V (+-{band_pct:g} %)"
        for name, volts in voltages.items()
        if name != feeder.slack_bus and not low <= volts <= high
    ]
    loading = {}
    for line in feeder.lines:
        current_a = float(net.res_line.i_ka.at[lines[line.to_bus]]) * 1000.0 * math.sqrt(3)
        loading[line.to_bus] = 100.0 * current_a / line.max_current_a
        if current_a > line.max_current_a:
            violations.append(
                f"line {line.from_bus}-{line.to_bus} carries {current_a:.1f} A "
                f"above its rating {line.max_current_a:g} A"
            )
    per_unit = [volts / nominal for name, volts in voltages.items() if name != feeder.slack_bus]
    return NetworkCheck(
        ok=not violations,
        voltages_v=voltages,
        min_voltage_pu=min(per_unit),
        max_voltage_pu=max(per_unit),
        max_loading_pct=max(loading.values()),
        losses_kw=float(net.res_line.pl_mw.sum()) * 1000.0,
        violations=violations,
    )
