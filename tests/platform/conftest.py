"""A real mosquitto (started by the platform's own `MosquittoBroker` on a free loopback port) with
every peer's key and broker password, and raw MQTT clients to talk to it as a peer would."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest

from testbed.config import TestbedConfig, load_config
from testbed.market.book import Order, Side
from testbed.platform.broker import MosquittoBroker
from testbed.platform.deployment import PlatformDir
from testbed.platform.messages import SignedOrder, Submission
from testbed.platform.operator import OperatorService

REPO = Path(__file__).resolve().parents[2]
INTERVAL = datetime.fromisoformat("2026-03-21T06:00:00+00:00")


@dataclass
class Platform:
    config: TestbedConfig
    folder: PlatformDir
    broker: MosquittoBroker

    def client(self, user: str, password: str | None = None, **kwargs: object) -> aiomqtt.Client:
        """A raw MQTT client as `user` (with its own password unless one is given)."""
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=user,
            password=self.folder.password(user) if password is None else password,
            identifier=f"test-{user}-{id(kwargs)}",
            timeout=10,
            **kwargs,  # type: ignore[arg-type]
        )

    def operator_service(
        self, config: TestbedConfig | None = None, **settings: float
    ) -> OperatorService:
        """An operator on this broker with the platform's registry, password and journal."""
        config = config or self.config
        return OperatorService(
            config,
            self.folder.registry(list(config.peers)),
            self.broker.address,
            self.folder.password("operator"),
            self.folder.journal_path,
            **settings,
        )

    async def start_operator(
        self, config: TestbedConfig | None = None, **settings: float
    ) -> tuple[OperatorService, asyncio.Task[None]]:
        """`operator_service` running and connected; its task, to await after `stop()`."""
        service = self.operator_service(config, **settings)
        task = asyncio.create_task(service.run())
        await service.link.wait_connected(30)
        return service, task

    def signed(
        self, peer: str, index: int = 1, *, side: Side = Side.SELL, signer: str | None = None
    ) -> SignedOrder:
        """`peer`'s order `index` for INTERVAL, signed by `signer`'s key (default: its own)."""
        order = Order(
            order_id=f"{INTERVAL:%Y%m%dT%H%M}-{peer}-{index}",
            peer=peer,
            side=side,
            quantity_kwh=0.5,
            price=5.0,
            interval_start=INTERVAL,
        )
        key = self.folder.peer_key(signer or peer)
        if signer is not None and signer != peer:
            key = type(key)(peer, key.pair)  # signs as `peer` with another peer's key: forged
        return key.sign(order, INTERVAL - timedelta(seconds=120))

    def submission(self, peer: str, *orders: SignedOrder, message_id: str = "") -> Submission:
        return Submission(
            message_id=message_id or f"{peer}-test",
            peer=peer,
            interval_start=INTERVAL,
            orders=list(orders),
            complete=True,
        )


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.fail("mosquitto is missing: apt-get install -y mosquitto (see scripts/setup.sh)")
    config = load_config(REPO / "configs" / "emulated.toml")
    folder = PlatformDir(tmp_path / "platform")
    broker = folder.broker(list(config.peers))
    broker.start()
    folder.write_address(broker.address)
    try:
        yield Platform(config, folder, broker)
    finally:
        broker.stop()


async def next_message(
    messages: AsyncIterator[aiomqtt.Message], timeout_s: float = 30.0
) -> aiomqtt.Message:
    """The next message, or a failure naming the wait (a guard, not a speed assertion)."""
    try:
        return await asyncio.wait_for(anext(messages), timeout_s)
    except TimeoutError:
        pytest.fail(f"no message within {timeout_s} s")


@pytest.fixture
async def operator(platform: Platform) -> AsyncIterator[OperatorService]:
    service, task = await platform.start_operator(gate_wait_s=0.2)
    yield service
    service.stop()
    await task
