"""Where a running plant serves each device: the endpoints JSON written by `python -m hil_sim`.

The controller reads this file (or the real lab's equivalent) and needs nothing else of hil_sim;
this module imports only pydantic. Keys per device are the same names the fault injection uses:
`inverter`, `meter_A`, `meter_B`, `meter_C` (Modbus TCP), `ev_charger` (OPC UA), `load` (SCPI),
plus `control` (the simulation-control endpoint, JSON lines over TCP).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PEERS = ("A", "B", "C")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModbusEndpoint(_Model):
    """A Modbus TCP device laid out as SunSpec models from `base_address`."""

    host: str
    port: int = Field(ge=1, le=65535)
    unit: int = Field(ge=0, le=255)
    base_address: int = Field(ge=0, le=65535)


class OpcUaEndpoint(_Model):
    """An OPC UA server; `security` is "none" or "sign_and_encrypt" (Basic256Sha256 + user name)."""

    host: str
    port: int = Field(ge=1, le=65535)
    url: str
    namespace_uri: str
    security: Literal["none", "sign_and_encrypt"] = "none"
    username: str | None = None  # the password comes from the environment, never from this file
    server_certificate: str | None = None  # path of the server's certificate (DER), when secured


class ScpiEndpoint(_Model):
    """A SCPI instrument on a raw TCP socket; `resource` is its VISA resource string."""

    host: str
    port: int = Field(ge=1, le=65535)
    resource: str


class ControlEndpoint(_Model):
    """The simulation-control endpoint (JSON lines): time, advance, state, faults."""

    host: str
    port: int = Field(ge=1, le=65535)


class PlantEndpoints(_Model):
    """Every endpoint of one running emulated plant."""

    inverter: ModbusEndpoint
    meter_A: ModbusEndpoint
    meter_B: ModbusEndpoint
    meter_C: ModbusEndpoint
    ev_charger: OpcUaEndpoint
    load: ScpiEndpoint
    control: ControlEndpoint
    mode: Literal["lockstep", "realtime"] = "lockstep"
    pid: int | None = None  # the serving process

    def meter(self, peer: str) -> ModbusEndpoint:
        """The PCC meter of peer "A", "B" or "C"."""
        if peer not in PEERS:
            raise ValueError(f"unknown peer {peer!r}; peers are {', '.join(PEERS)}")
        return getattr(self, f"meter_{peer}")

    @classmethod
    def read(cls, path: str | Path) -> PlantEndpoints:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    def write(self, path: str | Path) -> None:
        """Write atomically (a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(self.model_dump(mode="json"), out, indent=2)
                out.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
