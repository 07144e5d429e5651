"""Ledger entries in words, for `testbed ledger show` and the dashboard."""

from __future__ import annotations

from typing import Any

from testbed.ledger.entries import Entry
from testbed.ledger.money import format_money


def describe_entry(entry: Entry, currency: str = "INR") -> str:
    """One line saying what the entry records."""
    try:
        data = entry.data()
    except ValueError:
        return "(payload is not JSON)"
    describe = _DESCRIBERS.get(entry.kind)
    try:
        return describe(data, currency) if describe else entry.payload[:80]
    except (KeyError, TypeError, ValueError):
        return entry.payload[:80]


def _genesis(d: dict[str, Any], currency: str) -> str:
    return (
        f"run {d.get('run_id', '')}, operator key {str(d['operator_key'])[:16]}…, "
        f"{d.get('currency', currency)}, {d['interval_s']:.0f} s intervals"
    )


def _register(d: dict[str, Any], currency: str) -> str:
    return f"public key {d['public_key'][:16]}…, KYC hash {d['kyc_hash'][:16]}…, self-signed"


def _order(d: dict[str, Any], currency: str) -> str:
    status = d["status"] + (f" ({d['reason']})" if d.get("reason") else "")
    return (
        f"{d['side']} {d['quantity_kwh']:.3f} kWh at {d['price']:.2f} {currency}/kWh for "
        f"{d['interval_start'][11:16]} UTC, id {d['order_id']}: {status}"
    )


def _rejected_message(d: dict[str, Any], currency: str) -> str:
    return (
        f"unreadable message on {d['topic']} ({d['payload_bytes']} bytes, SHA-256 "
        f"{d['payload_sha256'][:16]}…): rejected ({d['reason']})"
    )


def _clearing(d: dict[str, Any], currency: str) -> str:
    price = d.get("clearing_price")
    shown = "-" if price is None else f"{price:.2f} {currency}/kWh"
    return (
        f"{d['interval_start'][11:16]} UTC {d['mechanism']}: {len(d['trades'])} trades, "
        f"{d['volume_kwh']:.3f} kWh at {shown}"
    )


def _delivery(d: dict[str, Any], currency: str) -> str:
    return (
        f"{d['interval_start'][11:16]} UTC metered {d['metered_kwh']:+.3f} kWh against "
        f"contracted {d['contracted_kwh']:+.3f} kWh"
    )


def _settlement(d: dict[str, Any], currency: str) -> str:
    bills = ", ".join(
        f"{peer} {figures['bill']:.2f}" for peer, figures in sorted(d["peers"].items())
    )
    return f"{d['interval_start'][11:16]} UTC bills ({currency}): {bills}"


def _transfer(d: dict[str, Any], currency: str) -> str:
    text = f"{d['from']} -> {d['to']} {format_money(d['amount_paisa'], currency)} ({d['memo']})"
    if d.get("advanced_paisa"):
        text += f"; operator advanced {format_money(d['advanced_paisa'], currency)} as debt"
    if d.get("repaid_paisa"):
        text += f"; repaid debt {format_money(d['repaid_paisa'], currency)}"
    return text


def _amount(d: dict[str, Any], currency: str) -> str:
    return f"{format_money(d['amount_paisa'], currency)} ({d.get('reason', '')})"


def _close(d: dict[str, Any], currency: str) -> str:
    return f"run {d['status']}; {len(d['balances'])} wallets"


_DESCRIBERS = {
    "genesis": _genesis,
    "wallet_open": lambda d, c: f"{d['kind']} wallet",
    "register": _register,
    "approve": lambda d, c: "approved",
    "refuse": lambda d, c: f"refused: {d['reason']}",
    "deregister": lambda d, c: f"left ({d.get('reason', '')})",
    "mint": _amount,
    "redeem": _amount,
    "order": _order,
    "rejected_message": _rejected_message,
    "clearing": _clearing,
    "delivery": _delivery,
    "settlement": _settlement,
    "transfer": _transfer,
    "close": _close,
}
