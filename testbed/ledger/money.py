"""Money on the ledger: whole paisa (1/100 of the currency unit), as integers."""

from __future__ import annotations

import math

PAISA_PER_UNIT = 100


def to_paisa(amount: float) -> int:
    """`amount` in the currency, rounded half up to whole paisa."""
    return math.floor(amount * PAISA_PER_UNIT + 0.5)


def from_paisa(paisa: int) -> float:
    return paisa / PAISA_PER_UNIT


def format_money(paisa: int, currency: str = "INR") -> str:
    sign = "-" if paisa < 0 else ""
    units, cents = divmod(abs(paisa), PAISA_PER_UNIT)
    return f"{sign}{units:,}.{cents:02d} {currency}"
