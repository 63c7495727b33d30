"""opcua_decode.py reads Publish responses exactly as asyncua does.

Live: a real asyncua server publishes values of every scalar type, with bad and uncertain
status codes, with and without timestamps, many per message; each response the client
receives is decoded by both decoders and compared. Crafted: responses asyncua encodes with
what the fast path leaves to asyncua (arrays, DateTime and LocalizedText values, status
changes, events, diagnostic infos, picoseconds), which must come out as asyncua's objects.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asyncua import Client, Server, ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from collector.sources.opcua_decode import (
    DataChanges,
    check_asyncua,
    data_value_parts,
    decode_publish,
    install,
)
from tests.support.plants import eventually
from tests.support.services import free_port

NS = "urn:linemon:test-decode"
T0 = datetime(2025, 3, 4, 6, 0, 0, 123456, tzinfo=UTC)
SCALARS: dict[ua.VariantType, list[Any]] = {
    ua.VariantType.Boolean: [True, False],
    ua.VariantType.SByte: [-128, 127],
    ua.VariantType.Byte: [0, 255],
    ua.VariantType.Int16: [-32768, 32767],
    ua.VariantType.UInt16: [0, 65535],
    ua.VariantType.Int32: [-(2**31), 2**31 - 1],
    ua.VariantType.UInt32: [0, 2**32 - 1],
    ua.VariantType.Int64: [-(2**63), 2**63 - 1],
    ua.VariantType.UInt64: [0, 2**64 - 1],
    ua.VariantType.Float: [1.5, math.inf],
    ua.VariantType.Double: [-0.0, math.nan],
    ua.VariantType.String: ["ß-ok ✓", ""],
}


def comparable(value: Any) -> Any:
    """A value that compares by type too (True is not 1) and NaN equal to NaN."""
    if isinstance(value, float) and math.isnan(value):
        return (float, "nan")
    if isinstance(value, list | tuple):
        return (type(value), [comparable(v) for v in value])
    return (type(value), value)


def notifications(response: ua.PublishResponse) -> list[Any]:
    out: list[Any] = []
    for n in response.Parameters.NotificationMessage.NotificationData:
        if isinstance(n, DataChanges):
            out.append(("changes", [comparable(v) for v in n]))
        elif isinstance(n, ua.DataChangeNotification):
            out.append(("changes", [comparable((i.ClientHandle, *data_value_parts(i.Value)))
                                    for i in n.MonitoredItems]))
        else:
            out.append(n)
    return out


def rest(response: ua.PublishResponse) -> tuple[Any, ...]:
    p = response.Parameters
    m = p.NotificationMessage
    return (response.TypeId, response.ResponseHeader, p.SubscriptionId,
            p.AvailableSequenceNumbers, p.MoreNotifications, m.SequenceNumber, m.PublishTime,
            p.Results, p.DiagnosticInfos)


def assert_same_as_asyncua(raw: bytes, slow: list[str] | None = None) -> ua.PublishResponse:
    ours = decode_publish(Buffer(raw), None if slow is None else slow.append)
    theirs = struct_from_binary(ua.PublishResponse, Buffer(raw))
    assert rest(ours) == rest(theirs)
    assert notifications(ours) == notifications(theirs)
    return ours


# --- live, against a real asyncua server ------------------------------------------------------

class Plc:
    def __init__(self) -> None:
        self.endpoint = f"opc.tcp://127.0.0.1:{free_port()}/"
        self.server = Server()
        self.nodes: list[tuple[ua.NodeId, ua.VariantType]] = []

    async def start(self, copies: int) -> None:
        await self.server.init()
        self.server.disable_clock(True)
        self.server.set_endpoint(self.endpoint)
        idx = await self.server.register_namespace(NS)
        folder = await self.server.nodes.objects.add_object(ua.NodeId("plc", idx), "plc")
        for n in range(copies):
            for vtype, values in SCALARS.items():
                node = ua.NodeId(f"{vtype.name}.{n}", idx)
                await folder.add_variable(node, node.Identifier, ua.Variant(values[0], vtype))
                self.nodes.append((node, vtype))
        await self.server.start()

    async def write(self, node: ua.NodeId, value: Any, vtype: ua.VariantType, *,
                    status: int = ua.StatusCodes.Good, source: datetime | None = None,
                    server: datetime | None = None) -> None:
        dv = ua.DataValue(ua.Variant(value, vtype), StatusCode=ua.StatusCode(status),
                          SourceTimestamp=source, ServerTimestamp=server)
        await self.server.write_attribute_value(node, dv)


@pytest.fixture
async def plc() -> AsyncIterator[Plc]:
    server = Plc()
    await server.start(copies=15)  # 180 variables: messages of many values
    yield server
    await server.server.stop()


async def recorded_subscription(client: Client, nodes: list[ua.NodeId],
                                timestamps: ua.TimestampsToReturn) -> list[bytes]:
    """Subscribe the raw way the source does; keep every Publish response's bytes."""
    session = client.uaclient.session
    raw: list[bytes] = []
    send = session._send_request

    async def recording_send(request: Any, *args: Any, **kwargs: Any) -> Buffer:
        data = await send(request, *args, **kwargs)
        if isinstance(request, ua.PublishRequest):
            raw.append(bytes(data.copy().read(len(data))))
        return data

    session._send_request = recording_send
    install(session)
    params = ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=20, RequestedLifetimeCount=10_000,
        RequestedMaxKeepAliveCount=100, MaxNotificationsPerPublish=1000,
        PublishingEnabled=True, Priority=0)
    result = await client.uaclient.create_subscription(params, lambda _: None)
    await client.uaclient.create_monitored_items(ua.CreateMonitoredItemsParameters(
        SubscriptionId=result.SubscriptionId, TimestampsToReturn=timestamps,
        ItemsToCreate=[ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=ua.MonitoringParameters(
                ClientHandle=1000 + i, SamplingInterval=0, QueueSize=10, DiscardOldest=True))
            for i, node in enumerate(nodes)]))
    return raw


@pytest.mark.parametrize("timestamps", [ua.TimestampsToReturn.Both, ua.TimestampsToReturn.Source,
                                        ua.TimestampsToReturn.Server,
                                        ua.TimestampsToReturn.Neither])
async def test_live_responses_decode_as_asyncua_decodes_them(
        plc: Plc, timestamps: ua.TimestampsToReturn) -> None:
    async with Client(plc.endpoint, timeout=5) as client:
        raw = await recorded_subscription(client, [n for n, _ in plc.nodes], timestamps)
        # the initial values, in messages of many values
        await eventually(lambda: sum(len(r) for r in raw) > 5_000, 10, "initial values")
        for i, (node, vtype) in enumerate(plc.nodes):
            value = SCALARS[vtype][1]
            at = T0 + timedelta(seconds=i % 7, microseconds=i)
            if i % 5 == 0:
                await plc.write(node, value, vtype, status=ua.StatusCodes.BadCommunicationError,
                                source=at, server=at)
            elif i % 5 == 1:
                await plc.write(node, value, vtype,
                                status=ua.StatusCodes.UncertainLastUsableValue, source=at)
            elif i % 5 == 2:
                await plc.write(node, value, vtype, server=at)  # no source timestamp
            elif i % 5 == 3:
                await plc.write(node, value, vtype, source=datetime(1601, 1, 1, tzinfo=UTC))
            else:
                await plc.write(node, value, vtype, source=at, server=at)
        seen = len(raw)
        await eventually(lambda: len(raw) > seen + 3, 10, "the changes")
        await asyncio.sleep(0.1)
    changes = 0
    for message in list(raw):
        response = assert_same_as_asyncua(message)
        for n in response.Parameters.NotificationMessage.NotificationData:
            assert isinstance(n, DataChanges), "a value of these types took asyncua's path"
            changes += len(n)
    assert changes >= 2 * len(plc.nodes)  # initial values and the writes, all compared


async def test_the_source_gets_what_asyncua_would_give(plc: Plc) -> None:
    """Through PushedValues: statuses and timestamps per value, in order."""
    from collector.sources.opcua_subscription import ItemSettings, PushedValues

    queue: asyncio.Queue[list[Any]] = asyncio.Queue()
    async with Client(plc.endpoint, timeout=5) as client:
        feed = PushedValues[str](client, 20, queue, lambda why: None)
        nodes = plc.nodes[:12]
        created = await feed.start([(node, vtype.name, ItemSettings(0, 10, None))
                                    for node, vtype in nodes])
        assert created == 12
        got: list[Any] = []

        async def drain(n: int) -> None:
            while len(got) < n:
                got.extend(await asyncio.wait_for(queue.get(), 5))

        await drain(12)  # initial values
        node, vtype = nodes[5]  # Int32
        await plc.write(node, 7, vtype, status=ua.StatusCodes.BadSensorFailure, source=T0)
        await plc.write(node, 8, vtype, status=ua.StatusCodes.UncertainInitialValue, server=T0)
        await plc.write(node, 9, vtype, source=T0 + timedelta(seconds=1))
        await drain(15)
    assert [g[0] for g in got[:12]] == [vtype.name for _, vtype in nodes]
    assert got[12] == ("Int32", None, ua.StatusCodes.BadSensorFailure, T0)  # Bad: no value
    assert got[13][:3] == ("Int32", 8, ua.StatusCodes.UncertainInitialValue)
    assert got[13][3] == T0  # no source timestamp: the server's
    assert got[14] == ("Int32", 9, ua.StatusCodes.Good, T0 + timedelta(seconds=1))


async def test_a_response_left_to_asyncua_is_reported_and_still_delivered(plc: Plc) -> None:
    """An array value takes asyncua's decoder: the source hears about it (to count it in
    /metrics) and the value still arrives."""
    from collector.sources.opcua_subscription import ItemSettings, PushedValues

    idx = await plc.server.get_namespace_index(NS)
    folder = plc.server.get_node(ua.NodeId("plc", idx))
    array = await folder.add_variable(ua.NodeId("array", idx), "array",
                                      ua.Variant([1, 2, 3], ua.VariantType.Int32))
    queue: asyncio.Queue[list[Any]] = asyncio.Queue()
    slow: list[str] = []
    async with Client(plc.endpoint, timeout=5) as client:
        feed = PushedValues[str](client, 20, queue, lambda why: None, slow.append)
        assert await feed.start([(array.nodeid, "array", ItemSettings(0, 10, None))]) == 1
        got = await asyncio.wait_for(queue.get(), 5)
    assert [(g[0], g[1]) for g in got] == [("array", [1, 2, 3])]
    assert slow, "the slow path must be reported"


# --- crafted responses: what the fast path leaves to asyncua ------------------------------------

def response(*data: Any, results: list[ua.StatusCode] | None = None) -> bytes:
    message = ua.NotificationMessage(SequenceNumber=42, PublishTime=T0,
                                     NotificationData=list(data))
    params = ua.PublishResult(SubscriptionId=7, AvailableSequenceNumbers=[40, 41, 42],
                              MoreNotifications=False, NotificationMessage=message,
                              Results=results or [], DiagnosticInfos=[])
    return struct_to_binary(ua.PublishResponse(Parameters=params))


def change(*values: ua.DataValue, diagnostics: list[ua.DiagnosticInfo] | None = None
           ) -> ua.DataChangeNotification:
    return ua.DataChangeNotification(
        MonitoredItems=[ua.MonitoredItemNotification(ClientHandle=i, Value=v)
                        for i, v in enumerate(values)],
        DiagnosticInfos=diagnostics or [])


def dv(value: Any, vtype: ua.VariantType, **kw: Any) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value, vtype), **kw)


def test_plain_values_with_picoseconds_and_acknowledgement_results_take_the_fast_path() -> None:
    raw = response(
        change(dv(1.25, ua.VariantType.Double, SourceTimestamp=T0, SourcePicoseconds=7,
                  ServerTimestamp=T0, ServerPicoseconds=9),
               ua.DataValue(),  # nothing at all: no value, good, no timestamps
               ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadNoCommunication)),
               dv(None, ua.VariantType.String, ServerTimestamp=T0)),
        results=[ua.StatusCode(ua.StatusCodes.BadSequenceNumberUnknown)])
    slow: list[str] = []
    ours = assert_same_as_asyncua(raw, slow)
    assert slow == []
    (data,) = ours.Parameters.NotificationMessage.NotificationData
    assert isinstance(data, DataChanges)
    assert list(data) == [(0, 1.25, 0, T0), (1, None, 0, None),
                          (2, None, ua.StatusCodes.BadNoCommunication, None), (3, None, 0, T0)]


@pytest.mark.parametrize("value", [
    dv([1, 2, 3], ua.VariantType.Int32),
    dv(T0, ua.VariantType.DateTime),
    dv(ua.LocalizedText("running", "en"), ua.VariantType.LocalizedText),
    dv(b"\x00\x01", ua.VariantType.ByteString),
])
def test_other_variants_are_left_to_asyncua(value: ua.DataValue) -> None:
    raw = response(change(dv(3, ua.VariantType.Int32), value))
    slow: list[str] = []
    ours = assert_same_as_asyncua(raw, slow)
    (data,) = ours.Parameters.NotificationMessage.NotificationData
    assert isinstance(data, ua.DataChangeNotification)
    assert len(slow) == 1 and slow[0], "the slow path must be reported, with its reason"

    def broken(_why: str) -> None:
        raise RuntimeError("a bug in the counting")

    assert notifications(decode_publish(Buffer(raw), broken)) == notifications(ours)


def test_status_changes_events_and_diagnostics_come_out_as_asyncua_objects() -> None:
    status = ua.StatusChangeNotification(Status=ua.StatusCode(ua.StatusCodes.BadTimeout))
    events = ua.EventNotificationList(Events=[ua.EventFieldList(
        ClientHandle=3, EventFields=[ua.Variant("hello"), ua.Variant(5, ua.VariantType.Int32)])])
    raw = response(change(dv(True, ua.VariantType.Boolean)), status, events)
    ours = assert_same_as_asyncua(raw)
    data = ours.Parameters.NotificationMessage.NotificationData
    assert [type(d) for d in data] == [DataChanges, ua.StatusChangeNotification,
                                       ua.EventNotificationList]
    with_diagnostics = response(change(dv(1, ua.VariantType.Int32),
                                       diagnostics=[ua.DiagnosticInfo(SymbolicId=3)]))
    ours = assert_same_as_asyncua(with_diagnostics)
    assert isinstance(ours.Parameters.NotificationMessage.NotificationData[0],
                      ua.DataChangeNotification)


def test_invalid_utf8_and_keepalives_decode_as_asyncua_decodes_them() -> None:
    assert_same_as_asyncua(response())  # a keep-alive: no notification data
    raw = response(change(dv("x", ua.VariantType.String)))
    raw = raw.replace(b"\x01\x00\x00\x00x", b"\x01\x00\x00\x00\xff")  # the String's bytes
    ours = assert_same_as_asyncua(raw)
    assert ours.Parameters.NotificationMessage.NotificationData[0][0][1] == "\udcff"


def test_asyncua_still_has_what_the_decoder_relies_on() -> None:
    check_asyncua()
