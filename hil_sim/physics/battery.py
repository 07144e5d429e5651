"""Stored energy with charge and discharge efficiencies, bounded by a state-of-charge window."""

from __future__ import annotations


class Storage:
    """An energy store seen from its terminals (+ = discharging), integrated with a fixed dt.

    Charging at P kW for h seconds stores P*eta_c*h/3600 kWh; discharging removes P/eta_d*h/3600.
    """

    __slots__ = (
        "capacity_kwh",
        "charge_efficiency",
        "charged_kwh",
        "discharge_efficiency",
        "discharged_kwh",
        "energy_kwh",
        "energy_max_kwh",
        "energy_min_kwh",
    )

    def __init__(
        self,
        capacity_kwh: float,
        soc_pct: float,
        soc_min_pct: float,
        soc_max_pct: float,
        charge_efficiency: float,
        discharge_efficiency: float,
    ) -> None:
        self.capacity_kwh = capacity_kwh
        self.energy_kwh = capacity_kwh * soc_pct / 100.0
        self.energy_min_kwh = capacity_kwh * soc_min_pct / 100.0
        self.energy_max_kwh = capacity_kwh * soc_max_pct / 100.0
        self.charge_efficiency = charge_efficiency
        self.discharge_efficiency = discharge_efficiency
        self.charged_kwh = 0.0  # at the terminals, totals since start
        self.discharged_kwh = 0.0

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.energy_kwh / self.capacity_kwh

    def charge_limit_kw(self, h_s: float) -> float:
        """The largest terminal charging power that keeps the SoC at or below the window's top."""
        room = self.energy_max_kwh - self.energy_kwh
        return room * 3600.0 / (self.charge_efficiency * h_s) if room > 0.0 else 0.0

    def discharge_limit_kw(self, h_s: float, floor_kwh: float) -> float:
        """The largest terminal discharging power that keeps the stored energy >= `floor_kwh`."""
        room = self.energy_kwh - floor_kwh
        return room * self.discharge_efficiency * 3600.0 / h_s if room > 0.0 else 0.0

    def apply(self, power_kw: float, h_s: float) -> None:
        """Integrate a terminal power (+ = discharge) over h seconds."""
        if power_kw < 0.0:
            energy = -power_kw * h_s / 3600.0
            self.charged_kwh += energy
            self.energy_kwh += energy * self.charge_efficiency
            if self.energy_kwh > self.energy_max_kwh:  # rounding at the limit only
                self.energy_kwh = self.energy_max_kwh
        elif power_kw > 0.0:
            energy = power_kw * h_s / 3600.0
            self.discharged_kwh += energy
            self.energy_kwh -= energy / self.discharge_efficiency
            if self.energy_kwh < self.energy_min_kwh:
                self.energy_kwh = self.energy_min_kwh
