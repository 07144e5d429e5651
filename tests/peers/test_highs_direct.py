"""The HEMS's direct HiGHS path gives what cvxpy's own `Problem.solve` gives, bit for bit."""

from __future__ import annotations

from datetime import timedelta

import cvxpy as cp
import highspy
import numpy as np
import pytest
from cvxpy import settings as cvx_settings

from labspec.fast_paths import ENV_VAR
from peers.assets import default_assets
from peers.hems import Hems, HemsSettings
from peers.highs_direct import DirectHighs
from peers.horizon import horizon_inputs
from peers.interface import DeviceState
from tests.peers.conftest import START, context, forecasts

SCHEDULE_FIELDS = ("pv_used_kw", "battery_kw", "ev_kw", "net_kw", "battery_kwh", "ev_kwh", "p2p_kw")


def day_of_inputs(peer: str, intervals: int = 4):
    """Planning inputs at a few interval starts, the storage at different states of charge."""
    assets = default_assets(peer)
    load, pv = forecasts(assets)
    cases = []
    for k in range(intervals):
        start = START + timedelta(hours=5 * k)
        plugged = assets.ev.plugged_at(start.astimezone(assets.zone).time()) if assets.ev else None
        state = DeviceState(
            time=start,
            battery_soc_pct=30.0 + 15 * k if assets.battery else None,
            ev_soc_pct=40.0 + 10 * k if assets.ev else None,
            ev_plugged=plugged,
        )
        shift = 20 * k
        cases.append(
            horizon_inputs(
                assets, context(start), state, np.roll(load, -shift), np.roll(pv, -shift)
            )
        )
    return assets, cases


def assert_same(fast, slow) -> None:
    for name in (*SCHEDULE_FIELDS, "value_per_kwh"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert np.array_equal(a, b), name
    assert fast.objective == slow.objective
    assert fast.info["method"] == slow.info["method"]
    for name, value in slow.detail.items():
        assert np.array_equal(fast.detail[name], value), name


@pytest.mark.parametrize("peer", ["A", "B", "C"])
@pytest.mark.parametrize("relaxation_first", [True, False])
def test_direct_path_plans_exactly_as_cvxpy(peer, relaxation_first, monkeypatch):
    assets, cases = day_of_inputs(peer)
    settings = HemsSettings(relaxation_first=relaxation_first, time_limit_s=30.0)
    monkeypatch.setenv(ENV_VAR, "1")
    fast = Hems(assets, 96, 0.25, settings)
    monkeypatch.setenv(ENV_VAR, "0")
    slow = Hems(assets, 96, 0.25, settings)
    for inputs in cases:
        plan, reference = fast.solve(inputs), slow.solve(inputs)
        assert_same(plan, reference)
        # the fast HEMS went the direct way, the other through Problem.solve
        used = fast.milp if plan.info["method"] != "relaxation integral" else fast.relaxed
        assert used is not None and used.solver.direct is not None
        assert fast.lp.solver.direct is not None
        assert slow.lp.solver.direct is None and slow.milp.solver.direct is None


@pytest.mark.parametrize("peer", ["A", "B"])
def test_model_data_is_what_cvxpy_hands_highs(peer):
    """c, A, the row and column bounds and the objective's constant: cvxpy's own compilation
    (`get_problem_data`) for the same parameter values, array for array."""
    assets, cases = day_of_inputs(peer, intervals=2)
    hems = Hems(assets, 96, 0.25, HemsSettings())
    for model in (hems.milp, hems.lp):
        direct = DirectHighs(model.problem)
        for inputs in cases:
            hems._load(model, inputs, p2p=model is hems.milp)
            if model is hems.lp and hems.has_modes:
                for name, value in hems._modes(hems.solve(inputs).detail).items():
                    model.set(name, value)
            data = direct.model_data()
            reference, _, inverse = model.problem.get_problem_data(cp.HIGHS)
            a = reference[cvx_settings.A].tocsc()
            assert np.array_equal(data["c"], reference[cvx_settings.C])
            assert data["offset"] == inverse[-1][cvx_settings.OFFSET]
            assert np.array_equal(data["a_start"], a.indptr)
            assert np.array_equal(data["a_index"], a.indices)
            assert np.array_equal(data["a_value"], a.data)
            assert np.array_equal(data["row_upper"], reference[cvx_settings.B])
            eq = reference[cvx_settings.DIMS].zero
            assert np.array_equal(data["row_lower"][:eq], reference[cvx_settings.B][:eq])
            assert np.all(np.isneginf(data["row_lower"][eq:]))
            booleans = reference[cvx_settings.BOOL_IDX]
            assert (direct.integrality is not None) == bool(booleans)
            lower = reference[cvx_settings.LOWER_BOUNDS]
            expected_lower = np.array(lower, dtype=float)
            if booleans:
                expected_lower[booleans] = np.maximum(expected_lower[booleans], 0)
            assert np.array_equal(data["col_lower"], expected_lower)


def test_direct_path_runs_after_highs_was_started_with_more_threads(monkeypatch):
    """HiGHS keeps one thread pool per process; a pool another caller started with two threads
    is restarted for the direct path's one, and that caller's next default solve still runs."""
    monkeypatch.setenv(ENV_VAR, "1")
    x = cp.Variable(2, nonneg=True)
    other = cp.Problem(cp.Minimize(cp.sum(x)), [x >= 1])
    highspy.Highs.resetGlobalScheduler(True)
    other.solve(solver=cp.HIGHS, threads=2)
    assets, cases = day_of_inputs("A", intervals=1)
    hems = Hems(assets, 96, 0.25, HemsSettings())
    plan = hems.solve(cases[0])
    assert plan.info["status"] == cp.OPTIMAL and hems.lp.solver.direct is not None
    assert plan.value_per_kwh is not None
    other.solve(solver=cp.HIGHS)
    assert other.status == cp.OPTIMAL and other.value == pytest.approx(2.0)


def test_switch_off_solves_through_cvxpy(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "off")
    assets, cases = day_of_inputs("C", intervals=1)
    hems = Hems(assets, 96, 0.25, HemsSettings())
    plan = hems.solve(cases[0])
    assert hems.milp.solver.direct is None and not hems.milp.solver.fast
    assert np.all(plan.net_kw <= assets.grid_export_limit_kw + 1e-6)


def test_a_form_the_direct_path_cannot_reproduce_falls_back_to_cvxpy(monkeypatch):
    """E.g. another cvxpy whose internals moved: the solve goes through Problem.solve."""
    from peers import highs_direct

    def moved(problem):
        raise AttributeError("'ParamConeProg' object has no attribute 'reduced_A'")

    monkeypatch.setenv(ENV_VAR, "1")
    monkeypatch.setattr(highs_direct, "DirectHighs", moved)
    x = cp.Variable(2, nonneg=True)
    price = cp.Parameter(2, value=np.array([1.0, 2.0]))
    problem = cp.Problem(cp.Minimize(price @ x), [cp.sum(x) == 3])
    solver = highs_direct.HighsSolver(problem)
    solver.solve({"time_limit": 5.0})
    assert not solver.fast and solver.direct is None
    assert problem.status == cp.OPTIMAL and problem.value == pytest.approx(3.0)
    np.testing.assert_allclose(x.value, [3.0, 0.0], atol=1e-9)
