"""Mechanisms by name: what the configuration's `market.mechanism` and `market.params` select.

Each mechanism's module is imported when it is first asked for, so a command that clears with an
auction never imports cvxpy.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

from testbed.market.mechanism import Mechanism

_CLASSES = {
    "uniform": "testbed.market.uniform:UniformPriceAuction",
    "pay_as_bid": "testbed.market.pay_as_bid:PayAsBid",
    "mcafee": "testbed.market.mcafee:McAfeeAuction",
    "huang": "testbed.market.huang:HuangAuction",
    "cda": "testbed.market.cda:ContinuousDoubleAuctionMechanism",
    "vcg": "testbed.market.vcg:VCGAuction",
    "welfare": "testbed.market.optimisation.welfare:WelfareMarket",
    "admm": "testbed.market.optimisation.admm:AdmmMarket",
    "nash": "testbed.market.optimisation.nash:NashBargainingMarket",
    "stackelberg": "testbed.market.optimisation.stackelberg:StackelbergMarket",
}


class _LazyClasses(Mapping[str, type[Mechanism]]):
    """name -> mechanism class, importing the class's module on first access."""

    def __getitem__(self, name: str) -> type[Mechanism]:
        module, _, attribute = _CLASSES[name].partition(":")
        mechanism: type[Mechanism] = getattr(importlib.import_module(module), attribute)
        return mechanism

    def __iter__(self) -> Iterator[str]:
        return iter(_CLASSES)

    def __len__(self) -> int:
        return len(_CLASSES)


MECHANISMS: Mapping[str, type[Mechanism]] = _LazyClasses()
ALIASES = {
    "k_double": "uniform",
    "uniform_price": "uniform",
    "discriminatory": "pay_as_bid",
    "continuous": "cda",
    "continuous_double_auction": "cda",
    "social_welfare": "welfare",
    "centralised": "welfare",
    "distributed": "admm",
    "nash_bargaining": "nash",
}
DEFAULT_MECHANISM = "uniform"


def mechanism_names() -> list[str]:
    return list(_CLASSES)


def mechanism_parameters(name: str) -> list[str]:
    """The parameter names the mechanism called `name` accepts (ValueError if it is unknown)."""
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in _CLASSES:
        raise ValueError(f"unknown market mechanism {name!r} (allowed: {', '.join(_CLASSES)})")
    return [p for p in inspect.signature(MECHANISMS[key]).parameters if p != "self"]


def get_mechanism(name: str = DEFAULT_MECHANISM, **params: Any) -> Mechanism:
    """The mechanism called `name`, built with `params` (e.g. get_mechanism("uniform", k=0.5)).

    Unknown names or parameters, and parameters out of range, raise ValueError naming them.
    """
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in _CLASSES:
        raise ValueError(f"unknown market mechanism {name!r} (allowed: {', '.join(_CLASSES)})")
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
