"""Mechanisms by name: what the configuration's `market.mechanism` and `market.params` select."""

from __future__ import annotations

import inspect
from typing import Any

from testbed.market.cda import ContinuousDoubleAuctionMechanism
from testbed.market.huang import HuangAuction
from testbed.market.mcafee import McAfeeAuction
from testbed.market.mechanism import Mechanism
from testbed.market.pay_as_bid import PayAsBid
from testbed.market.uniform import UniformPriceAuction
from testbed.market.vcg import VCGAuction

MECHANISMS: dict[str, type] = {
    "uniform": UniformPriceAuction,
    "pay_as_bid": PayAsBid,
    "mcafee": McAfeeAuction,
    "huang": HuangAuction,
    "cda": ContinuousDoubleAuctionMechanism,
    "vcg": VCGAuction,
}
ALIASES = {
    "k_double": "uniform",
    "uniform_price": "uniform",
    "discriminatory": "pay_as_bid",
    "continuous": "cda",
    "continuous_double_auction": "cda",
}
DEFAULT_MECHANISM = "uniform"


def mechanism_names() -> list[str]:
    return list(MECHANISMS)


def get_mechanism(name: str = DEFAULT_MECHANISM, **params: Any) -> Mechanism:
    """The mechanism called `name`, built with `params` (e.g. get_mechanism("uniform", k=0.5)).

    Unknown names or parameters, and parameters out of range, raise ValueError naming them.
    """
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in MECHANISMS:
        raise ValueError(f"unknown market mechanism {name!r} (allowed: {', '.join(MECHANISMS)})")
    cls = MECHANISMS[key]
    allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        accepted = ", ".join(allowed) if allowed else "none"
        raise ValueError(
            f"mechanism {key!r} has no parameter {', '.join(map(repr, unknown))} "
            f"(its parameters: {accepted})"
        )
    return cls(**params)
