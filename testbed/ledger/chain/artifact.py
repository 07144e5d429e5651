"""The contract compiled with solc-js (the npm `solc` package: no compiler download), cached by the
hash of its source."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHAIN_DIR = Path(__file__).resolve().parents[3] / "chain"
CONTRACT_NAME = "EnergyLedger"
INSTALL_HINT = "run `bash scripts/setup.sh --tests` (or `npm ci` in {dir})"


class ChainSetupError(RuntimeError):
    """The chain's tools are not installed, or the contract does not compile."""


@dataclass(frozen=True, slots=True)
class Artifact:
    abi: list[dict[str, Any]]
    bytecode: str  # 0x-prefixed creation code
    solc: str  # the compiler's version


def compiled_contract(chain_dir: Path = CHAIN_DIR) -> Artifact:
    """The compiled contract, compiled once per source version (kept in `chain/build/`)."""
    source = chain_dir / "contracts" / f"{CONTRACT_NAME}.sol"
    script = chain_dir / "compile.js"
    digest = hashlib.sha256(source.read_bytes() + script.read_bytes()).hexdigest()[:16]
    cache = chain_dir / "build" / f"{CONTRACT_NAME}-{digest}.json"
    if not cache.is_file():
        _compile(chain_dir, script, source, cache)
    data = json.loads(cache.read_text(encoding="utf-8"))
    return Artifact(data["abi"], data["bytecode"], data["solc"])


def _compile(chain_dir: Path, script: Path, source: Path, cache: Path) -> None:
    node = shutil.which("node")
    if node is None:
        raise ChainSetupError("Node.js (`node`) is not installed: " + _hint(chain_dir))
    if not (chain_dir / "node_modules" / "solc").is_dir():
        raise ChainSetupError(f"solc-js is not installed in {chain_dir}: " + _hint(chain_dir))
    result = subprocess.run(
        [node, str(script)], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        raise ChainSetupError(f"{source} does not compile:\n{result.stderr.strip()}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(result.stdout, encoding="utf-8")
    partial.replace(cache)


def _hint(chain_dir: Path) -> str:
    return INSTALL_HINT.format(dir=chain_dir)
