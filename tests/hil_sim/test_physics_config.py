"""The plant configuration: defaults describe the testbed; a bad file names the bad key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hil_sim.config import ConfigError, PlantConfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plant.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_describe_the_testbed() -> None:
    config = PlantConfig()
    assert config.pv.peak_kw == 3.5
    assert config.battery.capacity_kwh == 7.5
    assert config.ev.capacity_kwh == pytest.approx(90 * 51.2 / 1000)
    assert config.start == datetime(2026, 3, 20, 18, 30, tzinfo=UTC)  # 00:00 IST
    assert config.start.tzinfo is UTC


def test_a_good_file_is_read_and_its_start_stored_as_utc(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [plant]
        seed = 7
        start = 2026-06-01T06:00:00+05:30

        [plant.battery]
        capacity_kwh = 10.0

        [plant.ev]
        plug_windows = [["08:00", "18:00"]]
        """,
    )
    config = PlantConfig.from_toml(path)
    assert config.seed == 7
    assert config.start == datetime(2026, 6, 1, 0, 30, tzinfo=UTC)
    assert config.battery.capacity_kwh == 10.0
    assert config.ev.plug_windows == (("08:00", "18:00"),)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[plant.battery]\ncapacity_kwh = -3", "plant.battery.capacity_kwh = -3: must be > 0"),
        ("[plant.ev]\nmax_charge_kw = 0", "plant.ev.max_charge_kw = 0: must be > 0"),
        ("[plant.pv]\ncloud_cover = 1.5", "plant.pv.cloud_cover = 1.5: must be <= 1"),
        ('[plant.pv]\npeak_kw = "big"', "plant.pv.peak_kw = 'big': must be a finite number"),
        ("[plant.pv]\npeak_kw = nan", "plant.pv.peak_kw = nan: must be a finite number"),
        ("[plant]\nseed = 1.5", "plant.seed = 1.5: must be an integer"),
        ('[plant.load_c]\nfunction = "CURR"', "plant.load_c.function = 'CURR': must be one of"),
        ('[plant.load_c]\ninput_on = "maybe"', "plant.load_c.input_on = 'maybe': must be true or"),
        (
            "[plant.battery]\ncapcity_kwh = 5",
            "plant.battery.capcity_kwh = 5: unknown key; allowed: capacity_kwh,",
        ),
        ("[plant]\nbogus = 1", "plant.bogus = 1: unknown key; allowed: seed, start,"),
        (
            "[plant.ev]\nreserve_soc_pct = 5",
            "plant.ev.reserve_soc_pct = 5: must be within [soc_min_pct, soc_max_pct] = [10, 95]",
        ),
        (
            "[plant.battery]\nsoc_max_pct = 5",
            "plant.battery.soc_max_pct = 5: must be > soc_min_pct",
        ),
        (
            "[plant]\nstart = 2026-03-21T00:00:00",
            "plant.start = 2026-03-21T00:00:00: must carry a UTC offset",
        ),
        (
            '[plant.ev]\nplug_windows = [["09:00", "25:00"]]',
            "plant.ev.plug_windows = [['09:00', '25:00']]: '25:00' is not a time of day",
        ),
        (
            '[plant.ev]\nplug_windows = [["09:00"]]',
            'plant.ev.plug_windows = [[\'09:00\']]: must be a list of ["HH:MM", "HH:MM"] pairs',
        ),
        (
            '[plant.ev]\nplug_windows = [["09:00", "17:00"], ["16:00", "20:00"]]',
            "must not overlap",
        ),
        (
            '[[plant.feeder.lines]]\nfrom_bus = "LV"\nto_bus = "A"\nlength_m = 10\n'
            "r_ohm_per_km = 1\nx_ohm_per_km = 0.1",
            "plant.feeder.lines = ",
        ),
        ("[other]\nx = 1", "other: unknown key; allowed: plant"),
    ],
)
def test_a_malformed_value_names_key_value_and_what_is_allowed(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        PlantConfig.from_toml(write(tmp_path, body))
    assert message in str(caught.value)
    assert str(tmp_path / "plant.toml") in str(caught.value)


def test_a_feeder_that_misses_a_peer_says_which(tmp_path: Path) -> None:
    body = "\n".join(
        f'[[plant.feeder.lines]]\nfrom_bus = "LV"\nto_bus = "{bus}"\nlength_m = 10\n'
        "r_ohm_per_km = 1\nx_ohm_per_km = 0.1"
        for bus in ("A", "B")
    )
    with pytest.raises(ConfigError, match=r"no line reaches the PCC bus\(es\) \['C'\]"):
        PlantConfig.from_toml(write(tmp_path, body))


def test_broken_toml_syntax_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        PlantConfig.from_toml(write(tmp_path, "[plant\nseed = 1"))


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        PlantConfig.from_toml(tmp_path / "absent.toml")
