"""Small ledgers made through the operator's own API, for the ledger's tests."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from testbed.config import PricesConfig
from testbed.documents import Clearing
from testbed.ledger import keys
from testbed.ledger.identity import PeerIdentity
from testbed.ledger.kyc import KycRecord
from testbed.ledger.operator import LedgerOperator, Opening
from testbed.ledger.store import LedgerWriter
from testbed.market.book import Order, Side, Trade
from testbed.market.validation import validate_orders
from testbed.settlement import settle_interval

T0 = datetime(2024, 6, 1, 6, 0, tzinfo=UTC)
INTERVAL_S = 900.0
PRICES = PricesConfig()


def kyc(peer: str, **changes: str) -> KycRecord:
    data = {"name": f"Peer {peer}", "contact": f"{peer}@lab", "meter_id": f"{peer}/meter"}
    return KycRecord.model_validate({**data, "bus": f"bus-{peer}", **changes})


@dataclass
class Lab:
    """An operator, its ledger in `run_dir/run.sqlite`, and peers with their own key folders."""

    root: Path
    operator: LedgerOperator
    writer: LedgerWriter
    peers: dict[str, PeerIdentity] = field(default_factory=dict)
    n_orders: int = 0

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def operator_key(self) -> keys.KeyPair:
        return keys.load(self.root / "keys" / "operator" / "operator.key")

    def identity(self, peer: str, **kyc_changes: str) -> PeerIdentity:
        folder = self.root / "keys" / "peers" / peer
        identity = PeerIdentity.load_or_create(peer, folder, kyc(peer, **kyc_changes))
        self.peers[peer] = identity
        return identity

    def order(
        self, peer: str, side: str, quantity_kwh: float, price: float, interval: int
    ) -> Order:
        self.n_orders += 1
        return Order(
            order_id=f"o{self.n_orders}",
            peer=peer,
            side=Side(side),
            quantity_kwh=quantity_kwh,
            price=price,
            interval_start=interval_start(interval),
            time=float(self.n_orders),
        )

    def place(self, orders: list[Order], interval: int, signed_late_s: float = -60.0):
        """Sign each order on its peer's side and submit them at gate closure of `interval`."""
        at = interval_start(interval) + timedelta(seconds=signed_late_s)
        signed = [self.peers[o.peer].sign_order(o, at) for o in orders]
        _, rejected = validate_orders(orders, interval_start=interval_start(interval))
        objections = {id(order): reason for order, reason in rejected}
        return self.operator.admit(at, [(s, objections.get(id(s.order))) for s in signed])

    def settle(self, interval: int, trades: tuple[Trade, ...], metered: dict[str, float]):
        start = interval_start(interval)
        self.operator.record_clearing(
            start,
            Clearing(
                start,
                "mcafee",
                trades[0].price if trades else None,
                sum(t.quantity_kwh for t in trades),
                trades,
            ),
        )
        settlements = settle_interval(start, trades, metered, PRICES)
        self.operator.record_settlement(start + timedelta(seconds=INTERVAL_S), start, settlements)
        return settlements


def interval_start(interval: int) -> datetime:
    return T0 + timedelta(seconds=interval * INTERVAL_S)


def open_lab(
    root: Path,
    peers: tuple[str, ...] = ("A", "B", "C"),
    peer_opening: float = 100.0,
    institution_opening: float = 10_000.0,
) -> Lab:
    (root / "run").mkdir(parents=True, exist_ok=True)
    operator_key = keys.load_or_create(root / "keys" / "operator", "operator")
    writer = LedgerWriter(root / "run" / "run.sqlite", operator_key)
    operator = LedgerOperator(
        writer,
        run_id="test",
        currency="INR",
        interval_s=INTERVAL_S,
        prices=PRICES.model_dump(mode="json"),
        opening=Opening(peer=peer_opening, institution=institution_opening),
        kyc_custody=root / "keys" / "operator" / "kyc",
    )
    lab = Lab(root, operator, writer)
    requests = [lab.identity(peer).registration_request() for peer in peers]
    operator.start(T0 - timedelta(seconds=INTERVAL_S), requests)
    return lab


def small_day(root: Path) -> Lab:
    """Three peers, two intervals: orders (one rejected), McAfee-style trades with a seller price
    below the buyer's (operator surplus), a shortfall with a penalty, feed-in, then closed."""
    lab = open_lab(root)
    a_sell = lab.order("A", "sell", 1.0, 4.0, 1)
    b_sell = lab.order("B", "sell", 0.5, 5.0, 1)
    c_buy = lab.order("C", "buy", 1.2, 7.0, 1)
    lab.place([a_sell, b_sell, c_buy, lab.order("C", "buy", -1.0, 7.0, 1)], 1)
    trades = (
        Trade(c_buy.order_id, a_sell.order_id, "C", "A", 0.8, 6.0, 5.5),
        Trade(c_buy.order_id, b_sell.order_id, "C", "B", 0.3, 6.0, 5.5),
    )
    lab.settle(1, trades, {"A": 1.1, "B": 0.1, "C": -1.4})
    a2 = lab.order("A", "sell", 0.7, 4.5, 2)
    b2 = lab.order("B", "buy", 0.4, 6.5, 2)
    lab.place([a2, b2], 2)
    lab.settle(
        2, (Trade(b2.order_id, a2.order_id, "B", "A", 0.4, 5.5),), {"A": 0.2, "B": -0.6, "C": -0.3}
    )
    lab.operator.close(interval_start(3), "finished")
    lab.writer.close()
    return lab


def trading_day(
    root: Path, n_intervals: int = 96, seed: int = 7, peer_opening: float = 20.0
) -> Lab:
    """Three peers trading every interval of a day (random but seeded): A sells, B and C buy, the
    metering deviates from the trades, C's small wallet runs into debt (the operator advances, C
    repays by selling), then C and A leave (what they hold redeemed) and the ledger is closed."""
    rng = random.Random(seed)
    lab = open_lab(root, peer_opening=peer_opening, institution_opening=50.0)
    for interval in range(1, n_intervals + 1):
        sell = lab.order("A", "sell", round(rng.uniform(0.5, 2.0), 3), 4.0, interval)
        buyer = rng.choice(("B", "C"))
        side = "sell" if buyer == "C" and interval % 5 == 0 else "buy"
        other = lab.order(buyer, side, round(rng.uniform(0.5, 2.0), 3), 7.0, interval)
        accepted, _ = lab.place([sell, other], interval)
        trades: tuple[Trade, ...] = ()
        if other in accepted and side == "buy":
            quantity = min(sell.quantity_kwh, other.quantity_kwh)
            trades = (Trade(other.order_id, sell.order_id, buyer, "A", quantity, 5.5, 5.25),)
        metered = {
            "A": sell.quantity_kwh + rng.uniform(-0.3, 0.3),
            "B": rng.uniform(-2.5, 0.2),
            "C": rng.uniform(-2.5, 0.2) if side == "buy" else other.quantity_kwh,
        }
        lab.settle(interval, trades, metered)
    lab.operator.deregister(interval_start(n_intervals + 1), "C", "moved away")
    lab.operator.deregister(interval_start(n_intervals + 1), "A", "end of the trial")
    lab.operator.close(interval_start(n_intervals + 1), "finished")
    lab.writer.close()
    return lab
