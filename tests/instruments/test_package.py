"""`instruments` knows only protocols: it must run the real lab without the emulated plant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import instruments

PACKAGE = Path(instruments.__file__).parent


def test_importing_every_driver_loads_no_emulator_code():
    code = (
        "import sys, instruments, instruments.inverter, instruments.meter, "
        "instruments.ev_charger, instruments.programmable_load; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('hil_sim', 'tests')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, check=True
    )
    assert result.stdout.strip() == "[]"


def test_no_driver_source_mentions_the_emulator_package():
    offenders = [
        path.name
        for path in PACKAGE.glob("*.py")
        if "import hil_sim" in path.read_text() or "from hil_sim" in path.read_text()
    ]
    assert offenders == []
