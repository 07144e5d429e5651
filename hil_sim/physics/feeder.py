"""Radial power flow of the low-voltage feeder by backward/forward sweep.

Single-phase equivalent: each line's impedance is that of the loop (go and return conductor), bus
voltages are phase-to-neutral phasors in V, loads constant power in VA. In per unit this is the very
same problem pandapower solves for a balanced network with `vn_kv` equal to the nominal voltage,
which is how the test checks it.
"""

from __future__ import annotations

from collections.abc import Sequence

from hil_sim.config import LineConfig

SLACK_BUS = "LV"


class RadialFeeder:
    """A radial network rooted at the slack bus; `solve` takes the PCC loads and keeps the result.

    Buses are ordered so that every bus comes after its parent: the backward sweep walks the order
    in reverse, the forward sweep in order. The previous solution is the next starting point, so a
    step with nearly unchanged loads converges in one or two sweeps.
    """

    def __init__(
        self,
        lines: Sequence[LineConfig],
        slack_voltage_v: float,
        load_buses: Sequence[str],
        tolerance_v: float = 1e-9,
        max_iterations: int = 50,
    ) -> None:
        children: dict[str, list[LineConfig]] = {}
        for line in lines:
            children.setdefault(line.from_bus, []).append(line)
        names = [SLACK_BUS]
        parent: list[int] = [-1]
        impedance: list[complex] = [0j]
        stack = [SLACK_BUS]
        while stack:  # breadth-first keeps parents before children
            bus = stack.pop(0)
            for line in children.get(bus, []):
                names.append(line.to_bus)
                parent.append(names.index(bus))
                km = line.length_m / 1000.0
                impedance.append(complex(line.r_ohm_per_km * km, line.x_ohm_per_km * km))
                stack.append(line.to_bus)
        self.bus_names = names
        self.parent = parent
        self.impedance_ohm = impedance
        self.load_index = [names.index(bus) for bus in load_buses]
        self.slack_voltage_v = slack_voltage_v
        self.tolerance_v = tolerance_v
        self.max_iterations = max_iterations
        self.voltage = [complex(slack_voltage_v, 0.0)] * len(names)
        self.branch_current = [0j] * len(names)  # current into bus i from its parent
        self.losses_kw = 0.0
        self.iterations = 0

    def solve(self, load_va: Sequence[complex]) -> None:
        """Solve for constant-power consumption `load_va` (P + jQ, VA) at the load buses."""
        n = len(self.bus_names)
        parent = self.parent
        z = self.impedance_ohm
        v = list(self.voltage)
        v[0] = complex(self.slack_voltage_v, 0.0)
        s = [0j] * n
        for index, value in zip(self.load_index, load_va, strict=True):
            s[index] += value
        tolerance = self.tolerance_v
        current = [0j] * n
        for iteration in range(1, self.max_iterations + 1):  # noqa: B007 (kept after the loop)
            for i in range(n):
                current[i] = (s[i] / v[i]).conjugate() if s[i] else 0j
            for i in range(n - 1, 0, -1):
                current[parent[i]] += current[i]
            change = 0.0
            for i in range(1, n):
                new = v[parent[i]] - z[i] * current[i]
                delta = abs(new - v[i])
                if delta > change:
                    change = delta
                v[i] = new
            if change < tolerance:
                break
        else:
            raise ArithmeticError(
                f"feeder power flow did not converge in {self.max_iterations} sweeps "
                f"(loads {list(load_va)} VA): is the load beyond what the feeder can carry?"
            )
        self.iterations = iteration
        # Currents from the converged voltages, so losses match what pandapower reports.
        for i in range(n):
            current[i] = (s[i] / v[i]).conjugate() if s[i] else 0j
        for i in range(n - 1, 0, -1):
            current[parent[i]] += current[i]
        losses_w = 0.0
        for i in range(1, n):
            c = current[i]
            losses_w += (c.real * c.real + c.imag * c.imag) * z[i].real
        self.voltage = v
        self.branch_current = current
        self.losses_kw = losses_w / 1000.0

    def voltage_magnitudes(self) -> dict[str, float]:
        """Every bus's voltage magnitude in V."""
        return {name: abs(value) for name, value in zip(self.bus_names, self.voltage, strict=True)}
