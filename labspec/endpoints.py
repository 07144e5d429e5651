"""Where a running plant serves each device: the endpoints JSON written by `python -m hil_sim`.

It lives in `labspec` because both sides use it: the plant (`hil_sim`, or a lab's own plant)
writes it, and the controller (`testbed`) reads it without importing anything of `hil_sim`; this
module imports only pydantic. `devices` maps each device id of the site (the names the fault
injection uses too; the default site's are `inverter`, `meter_A`, `meter_B`, `meter_C`,
`ev_charger`, `load`) to its endpoint: Modbus TCP, OPC UA or SCPI; `meters` maps each peer to its
meter's id; `control` is the simulation-control endpoint (JSON lines over TCP).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModbusEndpoint(_Model):
    """A Modbus TCP device laid out as SunSpec models from `base_address`."""

    protocol: Literal["modbus"] = "modbus"
    host: str
    port: int = Field(ge=1, le=65535)
    unit: int = Field(ge=0, le=255)
    base_address: int = Field(ge=0, le=65535)


class OpcUaEndpoint(_Model):
    """An OPC UA server; `security` is "none" or "sign_and_encrypt" (Basic256Sha256 + user name)."""

    protocol: Literal["opcua"] = "opcua"
    host: str
    port: int = Field(ge=1, le=65535)
    url: str
    namespace_uri: str
    security: Literal["none", "sign_and_encrypt"] = "none"
    username: str | None = None  # the password comes from the environment, never from this file
    server_certificate: str | None = None  # path of the server's certificate (DER), when secured


class ScpiEndpoint(_Model):
    """A SCPI instrument on a raw TCP socket; `resource` is its VISA resource string."""

    protocol: Literal["scpi"] = "scpi"
    host: str
    port: int = Field(ge=1, le=65535)
    resource: str


class ControlEndpoint(_Model):
    """The simulation-control endpoint (JSON lines): time, advance, state, faults."""

    host: str
    port: int = Field(ge=1, le=65535)


DeviceEndpoint = Annotated[
    ModbusEndpoint | OpcUaEndpoint | ScpiEndpoint, Field(discriminator="protocol")
]


class PlantEndpoints(_Model):
    """Every endpoint of one running emulated plant."""

    devices: dict[str, DeviceEndpoint]  # by device id
    meters: dict[str, str]  # peer -> the id of its PCC meter
    control: ControlEndpoint
    mode: Literal["lockstep", "realtime"] = "lockstep"
    pid: int | None = None  # the serving process

    def device(self, device_id: str) -> DeviceEndpoint:
        try:
            return self.devices[device_id]
        except KeyError:
            known = ", ".join(self.devices)
            raise ValueError(f"unknown device {device_id!r}; devices are {known}") from None

    def modbus(self, device_id: str) -> ModbusEndpoint:
        endpoint = self.device(device_id)
        if not isinstance(endpoint, ModbusEndpoint):
            raise ValueError(f"device {device_id!r} is not on Modbus TCP")
        return endpoint

    def meter(self, peer: str) -> ModbusEndpoint:
        """The PCC meter of `peer`."""
        if peer not in self.meters:
            raise ValueError(f"unknown peer {peer!r}; peers are {', '.join(self.meters)}")
        return self.modbus(self.meters[peer])

    # The default site's devices by their names.
    @property
    def inverter(self) -> ModbusEndpoint:
        return self.modbus("inverter")

    @property
    def meter_A(self) -> ModbusEndpoint:
        return self.modbus("meter_A")

    @property
    def meter_B(self) -> ModbusEndpoint:
        return self.modbus("meter_B")

    @property
    def meter_C(self) -> ModbusEndpoint:
        return self.modbus("meter_C")

    @property
    def ev_charger(self) -> OpcUaEndpoint:
        endpoint = self.device("ev_charger")
        assert isinstance(endpoint, OpcUaEndpoint)
        return endpoint

    @property
    def load(self) -> ScpiEndpoint:
        endpoint = self.device("load")
        assert isinstance(endpoint, ScpiEndpoint)
        return endpoint

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
