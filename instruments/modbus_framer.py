"""Modbus TCP answers matched by transaction id, whatever unit id they carry.

The Modbus TCP implementation guide (V1.0b, 4.4.2) has a device addressed directly over TCP
ignore the unit identifier (255 recommended; 0 is used too), and real devices and gateways
answer with 255, 0 or their own address whatever the request carried. pymodbus 3.16 drops an
answer whose unit id differs from the request's ("Skipping") and so waits until its timeout.
`TransactionFramer` checks the transaction identifier, which is what pairs an answer with its
request on TCP, and hands the answer on as the request's own; the unit id the device used is
kept in `answered_unit_ids` (for diagnostics and tests). Installed on the client's transaction
manager (`install`); the frames on the wire are pymodbus's.
"""

from __future__ import annotations

from typing import Any

from pymodbus.framer import FramerSocket
from pymodbus.pdu import ModbusPDU


class TransactionFramer(FramerSocket):
    """pymodbus's Modbus TCP framer, matching answers by transaction id only."""

    answered_unit_ids: set[int]

    def handleFrame(
        self, data: bytes, exp_devid: int, exp_tid: int
    ) -> tuple[int, ModbusPDU | None]:
        used, pdu = super().handleFrame(data, 0, exp_tid)  # 0: any unit id
        if pdu is not None:
            self.answered_unit_ids.add(pdu.dev_id)
            pdu.dev_id = exp_devid  # the answer to the request with this transaction id
        return used, pdu


def install(client: Any) -> TransactionFramer:
    """Put a `TransactionFramer` (with the client's decoder) on a pymodbus TCP client."""
    framer = TransactionFramer(client.ctx.framer.decoder)
    framer.answered_unit_ids = set()
    client.ctx.framer = framer
    return framer
