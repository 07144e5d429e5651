"""The platform's MQTT topics, all under one versioned root (`p2p/v1`).

A new, incompatible message schema gets a new root (`p2p/v2`), so old and new clients can share a
broker. `{peer}` is the peer's id, which is also its broker user name: the ACL lets a peer write
only `p2p/v1/peers/<its id>/orders|plans|status` and read only `p2p/v1/peers/<its id>/#` and the
public `p2p/v1/market/#`.
"""

from __future__ import annotations

ROOT = "p2p/v1"

# public (every peer reads; the operator writes)
ANNOUNCEMENTS = f"{ROOT}/market/announcements"  # an interval opens for orders
CLEARINGS = f"{ROOT}/market/clearings"  # price and volume of each cleared interval
MARKET_STATUS = f"{ROOT}/market/status"  # retained: the open and the last closed interval

# controller <-> operator
GATE_REQUESTS = f"{ROOT}/controller/gate"  # controller: close the gate of this interval now
METERING = f"{ROOT}/controller/metering"  # controller: each peer's metered energy of an interval
CLEARING_REPORTS = f"{ROOT}/operator/clearings"  # operator: the whole book and trades
SETTLEMENT_REPORTS = f"{ROOT}/operator/settlements"  # operator: every peer's settlement

PEERS = f"{ROOT}/peers"
PEER_SUFFIXES_WRITTEN_BY_PEER = ("orders", "plans", "status")
PEER_SUFFIXES_READ_BY_PEER = (
    "measurements",  # controller: device state before a gate and finished intervals' metering
    "acks",  # operator: each order accepted or rejected, with the reason
    "results",  # operator: what the peer got in a cleared interval
    "settlements",  # operator: the peer's settlement of an interval
    "account",  # operator, retained: the peer's recent orders, trades and wallet
)


def peer_topic(peer: str, suffix: str) -> str:
    """`p2p/v1/peers/<peer>/<suffix>`."""
    return f"{PEERS}/{peer}/{suffix}"


def orders(peer: str) -> str:
    return peer_topic(peer, "orders")


def plans(peer: str) -> str:
    return peer_topic(peer, "plans")


def status(peer: str) -> str:
    return peer_topic(peer, "status")


def measurements(peer: str) -> str:
    return peer_topic(peer, "measurements")


def acks(peer: str) -> str:
    return peer_topic(peer, "acks")


def results(peer: str) -> str:
    return peer_topic(peer, "results")


def settlements(peer: str) -> str:
    return peer_topic(peer, "settlements")


def account(peer: str) -> str:
    return peer_topic(peer, "account")


def peer_of(topic: str) -> str | None:
    """The peer id in `p2p/v1/peers/<peer>/...`, or None for another topic."""
    parts = topic.split("/")
    if len(parts) >= 4 and f"{parts[0]}/{parts[1]}/{parts[2]}" == PEERS:
        return parts[3]
    return None
