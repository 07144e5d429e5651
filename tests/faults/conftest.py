"""A plant at work (11:00, battery half full) shared by the fault tests; each run resets it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labspec.endpoints import PlantEndpoints
from tests.faults.harness import WORKING_PLANT_TOML, WORKING_SITE_CHANGES


@pytest.fixture(scope="session")
def working_plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlantEndpoints]:
    from tests.fixtures.plant import start_plant_process
    from tests.fixtures.ports import stop_process
    from tests.fixtures.sites import write_site

    folder = tmp_path_factory.mktemp("working_plant")
    write_site(folder / "site.toml", WORKING_SITE_CHANGES)
    config = folder / "plant.toml"
    config.write_text(WORKING_PLANT_TOML)
    plant = start_plant_process(folder, "--config", str(config))
    try:
        yield plant.endpoints
    finally:
        stop_process(plant.proc)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the fault campaign's report when it ran in this session."""
    from tests.faults.campaign import LAST_REPORT

    if LAST_REPORT:
        terminalreporter.write_sep("=", "fault campaign")
        for line in LAST_REPORT:
            terminalreporter.write_line(line)
