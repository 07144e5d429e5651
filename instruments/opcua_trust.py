"""Whether to trust an OPC UA server's certificate: pinned, or in a trust-list folder.

asyncua's client takes whatever certificate the server's endpoint offers. The driver asks for the
endpoints first, checks the certificate there, and only then opens the secure channel with it
(and sends the password). Trusted is: the pinned certificate (`server_certificate_path`), or a
certificate found in the trust-list folder (`trust_dir`, DER or PEM files), or one issued by a
CA certificate found there (asyncua's `TrustStore`). Anything else raises `UntrustedCertificate`
naming its subject and SHA-256 fingerprint, so the engineer can compare it with the charger's.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from asyncua.crypto.truststore import TrustStore
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from instruments.errors import InstrumentError, UntrustedCertificate

logger = logging.getLogger("instruments")

_CERTIFICATE_SUFFIXES = (".der", ".pem", ".crt", ".cer")


def first_certificate(chain: bytes) -> bytes:
    """The first DER certificate of a chain (OPC UA sends a chain as concatenated DER)."""
    if len(chain) < 4 or chain[0] != 0x30:
        raise ValueError("not a DER certificate")
    length = chain[1]
    if length < 0x80:
        return chain[: 2 + length]
    octets = length & 0x7F
    size = int.from_bytes(chain[2 : 2 + octets], "big")
    return chain[: 2 + octets + size]


def load_certificate(path: Path) -> x509.Certificate:
    """A certificate file, DER or PEM."""
    data = Path(path).read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def fingerprint(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _subject(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return certificate.subject.rfc4514_string()
    value = names[0].value
    return f"CN={value.decode(errors='replace') if isinstance(value, bytes) else value}"


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


async def check_server_certificate(
    device: str, der: bytes, pinned: Path | None, trust_dir: Path | None
) -> None:
    """Return if `der` is trusted (see the module docstring), else raise UntrustedCertificate.
    With neither a pin nor a folder, every certificate passes (with a warning)."""
    if pinned is None and trust_dir is None:
        logger.warning(
            "%s: the server's certificate (SHA-256 %s) is not checked; set "
            "server_certificate_path or trust_dir to refuse any other",
            device,
            fingerprint(der),
        )
        return
    certificate = x509.load_der_x509_certificate(der)
    trusted: list[str] = []
    if pinned is not None:
        try:
            if _der(load_certificate(pinned)) == der:
                return
        except (OSError, ValueError) as exc:
            raise InstrumentError(device, f"server_certificate_path {pinned}: {exc}") from None
        trusted.append(f"pinned: {pinned}")
    if trust_dir is not None:
        folder = Path(trust_dir)
        if not folder.is_dir():
            raise InstrumentError(device, f"trust_dir {folder} is not a folder")
        files = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in _CERTIFICATE_SUFFIXES]
        for path in files:
            try:
                if _der(load_certificate(path)) == der:
                    return
            except ValueError:
                logger.warning("%s: %s in trust_dir is not a certificate", device, path)
        store = TrustStore([folder], [])
        try:
            await store.load_trust()
            if store.is_trusted(certificate):  # issued by a CA certificate in the folder
                return
        except ValueError as exc:  # a file there that is not a certificate
            logger.warning("%s: trust_dir %s: %s", device, folder, exc)
        trusted.append(f"not in trust_dir {folder} ({len(files)} certificates)")
    raise UntrustedCertificate(device, _subject(certificate), fingerprint(der), "; ".join(trusted))
