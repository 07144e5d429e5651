"""The controller imports nothing of the emulated plant: what both need lives in `labspec`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def test_no_controller_module_imports_the_emulated_plant() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] == "hil_sim"
        )
        for package in ("testbed", "instruments", "peers", "labspec")
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    offenders = {path: modules for path, modules in offenders.items() if modules}
    assert offenders == {}


def test_the_plant_endpoints_and_its_control_client_are_labspec_modules() -> None:
    from labspec.endpoints import PlantEndpoints
    from labspec.plant_control import PlantControl

    assert PlantEndpoints.__module__ == "labspec.endpoints"
    assert PlantControl.__module__ == "labspec.plant_control"
