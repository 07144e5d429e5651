"""Radial power flow of the low-voltage feeder by backward/forward sweep.

Single-phase equivalent: each line's impedance is that of the loop (go and return conductor), bus
voltages are phase-to-neutral phasors in V, loads constant power in VA. In per unit this is the very
same problem pandapower solves for a balanced network with `vn_kv` equal to the nominal voltage,
which is how the test checks it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labspec.site import ResolvedLine

SLACK_BUS = "LV"


class RadialFeeder:
    """A radial network rooted at the slack bus; `solve` takes the PCC loads and keeps the result.

    The sweep in matrix form (Teng's BIBC/BCBV): the backward sweep sums load currents into branch
    currents, the forward sweep subtracts branch drops along each path from the slack. Both are
    linear in the load currents, so they collapse into one matrix `path_z[i][j]`, the impedance of
    the path the loads i and j share towards the slack: V_i = V_slack - sum_j path_z[i][j] * I_j.
    Each iteration updates the load currents from the last voltages, I_j = conj(S_j / V_j), then
    the voltages. The previous solution is the next starting point, so a step with nearly unchanged
    loads converges in one or two sweeps.
    """

    def __init__(
        self,
        lines: Sequence[ResolvedLine],
        slack_voltage_v: float,
        load_buses: Sequence[str],
        tolerance_v: float = 1e-6,
        max_iterations: int = 100,
        slack_bus: str = SLACK_BUS,
    ) -> None:
        parent: dict[str, str] = {}
        impedance: dict[str, complex] = {}
        for line in lines:
            km = line.length_m / 1000.0
            parent[line.to_bus] = line.from_bus
            impedance[line.to_bus] = complex(line.r_ohm_per_km * km, line.x_ohm_per_km * km)
        self.slack_bus = slack_bus
        self.bus_names = [slack_bus, *parent]
        self.load_buses = list(load_buses)
        self._path = {bus: self._path_to_slack(bus, parent) for bus in self.bus_names}
        self._impedance = impedance

        def shared(a: str, b: str) -> complex:
            # summed in path order, so the result does not depend on set (hash) order
            other = set(self._path[b])
            return sum((impedance[bus] for bus in self._path[a] if bus in other), 0j)

        self.path_z = [[shared(a, b) for b in self.load_buses] for a in self.load_buses]
        self._z: np.ndarray | None = None
        self.slack_voltage_v = slack_voltage_v
        self.tolerance_v = tolerance_v
        self.max_iterations = max_iterations
        self.load_voltage = [complex(slack_voltage_v, 0.0)] * len(self.load_buses)
        self.load_current = [0j] * len(self.load_buses)
        self.losses_kw = 0.0
        self.iterations = 0

    def _path_to_slack(self, bus: str, parent: dict[str, str]) -> list[str]:
        """The buses whose feeding line lies on the way from `bus` up to the slack."""
        path = []
        while bus != self.slack_bus:
            path.append(bus)
            bus = parent[bus]
        return path

    def solve(self, load_va: Sequence[complex]) -> None:
        """Solve for constant-power consumption `load_va` (P + jQ, VA) at the load buses."""
        if len(self.load_voltage) == 3:
            self._solve_three(load_va)
            return
        self._solve_matrix(load_va)

    def _solve_matrix(self, load_va: Sequence[complex]) -> None:
        """`solve` for any number of load buses, as numpy matrix-vector products."""
        if self._z is None:
            self._z = np.array(self.path_z, dtype=complex).reshape(len(self.load_buses), -1)
        z = self._z
        s = np.asarray(load_va, dtype=complex)
        v = np.asarray(self.load_voltage, dtype=complex)
        slack = complex(self.slack_voltage_v, 0.0)
        tolerance = self.tolerance_v
        for iteration in range(1, self.max_iterations + 1):  # noqa: B007 (kept after the loop)
            new = slack - z @ np.conj(s / v)
            change = float(np.max(np.abs(new - v))) if len(v) else 0.0
            v = new
            if change < tolerance:
                break
        else:
            raise ArithmeticError(
                f"feeder power flow did not converge in {self.max_iterations} sweeps "
                f"(loads {list(load_va)} VA): is the load beyond what the feeder can carry?"
            )
        current = np.conj(s / v)
        # Losses: the sum of R_b |I_b|^2 over branches equals Re(I^H Z I) over the load currents.
        losses_w = float(np.real(np.conj(current) @ (z @ current))) if len(v) else 0.0
        self.load_voltage = v.tolist()
        self.load_current = current.tolist()
        self.losses_kw = losses_w / 1000.0
        self.iterations = iteration

    def _solve_three(self, load_va: Sequence[complex]) -> None:
        """`solve` written out for three load buses (the testbed's PCCs): the plant's hot path."""
        (z00, z01, z02), (z10, z11, z12), (z20, z21, z22) = self.path_z
        s0, s1, s2 = load_va
        v0, v1, v2 = self.load_voltage
        slack = complex(self.slack_voltage_v, 0.0)
        tolerance = self.tolerance_v
        for iteration in range(1, self.max_iterations + 1):  # noqa: B007 (kept after the loop)
            i0 = (s0 / v0).conjugate()
            i1 = (s1 / v1).conjugate()
            i2 = (s2 / v2).conjugate()
            n0 = slack - z00 * i0 - z01 * i1 - z02 * i2
            n1 = slack - z10 * i0 - z11 * i1 - z12 * i2
            n2 = slack - z20 * i0 - z21 * i1 - z22 * i2
            change = max(abs(n0 - v0), abs(n1 - v1), abs(n2 - v2))
            v0, v1, v2 = n0, n1, n2
            if change < tolerance:
                break
        else:
            raise ArithmeticError(
                f"feeder power flow did not converge in {self.max_iterations} sweeps "
                f"(loads {list(load_va)} VA): is the load beyond what the feeder can carry?"
            )
        i0 = (s0 / v0).conjugate()
        i1 = (s1 / v1).conjugate()
        i2 = (s2 / v2).conjugate()
        d0 = z00 * i0 + z01 * i1 + z02 * i2
        d1 = z10 * i0 + z11 * i1 + z12 * i2
        d2 = z20 * i0 + z21 * i1 + z22 * i2
        losses_w = (i0.conjugate() * d0 + i1.conjugate() * d1 + i2.conjugate() * d2).real
        self.load_voltage = [v0, v1, v2]
        self.load_current = [i0, i1, i2]
        self.losses_kw = losses_w / 1000.0
        self.iterations = iteration

    def voltage_magnitudes(self) -> dict[str, float]:
        """Every bus's voltage magnitude in V (junctions from the last solution's currents)."""
        slack = complex(self.slack_voltage_v, 0.0)
        out = {}
        for bus in self.bus_names:
            drop = 0j
            for branch in self._path[bus]:
                downstream = sum(
                    (
                        current
                        for load, current in zip(self.load_buses, self.load_current, strict=True)
                        if branch in self._path[load]
                    ),
                    0j,
                )
                drop += self._impedance[branch] * downstream
            out[bus] = abs(slack - drop)
        return out

    def branch_losses_kw(self) -> dict[str, float]:
        """Each line's loss (kW), keyed by the bus it feeds."""
        out = {}
        for branch, z in self._impedance.items():
            current = sum(
                (
                    c
                    for load, c in zip(self.load_buses, self.load_current, strict=True)
                    if branch in self._path[load]
                ),
                0j,
            )
            out[branch] = abs(current) ** 2 * z.real / 1000.0
        return out
