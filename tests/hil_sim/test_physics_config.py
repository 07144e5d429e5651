"""The plant configuration: a site, a seed and a start; a bad file names the bad key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hil_sim.config import ConfigError, PlantConfig
from labspec.site import DEFAULT_SITE_PATH


def write(tmp_path: Path, text: str, name: str = "plant.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_describe_the_testbed() -> None:
    config = PlantConfig()
    site = config.site
    assert site.peers["A"].pv is not None and site.peers["A"].pv.peak_kw == 3.5
    assert site.peers["A"].battery is not None and site.peers["A"].battery.capacity_kwh == 7.5
    assert site.peers["B"].ev is not None
    assert site.peers["B"].ev.capacity_kwh == pytest.approx(90 * 51.2 / 1000)
    assert config.start_utc == datetime(2026, 3, 20, 18, 30, tzinfo=UTC)  # 00:00 IST
    assert config.start_utc.tzinfo is UTC


def test_a_good_file_is_read_with_its_site_and_its_start_stored_as_utc(tmp_path: Path) -> None:
    site_text = DEFAULT_SITE_PATH.read_text(encoding="utf-8").replace(
        "capacity_kwh = 7.5", "capacity_kwh = 10.0"
    )
    write(tmp_path, site_text, "lab.toml")
    path = write(
        tmp_path,
        """
        [plant]
        seed = 7
        start = 2026-06-01T06:00:00+05:30
        site = "lab.toml"
        """,
    )
    config = PlantConfig.from_toml(path)
    assert config.seed == 7
    assert config.start_utc == datetime(2026, 6, 1, 0, 30, tzinfo=UTC)
    assert config.site.peers["A"].battery is not None
    assert config.site.peers["A"].battery.capacity_kwh == 10.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[plant]\nseed = 1.5", "plant.seed = 1.5: must be an integer"),
        ("[plant]\nseed = -1", "plant.seed = -1: must be >= 0"),
        ("[plant]\nbogus = 1", "plant.bogus = 1: unknown key; allowed: seed, start, site"),
        (
            "[plant]\nstart = 2026-03-21T00:00:00",
            "plant.start = 2026-03-21T00:00:00: must carry a UTC offset",
        ),
        ('[plant]\nsite = "absent.toml"', "plant.site: "),
        ("[plant]\nsite = 3", "plant.site = 3: must be the path of a site file"),
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


def test_a_bad_site_names_the_site_file_and_its_key(tmp_path: Path) -> None:
    site_text = DEFAULT_SITE_PATH.read_text(encoding="utf-8").replace(
        'role = "consumer"\nbus = "C"', 'role = "consumer"\nbus = "J9"'
    )
    write(tmp_path, site_text, "lab.toml")
    with pytest.raises(ConfigError) as caught:
        PlantConfig.from_toml(write(tmp_path, '[plant]\nsite = "lab.toml"'))
    assert f"{tmp_path / 'lab.toml'}: peers.C.bus = 'J9': not a load bus" in str(caught.value)


def test_broken_toml_syntax_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        PlantConfig.from_toml(write(tmp_path, "[plant\nseed = 1"))


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        PlantConfig.from_toml(tmp_path / "absent.toml")
