"""The `testbed` command line."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="testbed",
    help="Run P2P energy-trading experiments on the lab or on the emulated plant.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """P2P energy-trading testbed controller."""


from testbed import dashboard_cli as _dashboard_cli  # noqa: E402, F401  (registers `dashboard`)
from testbed import ledger_cli as _ledger_cli  # noqa: E402, F401  (registers `ledger`)
from testbed import platform_cli as _platform_cli  # noqa: E402, F401  (broker, operator, agent)
from testbed import run_cli as _run_cli  # noqa: E402, F401  (registers `run` and `demo`)
from testbed import site_cli as _site_cli  # noqa: E402, F401  (registers `site`)
from testbed import telemetry_cli as _telemetry_cli  # noqa: E402, F401  (registers `telemetry`)
from testbed import value_cli as _value_cli  # noqa: E402, F401  (registers `value`)
from testbed.market import cli as _market_cli  # noqa: E402, F401  (registers `clear`)
