"""How a platform role reaches the broker: its address (`BrokerAddress`, `broker.json`) and one
MQTT session that stays up (`Link`, an aiomqtt client that reconnects when the broker goes away).

Sessions are persistent (MQTT 3.1.1, clean session off, a fixed client id), so the broker keeps a
client's subscriptions and queues its QoS 1 messages while it is away, also across a broker
restart (the broker's persistence). Everything is published with QoS 1; a publish that finds the
broker gone waits for the session to come back and is sent again (receivers are idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], Awaitable[None] | None]
ConnectHandler = Callable[[], Awaitable[None]]


class BrokerAddress(BaseModel):
    """Where the broker listens: `tls = true` makes every client use TLS and trust `ca_file`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: Path | None = None

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> BrokerAddress:
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        return context


class LinkRefused(RuntimeError):
    """The broker refused the credentials (wrong user or password, or not authorised)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str


def session_client_id(name: str, credentials: Credentials) -> str:
    """The MQTT client id of the session `name`: the name and a tag that only its password gives.

    A broker lets a new connection with a client id already in use take the session over (MQTT
    3.1.1, 3.1.4-2), and the ACL cannot restrict client ids. With fixed ids any user could
    connect as `operator` and knock the operator off; the tag keeps the id unknown to whoever
    lacks the password, while staying the same across restarts (the persistent session is found
    again)."""
    secret = f"{credentials.username}\0{name}\0{credentials.password}".encode()
    return f"{name}-{hashlib.sha256(secret).hexdigest()[:16]}"


class Link:
    """One persistent MQTT session: subscribes, hands each message to `on_message` in order,
    reconnects after a broker restart and runs `on_connect` again (to resend what is pending)."""

    def __init__(
        self,
        address: BrokerAddress,
        credentials: Credentials,
        client_id: str,
        subscriptions: list[str],
        on_message: MessageHandler,
        *,
        on_connect: ConnectHandler | None = None,
        will: aiomqtt.Will | None = None,
        clean_session: bool = False,
        keepalive_s: int = 60,  # a killed process is seen at once (its socket closes)
        reconnect_s: float = 0.5,
    ) -> None:
        self.address = address
        self.credentials = credentials
        self.client_id = client_id  # the session's name, for the logs
        self.identifier = session_client_id(client_id, credentials)
        self.subscriptions = subscriptions
        self.on_message = on_message
        self.on_connect = on_connect
        self.will = will
        self.clean_session = clean_session
        self.keepalive_s = keepalive_s
        self.reconnect_s = reconnect_s
        self.connected = asyncio.Event()
        self.connections = 0  # how many times the session was (re)established
        self._client: aiomqtt.Client | None = None
        self._closing = False

    def _new_client(self) -> aiomqtt.Client:
        client = aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=self.credentials.username,
            password=self.credentials.password,
            identifier=self.identifier,
            clean_session=self.clean_session,
            will=self.will,
            keepalive=self.keepalive_s,
            max_inflight_messages=1000,
            tls_context=self.address.tls_context(),
            timeout=30,
            # no Nagle delay: a small message written right after another (a result after the
            # market status) would otherwise wait for the broker's TCP ACK, up to 40 ms
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        client.pending_calls_threshold = 1_000_000  # thousands of QoS 1 publishes in flight is fine
        return client

    async def run(self) -> None:
        """Keep the session up until `close`; `LinkRefused` when the broker refuses the user."""
        while not self._closing:
            client = self._new_client()
            try:
                async with client:
                    self._client = client
                    for topic in self.subscriptions:
                        await client.subscribe(topic, qos=1)
                    self.connections += 1
                    self.connected.set()
                    if self.on_connect is not None:
                        asyncio.get_running_loop().create_task(self._run_on_connect())
                    async for message in client.messages:
                        result = self.on_message(str(message.topic), bytes(message.payload or b""))
                        if result is not None:
                            await result
            except MqttConnectError as error:
                if error.rc in (4, 5) or "authori" in str(error).lower():
                    raise LinkRefused(
                        f"broker {self.address.host}:{self.address.port} refused user "
                        f"{self.credentials.username!r}: {error}"
                    ) from None
                log.info("%s: cannot connect (%s); retrying", self.client_id, error)
            except aiomqtt.MqttError as error:
                log.info("%s: connection lost (%s); reconnecting", self.client_id, error)
            finally:
                self.connected.clear()
                self._client = None
            if not self._closing:
                await asyncio.sleep(self.reconnect_s)

    async def _run_on_connect(self) -> None:
        assert self.on_connect is not None
        try:
            await self.on_connect()
        except Exception:  # a failed resend is retried at the next connection
            log.exception("%s: on_connect failed", self.client_id)

    async def wait_connected(self, timeout_s: float = math.inf) -> None:
        await asyncio.wait_for(self.connected.wait(), None if timeout_s == math.inf else timeout_s)

    async def publish(
        self, topic: str, payload: bytes | BaseModel, *, retain: bool = False, qos: int = 1
    ) -> None:
        """Publish until the broker has it (PUBACK), across reconnections."""
        data = (
            payload.model_dump_json().encode("utf-8") if isinstance(payload, BaseModel) else payload
        )
        while not self._closing:
            await self.connected.wait()
            client = self._client
            if client is None:
                await asyncio.sleep(0.05)
                continue
            try:
                await client.publish(topic, data, qos=qos, retain=retain)
                return
            except aiomqtt.MqttError as error:
                log.info("%s: publish to %s failed (%s); retrying", self.client_id, topic, error)
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        """End the session politely (no last will), keeping it on the broker (persistent)."""
        self._closing = True
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                client._client.disconnect()
