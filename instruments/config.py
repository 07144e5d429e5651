"""Each driver's configuration (pydantic): endpoint, timeout, backoff, limits, plausibility.

The testbed's TOML file embeds these models per device; an invalid value gives one clear error
naming the key, the value and what is allowed. Limits left as None come from what the device
reports (SunSpec ratings, the charger's limit variables, the load's range).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from instruments.link import Backoff
from labspec.sunspec_layout import CANDIDATE_BASE_ADDRESSES


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LinkConfig(_Config):
    """Timeout of every request and the reconnect backoff."""

    timeout_s: float = Field(
        1.0, gt=0, le=60, description="Timeout of every request (a loaded machine needs slack)"
    )
    backoff_initial_s: float = Field(0.1, gt=0, description="First delay before reconnecting")
    backoff_max_s: float = Field(10.0, gt=0, description="Largest delay between reconnects")

    def backoff(self) -> Backoff:
        return Backoff(initial_s=self.backoff_initial_s, max_s=self.backoff_max_s)


class PlausibilityConfig(_Config):
    """What a reading may physically be; anything else is rejected as a bad reading."""

    voltage_v: tuple[float, float] = (100.0, 300.0)
    frequency_hz: tuple[float, float] = (45.0, 65.0)
    power_rating_multiple: float = Field(1.5, gt=1, description="|power| <= this x rating")
    frozen_after_kwh: float | None = Field(
        0.05,
        gt=0,
        description="Reject readings when the energy register stands still although the "
        "measured power implies this much energy (None: no check)",
    )
    register_slack_kwh: float | None = Field(
        1.0,
        gt=0,
        description="Reject energy registers that go back by more than this, or run ahead of "
        "what the power limit allows since the last accepted reading by more than this (the "
        "register's resolution; None: no check)",
    )
    register_restart_after_readings: int | None = Field(
        3,
        ge=2,
        description="Take registers that stay behind the reference for this many readings in a "
        "row, consistent with each other, as a new series (a meter reset or replaced, or a "
        "reference that was itself a glitch); the break is reported once (None: never)",
    )


class _SocWindow(_Config):
    soc_min_pct: float = Field(0.0, ge=0, le=100)
    soc_max_pct: float = Field(100.0, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.soc_min_pct >= self.soc_max_pct:
            raise ValueError(
                f"soc_min_pct ({self.soc_min_pct}) must be below soc_max_pct ({self.soc_max_pct})"
            )
        return self


class SunSpecModbusConfig(LinkConfig):
    """What every SunSpec device over Modbus TCP is configured with: where it is, its unit id
    and where to look for its models."""

    name: str = "sunspec"
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    device_id: int = Field(
        1,
        ge=0,
        le=255,
        description="Modbus unit id: 1-247 behind a gateway; 255 (or 0) for a device addressed "
        "directly over TCP, as the Modbus TCP guide recommends",
    )
    base_addresses: tuple[int, ...] = CANDIDATE_BASE_ADDRESSES


class SunSpecInverterConfig(SunSpecModbusConfig, _SocWindow):
    """Peer A's hybrid inverter (SunSpec models 1, 701, 702, 704, 713, 714 over Modbus TCP)."""

    name: str = "inverter"
    max_export_kw: float | None = Field(None, gt=0, description="Cap on WSet > 0 (else WMaxRtg)")
    max_import_kw: float | None = Field(
        None, gt=0, description="Cap on -WSet (else the smaller of WMaxRtg and WChaRteMaxRtg)"
    )
    max_step_kw: float | None = Field(
        None, gt=0, description="Largest change from the last confirmed setpoint (ramp guard)"
    )
    read_write_multiple: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Write + read-back as one request (Modbus function 23): auto = if the device "
        "answers it at connect",
    )
    revert_timeout_s: int | None = Field(
        None, ge=0, description="WSetRvrtTms written at connect (0 = never revert; None = keep)"
    )
    plausibility: PlausibilityConfig = PlausibilityConfig()


class SunSpecMeterConfig(SunSpecModbusConfig):
    """A PCC meter (SunSpec model 211, or 201) over Modbus TCP."""

    name: str = "meter"
    rated_power_kw: float = Field(25.0, gt=0, description="Connection rating, for plausibility")
    plausibility: PlausibilityConfig = PlausibilityConfig()


class SunSpecPvInverterConfig(SunSpecModbusConfig):
    """A PV inverter (SunSpec models 1, 701, 702, 714 with a PV port) over Modbus TCP; read only."""

    name: str = "pv_inverter"
    plausibility: PlausibilityConfig = PlausibilityConfig()


class EvChargerConfig(LinkConfig):
    """Peer B's bidirectional charger over OPC UA (node set in labspec.ev_charger)."""

    name: str = "ev_charger"
    url: str = "opc.tcp://127.0.0.1:4840"
    timeout_s: float = Field(2.0, gt=0, le=60)
    security: Literal["none", "Basic256Sha256"] = "none"
    username: str | None = None
    password_env: str | None = Field(
        None, description="Name of the environment variable holding the user's password"
    )
    certificate_path: Path | None = Field(
        None, description="Client certificate (DER or PEM); generated beside the key if missing"
    )
    private_key_path: Path | None = None
    server_certificate_path: Path | None = Field(
        None,
        description="The charger's own certificate (DER or PEM): the only one accepted (pinned)",
    )
    trust_dir: Path | None = Field(
        None,
        description="Folder of trusted certificates (DER or PEM): the charger's own, or the CA "
        "that issued it; any other server certificate is refused",
    )
    write_status_and_timestamps: bool = Field(
        False,
        description="Send a Good status code and a source timestamp with each written value "
        "(off: the value alone, which every server takes; PLC-based ones refuse the rest)",
    )
    max_nodes_per_read: int | None = Field(
        None, ge=1, description="Most variables per Read (else the server's MaxNodesPerRead)"
    )
    limits_every_reads: int = Field(
        30,
        ge=1,
        description="Read the charger's limit variables every this many reads (1 = always)",
    )
    max_charge_kw: float | None = Field(None, gt=0, description="Cap on charging (else device)")
    max_discharge_kw: float | None = Field(None, ge=0, description="Cap on V2G (else device)")
    max_step_kw: float | None = Field(None, gt=0)
    soc_min_pct: float | None = Field(
        None, ge=0, le=100, description="Else MinSocPct/ReserveSocPct"
    )
    soc_max_pct: float | None = Field(None, ge=0, le=100, description="Else MaxSocPct")
    plausibility: PlausibilityConfig = PlausibilityConfig()

    @model_validator(mode="after")
    def _secure_needs_user(self) -> Self:
        if self.security != "none" and (self.username is None or self.password_env is None):
            raise ValueError(
                f"security={self.security!r} needs username and password_env "
                f"(got username={self.username!r}, password_env={self.password_env!r})"
            )
        return self

    @model_validator(mode="after")
    def _trust_needs_security(self) -> Self:
        trust = {
            "server_certificate_path": self.server_certificate_path,
            "trust_dir": self.trust_dir,
        }
        for key, value in trust.items():
            if value is not None and self.security == "none":
                raise ValueError(f"{key}={str(value)!r} needs security='Basic256Sha256'")
        return self


class ScpiDialect(_Config):
    """What SCPI instruments of different vendors do differently (docs/instruments.md).

    Headers always go out fully qualified (`:MEAS:POW?;:MEAS:VOLT?`, SCPI-1999 6.2.4), and
    answers are understood in long or short form (`POWER` or `POW`) and with or without a unit
    suffix (`0.0W`, `1.5KW`): no option is needed for those."""

    answer_separator: Literal["semicolon", "newline"] = Field(
        "semicolon",
        description="How the answers to several queries in one message come back: joined by ';' "
        "on one line (IEEE 488.2), or each on its own line",
    )
    settle: Literal["opc", "wai", "none"] = Field(
        "opc",
        description="Before a setpoint is read back: '*OPC?' (answered once every setting has "
        "taken effect), '*WAI' (the instrument holds the following queries), or nothing",
    )
    command_units: bool = Field(
        False, description="Send numeric settings with their unit suffix (':POW 1500.0W')"
    )


class ProgrammableLoadConfig(LinkConfig):
    """Peer C's programmable AC electronic load over SCPI (pyvisa, raw TCP socket)."""

    name: str = "load"
    host: str = "127.0.0.1"
    port: int = Field(5025, ge=1, le=65535)
    dialect: ScpiDialect = ScpiDialect()
    max_power_kw: float | None = Field(None, gt=0, description="Cap on consumption (else 3 kW)")
    max_step_kw: float | None = Field(None, gt=0)
    plausibility: PlausibilityConfig = PlausibilityConfig()

    @property
    def resource(self) -> str:
        return f"TCPIP0::{self.host}::{self.port}::SOCKET"
