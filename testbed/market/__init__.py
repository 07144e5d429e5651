"""Market mechanisms over one order-book type.

`get_mechanism(name, **params).clear(orders)` clears one interval's book; see docs/market.md.
"""

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
