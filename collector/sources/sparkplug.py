"""Sparkplug B host application: births, deaths, aliases and `seq`, turned into samples.

- NBIRTH / DBIRTH give each metric's name, alias and datatype (and current value); NDATA /
  DDATA then carry values by alias. A node or device seen without its birth (linemon
  started after it, or missed it) is asked to be born again.
- NDEATH whose bdSeq matches the node's NBIRTH, or DDEATH, makes every bound tag of that
  node or device bad: its machines go offline. A death with an older bdSeq is the will of
  a connection that is already gone and is ignored.
- `seq` runs 0..255 per edge node across all its messages: a jump means messages were
  lost, so the node is asked for a Rebirth (NCMD `Node Control/Rebirth`), at most once per
  REBIRTH_HOLDOFF_S. A message at or behind the current `seq` and not newer than the last
  one is a redelivery (QoS 1 after a reconnect) and is dropped as a duplicate.
- After every (re)connect the host may have missed messages, and its machines were marked
  offline: every node it knows is asked to rebirth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError

from collector.sources.base import RateLimitedLog, SourceStats
from collector.sources.payload import MAX_FUTURE, MAX_PAST, Rejected, coerce
from collector.sources.sparkplug_schema import BD_SEQ, Payload, metric_value, rebirth_request
from linemon.config import LineConfig, MachineConfig
from linemon.model import Quality, Sample

NAMESPACE = "spBv1.0"
KINDS = ("NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA")
REBIRTH_HOLDOFF_S = 2.0

Device = str | None  # None: the edge node itself


@dataclass(frozen=True, slots=True)
class MetricBinding:
    machine: str
    signal: str
    type: str


@dataclass(slots=True)
class _EdgeNode:
    bd_seq: int | None
    seq: int
    last_ts: int
    online: bool = True
    born: set[Device] = field(default_factory=lambda: {None})
    aliases: dict[tuple[Device, int], str] = field(default_factory=dict)
    datatypes: dict[tuple[Device, str], int] = field(default_factory=dict)


class SparkplugHost:
    """Decoder for `format: sparkplug`: one group's edge nodes -> samples."""

    def __init__(self, source: str, group_id: str,
                 machines: list[tuple[LineConfig, MachineConfig]], stats: SourceStats,
                 log: RateLimitedLog) -> None:
        self.source, self.group = source, group_id
        self.stats, self._log = stats, log
        # (edge node, device) -> metric name -> the signals it feeds
        self.bindings: dict[tuple[str, Device], dict[str, list[MetricBinding]]] = {}
        for _, machine in machines:
            for signal, tag in machine.tags.items():
                assert tag.device is not None and tag.metric is not None  # config checked
                edge, _, device = tag.device.partition("/")
                metrics = self.bindings.setdefault((edge, device or None), {})
                metrics.setdefault(tag.metric, []).append(
                    MetricBinding(machine.id, signal, tag.type))
        self._nodes: dict[str, _EdgeNode] = {}
        self._asked: dict[str, float] = {}
        self._commands: list[tuple[str, bytes]] = []

    def subscriptions(self) -> list[str]:
        return [f"{NAMESPACE}/{self.group}/{kind}/#" for kind in KINDS]

    def connected(self, session_present: bool) -> None:
        for edge in {edge for edge, _ in self.bindings} | set(self._nodes):
            self._ask_rebirth(edge, "host (re)connected", force=True)

    def take_commands(self) -> list[tuple[str, bytes]]:
        commands, self._commands = self._commands, []
        return commands

    def decode(self, topic: str, payload: bytes, received: datetime) -> list[Sample]:
        parts = topic.split("/")
        kind = parts[2] if len(parts) > 2 else ""
        device_topic = kind.startswith("D")
        if len(parts) != (5 if device_topic else 4) or kind not in KINDS or parts[1] != self.group:
            raise Rejected("unknown_topic", topic)
        edge, device = parts[3], (parts[4] if device_topic else None)
        try:
            message = Payload.FromString(payload)
        except DecodeError as err:
            raise Rejected("bad_protobuf", f"{topic}: {err}") from None
        if kind == "NBIRTH":
            return self._nbirth(edge, message, received)
        if kind == "NDEATH":
            return self._ndeath(edge, message, received)
        node = self._nodes.get(edge)
        if node is None or not node.online:
            self._ask_rebirth(edge, f"{kind} before its NBIRTH")
            raise Rejected("no_birth", f"{kind} from {edge} without an NBIRTH")
        if self._redelivered(node, message):
            self.stats.duplicates += 1
            return []
        self._follow_seq(edge, node, message)
        if kind == "DBIRTH":
            node.born.add(device)
            for key in [k for k in node.aliases if k[0] == device]:
                del node.aliases[key]
            return self._values(edge, device, node, message, received, birth=True)
        if device not in node.born:
            self._ask_rebirth(edge, f"{kind} from {device} before its DBIRTH")
            raise Rejected("no_birth", f"{kind} from {edge}/{device} without a DBIRTH")
        if kind == "DDEATH":
            node.born.discard(device)
            return self._bad(edge, received, only=device)
        return self._values(edge, device, node, message, received, birth=False)

    # --- births and deaths -----------------------------------------------------------

    def _nbirth(self, edge: str, message: Payload, received: datetime) -> list[Sample]:
        bd_seq = _bd_seq(message)
        old = self._nodes.get(edge)
        if old is not None and old.online and old.bd_seq == bd_seq \
                and message.timestamp <= old.last_ts:
            self.stats.duplicates += 1  # the same birth, redelivered
            return []
        node = self._nodes[edge] = _EdgeNode(bd_seq, message.seq, message.timestamp)
        return self._values(edge, None, node, message, received, birth=True)

    def _ndeath(self, edge: str, message: Payload, received: datetime) -> list[Sample]:
        node = self._nodes.get(edge)
        bd_seq = _bd_seq(message)
        if node is None or not node.online:
            return []
        if bd_seq is not None and node.bd_seq is not None and bd_seq != node.bd_seq:
            self._log.warning("stale_death", "source %s: ignored NDEATH of %s with bdSeq %s "
                              "(current birth has %s)", self.source, edge, bd_seq, node.bd_seq)
            return []
        node.online = False
        node.born.clear()
        return self._bad(edge, received)

    def _bad(self, edge: str, at: datetime, only: Device = None) -> list[Sample]:
        """Every tag bound under `edge` (or `only` under that device) is unknown from `at`."""
        return [
            Sample(b.machine, b.signal, 0, at, at, Quality.BAD, self.source)
            for (e, d), metrics in self.bindings.items() if e == edge and only in (None, d)
            for targets in metrics.values() for b in targets
        ]

    # --- data ------------------------------------------------------------------------

    def _values(self, edge: str, device: Device, node: _EdgeNode, message: Payload,
                received: datetime, *, birth: bool) -> list[Sample]:
        bound = self.bindings.get((edge, device), {})
        samples: list[Sample] = []
        for metric in message.metrics:
            if metric.HasField("alias") and metric.name and birth:
                node.aliases[(device, metric.alias)] = metric.name
            name = metric.name or node.aliases.get((device, metric.alias))
            if name is None:
                self._reject("unknown_alias", f"{edge}/{device}: alias {metric.alias}")
                self._ask_rebirth(edge, f"unknown alias {metric.alias}")
                continue
            if metric.HasField("datatype"):
                node.datatypes[(device, name)] = metric.datatype
            targets = bound.get(name)
            if not targets:
                continue  # a metric no tag uses
            try:
                samples += self._samples(metric, node.datatypes.get((device, name), 0),
                                         message.timestamp, received, targets, birth)
            except Rejected as err:
                self._reject(err.reason, f"{edge}/{device} {name}: {err}")
        return samples

    def _samples(self, metric: Any, datatype: int, message_ts: int, received: datetime,
                 targets: list[MetricBinding], birth: bool) -> list[Sample]:
        t_ms = getattr(metric, "timestamp", 0) or message_ts
        ts = datetime.fromtimestamp(t_ms / 1000, UTC) if t_ms else received
        # A birth carries current values with the time each last changed, however long ago.
        if ts > received + MAX_FUTURE or (not birth and ts < received - MAX_PAST):
            raise Rejected("timestamp_out_of_range", ts.isoformat())
        raw = metric_value(metric, datatype)
        if raw is None:  # null: the node says the value is unknown
            return [Sample(b.machine, b.signal, 0, ts, received, Quality.BAD, self.source)
                    for b in targets]
        return [Sample(b.machine, b.signal, coerce(raw, b.type), ts, received,
                       source=self.source) for b in targets]

    def _redelivered(self, node: _EdgeNode, message: Payload) -> bool:
        expected = (node.seq + 1) % 256
        behind = (node.seq - message.seq) % 256 < 128
        return message.seq != expected and behind and message.timestamp <= node.last_ts

    def _follow_seq(self, edge: str, node: _EdgeNode, message: Payload) -> None:
        expected = (node.seq + 1) % 256
        if message.seq != expected:
            self._ask_rebirth(edge, f"seq {message.seq} where {expected} was due")
        node.seq = message.seq
        node.last_ts = max(node.last_ts, message.timestamp)

    def _ask_rebirth(self, edge: str, why: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._asked.get(edge, -1e9) < REBIRTH_HOLDOFF_S:
            return
        self._asked[edge] = now
        self.stats.rebirth_requests += 1
        self._log.warning(f"rebirth:{edge}", "source %s: asking edge node %s/%s to rebirth (%s)",
                          self.source, self.group, edge, why)
        topic = f"{NAMESPACE}/{self.group}/NCMD/{edge}"
        self._commands.append((topic, rebirth_request(int(time.time() * 1000))))

    def _reject(self, reason: str, detail: str) -> None:
        self.stats.rejected[reason] += 1
        self._log.warning(reason, "source %s: rejected Sparkplug metric: %s: %s", self.source,
                          reason, detail)


def _bd_seq(message: Payload) -> int | None:
    for metric in message.metrics:
        if metric.name == BD_SEQ:
            value = metric_value(metric, metric.datatype)
            return int(value) if isinstance(value, int | float) else None
    return None
