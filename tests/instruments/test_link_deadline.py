"""A device operation cut by the link's deadline is a timeout, whatever the library raises
when it is cancelled (asyncua's wait_for answers the cancel with a CancelledError subclass when
the device's answer arrived in the same instant; Python 3.11's timeout lets that through)."""

from __future__ import annotations

import asyncio

import pytest

from instruments.errors import DeviceTimeout
from instruments.link import Link, LinkStatus

# asyncua needs wait_for2 on Python < 3.12 only
CancelledWithResultError = pytest.importorskip("wait_for2").CancelledWithResultError


async def _nothing() -> None:
    return None


def _link() -> Link:
    return Link("ev_charger_B", _nothing, _nothing, timeout_s=0.05)


async def _answer_racing_the_cancel() -> float:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        raise CancelledWithResultError(1.5, False) from None  # as wait_for2 does
    return 1.5


def test_a_cancel_answered_with_a_result_is_a_timeout_not_a_crash() -> None:
    async def scenario() -> LinkStatus:
        link = _link()
        await link.connect()
        with pytest.raises(DeviceTimeout, match="no answer to read within 50 ms"):
            await link.run(_answer_racing_the_cancel, "read")
        return link.status

    assert asyncio.run(scenario()) is LinkStatus.LOST


def test_a_cancel_from_outside_still_cancels() -> None:
    async def scenario() -> None:
        link = Link("ev_charger_B", _nothing, _nothing, timeout_s=10.0)
        await link.connect()
        task = asyncio.create_task(link.run(_answer_racing_the_cancel, "read"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert link.status is LinkStatus.CONNECTED

    asyncio.run(scenario())
