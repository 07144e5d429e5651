"""`testbed clear`: clear an order-book CSV with a market mechanism."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from testbed.cli import app


@app.command("clear")
def clear(
    orders_csv: Annotated[
        Path,
        typer.Argument(
            help="Order book CSV: order_id, peer, side (buy/sell), quantity_kwh, price[, time]."
        ),
    ],
    mechanism: Annotated[
        str,
        typer.Option(
            "--mechanism",
            "-m",
            help="uniform, pay_as_bid, mcafee, huang, vcg or cda.",
        ),
    ] = "uniform",
    k: Annotated[
        float | None,
        typer.Option("--k", help="Price weight in [0, 1] for uniform and pay_as_bid."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Another mechanism parameter, KEY=VALUE (repeatable)."),
    ] = None,
    peers: Annotated[
        str | None,
        typer.Option(
            "--peers", help="Comma-separated known peers; orders from others are rejected."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Trades CSV file (default: stdout).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", "-r", help="Write the clearing report JSON here.")
    ] = None,
) -> None:
    """Clear an order book; bad rows are rejected with a reason on stderr, the rest clears."""
    import numpy as np

    from testbed.market.csv_io import read_order_file, write_trades_csv
    from testbed.market.registry import get_mechanism
    from testbed.messages import bounded, quoted

    params = _parse_params(param or [])
    if k is not None:
        params["k"] = k
    try:
        market = get_mechanism(mechanism, **params)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--mechanism/--k/--param") from None
    if not orders_csv.is_file():
        raise typer.BadParameter(f"{orders_csv} is not a file", param_hint="ORDERS_CSV")
    try:
        source = read_order_file(orders_csv)
    except (ValueError, UnicodeDecodeError) as error:
        message = bounded(f"{orders_csv}: {error}")
        raise typer.BadParameter(message, param_hint="ORDERS_CSV") from None
    book = source.columns
    rejected: list[dict[str, Any]] = [
        {"line": p.line, "order_id": p.order_id, "peer": None, "reason": p.reason}
        for p in source.problems
    ]
    # the checks every mechanism makes, here so that each rejection names its line
    valid, problems = book.problems()
    bad_rows: list[tuple[int, str]] = list(problems)
    if peers is not None:
        known = {name.strip() for name in peers.split(",") if name.strip()}
        known_list = ", ".join(sorted(known))
        unknown = valid & np.array([peer not in known for peer in book.peer.tolist()], dtype=bool)
        bad_rows += [
            (row, f"unknown peer {quoted(str(book.peer[row]))} (known peers: {known_list})")
            for row in np.flatnonzero(unknown).tolist()
        ]
        valid &= ~unknown
    if bad_rows:
        bad_rows.sort()
        lines = source.line_of([row for row, _ in bad_rows])
        rejected += [
            {
                "line": line,
                "order_id": str(book.order_id[row]),
                "peer": str(book.peer[row]),
                "reason": reason,
            }
            for line, (row, reason) in zip(lines, bad_rows, strict=True)
        ]
        rejected.sort(key=lambda item: item["line"])
    kept = np.flatnonzero(valid)
    if len(kept) < len(book):
        book = book.take(kept)
    result = market.clear(book)
    later = result.report["rejected"]  # e.g. a peer without a bus on the feeder
    if later:
        row_of = {order_id: row for row, order_id in enumerate(book.order_id.tolist())}
        rows = [row_of.get(item["order_id"]) for item in later]
        found = source.line_of([kept[row] for row in rows if row is not None])
        found_lines = iter(found)
        rejected += [
            {"line": None if row is None else next(found_lines), **item}
            for row, item in zip(rows, later, strict=True)
        ]
    for item in rejected:
        where = f"line {item['line']} " if item["line"] else ""
        line = f"{orders_csv}: rejected {where}(order_id {quoted(item['order_id'])}): "
        typer.echo(bounded(line + str(item["reason"])), err=True)
    if out is None:
        write_trades_csv(result, sys.stdout)
    else:
        write_trades_csv(result, out)
    if report is not None:
        payload = result.report_json()
        payload["rejected"] = rejected
        payload["orders"] = {**payload["orders"], "rejected": len(rejected)}
        payload["source"] = str(orders_csv)
        report.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
    price = "none" if result.clearing_price is None else f"{result.clearing_price:.6g}"
    typer.echo(
        f"{market.name}: {len(result.book)} orders cleared, {len(result.table)} trades, "
        f"{result.volume_kwh:.6g} kWh at price {price}; "
        f"{len(rejected)} rejected" + _solver_summary(result.report),
        err=True,
    )


def _solver_summary(report: dict[str, Any]) -> str:
    """Welfare, iterations, residuals and the network check, where the mechanism reports them."""
    parts = []
    if "objective" in report:
        parts.append(f"welfare {report['welfare']:.6g}")
    if report.get("iterations") is not None:
        parts.append(f"{report['iterations']} iterations")
    if "primal_residual" in report:
        parts.append(
            f"residuals {report['primal_residual']:.2g} kWh (primal), "
            f"{report['dual_residual']:.2g} (dual)"
        )
    if "network_ok" in report:
        low, high = report["network_min_voltage_pu"], report["network_max_voltage_pu"]
        parts.append(
            f"feeder {'ok' if report['network_ok'] else 'violated'} ({low:.4f}-{high:.4f} pu)"
        )
    if report.get("fallback"):
        parts.append(f"fell back to the grid: {report['fallback']}")
    return "".join(f"; {part}" for part in parts)


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        params[key.strip()] = _number_or_text(value.strip())
    return params


def _number_or_text(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def _jsonable(value: Any) -> Any:
    """Plain JSON: numpy scalars to Python, NaN and infinities to null."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
