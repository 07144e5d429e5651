"""Which client certificates the emulated charger accepts: a trust-list folder, as real chargers
keep one (node-opcua's pki/trusted/certs, a PLC's certificate store).

asyncua's server accepts any client certificate unless a validator is set. `ClientTrustList` is
that validator: a client certificate is trusted if the folder holds the same certificate (DER or
PEM files), or a CA certificate that issued it. The folder is read at each CreateSession, so a
certificate copied in while the plant runs is trusted from the next connect. Anything else is
refused with BadCertificateUntrusted, and the refusal is logged with the certificate's subject and
SHA-256 fingerprint (what an engineer compares with the controller's certificate).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.truststore import TrustStore
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger(__name__)

_SUFFIXES = (".der", ".pem", ".crt", ".cer")


def _load(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def sha256_fingerprint(certificate: x509.Certificate) -> str:
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()


class ClientTrustList:
    """A certificate validator for `asyncua.Server.set_certificate_validator`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def certificates(self) -> list[x509.Certificate]:
        """The certificates in the folder now (files that are not certificates are skipped)."""
        found: list[x509.Certificate] = []
        if not self.folder.is_dir():
            return found
        for path in sorted(self.folder.iterdir()):
            if path.suffix.lower() not in _SUFFIXES:
                continue
            try:
                found.append(_load(path))
            except (OSError, ValueError):
                log.warning(
                    "trusted_clients %s: %s is not a certificate; skipped", self.folder, path
                )
        return found

    async def is_trusted(self, certificate: x509.Certificate) -> bool:
        trusted = self.certificates()
        if certificate in trusted:
            return True
        if not any(_is_authority(c) for c in trusted):
            return False
        store = TrustStore([self.folder], [])  # a CA certificate in the folder: issued by it?
        try:
            await store.load_trust()
        except (OSError, ValueError) as exc:
            log.warning("trusted_clients %s: %s", self.folder, exc)
            return False
        return store.is_trusted(certificate)

    async def __call__(
        self, certificate: x509.Certificate, application: ua.ApplicationDescription
    ) -> None:
        if await self.is_trusted(certificate):
            return
        log.warning(
            "refused the client certificate of %r (%s, SHA-256 %s): not in trusted_clients %s",
            application.ApplicationUri,
            certificate.subject.rfc4514_string(),
            sha256_fingerprint(certificate),
            self.folder,
        )
        raise ServiceError(StatusCodes.BadCertificateUntrusted)


def _is_authority(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca
