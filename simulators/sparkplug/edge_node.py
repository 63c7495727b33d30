"""Sparkplug B edge node: one per line (edge node id = line id, device id = machine id).

- NBIRTH on every connect: `bdSeq`, `Node Control/Rebirth`; then one DBIRTH per machine with
  every metric by name, alias, datatype, value and timestamp.
- DDATA per machine and instant, metrics by alias only.
- `seq` 0..255 wrapping, 0 on NBIRTH; `bdSeq` goes up by one per MQTT connection.
- NDEATH (with the connection's bdSeq) is the MQTT will, and is published before a clean stop.
- NCMD `Node Control/Rebirth` = true re-sends NBIRTH and the DBIRTHs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from google.protobuf.message import DecodeError

from simulators.mqtt.link import MqttLink
from simulators.mqtt.sink import MqttSink
from simulators.signals import SIGNALS, Change, Value
from simulators.sparkplug import schema
from simulators.sparkplug.schema import Payload

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
BD_SEQ = "bdSeq"
REBIRTH_ALIAS = 1
_DATATYPE = {"int32": schema.INT32, "uint32": schema.UINT32, "double": schema.DOUBLE}
_DATATYPE["string"] = schema.STRING
_TAG = {s.name: s for s in SIGNALS}


class SparkplugEdgeNode(MqttSink):
    def __init__(
        self,
        *,
        host: str,
        port: int,
        group_id: str,
        edge_node_id: str,
        machines: Mapping[str, str],
        snapshot: Iterable[Change],
        now_ms,
        client_id: str | None = None,
    ) -> None:
        super().__init__(machines, snapshot)
        self.group_id = group_id
        self.edge_node_id = edge_node_id
        self._now_ms = now_ms
        self.bd_seq = 0
        self._next_bd_seq = 0
        self.seq = 0
        self.births = 0
        self.aliases: dict[tuple[str, str], int] = {}
        alias = 10
        for machine in self.machines:
            for spec in SIGNALS:
                self.aliases[(machine, spec.name)] = alias
                alias += 1
        self.mqtt = MqttLink(
            host,
            port,
            client_id or f"linemon-sim-{group_id}-{edge_node_id}",
            on_connected=self.birth,
            on_message=self._command,
            subscriptions=(self.topic("NCMD"),),
            will=self._next_will,
        )

    def links(self) -> list[MqttLink]:
        return [self.mqtt]

    def topic(self, kind: str, device: str | None = None) -> str:
        base = f"{NAMESPACE}/{self.group_id}/{kind}/{self.edge_node_id}"
        return base if device is None else f"{base}/{device}"

    # -- births and deaths -----------------------------------------------------

    def birth(self) -> None:
        now = self._now_ms()
        self.seq = 0
        nbirth = Payload(timestamp=now, seq=0)
        _metric(nbirth, BD_SEQ, None, schema.UINT64, self.bd_seq, now)
        _metric(nbirth, REBIRTH, REBIRTH_ALIAS, schema.BOOLEAN, False, now)
        self.mqtt.publish(self.topic("NBIRTH"), nbirth.SerializeToString())
        for machine, signals in self.mirror.items():
            dbirth = Payload(timestamp=now, seq=self._next_seq())
            for spec in SIGNALS:
                if spec.name not in signals:
                    continue
                value, t_ms = signals[spec.name]
                metric = _metric(
                    dbirth,
                    spec.tag,
                    self.aliases[(machine, spec.name)],
                    _DATATYPE[spec.kind],
                    value,
                    t_ms,
                )
                if spec.unit:
                    metric.properties.keys.append("engUnit")
                    metric.properties.values.add(type=schema.STRING, string_value=spec.unit)
            self.mqtt.publish(self.topic("DBIRTH", machine), dbirth.SerializeToString())
        self.births += 1

    def death_payload(self, bd_seq: int) -> bytes:
        ndeath = Payload(timestamp=self._now_ms())
        _metric(ndeath, BD_SEQ, None, schema.UINT64, bd_seq, None)
        return ndeath.SerializeToString()

    def _next_will(self) -> tuple[str, bytes]:
        """Called before every connect: the new connection's bdSeq and its NDEATH."""
        self.bd_seq = self._next_bd_seq
        self._next_bd_seq = (self._next_bd_seq + 1) % 256
        return self.topic("NDEATH"), self.death_payload(self.bd_seq)

    def last_words(self, link: MqttLink) -> list[tuple[str, bytes]]:
        return [(self.topic("NDEATH"), self.death_payload(self.bd_seq))]

    # -- data ------------------------------------------------------------------

    def send(self, t_ms: int, changes: list[Change]) -> None:
        if not self.mqtt.online:
            return
        by_machine: dict[str, list[Change]] = {}
        for c in changes:
            by_machine.setdefault(c.machine, []).append(c)
        for machine, mine in by_machine.items():
            ddata = Payload(timestamp=t_ms, seq=self._next_seq())
            for c in mine:
                spec = _TAG[c.signal]
                _metric(
                    ddata, None, self.aliases[(machine, c.signal)], None, c.value, c.t_ms, spec.kind
                )
            self.mqtt.publish(self.topic("DDATA", machine), ddata.SerializeToString())

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def _command(self, topic: str, data: bytes) -> None:
        try:
            payload = Payload.FromString(data)
        except DecodeError:
            log.warning("edge node %s: undecodable NCMD on %s", self.edge_node_id, topic)
            return
        for metric in payload.metrics:
            wanted = metric.name == REBIRTH or (not metric.name and metric.alias == REBIRTH_ALIAS)
            if wanted and metric.boolean_value and self.mqtt.online:
                self.birth()
                return


def _metric(
    payload,
    name: str | None,
    alias: int | None,
    datatype: int | None,
    value: Value | bool,
    t_ms: int | None,
    kind: str | None = None,
):
    metric = payload.metrics.add()
    if name is not None:
        metric.name = name
    if alias is not None:
        metric.alias = alias
    if datatype is not None:
        metric.datatype = datatype
    if t_ms is not None:
        metric.timestamp = t_ms
    kind = kind or {v: k for k, v in _DATATYPE.items()}.get(datatype or 0, "")
    if isinstance(value, bool):
        metric.boolean_value = value
    elif datatype == schema.UINT64:
        metric.long_value = int(value)
    elif kind in ("int32", "uint32"):
        metric.int_value = int(value) & 0xFFFFFFFF
    elif kind == "double":
        metric.double_value = float(value)
    else:
        metric.string_value = str(value)
    return metric
