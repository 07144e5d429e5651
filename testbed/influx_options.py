"""The `--influx-*` command-line options shared by `testbed run/demo` and `testbed telemetry`."""

from __future__ import annotations

from typing import Annotated

import typer

InfluxUrl = Annotated[str | None, typer.Option("--influx-url", help="InfluxDB URL.")]
InfluxApi = Annotated[str | None, typer.Option("--influx-api", help="v1 or v2.")]
InfluxDb = Annotated[str | None, typer.Option("--influx-db", help="v1 database.")]
InfluxBucket = Annotated[str | None, typer.Option("--influx-bucket", help="v2 bucket.")]
InfluxOrg = Annotated[str | None, typer.Option("--influx-org", help="v2 organisation.")]
