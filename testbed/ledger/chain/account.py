"""The operator's own chain account (the contract's TTP), from a key file, for nodes that do not
hold an unlocked account for it (any chain but a development node)."""

from __future__ import annotations

import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount


class ChainKeyError(ValueError):
    """A key file that cannot be read as one secp256k1 private key."""


def load_account(path: Path) -> LocalAccount:
    """The account of the private key in `path` (64 hex digits, `0x` optional)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ChainKeyError(f"chain account key file {path}: cannot be read: {error}") from error
    digits = text.removeprefix("0x")
    if len(digits) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ChainKeyError(
            f"chain account key file {path}: expected one private key of 64 hex digits "
            f"(0x optional), found {len(text)} characters"
        )
    try:
        account: LocalAccount = Account.from_key(bytes.fromhex(digits))
    except ValueError as error:  # zero, or not below the curve's order
        raise ChainKeyError(f"chain account key file {path}: not a valid key: {error}") from error
    return account


def create_account_file(path: Path) -> str:
    """Write a new private key to `path` (mode 0600, refuses to overwrite); its address."""
    account: LocalAccount = Account.create()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(account.key.hex().removeprefix("0x") + "\n")
    return str(account.address)
