"""Home energy management: a rolling-horizon mixed-integer schedule in cvxpy, solved by HiGHS.

Objective, the seed paper's (7) for one peer, summed over the horizon steps t (energy = kW x dt):
    grid purchase cost - grid sale revenue + P2P purchase cost - P2P sale revenue (at the prices
    the agent expects, `HorizonInputs.p2p_buy_price` / `p2p_sell_price`)
    + battery (and EV) depreciation + levelised PV cost
    (+ a value-of-lost-load penalty on unserved load, - the value of energy left stored at the end,
    - tiny tie-breakers toward using surplus and covering deficits early, see HemsSettings)
subject to: power balance at the PCC; battery and EV energy dynamics with charge and discharge
efficiencies; SoC windows; power limits; no simultaneous charge and discharge (binaries); EV
availability, charger deadband, reserve SoC (no discharge below it) and plug-out energy; grid
connection limits; P2P volume limits.

Every number that changes between intervals is a cvxpy Parameter, so each problem is compiled once
(DPP) and re-solved every interval. Marginal values (the duals of the power balance) come from an
LP re-solve with the binaries fixed at the MILP's values and no P2P market: the value of one more
kWh at the PCC when the grid is the alternative, i.e. the peer's reservation price.
"""

from __future__ import annotations

import os
import sys
import time as clock
from dataclasses import dataclass
from functools import cache
from typing import Any

import cvxpy as cp
import numpy as np

from peers.assets import PeerAssets
from peers.highs_direct import HighsSolver
from peers.horizon import HorizonInputs
from peers.schedule import Schedule


@cache
def _quiet_highs_banner() -> None:
    """HiGHS prints a two-line banner to the process's stdout when its first instance is built;
    build that one with stdout pointed at /dev/null so a run's console output stays clean."""
    try:
        import highspy

        sys.stdout.flush()
        if sys.__stdout__ is None:
            return  # no real stdout: nothing to hide
        stdout_fd = sys.__stdout__.fileno()
        saved = os.dup(stdout_fd)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stdout_fd)
            highspy.Highs()
        finally:
            os.dup2(saved, stdout_fd)
            os.close(saved)
            os.close(devnull)
    except (OSError, ValueError, AttributeError, ImportError):
        pass  # no real stdout (or no highspy): nothing to hide, or nothing to do


class HemsError(RuntimeError):
    """The solver gave no usable plan; the message says what happened."""


@dataclass(frozen=True, slots=True)
class HemsSettings:
    value_of_lost_load: float = 100.0  # currency per kWh of unserved load (keeps plans feasible)
    # value of energy still stored at the horizon's end; None = lowest feed-in x discharge eff.
    terminal_value_per_kwh: float | None = None
    p2p_limit_kw: float | None = None  # largest P2P trade either way; None = connection limits
    # Tie-breakers among equally cheap plans, far below any real price difference: grid and P2P
    # prices drift by this much per step (imports a little cheaper, exports a little dearer
    # later), so the battery takes today's surplus and covers today's deficit first, as robust to
    # forecast error as the rules; and a reward per kWh held in the EV per step, so it charges
    # early (a day of either is worth about 0.01 and 0.1 per kWh). A negative holding value
    # charges the EV as late as its plug-out needs allow (its flexibility kept for later offers);
    # `p2p_sales_first` turns the P2P sale drift round (an earlier P2P sale a little dearer), so a
    # seller serves its neighbours' present demand before filling its storage.
    tie_break_per_step: float = 1e-4
    ev_holding_value_per_kwh_step: float = 1e-3
    p2p_sales_first: bool = False
    time_limit_s: float = 1.0
    mip_rel_gap: float = 1e-3
    relaxation_first: bool = True  # skip branch and bound when the LP relaxation is integral
    # EV mode binaries (deadband, no simultaneous charge and discharge) only in the first steps;
    # later steps are re-planned before they run. None = binaries over the whole horizon.
    ev_integer_steps: int | None = 48
    seed: int = 0


class _Model:
    """One cvxpy problem. `modes` says what the operating-mode indicators are: `binary` (the MILP),
    `relaxed` (continuous in [0, 1]: the LP relaxation) or `fixed` (parameters: the LP for duals).
    """

    def __init__(
        self,
        assets: PeerAssets,
        steps: int,
        dt_h: float,
        modes: str,
        ev_integer_steps: int | None = None,
    ) -> None:
        fixed_modes = modes == "fixed"
        T = steps
        self.assets = assets
        self.dt = dt_h
        self.par: dict[str, cp.Parameter] = {}
        self.var: dict[str, cp.Variable] = {}

        def par(name: str, shape: int | tuple[int, ...] = (), nonneg: bool = False) -> cp.Parameter:
            self.par[name] = cp.Parameter(shape, name=name, nonneg=nonneg)
            return self.par[name]

        def var(name: str, shape: int = T, **kw: bool) -> cp.Variable:
            self.var[name] = cp.Variable(shape, name=name, **kw)
            return self.var[name]

        def mode(name: str, integer_steps: int | None = None) -> Any:
            if modes == "fixed":
                return par(name, T, nonneg=True)
            if modes == "relaxed":
                indicator = var(name, nonneg=True)
                cons.append(indicator <= 1)
                return indicator
            whole = T if integer_steps is None else min(max(integer_steps, 1), T)
            if whole == T:
                return var(name, boolean=True)
            # binaries for the first steps only; later steps are re-planned before they run
            head = var(name + "_int", whole, boolean=True)
            tail = var(name + "_rel", T - whole, nonneg=True)
            cons.append(tail <= 1)
            return cp.hstack([head, tail])

        cons: list[Any] = []  # cvxpy constraints
        load = par("load_kw", T, nonneg=True)
        retail = par("retail", T)
        feed_in = par("feed_in", T)
        p2p_buy_price = par("p2p_buy_price", T)
        p2p_sell_price = par("p2p_sell_price", T)
        p2p_buy_cap = par("p2p_buy_cap_kw", T, nonneg=True)
        p2p_sell_cap = par("p2p_sell_cap_kw", T, nonneg=True)
        voll = par("voll", nonneg=True)
        holding = par("ev_holding_value")

        grid_buy = var("grid_buy_kw", nonneg=True)
        grid_sell = var("grid_sell_kw", nonneg=True)
        p2p_buy = var("p2p_buy_kw", nonneg=True)
        p2p_sell = var("p2p_sell_kw", nonneg=True)
        unserved = var("unserved_kw", nonneg=True)

        cons += [
            grid_buy + p2p_buy <= assets.grid_import_limit_kw,
            grid_sell + p2p_sell <= assets.grid_export_limit_kw,
            p2p_buy <= p2p_buy_cap,
            p2p_sell <= p2p_sell_cap,
            unserved <= load,
        ]
        cost = (
            retail @ grid_buy
            - feed_in @ grid_sell
            + p2p_buy_price @ p2p_buy
            - p2p_sell_price @ p2p_sell
            + voll * cp.sum(unserved)
        ) * self.dt
        supply = grid_buy + p2p_buy - grid_sell - p2p_sell + unserved  # into the house, kW

        if assets.pv is not None:
            pv_available = par("pv_kw", T, nonneg=True)
            pv_used = var("pv_used_kw", nonneg=True)
            cons.append(pv_used <= pv_available)
            cost += assets.pv.levelised_cost_per_kwh * cp.sum(pv_used) * self.dt
            supply = supply + pv_used

        battery = assets.battery
        if battery is not None:
            ch = var("battery_charge_kw", nonneg=True)
            dis = var("battery_discharge_kw", nonneg=True)
            charging = mode("battery_charging")
            energy = var("battery_kwh", T + 1)
            energy0 = par("battery_kwh0", nonneg=True)
            low = par("battery_kwh_min", nonneg=True)
            high = par("battery_kwh_max", nonneg=True)
            terminal = par("battery_terminal_value", nonneg=True)
            cons += [
                ch <= battery.max_charge_kw * charging,
                dis <= battery.max_discharge_kw * (1 - charging),
                energy[0] == energy0,
                energy[1:]
                == energy[:-1]
                + self.dt * (battery.charge_efficiency * ch - dis / battery.discharge_efficiency),
                energy[1:] >= low,
                energy[1:] <= high,
            ]
            cost += battery.depreciation_per_kwh * cp.sum(ch + dis) * self.dt
            cost -= terminal * energy[T]
            supply = supply + dis - ch

        ev = assets.ev
        if ev is not None:
            ch = var("ev_charge_kw", nonneg=True)
            dis = var("ev_discharge_kw", nonneg=True)
            charging = mode("ev_charging", ev_integer_steps)
            discharging = mode("ev_discharging", ev_integer_steps)
            if fixed_modes:  # deadband and reserve only where the plan obeys them (see _modes)
                charging_floor = par("ev_charging_floor", T, nonneg=True)
                discharging_floor = par("ev_discharging_floor", T, nonneg=True)
            else:
                charging_floor, discharging_floor = charging, discharging
            energy = var("ev_kwh", T + 1)
            available = par("ev_available", T, nonneg=True)
            required = par("ev_required_kwh", T, nonneg=True)
            drive = par("ev_drive_kwh", T, nonneg=True)
            energy0 = par("ev_kwh0", nonneg=True)
            low = par("ev_kwh_min", T, nonneg=True)
            high = par("ev_kwh_max", nonneg=True)
            terminal = par("ev_terminal_value", nonneg=True)
            cons += [
                ch <= ev.max_charge_kw * charging,
                ch >= ev.min_power_kw * charging_floor,
                dis <= ev.max_discharge_kw * discharging,
                dis >= ev.min_power_kw * discharging_floor,
                energy[0] == energy0,
                energy[1:]
                == energy[:-1]
                + self.dt * (ev.charge_efficiency * ch - dis / ev.discharge_efficiency)
                - drive,
                energy[1:] >= low,
                energy[1:] <= high,
                energy[1:] >= required,
                # no discharge that ends below the reserve
                energy[1:] >= ev.reserve_kwh * discharging_floor,
            ]
            if not fixed_modes:
                cons += [
                    charging + discharging <= 1,
                    charging <= available,
                    discharging <= available,
                ]
            cost += ev.depreciation_per_kwh * cp.sum(ch + dis) * self.dt
            cost -= terminal * energy[T] + holding * cp.sum(energy[1:])
            supply = supply + dis - ch

        self.balance = supply == load
        cons.append(self.balance)
        self.problem = cp.Problem(cp.Minimize(cost), cons)
        if not self.problem.is_dcp(dpp=True):
            raise HemsError("HEMS model is not DPP; it would recompile on every solve")
        self.solver = HighsSolver(self.problem)

    def set(self, name: str, value: float | np.ndarray) -> None:
        self.par[name].value = value


class Hems:
    """A peer's HEMS for a fixed horizon length and step; `solve` re-uses the compiled problems."""

    def __init__(
        self, assets: PeerAssets, steps: int, dt_h: float, settings: HemsSettings | None = None
    ) -> None:
        _quiet_highs_banner()
        self.assets = assets
        self.steps = steps
        self.dt_h = dt_h
        self.settings = settings or HemsSettings()
        self.has_modes = assets.battery is not None or assets.ev is not None
        self.milp = _Model(
            assets, steps, dt_h, modes="binary", ev_integer_steps=self.settings.ev_integer_steps
        )
        self.relaxed = _Model(assets, steps, dt_h, modes="relaxed") if self.has_modes else None
        self.lp = _Model(assets, steps, dt_h, modes="fixed") if self.has_modes else self.milp
        self.solves = 0

    def _solver_options(self, milp: bool) -> dict[str, float | int]:
        options = {
            "time_limit": float(self.settings.time_limit_s),
            "random_seed": self.settings.seed,
        }
        if milp:
            options["mip_rel_gap"] = float(self.settings.mip_rel_gap)
        return options

    def _load(
        self, model: _Model, inputs: HorizonInputs, p2p: bool, tie_break: bool = True
    ) -> None:
        a = self.assets
        T = self.steps
        drift = self.settings.tie_break_per_step * np.arange(T) if tie_break else np.zeros(T)
        model.set("load_kw", np.maximum(inputs.load_kw, 0.0))
        model.set("retail", inputs.retail - drift)
        model.set("feed_in", inputs.feed_in + drift)
        model.set("p2p_buy_price", inputs.p2p_buy_price - drift)
        sell_drift = -drift if self.settings.p2p_sales_first else drift
        model.set("p2p_sell_price", inputs.p2p_sell_price + sell_drift)
        cap = self.settings.p2p_limit_kw
        buy_cap = a.grid_import_limit_kw if cap is None else cap
        sell_cap = a.grid_export_limit_kw if cap is None else cap
        buy_caps = np.full(T, buy_cap if p2p else 0.0)
        sell_caps = np.full(T, sell_cap if p2p else 0.0)
        if p2p and inputs.p2p_buy_cap_kw is not None:
            buy_caps = np.minimum(buy_caps, np.maximum(inputs.p2p_buy_cap_kw, 0.0))
        if p2p and inputs.p2p_sell_cap_kw is not None:
            sell_caps = np.minimum(sell_caps, np.maximum(inputs.p2p_sell_cap_kw, 0.0))
        model.set("p2p_buy_cap_kw", buy_caps)
        model.set("p2p_sell_cap_kw", sell_caps)
        model.set("voll", self.settings.value_of_lost_load)
        model.set("ev_holding_value", self.settings.ev_holding_value_per_kwh_step)
        if a.pv is not None:
            model.set("pv_kw", np.maximum(inputs.pv_kw, 0.0))
        terminal_fraction = self.settings.terminal_value_per_kwh
        if a.battery is not None:
            if inputs.battery_kwh is None:
                raise HemsError("the peer has a battery but the inputs give no battery energy")
            e0 = float(inputs.battery_kwh)
            model.set("battery_kwh0", max(e0, 0.0))
            model.set("battery_kwh_min", min(a.battery.energy_min_kwh, max(e0, 0.0)))
            model.set("battery_kwh_max", max(a.battery.energy_max_kwh, e0))
            value = terminal_fraction
            if value is None:
                value = float(np.min(inputs.feed_in)) * a.battery.discharge_efficiency
            model.set("battery_terminal_value", max(value, 0.0))
        if a.ev is not None:
            horizon = inputs.ev
            if horizon is None:
                raise HemsError("the peer has an EV but the inputs give no EV horizon")
            e0 = float(horizon.initial_kwh)
            model.set("ev_available", horizon.available.astype(float))
            model.set("ev_required_kwh", horizon.required_kwh)
            model.set("ev_drive_kwh", horizon.drive_kwh)
            model.set("ev_kwh0", max(e0, 0.0))
            # a bound every valid schedule obeys; it tightens the relaxation of the reserve rule
            model.set("ev_kwh_min", np.maximum(horizon.floor_kwh, 0.0))
            model.set("ev_kwh_max", max(a.ev.energy_max_kwh, e0))
            value = terminal_fraction
            if value is None:
                value = float(np.min(inputs.feed_in)) * a.ev.discharge_efficiency
            model.set("ev_terminal_value", max(value, 0.0))

    def _solve(self, model: _Model, milp: bool) -> float:
        started = clock.perf_counter()
        try:
            model.solver.solve(self._solver_options(milp))
        except (cp.error.SolverError, ValueError, ArithmeticError) as exc:
            raise HemsError(f"HiGHS failed: {exc}") from exc
        status = model.problem.status
        if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE, cp.USER_LIMIT):
            raise HemsError(f"HiGHS status {status}")
        if any(v.value is None for v in model.var.values()):
            raise HemsError(f"HiGHS status {status} without a solution")
        return clock.perf_counter() - started

    def _integral(self, v: dict[str, Any]) -> bool:
        """Whether a relaxed solution already satisfies every rule the binaries enforce."""
        tol = 1e-6
        battery = self.assets.battery
        if battery is not None and np.any(
            np.minimum(v["battery_charge_kw"], v["battery_discharge_kw"]) > tol
        ):
            return False
        ev = self.assets.ev
        if ev is not None:
            head = self.settings.ev_integer_steps or self.steps
            ch, dis = v["ev_charge_kw"][:head], v["ev_discharge_kw"][:head]
            if np.any(np.minimum(ch, dis) > tol):
                return False
            for power in (ch, dis):
                if np.any((power > tol) & (power < ev.min_power_kw - tol)):
                    return False
            if np.any((dis > tol) & (v["ev_kwh"][1 : head + 1] < ev.reserve_kwh - tol)):
                return False
        return True

    def _modes(self, v: dict[str, Any]) -> dict[str, np.ndarray]:
        """Operating modes implied by a solution's powers, for the LP that prices energy.

        `*_floor` marks the steps where the plan obeys the EV deadband (and, discharging, the
        reserve); only there does the LP enforce them (a relaxed tail step may not).
        """
        tol = 1e-6
        modes = {}
        if self.assets.battery is not None:
            modes["battery_charging"] = (v["battery_charge_kw"] > tol).astype(float)
        ev = self.assets.ev
        if ev is not None:
            ch, dis = v["ev_charge_kw"], v["ev_discharge_kw"]
            modes["ev_charging"] = (ch > tol).astype(float)
            modes["ev_discharging"] = (dis > tol).astype(float)
            modes["ev_charging_floor"] = (ch >= ev.min_power_kw - tol).astype(float)
            above_reserve = v["ev_kwh"][1:] >= ev.reserve_kwh - tol
            modes["ev_discharging_floor"] = ((dis >= ev.min_power_kw - tol) & above_reserve).astype(
                float
            )
        return modes

    def solve(self, inputs: HorizonInputs, with_values: bool = True) -> Schedule:
        """Plan the horizon; raise HemsError when no plan can be had.

        With `relaxation_first`, the LP relaxation is solved first; when its solution already obeys
        every rule the binaries encode (no simultaneous charge and discharge, deadband, reserve),
        it is optimal for the MILP too and branch and bound is skipped.
        """
        if inputs.steps != self.steps:
            raise HemsError(
                f"inputs have {inputs.steps} steps, the HEMS was built for {self.steps}"
            )
        info: dict[str, float | str] = {"planner": "hems"}
        model = None
        if self.relaxed is not None and self.settings.relaxation_first:
            self._load(self.relaxed, inputs, p2p=True)
            info["relaxation_solve_s"] = self._solve(self.relaxed, milp=False)
            v = {name: variable.value for name, variable in self.relaxed.var.items()}
            if self._integral(v):
                model = self.relaxed
                info["method"] = "relaxation integral"
        if model is None:
            model = self.milp
            self._load(self.milp, inputs, p2p=True)
            info["milp_solve_s"] = self._solve(self.milp, milp=True)
            info["method"] = "branch and bound" if self.has_modes else "lp"
            v = {name: variable.value for name, variable in self.milp.var.items()}
        info["status"] = model.problem.status
        info["unserved_kwh"] = float(np.sum(v["unserved_kw"]) * self.dt_h)
        zeros = np.zeros(self.steps)
        battery_kw = v.get("battery_discharge_kw", zeros) - v.get("battery_charge_kw", zeros)
        ev_kw = v.get("ev_discharge_kw", zeros) - v.get("ev_charge_kw", zeros)
        net_kw = v["grid_sell_kw"] + v["p2p_sell_kw"] - v["grid_buy_kw"] - v["p2p_buy_kw"]
        values = None
        if with_values:
            values = self._marginal_values(inputs, v, info)
        self.solves += 1
        return Schedule(
            pv_used_kw=v.get("pv_used_kw", zeros),
            battery_kw=_clean(battery_kw),
            ev_kw=_clean(ev_kw),
            net_kw=_clean(net_kw),
            battery_kwh=v.get("battery_kwh"),
            ev_kwh=v.get("ev_kwh"),
            p2p_kw=_clean(v["p2p_sell_kw"] - v["p2p_buy_kw"]),
            value_per_kwh=values,
            objective=float(model.problem.value),
            info=info,
            detail={name: np.asarray(value, dtype=float) for name, value in v.items()},
        )

    def _marginal_values(
        self, inputs: HorizonInputs, v: dict[str, Any], info: dict[str, float | str]
    ) -> np.ndarray | None:
        """Cost of one more kWh of load in each step, with the grid as the only counterpart."""
        lp = self.lp
        self._load(lp, inputs, p2p=False, tie_break=False)
        if self.has_modes and lp is not self.milp:
            for name, value in self._modes(v).items():
                lp.set(name, value)
        try:
            info["lp_solve_s"] = self._solve(lp, milp=False)
        except HemsError as exc:
            info["values_error"] = str(exc)
            return None
        dual = lp.balance.dual_value
        if dual is None:
            info["values_error"] = "no dual from the LP"
            return None
        # cvxpy's dual of `supply == load` is minus the cost of one more kW over the step
        return -np.asarray(dual, dtype=float) / self.dt_h


def _clean(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.where(np.abs(values) < 1e-7, 0.0, values)
