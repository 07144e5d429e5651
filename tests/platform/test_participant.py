"""A person at the peer's computer (the seed's web application) on a real mosquitto with the
operator running: sign in, place a bid through the same checks as an agent, read the account."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testbed.market.book import Side
from testbed.platform import topics
from testbed.platform.messages import MarketStatus
from testbed.platform.operator import OperatorService
from testbed.platform.participant import Participant, SignInError
from tests.platform.conftest import INTERVAL, Platform


async def test_a_signed_in_peer_places_a_bid_and_sees_it_in_its_account(
    platform: Platform, operator: OperatorService
) -> None:
    folder = platform.folder
    with pytest.raises(SignInError, match="refused peer 'C'"):
        await asyncio.to_thread(Participant.sign_in, folder, "C", "not-the-password")
    person = await asyncio.to_thread(Participant.sign_in, folder, "C", folder.password("C"))

    in_window = INTERVAL - timedelta(seconds=300)
    ack = await asyncio.to_thread(person.place_order, Side.BUY, 0.4, 7.5, INTERVAL, in_window)
    assert [s.status for s in ack.statuses] == ["accepted"]
    late = await asyncio.to_thread(person.place_order, Side.BUY, 0.4, 7.5, INTERVAL, INTERVAL)
    assert late.statuses[0].status == "accepted"  # the window closes at the interval's start
    outside = INTERVAL - timedelta(hours=1)
    refused = await asyncio.to_thread(person.place_order, Side.BUY, 0.4, 7.5, INTERVAL, outside)
    assert refused.statuses[0].status == "rejected"
    assert "outside the order window" in (refused.statuses[0].reason or "")

    account = await asyncio.to_thread(person.account)
    assert account is not None and account.peer == "C"
    statuses = {o.order_id: o.status for o in account.orders}
    assert statuses[ack.statuses[0].order_id] == "accepted"
    assert statuses[refused.statuses[0].order_id] == "rejected"
    assert account.wallet_balance == pytest.approx(1000.0)


PAGE = Path(__file__).resolve().parents[2] / "dashboards" / "participant.py"


async def test_the_participants_page_signs_in_and_places_an_order(
    platform: Platform, operator: OperatorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the page as a browser shows it: sign in, float an ask for the open interval, see it."""
    from streamlit.testing.v1 import AppTest

    open_interval = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=5)
    async with platform.client("operator") as op:
        status = MarketStatus(open_interval=open_interval, last_closed_interval=None)
        await op.publish(topics.MARKET_STATUS, status.payload(), qos=1, retain=True)
    monkeypatch.setenv("TESTBED_PLATFORM_DIR", str(platform.folder.root))
    page = AppTest.from_file(str(PAGE), default_timeout=60)
    await asyncio.to_thread(page.run)
    page.text_input[0].input("A")
    page.text_input[1].input(platform.folder.password("A"))
    page.button[0].click()
    await asyncio.to_thread(page.run)
    assert not page.exception, [e.value for e in page.exception]
    assert "Signed in as peer A" in page.caption[0].value
    page.radio[0].set_value("sell")
    page.number_input[0].set_value(0.7)
    page.number_input[1].set_value(4.5)
    page.button[0].click()
    await asyncio.to_thread(page.run)
    assert not page.exception, [e.value for e in page.exception]
    assert page.success and "accepted" in page.success[0].value
    orders = page.dataframe[0].value
    assert list(orders["side"]) == ["sell"] and list(orders["quantity_kwh"]) == [0.7]
    assert list(orders["status"]) == ["accepted"]
