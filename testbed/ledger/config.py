"""`[ledger]` in the experiment configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from testbed.ledger.kyc import KycOverride

NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ChainConfig(BaseModel):
    """`[ledger.chain]`: the ledger's finalised results also on a smart-contract chain (off by
    default; needs `npm ci` in `chain/`, which `scripts/setup.sh --tests` does).

    `url`: a running Ethereum JSON-RPC node (e.g. `testbed ledger node`); unset, the run starts its
    own anvil on a free loopback port and keeps its state in `chain/` of the run directory.
    `account_key_file`: the private key of the account that writes the contract (the operator, the
    contract's TTP; make one with `testbed ledger chain-account FILE`), for a node that does not
    hold it unlocked; unset, the node's first development account writes (anvil).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    url: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    account_key_file: Path | None = None


class LedgerConfig(BaseModel):
    """The run's registry, wallets and ledger (on by default; nothing to install).

    `keys_dir` holds the operator's key (`operator/`) and each peer's folder (`peers/<id>/`: its
    key pair and KYC record); default: `keys` beside the run directory. Balances in the currency.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    keys_dir: Path | None = None
    opening_balance: NonNegativeFloat = 1000.0  # minted to each peer when it joins
    institution_balance: NonNegativeFloat = 1_000_000.0  # operator, grid retailer, network op.
    kyc: dict[str, KycOverride] = Field(default_factory=dict)  # per peer, replaces defaults
    chain: ChainConfig = ChainConfig()
