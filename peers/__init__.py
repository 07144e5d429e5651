"""Peers and their smart agents: assets, forecasting, scheduling, bidding.

The orchestrator needs only this surface (see docs/agents.md):

    from peers import make_agent, PeerAssets, IntervalObservation, MarketContext, DeviceState
    agent = make_agent("optimising", "A", assets, params={}, seed=0)
    agent.observe(IntervalObservation(...))          # after each interval
    decision = agent.decide(MarketContext(...), DeviceState(...))   # before gate closure
    agent.learn(MarketOutcome(...))                  # after clearing
"""

from peers.agents import BaselineAgent, OptimisingAgent, agent_kinds, make_agent, register_agent
from peers.assets import (
    BatteryAsset,
    EvAsset,
    PeerAssets,
    PvAsset,
    assets_from_site,
    default_assets,
)
from peers.bill import Bill, plan_bill
from peers.community import CommunityAgent  # registers the `community` kind
from peers.interface import (
    Agent,
    AgentDecision,
    DeviceState,
    Fill,
    ForecastStep,
    IntervalObservation,
    MarketContext,
    MarketOutcome,
    OrderIntent,
    OrderSide,
    PlanStep,
)

__all__ = [
    "Agent",
    "AgentDecision",
    "BaselineAgent",
    "BatteryAsset",
    "Bill",
    "CommunityAgent",
    "DeviceState",
    "EvAsset",
    "Fill",
    "ForecastStep",
    "IntervalObservation",
    "MarketContext",
    "MarketOutcome",
    "OptimisingAgent",
    "OrderIntent",
    "OrderSide",
    "PeerAssets",
    "PlanStep",
    "PvAsset",
    "agent_kinds",
    "assets_from_site",
    "default_assets",
    "make_agent",
    "plan_bill",
    "register_agent",
]
