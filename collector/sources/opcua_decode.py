"""PublishResponse decoding for the subscription path: DataChangeNotifications go straight
to (client handle, value, status code, timestamp) tuples.

asyncua decodes every value of a notification into a MonitoredItemNotification, a
DataValue, a Variant and a StatusCode, and both of its timestamps into datetimes, through
its generic dataclass decoder: about 12 µs per value, more than the rest of linemon's
ingest. `decode_publish` reads the DataChangeNotification bodies itself, with
`struct.unpack_from` over the bytes, in about 1.1 µs per value, and leaves the rest of the
message (header, acknowledgement results, status changes, events) to asyncua's decoder.

Only what linemon meets in practice takes the fast path: scalar Null, Boolean, integers,
Float, Double and String variants, without diagnostic infos. Any other shape (an array, a
DateTime or LocalizedText value, a NodeId encoding other than ns=0 numeric, a length that
does not add up) makes the whole message go through asyncua's own `struct_from_binary`,
so nothing is ever decoded differently from asyncua: the values, the status codes and
the timestamps are the ones asyncua would give (`tests/collector/test_opcua_decode.py`
checks both paths against a real asyncua server, message by message).

`install(session)` makes one asyncua `UaSession` use it for its Publish responses: its
publish loop, acknowledgements and error handling stay asyncua's. It relies on
`UaSession.publish` and `_send_request` (asyncua 2.x; `check_asyncua()` fails loudly if
they are gone).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from datetime import datetime
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import (
    extensionobject_from_binary,
    from_binary,
    get_string_encoding,
    struct_from_binary,
)
from asyncua.ua.uaerrors import UaStructParsingError

# (client handle, value, StatusCode.value, SourceTimestamp or else ServerTimestamp or None)
Change = tuple[int, Any, int, datetime | None]

_DATA_CHANGE = ua.NodeId(ua.ObjectIds.DataChangeNotification_Encoding_DefaultBinary)
_HANDLE_MASK = struct.Struct("<IB")
_INT32 = struct.Struct("<i")
_UINT32 = struct.Struct("<I")
_INT64 = struct.Struct("<q")
# Variant built-in type id -> its struct (the formats asyncua's Primitives use)
_SCALARS: dict[int, struct.Struct] = {
    1: struct.Struct("<?"),   # Boolean
    2: struct.Struct("<b"),   # SByte
    3: struct.Struct("<B"),   # Byte
    4: struct.Struct("<h"),   # Int16
    5: struct.Struct("<H"),   # UInt16
    6: struct.Struct("<i"),   # Int32
    7: struct.Struct("<I"),   # UInt32
    8: struct.Struct("<q"),   # Int64
    9: struct.Struct("<Q"),   # UInt64
    10: struct.Struct("<f"),  # Float
    11: struct.Struct("<d"),  # Double
}
_STRING = 12
# DataValue encoding mask bits
_VALUE, _STATUS, _SOURCE_TS, _SERVER_TS, _SOURCE_PS, _SERVER_PS = 1, 2, 4, 8, 16, 32


class DataChanges(list[Change]):
    """The values of one DataChangeNotification, in the order the server sent them."""

    __slots__ = ()


class _Unusual(Exception):
    """Not a shape the fast path reads: asyncua decodes the message."""


def decode_publish(data: Buffer, on_slow: Callable[[str], None] | None = None
                   ) -> ua.PublishResponse:
    """A PublishResponse whose DataChangeNotifications are `DataChanges`. `on_slow` hears why
    a response went to asyncua's own decoder (~10x the CPU a value) instead."""
    whole = data.copy()
    try:
        return _decode(data)
    except Exception as err:  # _Unusual, or bytes the fast path misreads: asyncua decides
        why = str(err) or type(err).__name__
    response = struct_from_binary(ua.PublishResponse, whole)
    if on_slow is not None:
        with contextlib.suppress(Exception):  # counting must never cost the values
            on_slow(why)
    return response


def _decode(data: Buffer) -> ua.PublishResponse:
    # the field types of asyncua's PublishResponse, PublishResult and NotificationMessage
    type_id = from_binary(ua.NodeId, data)
    header = from_binary(ua.ResponseHeader, data)
    subscription_id = from_binary(ua.IntegerId, data)
    available = from_binary(list[ua.Counter], data)
    more = from_binary(ua.Boolean, data)
    sequence = from_binary(ua.Counter, data)
    publish_time = from_binary(ua.UtcTime, data)
    notifications: list[Any] = []
    for _ in range(from_binary(ua.Int32, data)):
        notifications.append(_notification(data))
    results = from_binary(list[ua.StatusCode], data)
    diagnostics = from_binary(list[ua.DiagnosticInfo], data)
    if len(data):
        raise _Unusual("bytes left after the PublishResponse")
    message = ua.NotificationMessage(SequenceNumber=sequence, PublishTime=publish_time,
                                     NotificationData=notifications)
    result = ua.PublishResult(SubscriptionId=subscription_id, AvailableSequenceNumbers=available,
                              MoreNotifications=more, NotificationMessage=message,
                              Results=results, DiagnosticInfos=diagnostics)
    return ua.PublishResponse(TypeId=type_id, ResponseHeader=header, Parameters=result)


def _notification(data: Buffer) -> Any:
    """One ExtensionObject of NotificationData."""
    peek = data.copy()
    type_id = from_binary(ua.NodeId, peek)
    if type_id != _DATA_CHANGE or from_binary(ua.Byte, peek) != 1:
        # StatusChangeNotification, EventNotificationList ...: asyncua's decoder
        return extensionobject_from_binary(data)
    length = from_binary(ua.Int32, peek)
    if length < 0:
        raise _Unusual("DataChangeNotification without a length")
    body = bytes(peek.read(length))
    data.skip(len(data) - len(peek))
    return read_data_changes(body)


def read_data_changes(body: bytes) -> DataChanges:
    """The body of a DataChangeNotification: MonitoredItems, then DiagnosticInfos."""
    unpack_handle, unpack_i32, unpack_u32 = (_HANDLE_MASK.unpack_from, _INT32.unpack_from,
                                             _UINT32.unpack_from)
    unpack_i64, scalars = _INT64.unpack_from, _SCALARS
    times: dict[int, datetime] = {}  # a message's values mostly share a few timestamps
    to_datetime = _to_datetime
    out = DataChanges()
    append = out.append
    (count,) = unpack_i32(body, 0)
    pos = 4
    for _ in range(count):
        handle, mask = unpack_handle(body, pos)
        pos += 5
        value = None
        if mask & _VALUE:
            vtype = body[pos]
            pos += 1
            scalar = scalars.get(vtype)
            if scalar is not None:
                (value,) = scalar.unpack_from(body, pos)
                pos += scalar.size
            elif vtype == _STRING:
                (length,) = unpack_i32(body, pos)
                pos += 4
                if length < -1:
                    raise _Unusual("negative string length")
                if length >= 0:
                    if pos + length > len(body):
                        raise _Unusual("string runs past the notification")
                    value = body[pos : pos + length].decode(get_string_encoding(),
                                                            errors="surrogateescape")
                    pos += length
                # else: a null String, None as asyncua gives it
            elif vtype != 0:  # an array, or a type the fast path does not read
                raise _Unusual(f"variant encoding {vtype:#x}")
        status = 0
        if mask & _STATUS:
            (status,) = unpack_u32(body, pos)
            pos += 4
        ts = None
        if mask & _SOURCE_TS:
            (raw,) = unpack_i64(body, pos)
            pos += 8
            ts = times.get(raw)
            if ts is None:
                ts = times[raw] = to_datetime(raw)
        if mask & _SOURCE_PS:
            pos += 2
        if mask & _SERVER_TS:
            (raw,) = unpack_i64(body, pos)
            pos += 8
            if ts is None:
                ts = times.get(raw)
                if ts is None:
                    ts = times[raw] = to_datetime(raw)
        if mask & _SERVER_PS:
            pos += 2
        append((handle, value, status, ts))
    (diagnostics,) = unpack_i32(body, pos)
    if diagnostics > 0:
        raise _Unusual("diagnostic infos")
    if pos + 4 != len(body):
        raise _Unusual("DataChangeNotification length does not add up")
    return out


def data_value_parts(dv: ua.DataValue) -> tuple[Any, int, datetime | None]:
    """(value, StatusCode.value, SourceTimestamp or else ServerTimestamp) of an asyncua
    DataValue: what `DataChanges` holds for a value, from asyncua's own decoder."""
    variant, status = dv.Value, dv.StatusCode
    return (variant.Value if variant is not None else None,
            status.value if status is not None else 0,
            dv.SourceTimestamp or dv.ServerTimestamp)


def _to_datetime(raw: int) -> datetime:
    return ua.win_epoch_to_datetime(raw)


def check_asyncua() -> None:
    """Fail loudly if asyncua no longer has what `install` relies on."""
    from asyncua.client.ua_session import UaSession

    for name in ("publish", "_send_request", "_publish_loop"):
        if not callable(getattr(UaSession, name, None)):
            raise RuntimeError(f"asyncua's UaSession has no {name}(): update opcua_decode.py")


def install(session: Any, on_slow: Callable[[str], None] | None = None) -> Callable[..., Any]:
    """Make `session` (an asyncua UaSession) decode its Publish responses with
    `decode_publish`; returns the new `publish`."""

    async def publish(acks: list[ua.SubscriptionAcknowledgement]) -> ua.PublishResponse:
        # asyncua's UaSession.publish, with the decoder swapped
        request = ua.PublishRequest()
        request.Parameters.SubscriptionAcknowledgements = acks if acks else []
        data = await session._send_request(request, timeout=0)
        try:
            return decode_publish(data, on_slow)
        except Exception as ex:
            session.logger.exception("Error parsing notification from server")
            raise UaStructParsingError from ex

    session.publish = publish  # the instance attribute shadows the method for this session
    return publish
