"""An OPC-UA subscription whose notifications wait for the consumer: real backpressure.

asyncua's high-level `Subscription` hands each notification to a task of its own (or to a
queue that drops the oldest), so a slow consumer either grows memory or loses values. This
registers its callback with asyncua's publish loop instead (`UaClient.create_subscription`):
the loop awaits the callback and the callback awaits room in the bounded queue. While the
queue is full no new Publish request goes out and the values wait on the server, in each
monitored item's queue (`queue_size`, oldest discarded first when it overflows) — the
server is the buffer, as the protocol intends.

The session decodes its Publish responses with opcua_decode.py: each value arrives as
(tag, value, status code, timestamp), without asyncua's per-value DataValue objects.

It also keeps the monitored items to one session: nothing recreates them behind the
source's back (asyncua's stale-subscription watchdog only knows its own `Subscription`s),
so a reconnect can never leave duplicate monitored items.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from asyncua import Client, ua

from collector.sources.opcua_decode import DataChanges, data_value_parts, install

T = TypeVar("T")
ITEMS_PER_REQUEST = 1000
KEEPALIVE_S = 10.0
DEFAULT_QUEUE_SIZE = 100


@dataclass(frozen=True, slots=True)
class ItemSettings:
    sampling_interval_ms: int | None
    queue_size: int | None
    deadband: float | None


# (tag, value, StatusCode.value, SourceTimestamp or else ServerTimestamp or None)
Value = tuple[T, Any, int, datetime | None]


def tagged(changes: DataChanges, tags: dict[int, T]) -> list[Value[T]]:
    """The values of monitored items still known, with their tags for client handles."""
    return [(tags[handle], value, status, ts) for handle, value, status, ts in changes
            if handle in tags]


class PushedValues(Generic[T]):
    """Monitored items of one subscription; values arrive in `queue` as lists of `Value`."""

    def __init__(self, client: Client, publishing_interval_ms: int,
                 queue: asyncio.Queue[list[Value[T]]],
                 on_status: Callable[[str], None],
                 on_slow_decode: Callable[[str], None] | None = None) -> None:
        self.client = client
        self._on_slow_decode = on_slow_decode
        self.interval_ms = publishing_interval_ms
        self.queue = queue
        self._on_status = on_status
        self._tags: dict[int, T] = {}
        self.refused: list[tuple[T, ua.StatusCode]] = []
        self.revised_ms: dict[int, float] = {}

    async def start(self, items: Sequence[tuple[ua.NodeId, T, ItemSettings]]) -> int:
        """Create the subscription and its items; return how many the server accepted."""
        keepalive = max(1, round(KEEPALIVE_S * 1000 / self.interval_ms))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=self.interval_ms,
            RequestedLifetimeCount=max(10_000, 3 * keepalive),
            RequestedMaxKeepAliveCount=keepalive,
            MaxNotificationsPerPublish=ITEMS_PER_REQUEST,
            PublishingEnabled=True,
            Priority=0,
        )
        install(self.client.uaclient.session, self._on_slow_decode)  # before the publish loop
        result = await self.client.uaclient.create_subscription(params, self._on_publish)
        created = 0
        for first in range(0, len(items), ITEMS_PER_REQUEST):
            chunk = items[first : first + ITEMS_PER_REQUEST]
            requests = [self._request(first + i, node, settings)
                        for i, (node, _, settings) in enumerate(chunk)]
            for i, (_, tag, _) in enumerate(chunk):
                # Known before the request goes out: the server may publish the initial
                # values before it answers CreateMonitoredItems.
                self._tags[first + i] = tag
            results = await self.client.uaclient.create_monitored_items(
                ua.CreateMonitoredItemsParameters(
                    SubscriptionId=result.SubscriptionId,
                    TimestampsToReturn=ua.TimestampsToReturn.Both,
                    ItemsToCreate=requests,
                ))
            for i, ((_, tag, _), res) in enumerate(zip(chunk, results, strict=True)):
                if res.StatusCode.is_good():
                    self.revised_ms[first + i] = res.RevisedSamplingInterval
                    created += 1
                else:
                    del self._tags[first + i]
                    self.refused.append((tag, res.StatusCode))
        return created

    @staticmethod
    def _request(handle: int, node: ua.NodeId,
                 settings: ItemSettings) -> ua.MonitoredItemCreateRequest:
        mfilter = None
        if settings.deadband:
            mfilter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=ua.DeadbandType.Absolute.value,
                DeadbandValue=settings.deadband,
            )
        interval = settings.sampling_interval_ms
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=ua.MonitoringParameters(
                ClientHandle=handle,
                # -1 asks for the publishing interval; 0 for the fastest the server can do
                SamplingInterval=float(interval) if interval is not None else -1.0,
                Filter=mfilter,
                QueueSize=settings.queue_size or DEFAULT_QUEUE_SIZE,
                DiscardOldest=True,
            ),
        )

    async def _on_publish(self, result: ua.PublishResult) -> None:
        values: list[Value[T]] = []
        tags = self._tags
        for notification in result.NotificationMessage.NotificationData or []:
            if type(notification) is DataChanges:  # opcua_decode's fast path
                values += tagged(notification, tags)
            elif isinstance(notification, ua.DataChangeNotification):  # asyncua decoded it
                for item in notification.MonitoredItems:
                    tag = tags.get(item.ClientHandle)
                    if tag is not None:
                        values.append((tag, *data_value_parts(item.Value)))
            elif isinstance(notification, ua.StatusChangeNotification) \
                    and not notification.Status.is_good():  # expired, or the session is gone
                self._on_status(f"subscription ended: {notification.Status.name}")
        if values:
            await self.queue.put(values)  # waits while the consumer is behind: backpressure
