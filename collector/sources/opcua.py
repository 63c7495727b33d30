"""OPC-UA source (asyncua): subscriptions or batched polling, with a watchdog.

Nodes are configured by namespace URI and resolved to an index at every connect (a server
restart may renumber namespaces). Each connection gets a fresh session and fresh monitored
items; nothing is carried over, so a restart cannot leave duplicate monitored items
behind. A watchdog reads the server's CurrentTime: a server that keeps TCP open but stops
answering is dropped within watchdog_interval_s + timeout_s. Values wait for the consumer
(bounded queue, see opcua_subscription.py); none is dropped on the client side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asyncua import Client, ua

from collector.sources.base import (
    Emit,
    RateLimitedLog,
    SourceConfigError,
    SourceDisconnected,
    SourceStats,
    register,
)
from collector.sources.opcua_decode import data_value_parts
from collector.sources.opcua_security import apply_security
from collector.sources.opcua_subscription import ItemSettings, PushedValues
from collector.sources.payload import Rejected, coercer
from collector.sources.screening import TagScreen
from collector.sources.supervisor import mark_connected
from linemon.config import LineConfig, MachineConfig, OpcUaSourceConfig, PlantConfig, resolve_secret
from linemon.model import Quality, Sample, Value

log = logging.getLogger("linemon.source.opcua")
QUEUE_BATCHES = 64  # notification messages (each at most 1000 values) waiting for the spool
BATCH = 5_000
SERVER_CURRENT_TIME = ua.NodeId(ua.ObjectIds.Server_ServerStatus_CurrentTime)
_LIBRARY_ERRORS = (OSError, TimeoutError, ua.UaError, ConnectionError)
_REFUSALS = {ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenInvalid,
             ua.StatusCodes.BadIdentityTokenRejected, ua.StatusCodes.BadCertificateUntrusted,
             ua.StatusCodes.BadCertificateInvalid, ua.StatusCodes.BadSecurityPolicyRejected}


@dataclass(frozen=True, slots=True)
class _Tag:
    machine: str
    signal: str
    type: str
    settings: ItemSettings
    # coerce(value, type), picked once per tag (payload.coercer): it runs for every value
    coerce: Callable[[object], Value] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "coerce", coercer(self.type))


# (tag, value, StatusCode.value, SourceTimestamp or else ServerTimestamp or None): what the
# subscription decodes (opcua_decode.py) and what polling makes of each DataValue
Values = list[tuple[_Tag, Any, int, datetime | None]]
_SEVERITY = 0xC000_0000  # a StatusCode's top two bits: 00 good, 01 uncertain, 1x bad
_UNCERTAIN = 0x4000_0000


class _Lost:
    """Why the connection is gone, set by whoever notices first."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()


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
        self.tags: dict[str, _Tag] = {}
        for _, machine in machines:
            for signal, tag in machine.tags.items():
                assert tag.node is not None  # checked when the config was loaded
                settings = ItemSettings(tag.sampling_interval_ms, tag.queue_size, tag.deadband)
                self.tags[tag.node] = _Tag(machine.id, signal, tag.type, settings)
        self._log = RateLimitedLog(log)
        self.screen = TagScreen(self.name, self.stats, self._log,
                                [(t.machine, t.signal) for t in self.tags.values()],
                                {m.id: m.counter_max for _, m in machines})
        self._user = resolve_secret(config.username_env, f"sources[{self.name}].username_env")
        self._password = resolve_secret(config.password_env, f"sources[{self.name}].password_env")

    def outage(self, at: datetime) -> list[Sample]:
        return self.screen.outage(at)

    async def run(self, emit: Emit) -> None:
        cfg = self.config
        client = Client(cfg.endpoint, timeout=cfg.timeout_s,
                        watchdog_intervall=cfg.watchdog_interval_s)
        client.application_uri = "urn:linemon:collector"
        client.description = client.name = f"linemon {self.name}"
        lost = _Lost()

        async def on_lost(exc: Exception) -> None:
            lost.set(f"connection lost: {exc!r}")

        client.connection_lost_callback = on_lost
        if self._user:
            client.set_user(self._user)
            client.set_password(self._password or "")
        await apply_security(client, cfg.endpoint, cfg.security)
        try:
            await client.connect()
        except ua.UaStatusCodeError as err:
            if err.code in _REFUSALS:  # retrying soon will not change the server's mind
                raise SourceConfigError(f"{cfg.endpoint} refused the session: {err!r} (check "
                                        "the user, the certificate and the server's trust "
                                        "list)") from err
            raise SourceDisconnected(f"cannot connect to {cfg.endpoint}: {err!r}") from err
        except _LIBRARY_ERRORS as err:
            raise SourceDisconnected(f"cannot connect to {cfg.endpoint}: {err!r}") from err
        queue: asyncio.Queue[Values] = asyncio.Queue(QUEUE_BATCHES)
        tasks: list[asyncio.Task[Any]] = []
        try:
            nodes = await self._resolve(client)
            if cfg.mode == "subscription":
                await self._subscribe(client, nodes, queue, lost)
            else:
                tasks.append(asyncio.create_task(self._poll(client, nodes, queue)))
            tasks.append(asyncio.create_task(self._watchdog(client, lost)))
            mark_connected(self, datetime.now(UTC))
            log.info("source %s: connected to %s, %d tags (%s)", self.name, cfg.endpoint,
                     len(nodes), cfg.mode)
            while True:
                values = await _next_values(queue, lost, tasks)
                samples = self.screen.screen(self._to_samples(values))
                if samples:
                    await emit(samples)
                    self.stats.emitted += len(samples)
        except _LIBRARY_ERRORS as err:
            raise SourceDisconnected(f"{cfg.endpoint}: {err!r}") from err
        finally:
            self.stats.monitored_items = 0
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), timeout=2)

    def _slow_decode(self, why: str) -> None:
        self.stats.slow_decodes += 1
        self._log.warning("slow_decode", "source %s: a Publish response went to asyncua's own "
                          "decoder (%d so far; ~10x the CPU a value): %s", self.name,
                          self.stats.slow_decodes, why[:200])

    async def _resolve(self, client: Client) -> list[tuple[ua.NodeId, _Tag]]:
        indexes: dict[str, int] = {}
        nodes = []
        for address, tag in self.tags.items():
            ns_part, id_part = address.split(";", 1)
            if ns_part.startswith("nsu="):
                uri = ns_part[4:]
                if uri not in indexes:
                    try:
                        indexes[uri] = await client.get_namespace_index(uri)
                    except ValueError as err:
                        raise SourceDisconnected(f"server has no namespace {uri!r}") from err
                ns_part = f"ns={indexes[uri]}"
            nodes.append((ua.NodeId.from_string(f"{ns_part};{id_part}"), tag))
        return nodes

    async def _subscribe(self, client: Client, nodes: list[tuple[ua.NodeId, _Tag]],
                         queue: asyncio.Queue[Values], lost: _Lost) -> None:
        feed = PushedValues[_Tag](client, self.config.publishing_interval_ms, queue, lost.set,
                                  self._slow_decode)
        created = await feed.start([(node, tag, tag.settings) for node, tag in nodes])
        self.stats.monitored_items = created
        for tag, status in feed.refused:
            self._log.warning(f"refused:{tag.machine}.{tag.signal}", "source %s: server refused "
                              "to monitor %s.%s: %s", self.name, tag.machine, tag.signal, status)
        if not created:
            raise SourceDisconnected("the server refused every monitored item")

    async def _poll(self, client: Client, nodes: list[tuple[ua.NodeId, _Tag]],
                    queue: asyncio.Queue[Values]) -> None:
        chunk = self.config.max_nodes_per_read
        last: dict[ua.NodeId, Any] = {}
        while True:
            started = asyncio.get_running_loop().time()
            for first in range(0, len(nodes), chunk):
                part = nodes[first : first + chunk]
                results = await client.uaclient.read_attributes([n for n, _ in part],
                                                                ua.AttributeIds.Value)
                changed = []
                for (node, tag), dv in zip(part, results, strict=True):
                    key = (dv.Value.Value if dv.Value else None, dv.SourceTimestamp,
                           dv.StatusCode)
                    if last.get(node) != key:  # polling reports changes only, like a subscription
                        last[node] = key
                        changed.append((tag, *data_value_parts(dv)))
                if changed:
                    await queue.put(changed)  # waits while the consumer is behind
            elapsed = asyncio.get_running_loop().time() - started
            await asyncio.sleep(max(0.0, self.config.poll_interval_ms / 1000 - elapsed))

    async def _watchdog(self, client: Client, lost: _Lost) -> None:
        node = client.get_node(SERVER_CURRENT_TIME)
        while True:
            await asyncio.sleep(self.config.watchdog_interval_s)
            try:
                await asyncio.wait_for(node.read_value(), timeout=self.config.timeout_s)
            except Exception as err:
                lost.set(f"watchdog: the server did not answer within "
                         f"{self.config.timeout_s:g}s ({err!r})")
                return

    def _to_samples(self, values: Values) -> list[Sample]:
        # One pass with the lookups hoisted: this runs for every value the server sends.
        received = datetime.now(UTC)
        stats, name, heard = self.stats, self.name, self.stats.last_message_at
        good, bad = Quality.GOOD, Quality.BAD
        samples = []
        stats.received += len(values)
        for tag, raw, status, source_ts in values:
            if source_ts is None:
                source_ts = received
            elif source_ts.tzinfo is None:
                source_ts = source_ts.replace(tzinfo=UTC)
            quality = good
            # Code 0 is Good itself, nearly every value's; the severity bits say the rest.
            if status and status & _SEVERITY:
                quality = Quality.UNCERTAIN if status & _SEVERITY == _UNCERTAIN else bad
            if quality is bad:
                # A Bad value is never used as a value; the sample only carries the quality.
                samples.append(Sample(tag.machine, tag.signal, 0, source_ts, received, quality,
                                      name))
                continue
            heard[tag.machine] = received
            try:
                value = tag.coerce(raw)
            except Rejected as err:
                stats.rejected[err.reason] += 1
                self._log.warning(err.reason, "source %s: %s.%s rejected: %s", name,
                                  tag.machine, tag.signal, err)
                continue
            samples.append(Sample(tag.machine, tag.signal, value, source_ts, received, quality,
                                  name))
        return samples


async def _next_values(queue: asyncio.Queue[Values], lost: _Lost,
                       tasks: list[asyncio.Task[Any]]) -> Values:
    """Everything queued so far; once the queue is empty and the connection is lost (or the
    poller failed), SourceDisconnected. Values that arrived before the loss still go out."""
    while queue.empty():
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise SourceDisconnected(f"polling failed: {task.exception()!r}")
        if lost.event.is_set():
            raise SourceDisconnected(lost.reason)
        get = asyncio.ensure_future(queue.get())
        wake = asyncio.ensure_future(lost.event.wait())
        running = {t for t in tasks if not t.done()}
        done, _ = await asyncio.wait({get, wake, *running}, return_when=asyncio.FIRST_COMPLETED)
        wake.cancel()
        if get in done:
            values = get.result()
            break
        get.cancel()  # an item it had not taken yet stays in the queue
    else:
        values = queue.get_nowait()
    while not queue.empty() and len(values) < BATCH:
        values += queue.get_nowait()
    return values
