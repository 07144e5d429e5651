"""asyncua values built from plain Python values, typed.

asyncua annotates a NodeId's identifier and namespace with its marker classes (`ua.Int32`,
`ua.String`, `ua.Int16`) and a DataValue's timestamps with `ua.DateTime`, while the library takes,
and itself passes, plain int, str and datetime. These constructors take the plain values and
carry the one ignore each of those annotations needs.
"""

from __future__ import annotations

from datetime import datetime

from asyncua import ua


def ua_node_id(identifier: int | str, namespace: int = 0) -> ua.NodeId:
    """A numeric or string NodeId in `namespace`."""
    return ua.NodeId(identifier, namespace)  # type: ignore[arg-type]  # asyncua's marker classes


def ua_data_value(value: ua.Variant, timestamp: datetime) -> ua.DataValue:
    """A value with `timestamp` as its source and server timestamp (naive: UTC to asyncua)."""
    return ua.DataValue(value, SourceTimestamp=timestamp, ServerTimestamp=timestamp)  # type: ignore[arg-type]  # asyncua's marker class
