"""The ledger's errors."""

from __future__ import annotations


class LedgerRuleError(ValueError):
    """An entry that breaks the ledger's rules (a negative balance, an unsigned order, ...)."""
