"""Ed25519 key pairs: each peer's and the operator's, kept in their own folders.

A key folder holds `<name>.key` (the private key, PKCS#8 PEM, readable by its owner only) and
`<name>.pub` (the public key, 64 hex digits). The private key never leaves its folder: the ledger
carries only public keys. Signing is a peer-side or operator-side act (`sign`); checking is anyone's
(`signature_valid`), with nothing but the public key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)


class KeyFileError(ValueError):
    """A key file that cannot be used, with the reason."""


@dataclass(frozen=True)
class KeyPair:
    """A private key with its public key in hex (the form the ledger stores)."""

    private_key: Ed25519PrivateKey
    public_hex: str

    @classmethod
    def generate(cls) -> KeyPair:
        private = Ed25519PrivateKey.generate()
        return cls(private, public_hex(private.public_key()))

    def sign(self, message: bytes) -> str:
        """The Ed25519 signature of `message`, 128 hex digits."""
        return self.private_key.sign(message).hex()


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def signature_valid(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    """True when `signature_hex` is the holder of `public_key_hex`'s signature of `message`."""
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        key.verify(bytes.fromhex(signature_hex), message)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def load_or_create(folder: Path, name: str) -> KeyPair:
    """The key pair in `folder` (`<name>.key`), made and written there on first use."""
    key_path = folder / f"{name}.key"
    pub_path = folder / f"{name}.pub"
    if key_path.exists():
        pair = load(key_path)
        if not pub_path.exists():
            pub_path.write_text(pair.public_hex + "\n", encoding="utf-8")
        elif read_public(pub_path) != pair.public_hex:
            raise KeyFileError(
                f"{pub_path}: not the public key of {key_path} (it holds "
                f"{read_public(pub_path)[:16]}…, the private key's is {pair.public_hex[:16]}…); "
                "remove the .pub file to have it written again from the private key"
            )
        return pair
    folder.mkdir(parents=True, exist_ok=True)
    pair = KeyPair.generate()
    pem = pair.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = key_path.with_name(f".{key_path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.replace(tmp, key_path)
    pub_path.write_text(pair.public_hex + "\n", encoding="utf-8")
    return pair


def load(key_path: Path) -> KeyPair:
    """The key pair of a private key file."""
    try:
        private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise KeyFileError(f"{key_path}: not a readable Ed25519 private key ({error})") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{key_path}: holds a {type(private).__name__}, not an Ed25519 key")
    return KeyPair(private, public_hex(private.public_key()))


def read_public(pub_path: Path) -> str:
    """The public key (hex) of a `.pub` file."""
    try:
        text = pub_path.read_text(encoding="utf-8").strip()
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    except (OSError, ValueError) as error:
        raise KeyFileError(f"{pub_path}: not an Ed25519 public key in hex ({error})") from None
    return text
