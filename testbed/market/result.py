"""What clearing a book returns: trades, prices, the operator's surplus or deficit, the curves."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from testbed.market.book import Order, Trade
from testbed.market.columns import ArrowStrings, OrderColumns

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from testbed.documents import Clearing
    from testbed.market.matching import Crossing

CURVE_POINTS = 2000  # points per curve kept in the report (thinned evenly beyond that)
TRADE_COLUMNS = ("buy_order_id", "sell_order_id", "buyer", "seller", "quantity_kwh", "price")


@dataclass(frozen=True, eq=False)
class TradeTable:
    """Trades as columns of row numbers into the cleared OrderColumns.

    `buyer_price` is what the buyer pays per kWh and `seller_price` what the seller receives;
    they differ only in mechanisms that are not budget balanced (McAfee's reduced case, Huang,
    VCG), where the difference goes to (or comes from) the market operator.
    """

    buy_row: np.ndarray
    sell_row: np.ndarray
    quantity_kwh: np.ndarray
    buyer_price: np.ndarray
    seller_price: np.ndarray
    # Network charge per kWh each trade's buyer pays the network operator on top of buyer_price
    # (allocated per trade, testbed.network); None: the flat charge of the settlement applies.
    network_charge: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.buy_row)

    @classmethod
    def empty(cls) -> TradeTable:
        rows = np.empty(0, dtype=np.int64)
        return cls(rows, rows, np.empty(0), np.empty(0), np.empty(0))


@dataclass(frozen=True)
class PeerCashflow:
    """One peer's energy and money in one clearing (currency)."""

    bought_kwh: float = 0.0
    sold_kwh: float = 0.0
    paid: float = 0.0
    received: float = 0.0


@dataclass(frozen=True, eq=False)
class SupplyDemandCurves:
    """The step curves of a call auction and its clearing point (the seed's Fig. 8) as data.

    `demand_kwh[i]` is where demand step i starts on the quantity axis and `demand_price[i]` its
    price; the last entry repeats the last price at the total quantity, so `(kwh, price)` draws
    directly as a step line (plotly `line_shape="hv"`). Steps of equal price are merged.
    """

    demand_kwh: np.ndarray
    demand_price: np.ndarray
    supply_kwh: np.ndarray
    supply_price: np.ndarray
    clearing_kwh: float
    clearing_price: float | None
    price_range: tuple[float, float] | None  # competitive price interval at the clearing volume

    @classmethod
    def from_sides(cls, crossing: Crossing, clearing_price: float | None) -> SupplyDemandCurves:
        demand_kwh, demand_price = _steps(crossing.bids.cum_kwh, crossing.bids.price)
        supply_kwh, supply_price = _steps(crossing.asks.cum_kwh, crossing.asks.price)
        return cls(
            demand_kwh,
            demand_price,
            supply_kwh,
            supply_price,
            crossing.volume_kwh,
            clearing_price,
            crossing.competitive_price_range,
        )

    def to_dict(self, max_points: int | None = CURVE_POINTS) -> dict[str, Any]:
        """JSON-ready; each curve is thinned to at most `max_points` points (None = all)."""
        demand_kwh, demand_price, thin_d = _thin(self.demand_kwh, self.demand_price, max_points)
        supply_kwh, supply_price, thin_s = _thin(self.supply_kwh, self.supply_price, max_points)
        return {
            "demand": {"kwh": demand_kwh, "price": demand_price},
            "supply": {"kwh": supply_kwh, "price": supply_price},
            "clearing_point": {"kwh": self.clearing_kwh, "price": self.clearing_price},
            "competitive_price_range": list(self.price_range) if self.price_range else None,
            "thinned": thin_d or thin_s,
        }


def _steps(cum_kwh: np.ndarray, price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(price) == 0:
        return np.zeros(0), np.zeros(0)
    starts = np.concatenate(([0.0], cum_kwh[:-1]))
    new_step = np.concatenate(([True], price[1:] != price[:-1]))
    kwh = np.append(starts[new_step], cum_kwh[-1])
    step_price = np.append(price[new_step], price[-1])
    return kwh, step_price


def _thin(
    kwh: np.ndarray, price: np.ndarray, max_points: int | None
) -> tuple[list[float], list[float], bool]:
    if max_points is None or len(kwh) <= max_points:
        return kwh.tolist(), price.tolist(), False
    keep = np.unique(np.linspace(0, len(kwh) - 1, max_points).round().astype(np.int64))
    return kwh[keep].tolist(), price[keep].tolist(), True


@dataclass(eq=False)
class ClearingResult:
    """The outcome of clearing one book with one mechanism.

    `clearing_price` is the uniform price where the mechanism has one; otherwise the
    volume-weighted average price buyers paid (None when nothing traded). `report` holds the
    operator's surplus (negative = deficit), rejected orders with reasons, the mechanism's
    parameters and welfare figures; see docs/market.md.
    """

    mechanism: str
    book: OrderColumns  # the orders that were cleared (valid ones)
    table: TradeTable
    clearing_price: float | None
    report: dict[str, Any] = field(default_factory=dict)
    curves: SupplyDemandCurves | None = None

    @property
    def volume_kwh(self) -> float:
        return float(np.sum(self.table.quantity_kwh))

    @cached_property
    def trades(self) -> list[Trade]:
        """Trades (buyer, seller, kWh, price); `price` is the price the buyer pays."""
        t = self.table
        ids, peers = self.book.order_id, self.book.peer
        charges = [None] * len(t) if t.network_charge is None else t.network_charge.tolist()
        return [
            Trade(
                str(ids[b]),
                str(ids[s]),
                str(peers[b]),
                str(peers[s]),
                float(q),
                float(p),
                network_charge=c,
            )
            for b, s, q, p, c in zip(
                t.buy_row.tolist(),
                t.sell_row.tolist(),
                t.quantity_kwh.tolist(),
                t.buyer_price.tolist(),
                charges,
                strict=True,
            )
        ]

    @property
    def seller_prices(self) -> list[float]:
        """Price each trade's seller receives (equal to `trades[i].price` when budget balanced)."""
        prices: list[float] = self.table.seller_price.tolist()
        return prices

    def filled_kwh(self) -> np.ndarray:
        """Filled quantity of every row of `book`."""
        t = self.table
        n = len(self.book)
        return np.bincount(t.buy_row, t.quantity_kwh, minlength=n) + np.bincount(
            t.sell_row, t.quantity_kwh, minlength=n
        )

    def order_prices(self) -> dict[str, float]:
        """Average price per kWh that each filled order pays (bid) or receives (ask)."""
        t = self.table
        n = len(self.book)
        money = np.bincount(t.buy_row, t.quantity_kwh * t.buyer_price, minlength=n)
        money += np.bincount(t.sell_row, t.quantity_kwh * t.seller_price, minlength=n)
        filled = self.filled_kwh()
        rows = np.flatnonzero(filled > 0)
        return {
            str(self.book.order_id[row]): float(money[row] / filled[row]) for row in rows.tolist()
        }

    def cashflows(self) -> dict[str, PeerCashflow]:
        """Energy and money per peer, with each side's own price (exact for every mechanism)."""
        import pandas as pd

        frame = pd.DataFrame(
            {
                "buyer": self.book.peer[self.table.buy_row],
                "seller": self.book.peer[self.table.sell_row],
                "kwh": self.table.quantity_kwh,
                "paid": self.table.quantity_kwh * self.table.buyer_price,
                "received": self.table.quantity_kwh * self.table.seller_price,
            }
        )
        bought = frame.groupby("buyer")[["kwh", "paid"]].sum()
        sold = frame.groupby("seller")[["kwh", "received"]].sum()
        peers = sorted(set(bought.index) | set(sold.index))
        return {
            str(peer): PeerCashflow(
                bought_kwh=float(bought["kwh"].get(peer, 0.0)),
                sold_kwh=float(sold["kwh"].get(peer, 0.0)),
                paid=float(bought["paid"].get(peer, 0.0)),
                received=float(sold["received"].get(peer, 0.0)),
            )
            for peer in peers
        }

    def trades_arrow(self) -> pa.Table:
        """Trades in the trade CSV columns as a pyarrow Table (no Python object per trade), with
        a `network_charge` column when the mechanism allocated charges per trade."""
        import pyarrow as pa

        t = self.table
        strings: dict[str, Any] = {}
        for name, column, rows in (
            ("buy_order_id", "order_id", t.buy_row),
            ("sell_order_id", "order_id", t.sell_row),
            ("buyer", "peer", t.buy_row),
            ("seller", "peer", t.sell_row),
        ):
            values = getattr(self.book, column)
            if isinstance(values, ArrowStrings):
                strings[name] = values.array.take(pa.array(rows))
            else:
                strings[name] = pa.array(values[rows].tolist(), type=pa.string())
        table = pa.table(
            {
                **strings,
                "quantity_kwh": pa.array(t.quantity_kwh, type=pa.float64()),
                "price": pa.array(t.buyer_price, type=pa.float64()),
            }
        ).select(list(TRADE_COLUMNS))
        if t.network_charge is not None:  # allocated per trade: one more column
            charge = pa.array(t.network_charge, type=pa.float64())
            table = table.append_column("network_charge", charge)
        return table

    def trades_frame(self) -> pd.DataFrame:
        """Trades in the trade CSV columns (see TRADE_COLUMNS)."""
        import pandas as pd

        t = self.table
        return pd.DataFrame(
            {
                "buy_order_id": self.book.order_id[t.buy_row],
                "sell_order_id": self.book.order_id[t.sell_row],
                "buyer": self.book.peer[t.buy_row],
                "seller": self.book.peer[t.sell_row],
                "quantity_kwh": t.quantity_kwh,
                "price": t.buyer_price,
            },
            columns=list(TRADE_COLUMNS),
        )

    def report_json(self, max_curve_points: int | None = CURVE_POINTS) -> dict[str, Any]:
        """The report with the curves at another resolution (None = every step)."""
        out = dict(self.report)
        out["curves"] = self.curves.to_dict(max_curve_points) if self.curves else None
        return out

    def to_document(self, interval_start: datetime) -> Clearing:
        """The `Clearing` document the run store and the dashboard consume."""
        from testbed.documents import Clearing

        return Clearing(
            interval_start=interval_start,
            mechanism=self.mechanism,
            clearing_price=self.clearing_price,
            volume_kwh=self.volume_kwh,
            trades=tuple(self.trades),
            report=dict(self.report),
        )


def build_report(
    *,
    mechanism: str,
    params: dict[str, Any],
    book: OrderColumns,
    rejected: list[tuple[Order, str]] | list[tuple[str, str, str]],
    table: TradeTable,
    crossing: Crossing | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report every mechanism returns (JSON types only)."""
    quantity = table.quantity_kwh
    paid = float(np.sum(quantity * table.buyer_price))
    received = float(np.sum(quantity * table.seller_price))
    welfare = float(np.sum(quantity * (book.price[table.buy_row] - book.price[table.sell_row])))
    max_welfare = crossing.welfare if crossing is not None else None
    demand = float(book.quantity_kwh[book.is_buy].sum())
    supply = float(book.quantity_kwh[~book.is_buy].sum())
    volume = float(quantity.sum())
    report: dict[str, Any] = {
        "mechanism": mechanism,
        "params": dict(params),
        "orders": {
            "valid": len(book),
            "bids": int(book.is_buy.sum()),
            "asks": int((~book.is_buy).sum()),
            "rejected": len(rejected),
        },
        "rejected": [_rejection(item) for item in rejected],
        "trades": len(table),
        "volume_kwh": volume,
        "demand_kwh": demand,
        "supply_kwh": supply,
        "unmatched_demand_kwh": max(demand - volume, 0.0),
        "unmatched_supply_kwh": max(supply - volume, 0.0),
        "buyers_paid": paid,
        "sellers_received": received,
        "operator_surplus": paid - received,  # negative = deficit the operator must fund
        "welfare": welfare,  # gains from trade on reported prices
        "max_welfare": max_welfare,
        "efficiency": (welfare / max_welfare) if max_welfare and max_welfare > 0 else None,
        "efficient_volume_kwh": crossing.volume_kwh if crossing is not None else None,
    }
    if crossing is not None and crossing.competitive_price_range is not None:
        report["competitive_price_range"] = list(crossing.competitive_price_range)
    report.update(extra or {})
    return report


def _rejection(item: tuple[Any, ...]) -> dict[str, str]:
    first, reason = item[0], item[-1]
    if isinstance(first, Order):
        return {"order_id": str(first.order_id), "peer": str(first.peer), "reason": reason}
    return {"order_id": str(first), "peer": str(item[1]), "reason": reason}
