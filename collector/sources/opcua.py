"""OPC-UA source (asyncua): subscriptions or batched polling, with a watchdog.

Nodes are configured by namespace URI and resolved to an index at every connect
(a server restart may renumber namespaces). Each connection gets a fresh
session and fresh monitored items; nothing is carried over, so a restart can't
leave duplicate monitored items behind. A watchdog reads the server's
CurrentTime: a server that keeps TCP open but stops answering is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua import Client, Node, ua
from asyncua.crypto import security_policies

from collector.sources.base import (
    Emit,
    RateLimitedLog,
    SourceConfigError,
    SourceDisconnected,
    SourceStats,
    register,
)
from collector.sources.payload import Rejected, coerce
from collector.sources.supervisor import close_gap
from linemon.config import LineConfig, MachineConfig, OpcUaSourceConfig, PlantConfig, resolve_secret
from linemon.model import Quality, Sample

log = logging.getLogger("linemon.source.opcua")
QUEUE_SIZE = 50_000
DEPRECATED_POLICIES = {"Basic256", "Basic128Rsa15"}
SERVER_CURRENT_TIME = ua.NodeId(2258)


@dataclass(frozen=True, slots=True)
class _Binding:
    machine: str
    signal: str
    type: str
    sampling_interval_ms: int | None
    deadband: float | None


@register("opcua")
class OpcUaSource:
    def __init__(
        self,
        config: OpcUaSourceConfig,
        plant: PlantConfig,
        machines: list[tuple[LineConfig, MachineConfig]],
    ) -> None:
        self.config = config
        self.name = config.name
        self.stats = SourceStats()
        self.machines = [m.id for _, m in machines]
        self.tags: dict[str, _Binding] = {}
        for _, machine in machines:
            for signal, tag in machine.tags.items():
                assert tag.node is not None  # checked when the config was loaded
                self.tags[tag.node] = _Binding(
                    machine.id, signal, tag.type, tag.sampling_interval_ms, tag.deadband
                )
        self._log = RateLimitedLog(log)
        sec = config.security
        if sec.policy in DEPRECATED_POLICIES and not sec.allow_deprecated:
            raise SourceConfigError(
                f"source {self.name}: security policy {sec.policy} is deprecated; "
                "set security.allow_deprecated: true to use it anyway"
            )
        self._user = resolve_secret(config.username_env, f"sources[{self.name}].username_env")
        self._password = resolve_secret(config.password_env, f"sources[{self.name}].password_env")

    async def run(self, emit: Emit) -> None:
        client = Client(self.config.endpoint, timeout=self.config.timeout_s)
        client.application_uri = "urn:linemon:collector"
        lost: asyncio.Queue[str] = asyncio.Queue()

        async def on_lost(exc: Exception) -> None:
            lost.put_nowait(f"connection lost: {exc!r}")

        client.connection_lost_callback = on_lost
        if self._user:
            client.set_user(self._user)
            client.set_password(self._password or "")
        await self._secure(client)
        try:
            await client.connect()
        except (OSError, TimeoutError, ua.UaError) as err:
            raise SourceDisconnected(f"cannot connect to {self.config.endpoint}: {err!r}") from err
        queue: asyncio.Queue[list[Sample]] = asyncio.Queue(QUEUE_SIZE)
        tasks: list[asyncio.Task[Any]] = []
        try:
            nodes = await self._resolve(client)
            if self.config.mode == "subscription":
                await self._subscribe(client, nodes, queue)
            else:
                tasks.append(asyncio.create_task(self._poll(client, nodes, queue)))
            tasks.append(asyncio.create_task(self._watchdog(client, lost)))
            self.stats.connected = True
            close_gap(self, datetime.now(UTC))
            log.info("source %s: connected to %s, %d tags", self.name, self.config.endpoint,
                     len(nodes))
            while True:
                if not lost.empty():
                    raise SourceDisconnected(lost.get_nowait())
                batch = await _next_batch(queue, lost)
                if batch is None:
                    raise SourceDisconnected(lost.get_nowait())
                await emit(batch)
                self.stats.emitted += len(batch)
        except (OSError, TimeoutError, ua.UaError, ConnectionError) as err:
            raise SourceDisconnected(f"{self.config.endpoint}: {err!r}") from err
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), timeout=2)

    async def _secure(self, client: Client) -> None:
        sec = self.config.security
        if sec.policy == "None":
            return
        if sec.certificate is None or sec.private_key is None:
            raise SourceConfigError(f"source {self.name}: policy {sec.policy} needs "
                                    "security.certificate and security.private_key")
        if not sec.trusted_server_certificates:
            raise SourceConfigError(f"source {self.name}: no trusted server certificate; "
                                    "linemon does not trust on first use")
        policy = getattr(security_policies, f"SecurityPolicy{sec.policy}")
        mode = getattr(ua.MessageSecurityMode, sec.mode)
        server_cert = sec.trusted_server_certificates[0]
        try:
            await client.set_security(policy, str(sec.certificate), str(sec.private_key),
                                      server_certificate=str(server_cert), mode=mode)
        except (OSError, ValueError) as err:
            raise SourceConfigError(f"source {self.name}: cannot load certificates: {err}") from err

    async def _resolve(self, client: Client) -> dict[Node, _Binding]:
        indexes: dict[str, int] = {}
        nodes: dict[Node, _Binding] = {}
        for address, binding in self.tags.items():
            ns_part, id_part = address.split(";", 1)
            if ns_part.startswith("nsu="):
                uri = ns_part[4:]
                if uri not in indexes:
                    try:
                        indexes[uri] = await client.get_namespace_index(uri)
                    except ValueError as err:
                        raise SourceDisconnected(f"server has no namespace {uri!r}") from err
                ns_part = f"ns={indexes[uri]}"
            nodes[client.get_node(f"{ns_part};{id_part}")] = binding
        return nodes

    async def _subscribe(self, client: Client, nodes: dict[Node, _Binding],
                         queue: asyncio.Queue[list[Sample]]) -> None:
        handler = _DataChangeHandler(self, nodes, queue)
        sub = await client.create_subscription(self.config.publishing_interval_ms, handler)
        results = []
        for node, binding in nodes.items():
            mfilter = None
            if binding.deadband:
                mfilter = ua.DataChangeFilter(
                    Trigger=ua.DataChangeTrigger.StatusValueTimestamp,
                    DeadbandType=ua.DeadbandType.Absolute.value,
                    DeadbandValue=binding.deadband,
                )
            interval = binding.sampling_interval_ms
            results.append(await sub._subscribe(
                node, mfilter=mfilter, queuesize=100,
                sampling_interval=float(interval if interval is not None else 0),
            ))
        bad = [r for r in results if isinstance(r, ua.StatusCode)]
        if bad:
            log.warning("source %s: %d monitored items refused: %s", self.name, len(bad), bad[0])

    async def _poll(self, client: Client, nodes: dict[Node, _Binding],
                    queue: asyncio.Queue[list[Sample]]) -> None:
        node_list = list(nodes)
        last: dict[Node, Any] = {}
        while True:
            values = await client.read_attributes(node_list, ua.AttributeIds.Value)
            received = datetime.now(UTC)
            batch = []
            for node, dv in zip(node_list, values, strict=True):
                key = (dv.Value.Value if dv.Value else None, dv.SourceTimestamp, dv.StatusCode)
                if last.get(node) == key:
                    continue  # polling reports changes only, like a subscription
                last[node] = key
                sample = self._to_sample(nodes[node], dv, received)
                if sample is not None:
                    batch.append(sample)
            if batch:
                await queue.put(batch)
            await asyncio.sleep(self.config.poll_interval_ms / 1000)

    async def _watchdog(self, client: Client, lost: asyncio.Queue[str]) -> None:
        node = client.get_node(SERVER_CURRENT_TIME)
        while True:
            await asyncio.sleep(self.config.watchdog_interval_s)
            try:
                await asyncio.wait_for(node.read_value(), timeout=self.config.timeout_s)
            except Exception as err:
                lost.put_nowait(f"watchdog: server did not answer ({err!r})")
                return

    def _to_sample(self, binding: _Binding, dv: ua.DataValue, received: datetime) -> Sample | None:
        self.stats.received += 1
        status = dv.StatusCode
        source_ts = dv.SourceTimestamp or dv.ServerTimestamp or received
        if source_ts.tzinfo is None:
            source_ts = source_ts.replace(tzinfo=UTC)
        quality = Quality.GOOD
        if status is not None and not status.is_good():
            quality = Quality.UNCERTAIN if status.is_uncertain() else Quality.BAD
        self.stats.last_message_at[binding.machine] = received
        if quality is Quality.BAD:
            # A Bad value is never used as a value; the sample only carries the quality.
            return Sample(binding.machine, binding.signal, 0, source_ts, received, quality,
                          self.name)
        raw = dv.Value.Value if dv.Value is not None else None
        try:
            value = coerce(raw, binding.type)
        except Rejected as err:
            self.stats.rejected[err.reason] += 1
            self._log.warning(err.reason, "source %s: %s.%s rejected: %s", self.name,
                              binding.machine, binding.signal, err)
            return None
        return Sample(binding.machine, binding.signal, value, source_ts, received, quality,
                      self.name)


class _DataChangeHandler:
    def __init__(self, source: OpcUaSource, nodes: dict[Node, _Binding],
                 queue: asyncio.Queue[list[Sample]]) -> None:
        self.source, self.nodes, self.queue = source, nodes, queue

    def datachange_notification(self, node: Node, _val: Any, data: Any) -> None:
        binding = self.nodes.get(node)
        if binding is None:
            return
        sample = self.source._to_sample(binding, data.monitored_item.Value, datetime.now(UTC))
        if sample is None:
            return
        try:
            self.queue.put_nowait([sample])
        except asyncio.QueueFull:
            self.source.stats.rejected["queue_full"] += 1

    def status_change_notification(self, status: Any) -> None:
        self.source._log.warning("status", "source %s: subscription status %s",
                                 self.source.name, status)


async def _next_batch(queue: asyncio.Queue[list[Sample]],
                      lost: asyncio.Queue[str]) -> list[Sample] | None:
    """Everything queued so far as one batch, or None when the connection is lost."""
    if queue.empty():
        get = asyncio.ensure_future(queue.get())
        gone = asyncio.ensure_future(_wait_nonempty(lost))
        done, _ = await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
        if get not in done:
            get.cancel()
            return None
        gone.cancel()
        batch = get.result()
    else:
        batch = queue.get_nowait()
    while not queue.empty() and len(batch) < 5000:
        batch += queue.get_nowait()
    return batch


async def _wait_nonempty(q: asyncio.Queue[str]) -> None:
    item = await q.get()
    q.put_nowait(item)
