"""How the emulated plant is served: the `[servers]` table of the plant's TOML file.

Which devices there are, their ports (0 = a free port picked at start), unit ids and SunSpec base
addresses come from the site file; everything listens on `host` (loopback by default), whatever
hosts the site names. `ev_charger` holds the emulated chargers' server-side OPC UA settings.
Secrets are never in the file: the OPC UA password is read from the environment variable named by
the site's device (`opcua.password_env`) or by `ev_charger.password_env`.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hil_sim.config import ConfigError, PlantConfig, describe_validation_error
from labspec.site import OpcUaEndpoint

DEFAULT_PASSWORD_ENV = "HIL_SIM_OPCUA_PASSWORD"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class OpcUaSettings(_Section):
    """The emulated EV chargers' OPC UA servers: security (at least what the site asks for)."""

    security: Literal["none", "sign_and_encrypt"] = "none"
    username: str = Field("lab", min_length=1)
    password_env: str = Field(DEFAULT_PASSWORD_ENV, min_length=1)
    certificate: Path | None = None  # server certificate (DER or PEM); generated when absent
    private_key: Path | None = None
    cert_dir: Path | None = None  # where a generated certificate is kept (a temp folder if unset)
    # folder of trusted client certificates (DER or PEM; or the CA that issued them), read at each
    # connect; any other client certificate is refused. Unset: any is accepted (a warning).
    trusted_clients: Path | None = None


class PortSettings(_Section):
    port: int = Field(0, ge=0, le=65535)


class ServersConfig(_Section):
    """Every server of the emulated plant and how its clock runs."""

    host: str = "127.0.0.1"
    realtime: bool = False  # False: lockstep (time moves only by `advance`)
    step_s: float = Field(1.0, gt=0, le=3600)  # realtime mode: plant step per wall-clock step
    ev_charger: OpcUaSettings = OpcUaSettings()
    control: PortSettings = PortSettings()

    @field_validator("host")
    @classmethod
    def _ip_address(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"must be an IP address such as 127.0.0.1, got {v!r}") from None
        return v


def load_config(path: str | Path) -> tuple[PlantConfig, ServersConfig]:
    """Read `[plant]` and `[servers]` from one TOML file; problems raise one ConfigError."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"plant", "servers"})
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key; allowed: plant, servers")
    for table in ("plant", "servers"):
        if not isinstance(data.get(table, {}), dict):
            raise ConfigError(f"{path}: {table} = {data[table]!r}: must be a table")
    try:
        plant = PlantConfig.from_mapping(data.get("plant", {}), base_dir=path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        servers = ServersConfig.model_validate(data.get("servers", {}))
    except ValidationError as exc:
        message = describe_validation_error(exc, "servers", ServersConfig)
        raise ConfigError(f"{path}: {message}") from None
    return plant, servers


def check_secrets(servers: ServersConfig, opcua_password: str | None = None) -> None:
    """Fail early when a secured OPC UA endpoint has no password in its environment variable, or
    its trust list of client certificates is not a folder."""
    ev = servers.ev_charger
    if ev.security != "none" and not (opcua_password or os.environ.get(ev.password_env)):
        raise ConfigError(
            f"servers.ev_charger.security = {ev.security!r} needs a password in the "
            f"environment variable {ev.password_env}"
        )
    folder = ev.trusted_clients
    if ev.security != "none" and folder is not None and not Path(folder).is_dir():
        raise ConfigError(
            f"servers.ev_charger.trusted_clients = {str(folder)!r}: not a folder "
            "(it holds the trusted client certificates; create it, it may start empty)"
        )


def charger_security(servers: ServersConfig, device: OpcUaEndpoint) -> tuple[str, str, str]:
    """(mode, username, password variable) of an emulated charger: secured when the site's device
    or the servers' settings ask for it."""
    ev = servers.ev_charger
    secured = ev.security != "none" or device.security != "none"
    mode = "sign_and_encrypt" if secured else "none"
    return mode, device.username or ev.username, device.password_env or ev.password_env
