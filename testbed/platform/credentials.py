"""Broker credentials and the access control list: one user per peer, plus the platform's roles.

Each user's password is a random token in its own folder (`<keys_dir>/peers/<peer>/broker.password`,
`<keys_dir>/<role>/broker.password`, mode 0600): the folder is what goes to the peer's computer.
The broker's password file holds only hashes (made by mosquitto's own `mosquitto_passwd -U`).

The ACL (mosquitto's format) lets a peer publish only its own orders, plans and liveness, and read
only its own private topics and the public market topics; the controller publishes measurements and
metering and reads the operator's reports; the operator reads and writes everything under the root;
`monitor` reads the broker's `$SYS` statistics only.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from testbed.platform import topics
from testbed.platform.signing import peer_folder

ROLES = ("operator", "controller", "monitor")
PASSWORD_FILE = "broker.password"


class CredentialsError(RuntimeError):
    """Broker credentials that cannot be made or read."""


def user_folder(keys_dir: Path, user: str) -> Path:
    return keys_dir / user if user in ROLES else peer_folder(keys_dir, user)


def load_or_create_password(keys_dir: Path, user: str) -> str:
    """The user's broker password from its folder, made on first use."""
    path = user_folder(keys_dir, user) / PASSWORD_FILE
    if path.exists():
        return read_password(keys_dir, user)
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(password + "\n")
    return password


def read_password(keys_dir: Path, user: str) -> str:
    path = user_folder(keys_dir, user) / PASSWORD_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise CredentialsError(
            f"{path}: cannot read {user}'s broker password ({error.strerror}); "
            "make it with `testbed platform init`"
        ) from None


def acl_text(peers: Iterable[str] = ()) -> str:
    """The broker's ACL file (peers need no line of their own: the patterns name them by user)."""
    root = topics.ROOT
    del peers  # the patterns cover every peer; kept in the signature for a per-peer ACL later
    return "\n".join(
        [
            "# written by testbed.platform.credentials; %u is the connecting user (the peer id)",
            "user operator",
            f"topic readwrite {root}/#",
            "",
            "user controller",
            f"topic write {root}/controller/#",
            f"topic read {root}/operator/#",
            f"topic read {root}/market/#",
            f"topic write {root}/peers/+/measurements",
            f"topic read {root}/peers/+/plans",
            f"topic read {root}/peers/+/status",
            "",
            "user monitor",
            "topic read $SYS/#",
            "",
            "# every peer: its own orders, plans and liveness out; its own private topics in",
            *(
                f"pattern write {root}/peers/%u/{suffix}"
                for suffix in topics.PEER_SUFFIXES_WRITTEN_BY_PEER
            ),
            *(
                f"pattern read {root}/peers/%u/{suffix}"
                for suffix in (
                    *topics.PEER_SUFFIXES_READ_BY_PEER,
                    *topics.PEER_SUFFIXES_WRITTEN_BY_PEER,
                )
            ),
            "",
            "# every user: the public market topics (a pattern applies to all users)",
            f"pattern read {root}/market/#",
            "",
        ]
    )


def mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or (
        "/usr/bin/mosquitto_passwd" if Path("/usr/bin/mosquitto_passwd").exists() else None
    )
    if found is None:
        raise CredentialsError(
            "mosquitto_passwd not found: install Debian's 'mosquitto' (bash scripts/setup.sh)"
        )
    return found


def write_password_file(path: Path, passwords: dict[str, str]) -> None:
    """The broker's password file with hashed passwords (mosquitto_passwd -U hashes in place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for user, password in passwords.items():
            handle.write(f"{user}:{password}\n")
    done = subprocess.run(
        [mosquitto_passwd(), "-U", str(path)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise CredentialsError(f"mosquitto_passwd -U {path}: {done.stderr.strip()}")


def platform_users(keys_dir: Path, peers: Iterable[str]) -> dict[str, str]:
    """Every broker user (roles and peers) with its password, made where missing."""
    users = {role: load_or_create_password(keys_dir, role) for role in ROLES}
    for peer in peers:
        users[peer] = load_or_create_password(keys_dir, peer)
    return users
