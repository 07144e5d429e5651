"""Market mechanisms over one order-book type.

`get_mechanism(name, **params).clear(orders)` clears one interval's book; see docs/market.md.
Names are imported on first use (PEP 562), so `testbed clear` starts without pandas or cvxpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "Order": "book",
    "Side": "book",
    "Trade": "book",
    "ContinuousDoubleAuction": "cda",
    "ContinuousDoubleAuctionMechanism": "cda",
    "OrderColumns": "columns",
    "read_order_columns": "csv_io",
    "read_orders_csv": "csv_io",
    "read_trades_csv": "csv_io",
    "write_orders_csv": "csv_io",
    "write_trades_csv": "csv_io",
    "HuangAuction": "huang",
    "McAfeeAuction": "mcafee",
    "Mechanism": "mechanism",
    "PayAsBid": "pay_as_bid",
    "MECHANISMS": "registry",
    "get_mechanism": "registry",
    "mechanism_names": "registry",
    "ClearingResult": "result",
    "PeerCashflow": "result",
    "SupplyDemandCurves": "result",
    "TradeTable": "result",
    "UniformPriceAuction": "uniform",
    "validate_orders": "validation",
    "VCGAuction": "vcg",
    "ZipSettings": "zip_traders",
    "ZipTrader": "zip_traders",
    "simulate_zip_market": "zip_traders",
}

__all__ = [
    "MECHANISMS",
    "ClearingResult",
    "ContinuousDoubleAuction",
    "ContinuousDoubleAuctionMechanism",
    "HuangAuction",
    "McAfeeAuction",
    "Mechanism",
    "Order",
    "OrderColumns",
    "PayAsBid",
    "PeerCashflow",
    "Side",
    "SupplyDemandCurves",
    "Trade",
    "TradeTable",
    "UniformPriceAuction",
    "VCGAuction",
    "ZipSettings",
    "ZipTrader",
    "get_mechanism",
    "mechanism_names",
    "read_order_columns",
    "read_orders_csv",
    "read_trades_csv",
    "simulate_zip_market",
    "validate_orders",
    "write_orders_csv",
    "write_trades_csv",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'testbed.market' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"testbed.market.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:
    from testbed.market.book import Order, Side, Trade
    from testbed.market.cda import ContinuousDoubleAuction, ContinuousDoubleAuctionMechanism
    from testbed.market.columns import OrderColumns
    from testbed.market.csv_io import (
        read_order_columns,
        read_orders_csv,
        read_trades_csv,
        write_orders_csv,
        write_trades_csv,
    )
    from testbed.market.huang import HuangAuction
    from testbed.market.mcafee import McAfeeAuction
    from testbed.market.mechanism import Mechanism
    from testbed.market.pay_as_bid import PayAsBid
    from testbed.market.registry import MECHANISMS, get_mechanism, mechanism_names
    from testbed.market.result import ClearingResult, PeerCashflow, SupplyDemandCurves, TradeTable
    from testbed.market.uniform import UniformPriceAuction
    from testbed.market.validation import validate_orders
    from testbed.market.vcg import VCGAuction
    from testbed.market.zip_traders import ZipSettings, ZipTrader, simulate_zip_market
