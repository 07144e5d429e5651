"""A human participant on the platform (the seed's web application): sign in as a registered peer,
float a bid or an ask for the open interval through the same topics and checks as the peer's
agent, and read the peer's account (its orders with their status, its trades, its wallet).

Runs on the peer's own computer, with its own folder (`keys/peers/<peer>/`: its signing key) and
its broker password; each call opens a short MQTT session of its own (client id
`web-<peer>-<random>`), so the peer's agent keeps its session.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import aiomqtt
from aiomqtt.exceptions import MqttCodeError

from testbed.market.book import Order, Side
from testbed.platform import topics
from testbed.platform.deployment import PlatformDir
from testbed.platform.link import BrokerAddress
from testbed.platform.messages import Account, Ack, MarketStatus, Submission, parse
from testbed.platform.signing import PeerKey

ANSWER_TIMEOUT_S = 30.0
M = TypeVar("M", MarketStatus, Account)


class SignInError(ValueError):
    """The broker refused the peer's credentials, or the peer has no key here."""


@dataclass
class Participant:
    """A signed-in peer (see the module docstring)."""

    peer: str
    password: str
    key: PeerKey
    address: BrokerAddress

    @classmethod
    def sign_in(cls, folder: PlatformDir, peer: str, password: str) -> Participant:
        """The peer, once the broker has accepted its credentials."""
        try:
            key = folder.peer_key(peer)
        except ValueError as error:
            raise SignInError(str(error)) from None
        participant = cls(peer, password, key, folder.address())
        asyncio.run(participant._check())
        return participant

    def _client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=self.peer,
            password=self.password,
            identifier=f"web-{self.peer}-{secrets.token_hex(4)}",
            clean_session=True,
            tls_context=self.address.tls_context(),
            timeout=ANSWER_TIMEOUT_S,
        )

    async def _check(self) -> None:
        try:
            async with self._client():
                pass
        except MqttCodeError as error:
            raise SignInError(f"the broker refused peer {self.peer!r}: {error}") from None

    # -- reading ------------------------------------------------------------------------------

    def market_status(self) -> MarketStatus | None:
        """The operator's retained market status (the open interval), None when there is none."""
        return asyncio.run(self._retained(topics.MARKET_STATUS, MarketStatus))

    def account(self) -> Account | None:
        """The peer's retained account view, None before the operator has one."""
        return asyncio.run(self._retained(topics.account(self.peer), Account))

    async def _retained(self, topic: str, model: type[M]) -> M | None:
        async with self._client() as client:
            await client.subscribe(topic, qos=1)
            try:
                message = await asyncio.wait_for(anext(client.messages), 2.0)
            except TimeoutError:
                return None  # nothing retained yet
            return parse(model, bytes(message.payload or b""))

    # -- ordering -----------------------------------------------------------------------------

    def place_order(
        self,
        side: Side,
        quantity_kwh: float,
        price: float,
        interval_start: datetime | None = None,
        signed_at: datetime | None = None,
    ) -> Ack:
        """Sign and submit one order for `interval_start` (default: the open interval); the
        operator's acknowledgement (accepted, or rejected with the reason)."""
        if interval_start is None:
            status = self.market_status()
            if status is None or status.open_interval is None:
                raise ValueError("no interval is open for orders now")
            interval_start = status.open_interval
        order = Order(
            order_id=f"{interval_start:%Y%m%dT%H%M}-{self.peer}-web{secrets.token_hex(3)}",
            peer=self.peer,
            side=side,
            quantity_kwh=quantity_kwh,
            price=price,
            interval_start=interval_start,
        )
        signed = self.key.sign(order, signed_at or datetime.now(UTC))
        submission = Submission(
            message_id=f"web-{order.order_id}",
            peer=self.peer,
            interval_start=interval_start,
            orders=[signed],
            complete=False,  # a person may send more; the operator does not wait for it
        )
        return asyncio.run(self._submit(submission))

    async def _submit(self, submission: Submission) -> Ack:
        async with self._client() as client:
            await client.subscribe(topics.acks(self.peer), qos=1)
            await client.publish(topics.orders(self.peer), submission.payload(), qos=1)
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                async for message in client.messages:
                    ack = parse(Ack, bytes(message.payload or b""))
                    if ack.in_reply_to == submission.message_id:
                        return ack
        raise TimeoutError("no acknowledgement from the operator")
