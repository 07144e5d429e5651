"""The EV charger on node-opcua (tests/conformance/opcua_charger/charger.js), started as a process.

The node table is labspec.ev_charger's (names, node ids, which are writable), with data types a
vendor might choose instead of ours (`OTHER_TYPES`: Float setpoints, a Byte for Enabled, ...).
node-opcua comes from the committed package.json and package-lock.json (`npm ci`, run by
`scripts/setup.sh --tests`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labspec.ev_charger import NAMESPACE_URI, OBJECT_NODE_ID, VARIABLES, Var, node_id
from tests.fixtures.ports import free_port, stop_process

HERE = Path(__file__).parent / "opcua_charger"
APPLICATION_URI = "urn:p2p-testbed:conformance:node-opcua-charger"

OTHER_TYPES = {
    Var.SOC_PCT: "Float",
    Var.PLUGGED: "Byte",
    Var.POWER_KW: "Float",
    Var.POWER_SETPOINT_KW: "Float",
    Var.ENABLED: "Byte",
    Var.MAX_CHARGE_POWER_KW: "Float",
    Var.MAX_DISCHARGE_POWER_KW: "Float",
    Var.MIN_POWER_KW: "Float",
    Var.RAMP_RATE_KW_PER_S: "Float",
    Var.RESERVE_SOC_PCT: "UInt16",
    Var.MIN_SOC_PCT: "UInt16",
    Var.MAX_SOC_PCT: "UInt16",
    Var.WATCHDOG_TIMEOUT_S: "UInt32",
    Var.ENERGY_CHARGED_KWH: "Double",
    Var.ENERGY_DISCHARGED_KWH: "Double",
    Var.CAPACITY_KWH: "Float",
}  # the rest keep labspec's types (DateTime, String)

INITIAL = {
    Var.SOC_PCT: 60.0,
    Var.PLUGGED: True,
    Var.DEPARTURE_TIME: None,
    Var.POWER_KW: 0.0,
    Var.POWER_SETPOINT_KW: 0.0,
    Var.ENABLED: False,
    Var.STATUS: "idle",
    Var.MAX_CHARGE_POWER_KW: 6.5,
    Var.MAX_DISCHARGE_POWER_KW: 5.0,
    Var.MIN_POWER_KW: 0.5,
    Var.RAMP_RATE_KW_PER_S: 10.0,
    Var.RESERVE_SOC_PCT: 20,
    Var.MIN_SOC_PCT: 10,
    Var.MAX_SOC_PCT: 95,
    Var.WATCHDOG_TIMEOUT_S: 60,
    Var.ENERGY_CHARGED_KWH: 1.0,
    Var.ENERGY_DISCHARGED_KWH: 0.5,
    Var.CAPACITY_KWH: 4.6,
}


def node_modules_ready() -> bool:
    return (HERE / "node_modules" / "node-opcua").is_dir() and shutil.which("node") is not None


@dataclass
class NodeOpcuaCharger:
    """Options of one charger process (see charger.js)."""

    workdir: Path
    types: dict[Var, str] = field(default_factory=dict)  # overrides of labspec's types
    max_nodes_per_read: int = 0
    max_nodes_per_write: int = 0
    plc_writes: bool = False
    security: str = "none"
    certificate: Path | None = None  # PEM
    private_key: Path | None = None  # PEM
    users: dict[str, str] = field(default_factory=dict)
    url: str = ""
    proc: subprocess.Popen | None = None
    output: list[str] = field(default_factory=list)

    @property
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    @property
    def trusted_clients(self) -> Path:
        """Where a client certificate (DER) goes to be trusted by this charger."""
        return self.pki_dir / "trusted" / "certs"

    def _config(self) -> dict[str, Any]:
        variables = []
        for spec in VARIABLES:
            value = INITIAL[spec.name]
            data_type = self.types.get(spec.name, spec.ua_type)
            if data_type not in ("Boolean", "String", "DateTime") and isinstance(value, bool):
                value = int(value)
            variables.append(
                {
                    "name": spec.name.value,
                    "nodeId": node_id(spec.name),
                    "dataType": data_type,
                    "writable": spec.writable,
                    "value": value,
                }
            )
        return {
            "port": free_port(),
            "namespaceUri": NAMESPACE_URI,
            "object": OBJECT_NODE_ID,
            "applicationUri": APPLICATION_URI,
            "variables": variables,
            "maxNodesPerRead": self.max_nodes_per_read,
            "maxNodesPerWrite": self.max_nodes_per_write,
            "plcWrites": self.plc_writes,
            "security": self.security,
            "certificateFile": str(self.certificate) if self.certificate else None,
            "privateKeyFile": str(self.private_key) if self.private_key else None,
            "pkiDir": str(self.pki_dir),
            "users": self.users,
        }

    def start(self, timeout_s: float = 60.0) -> NodeOpcuaCharger:
        if not node_modules_ready():
            raise RuntimeError(
                f"node-opcua is not installed in {HERE}: run `bash scripts/setup.sh --tests` "
                "(needs node and npm; it runs `npm ci` there)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_file = self.workdir / "charger.json"
        config_file.write_text(json.dumps(self._config()), encoding="utf-8")
        self.proc = subprocess.Popen(
            ["node", str(HERE / "charger.js"), str(config_file)],
            cwd=HERE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def follow() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line.rstrip())
                if line.startswith("READY "):
                    self.url = line.split(" ", 1)[1].strip()
                    ready.set()
            ready.set()

        threading.Thread(target=follow, daemon=True).start()
        if not ready.wait(timeout_s) or not self.url:
            self.stop()
            raise RuntimeError("node-opcua charger did not start:\n" + "\n".join(self.output))
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
