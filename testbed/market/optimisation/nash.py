"""Generalised Nash bargaining over the gains from trade (seed 4.1.2, equations 5-6).

Two stages, as in the seed's reference [59]:

1. Energy: the social-welfare optimum (welfare.py; with the feeder's limits when one is given)
   fixes who trades how much (without a feeder, orders at one price share their side's fill pro
   rata, so that identical peers are treated identically). Peer n's value of its fills is
   V_n = sum_bids p x - sum_asks p x (its bids' worth minus its asks' cost, at its own limits).
2. Payments: the peers that trade bargain over money transfers pi_n,

       maximise  sum_n w_n log(V_n + pi_n - d_n)   s.t.  sum_n pi_n = 0                  (5), (6)

   with bargaining powers w_n (default 1) and the disagreement payoff d_n = 0 (no trade: the
   grid serves the peer as it would without the market). The problem is concave with one linear
   constraint; its optimality conditions give the unique solution in closed form,
   g_n = V_n + pi_n = w_n / sum(w) * S with S the total gains (a test checks it with cvxpy).

Each peer's gain is spread over its traded kWh, from its own limits: a bid of peer n is priced
its limit - g_n / T_n and an ask its limit + g_n / T_n, T_n the peer's traded kWh. So every peer
ends with exactly its bargained gain, every order trades within its limit (g_n >= 0), and what
buyers pay is what sellers receive (the peers' money sums to sum(g) - sum(V) = sum(pi) = 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from testbed.market.columns import OrderColumns
from testbed.market.optimisation.base import (
    NoTrade,
    OptimisationMechanism,
    Outcome,
    network_settings,
    pool_table,
    positive,
)
from testbed.market.optimisation.community import Community
from testbed.market.optimisation.welfare import solve_welfare
from testbed.network.settings import NetworkSettings


def parse_powers(value: Any) -> dict[str, float]:
    """{"A": 2} or "A:2,B:1" -> {peer: bargaining power > 0}."""
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):
        items: dict[str, Any] = {}
        for part in value.split(","):
            peer, sep, power = part.partition(":")
            if not sep or not peer.strip():
                raise ValueError(f"powers item {part!r} is not PEER:POWER")
            items[peer.strip()] = power
        value = items
    if not isinstance(value, dict):
        raise ValueError(f"powers = {value!r} must be a table of PEER = POWER or 'A:2,B:1'")
    return {str(peer): positive(f"powers[{peer!r}]", power) for peer, power in value.items()}


def bargain(values: np.ndarray, powers: np.ndarray, disagreement: np.ndarray) -> np.ndarray:
    """The transfers pi (sum 0) that maximise sum w log(V + pi - d); NoTrade if none exists.

    The problem's optimality conditions w_n / g_n = mu (one multiplier for the balance) give
    its unique solution in closed form: g_n = d_n + w_n / sum(w) * (S - sum(d)).
    """
    surplus = float(np.sum(values - disagreement))
    if not surplus > 0:
        raise NoTrade("no gains from trade to bargain over")
    gains = disagreement + powers / powers.sum() * surplus
    transfer: np.ndarray = gains - values
    return transfer - transfer.mean() if len(transfer) else transfer  # exactly balanced


def even_fills(book: OrderColumns, row_fill: np.ndarray) -> np.ndarray:
    """Fills shared pro rata among the orders of one side at one limit price.

    The welfare optimum is indifferent among orders at the same price; sharing their fill in
    proportion to quantity keeps welfare and balance and treats identical peers identically.
    """
    out = np.array(row_fill, dtype=np.float64)
    for side in (book.is_buy, ~book.is_buy):
        rows = np.flatnonzero(side)
        if len(rows) == 0:
            continue
        _, level = np.unique(book.price[rows], return_inverse=True)
        filled = np.bincount(level, weights=out[rows])
        offered = np.bincount(level, weights=book.quantity_kwh[rows])
        share = np.divide(filled, offered, out=np.zeros_like(filled), where=offered > 0)
        out[rows] = book.quantity_kwh[rows] * np.minimum(share[level], 1.0)
    return out


def peer_values(community: Community, row_fill: np.ndarray) -> tuple[np.ndarray, ...]:
    """(V_n, bought kWh, sold kWh) per peer from the order fills."""
    book = community.book
    peer = community.peer_of(np.arange(len(book)))
    signed = np.where(book.is_buy, book.price, -book.price) * row_fill
    value = np.bincount(peer, weights=signed, minlength=community.size)
    bought = np.bincount(peer, weights=row_fill * book.is_buy, minlength=community.size)
    sold = np.bincount(peer, weights=row_fill * ~book.is_buy, minlength=community.size)
    return value, bought, sold


class NashBargainingMarket(OptimisationMechanism):
    """Social-welfare energy, payments by generalised Nash bargaining (module docstring)."""

    name = "nash"

    def __init__(
        self,
        powers: Any = None,
        network: NetworkSettings | None = None,
        feeder: Any = None,
        voltage_band_pct: float = 6.0,
        voltage_margin_pct: float = 0.5,
        interval_s: float = 900.0,
        charges: str = "flat",
    ) -> None:
        self.powers = parse_powers(powers)
        self.network = network_settings(
            network, feeder, voltage_band_pct, voltage_margin_pct, interval_s, charges
        )

    @property
    def params(self) -> dict[str, Any]:
        return {"powers": dict(self.powers), **self.network_params()}

    def solve(self, book: OrderColumns) -> Outcome:
        community = Community.from_book(book)
        energy = solve_welfare(community, network=self.network)
        fill = community.balanced(energy.row_fill)
        if self.network is None:  # on a feeder, where a kWh comes from matters
            fill = even_fills(book, fill)
        value, bought, sold = peer_values(community, fill)
        traded = bought + sold
        members = np.flatnonzero(traded > 0)
        if len(members) == 0:
            raise NoTrade("no welfare-improving trade")
        weights = np.array([self.powers.get(community.peers[i], 1.0) for i in members])
        transfer = bargain(value[members], weights, np.zeros(len(members)))
        gains = np.zeros(community.size)
        gains[members] = value[members] + transfer
        # every traded kWh of a peer carries the same share of its gain, from its own limit
        per_kwh = np.divide(gains, traded, out=np.zeros_like(gains), where=traded > 0)
        peer_of_row = community.peer_of(np.arange(len(book)))
        buy_price = book.price - per_kwh[peer_of_row]
        sell_price = book.price + per_kwh[peer_of_row]
        table = pool_table(community.pool_pairs(fill), buy_price, sell_price)
        volume = float(table.quantity_kwh.sum())
        average = float(table.quantity_kwh @ table.buyer_price / volume) if volume > 0 else None
        peers = community.peers
        report = {
            "objective": float(value.sum()),
            "solver": energy.solver,
            "iterations": energy.iterations,
            "bargaining_powers": {
                peers[i]: float(w) for i, w in zip(members, weights, strict=True)
            },
            "peer_gains": {peers[i]: float(gains[i]) for i in members.tolist()},
            "peer_values": {peers[i]: float(value[i]) for i in members.tolist()},
            "positions_kwh": dict(zip(peers, (sold - bought).tolist(), strict=True)),
        }
        return Outcome(table, average, report)
