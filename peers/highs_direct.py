"""Re-solving a compiled cvxpy problem with HiGHS, without cvxpy's per-solve chain.

A HEMS re-solves the same DPP problem every interval with new parameter values. cvxpy's
`Problem.solve` then walks its whole solving chain each time (the parameter tensors applied
through generic sparse reshapes, the HiGHS model built, two `Highs` instances, the solution
inverted through every reduction): about as much CPU as HiGHS itself takes on the LPs.
`DirectHighs` keeps what does not change between solves (the CSC structure of the constraint
matrix, the integrality list, where each part of the parameter product lands) and per solve
only multiplies the parameter vector, fills the HiGHS model's arrays and runs HiGHS with one
thread. The solution is handed back through cvxpy's own inversion and `Problem.unpack`, so the
variables' values, the constraints' duals, `status` and `value` are set as `Problem.solve` sets
them.

Same results: the model HiGHS receives is the one cvxpy's HiGHS interface builds, array for
array (the constant parts copied from cvxpy's own compilation; every parameter-dependent entry
is a sum of at most two products, so its value does not depend on the order of the sums, and the
compilation checks that), with the same options. HiGHS's results do not depend on its thread
count except where a time limit cuts a solve short (a time-limited branch and bound depends on
the machine's speed either way). `tests/peers/test_highs_direct.py` compares both paths bit for
bit; `TESTBED_FAST_PATHS=0` (labspec.fast_paths) sends every solve through `Problem.solve`.
"""

from __future__ import annotations

import logging
from typing import Any

import cvxpy as cp
import highspy
import numpy as np
import scipy.sparse as sp
from cvxpy import settings as cvx_settings
from cvxpy.cvxcore.python import canonInterface
from cvxpy.reductions.solution import Solution

from labspec import fast_paths

logger = logging.getLogger(__name__)

# HiGHS's worker threads only compete with the plant and the controller for the machine's cores:
# one thread solves these models in less CPU and less wall time.
THREADS = 1


class DirectHighsUnsupported(RuntimeError):
    """The problem's compiled form is not one the direct path reproduces exactly."""


class DirectHighs:
    """One DPP problem, compiled for HiGHS once and re-solved directly; see the module doc."""

    def __init__(self, problem: cp.Problem) -> None:
        self.problem = problem
        data, chain, inverse_data = problem.get_problem_data(cp.HIGHS, enforce_dpp=True)
        self.chain = chain
        self.inverse_data = inverse_data
        # the HiGHS step's inverse data (a dict, wrapped by cvxpy 1.9): its objective offset
        # is the one entry that depends on the parameters
        last = inverse_data[-1]
        self.solver_inverse: dict[str, Any] = getattr(last, "inverse_data", last)
        if not isinstance(self.solver_inverse, dict) or (
            cvx_settings.OFFSET not in self.solver_inverse
        ):
            raise DirectHighsUnsupported("no objective offset in the solver's inverse data")
        prog = data[cvx_settings.PARAM_PROB]
        self.prog = prog
        if prog.P is not None or prog.lb_tensor is not None or prog.ub_tensor is not None:
            raise DirectHighsUnsupported("quadratic objective or parameter-dependent bounds")
        # Objective: c and its constant from one product with the parameter vector (cvxpy forms
        # the same values through a sparse-by-sparse product; with at most two terms per entry
        # the sums are exact either way).
        q = sp.csr_array(prog.q)
        if q.nnz and int(np.diff(q.indptr).max()) > 2:
            raise DirectHighsUnsupported("an objective entry sums more than two parameter terms")
        self.q = q
        self.n = int(prog.x.size)
        # Constraints: cvxpy's reduced map (values of the CSC data of [A | b]) times the vector.
        prog.reduced_A.cache(False)
        reduced = prog.reduced_A.reduced_mat
        index = prog.reduced_A.problem_data_index
        if reduced is None or index is None:
            raise DirectHighsUnsupported("no parameter map for the constraint matrix")
        self.reduced = reduced
        indices, indptr, shape = index
        rows, n_cols = int(shape[0]), int(shape[1])
        if n_cols != self.n + 1:
            raise DirectHighsUnsupported("unexpected shape of the constraint data")
        a_end = int(indptr[self.n])
        self.a_nnz = a_end
        self.a_indices = np.asarray(indices[:a_end])
        self.a_indptr = np.asarray(indptr[: self.n + 1])
        self.b_rows = np.asarray(indices[a_end : int(indptr[self.n + 1])])
        self.b_slice = slice(a_end, int(indptr[self.n + 1]))
        if np.unique(self.b_rows).size != self.b_rows.size:
            raise DirectHighsUnsupported("repeated rows in the constant column")
        self.m = rows
        dims = data[cvx_settings.DIMS]
        self.eq_rows = int(dims.zero)
        if self.eq_rows + int(dims.nonneg) != rows:
            raise DirectHighsUnsupported("cones other than equalities and inequalities")
        inf = highspy.kHighsInf
        self.row_lower_tail = np.full(rows - self.eq_rows, -inf)
        lower, upper = data[cvx_settings.LOWER_BOUNDS], data[cvx_settings.UPPER_BOUNDS]
        self.col_lower = np.full(self.n, -inf) if lower is None else np.array(lower, dtype=float)
        self.col_upper = np.full(self.n, inf) if upper is None else np.array(upper, dtype=float)
        bools = list(data[cvx_settings.BOOL_IDX])
        integers = list(data[cvx_settings.INT_IDX])
        self.integrality: list[Any] | None = None
        if bools or integers:
            integrality = [highspy.HighsVarType.kContinuous] * self.n
            for i in bools + integers:
                integrality[i] = highspy.HighsVarType.kInteger
            if bools:
                mask = np.array(bools, dtype=int)
                self.col_lower[mask] = np.maximum(self.col_lower[mask], 0)
                self.col_upper[mask] = np.minimum(self.col_upper[mask], 1)
            self.integrality = integrality

    def parameter_vector(self) -> np.ndarray:
        """The parameters' current values, flattened as cvxpy flattens them, then a 1."""
        prog = self.prog
        vec: np.ndarray = canonInterface.get_parameter_vector(
            prog.total_param_size,
            prog.param_id_to_col,
            prog.param_id_to_size,
            lambda pid: np.array(prog.id_to_param[pid].value),
        )
        return vec

    def model_data(self) -> dict[str, Any]:
        """c, its offset, A (CSC arrays), the row bounds and the column bounds, as cvxpy's HiGHS
        interface would pass them for the parameters' current values."""
        vec = self.parameter_vector()
        qd = self.q @ vec
        flat = self.reduced @ vec
        b = np.zeros(self.m)
        b[self.b_rows] = flat[self.b_slice]
        return {
            "c": qd[: self.n],
            "offset": float(qd[self.n]),
            "a_start": self.a_indptr,
            "a_index": self.a_indices,
            "a_value": -flat[: self.a_nnz],
            "row_lower": np.concatenate([b[: self.eq_rows], self.row_lower_tail]),
            "row_upper": b,
            "col_lower": self.col_lower.copy(),
            "col_upper": self.col_upper.copy(),
        }

    def solve(self, options: dict[str, float | int]) -> None:
        """Solve with the parameters' current values; sets the problem's values like
        `Problem.solve` (cvxpy.error.SolverError when HiGHS gives nothing usable)."""
        data = self.model_data()
        model = highspy.HighsModel()
        lp = model.lp_
        lp.num_col_ = self.n
        lp.num_row_ = self.m
        lp.offset_ = 0
        lp.col_cost_ = data["c"]
        lp.row_lower_ = data["row_lower"]
        lp.row_upper_ = data["row_upper"]
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = data["a_start"]
        lp.a_matrix_.index_ = data["a_index"]
        lp.a_matrix_.value_ = data["a_value"]
        if self.integrality is not None:
            lp.integrality_ = self.integrality
        lp.col_lower_ = data["col_lower"]
        lp.col_upper_ = data["col_upper"]
        solver = _run(model, options)
        results = {
            "solution": solver.getSolution(),
            "info": solver.getInfo(),
            "model_status": solver.getModelStatus().name,
            "run_time": solver.getRunTime(),
        }
        if results["model_status"] == "kInfeasible":
            results["dual_ray"] = solver.getDualRay()
        self.solver_inverse[cvx_settings.OFFSET] = data["offset"]
        solution: Solution = self.chain.invert(results, self.inverse_data)
        if solution.status in cvx_settings.ERROR:
            raise cp.error.SolverError(f"HiGHS: {results['model_status']}")
        self.problem.unpack(solution)


def _run(model: Any, options: dict[str, float | int]) -> Any:
    """A fresh HiGHS instance with cvxpy's options and one thread, run on `model`. HiGHS keeps one
    thread pool per process: when another caller started it with more threads, it is restarted."""
    for attempt in range(2):
        solver = highspy.Highs()
        solver.setOptionValue("log_to_console", False)
        for name, value in options.items():
            if solver.setOptionValue(name, value) == highspy.HighsStatus.kError:
                raise ValueError(f"HiGHS refuses option {name} = {value!r}")
        solver.setOptionValue("threads", THREADS)
        solver.passModel(model)
        status = solver.run()
        if (
            status == highspy.HighsStatus.kError
            and solver.getModelStatus() == highspy.HighsModelStatus.kNotset
            and attempt == 0
        ):
            highspy.Highs.resetGlobalScheduler(True)  # pool of another thread count
            continue
        return solver
    return solver


class HighsSolver:
    """How a HEMS model is solved: `DirectHighs` when the fast paths are on (labspec.fast_paths,
    read once here) and the problem's form allows it, else cvxpy's `Problem.solve`; the same
    result either way. The problem is compiled at the first solve."""

    def __init__(self, problem: cp.Problem) -> None:
        self.problem = problem
        self.fast = fast_paths.enabled()
        self.direct: DirectHighs | None = None

    def solve(self, options: dict[str, float | int]) -> None:
        """Solve with the parameters' current values (cvxpy.error.SolverError on failure)."""
        if self.fast and self.direct is None:
            try:
                self.direct = DirectHighs(self.problem)
            except (DirectHighsUnsupported, AttributeError, KeyError, TypeError) as exc:
                # a form it does not reproduce, or another cvxpy whose internals moved
                logger.info("HEMS solves go through cvxpy's Problem.solve: %s", exc)
                self.fast = False
        if self.direct is not None:
            self.direct.solve(options)
        else:
            self.problem.solve(solver=cp.HIGHS, warm_start=False, **options)
