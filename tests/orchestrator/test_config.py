"""The configuration file: valid files load, invalid ones name the bad key."""

import pytest

from testbed.config import ConfigError, load_config

MINIMAL = """
[peers.C]
role = "consumer"
[peers.C.meter]
port = 1502
"""


def test_minimal_file_gets_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    config = load_config(path)
    assert config.market.interval_s == 900
    assert config.control.step_s == 1
    assert config.peers["C"].meter.port == 1502


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ("[market]\ninterval_s = -5\n", "market.interval_s"),
        ("[prices]\nretail_tariff = 2.0\nfeed_in_tariff = 3.0\n", "feed_in_tariff"),
        ("[control]\nstep_s = 7\n", "control.step_s"),
        ("[market]\nintervall_s = 900\n", "market.intervall_s: unknown key"),
        ('[clock]\nmode = "fast"\n', "clock.mode"),
    ],
)
def test_invalid_values_name_the_key(tmp_path, extra, names):
    path = tmp_path / "bad.toml"
    path.write_text(extra + MINIMAL)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert names in str(caught.value)
    assert str(path) in str(caught.value)


def test_broken_toml_is_reported(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[market\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")
