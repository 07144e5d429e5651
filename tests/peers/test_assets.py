"""The peers' assets as the configuration file describes them."""

from __future__ import annotations

import tomllib
from datetime import time

import pytest
from pydantic import ValidationError

from peers import EvAsset, PeerAssets, default_assets


def test_section_5_4_peers():
    a, b, c = (default_assets(peer) for peer in "ABC")
    assert a.pv.peak_power_kw == 3.5 and a.battery.capacity_kwh == 7.5 and a.ev is None
    assert b.ev.capacity_kwh == pytest.approx(90 * 51.2 / 1000) and b.pv is None
    assert c.role == "consumer" and not c.has_flexibility
    with pytest.raises(ValueError, match="no peer 'D' in the site"):
        default_assets("D")


def test_config_table_round_trips_and_bad_values_name_the_key():
    table = default_assets("B").model_dump(mode="json")
    assert PeerAssets.model_validate(table) == default_assets("B")
    table["ev"]["reserve_soc_pct"] = 99.0
    with pytest.raises(ValidationError, match="reserve_soc_pct"):
        PeerAssets.model_validate(table)
    with pytest.raises(ValidationError, match="unknown timezone 'Mars/Olympus'"):
        PeerAssets(peer="X", typical_load_kw=1, peak_load_kw=2, timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="extra"):
        PeerAssets(peer="X", typical_load_kw=1, peak_load_kw=2, wind_kw=3)


def test_plug_windows_cross_midnight():
    ev = EvAsset(
        capacity_kwh=4.6,
        max_charge_kw=2,
        max_discharge_kw=1.5,
        plug_windows_local=((time(19, 0), time(8, 0)),),
    )
    assert ev.plugged_at(time(23, 0)) and ev.plugged_at(time(7, 59))
    assert not ev.plugged_at(time(8, 0)) and not ev.plugged_at(time(12, 0))


def test_toml_table_as_in_the_docs():
    table = tomllib.loads(
        """
        typical_load_kw = 0.35
        peak_load_kw = 1.0
        [ev]
        capacity_kwh = 4.608
        max_charge_kw = 2.0
        max_discharge_kw = 1.5
        departure_soc_pct = 80
        plug_windows_local = [["09:00", "17:30"], ["19:00", "08:00"]]
        """
    )
    assets = PeerAssets.model_validate({"peer": "B", **table})
    assert assets.ev.plug_windows_local[1] == (time(19, 0), time(8, 0))
    assert assets.ev.plugged_at(time(6, 0)) and not assets.ev.plugged_at(time(18, 0))
