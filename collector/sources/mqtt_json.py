"""JSON over MQTT: which topic feeds which machine's signal, and redelivered messages.

A tag names one topic, in which `{line}` and `{machine}` stand for the machine's ids
(`plant/{line}/{machine}/state_code`), so one tag map serves many machines. Such a tag is
subscribed with `+` in those levels: a message for a machine this source does not know is
then refused as `unknown_machine`, and a user sees it in the counters instead of nowhere.
"""

from __future__ import annotations

import re
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.sources.base import SourceStats
from collector.sources.payload import FieldBinding, Rejected, decode, parse_json
from linemon.config import LineConfig, MachineConfig
from linemon.model import Sample

PLACEHOLDERS = {"{line}": "line", "{machine}": "machine"}
# More than a broker redelivers at once: linemon asks for at most RECEIVE_MAXIMUM messages in
# flight (MQTT 5), and a publisher's own re-send window is smaller still.
REMEMBER_PER_TOPIC = 256
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PAIR = struct.Struct("<qQ")  # microseconds since the epoch, seq
_pack_pair_into = _PAIR.pack_into  # bound once: this runs for every message
_PAIR_BYTES = _PAIR.size
_RING_BYTES = REMEMBER_PER_TOPIC * _PAIR_BYTES
MICROSECOND = timedelta(microseconds=1)


class JsonTopics:
    """Decoder for `format: json`: topic -> field bindings -> samples."""

    def __init__(self, source: str, machines: list[tuple[LineConfig, MachineConfig]],
                 stats: SourceStats) -> None:
        self.source = source
        self.stats = stats
        self.bindings: dict[str, list[FieldBinding]] = {}
        self._filters: set[str] = set()
        self._templates: dict[str, re.Pattern[str]] = {}
        for line, machine in machines:
            for signal, tag in machine.tags.items():
                assert tag.topic is not None  # checked when the config was loaded
                topic = tag.topic.replace("{line}", line.id).replace("{machine}", machine.id)
                ts_field = tuple(tag.ts_field.split(".")) if tag.ts_field else None
                binding = FieldBinding(
                    machine.id, signal, tuple(tag.field.split(".")), ts_field, tag.type
                )
                self.bindings.setdefault(topic, []).append(binding)
                self._filters.add(_filter(tag.topic) or topic)
                if topic != tag.topic:
                    self._templates[tag.topic] = _pattern(tag.topic)
        self._seen: dict[str, _Recent] = {}

    def subscriptions(self) -> list[str]:
        return sorted(self._filters)

    def connected(self, session_present: bool) -> None:
        """Nothing to do: a JSON publisher has no births to ask for."""

    def take_commands(self) -> list[tuple[str, bytes]]:
        return []

    def decode(self, topic: str, payload: bytes, received: datetime) -> list[Sample]:
        bindings = self.bindings.get(topic)
        if bindings is None:
            raise self._unknown(topic)
        document = parse_json(payload)
        samples = decode(document, bindings, received, self.source)
        if isinstance(document, dict) and self._redelivered(topic, document, samples[0]):
            self.stats.duplicates += 1
            return []
        return samples

    def _unknown(self, topic: str) -> Rejected:
        for template, pattern in self._templates.items():
            match = pattern.fullmatch(topic)
            if match:
                names = ", ".join(f"{k} {v!r}" for k, v in match.groupdict().items())
                return Rejected("unknown_machine", f"{names} (topic {template})")
        return Rejected("unknown_topic", topic)

    def _redelivered(self, topic: str, document: dict[str, Any], sample: Sample) -> bool:
        """A redelivered message repeats its `seq` and its timestamp.

        Checked against the last REMEMBER_PER_TOPIC messages of the topic, not only the
        newest: publishers do reorder (paho sends new messages before the ones it re-sends
        after a reconnect), and a late message is news, not a duplicate. A restarted
        publisher starts its seq again, with new timestamps. Without a seq, or without a
        timestamp in the payload, nothing is treated as a duplicate (at least once).
        """
        seq = document.get("seq")
        stamped = sample.source_ts is not sample.received_ts  # decode() uses received if no ts
        if not stamped or not isinstance(seq, int) or isinstance(seq, bool):
            return False
        seen = self._seen.get(topic)
        if seen is None:
            seen = self._seen[topic] = _Recent()
        micros = (sample.source_ts - EPOCH) // MICROSECOND
        return not seen.add(micros, seq & 0xFFFF_FFFF_FFFF_FFFF)


class _Recent:
    """The identities of the last REMEMBER_PER_TOPIC messages of one topic.

    (timestamp, seq) pairs packed in a ring of bytes, allocated once and searched with
    `bytearray.find` (1.8 µs to find a repeat among 256, measured). Thousands of topics keep
    256 each: as 128-bit ints in a deque they took 12.9 KiB a topic (tracemalloc; 40 bytes
    an int, plus the deque's blocks), packed 4.3 KiB. The ring is whole from the topic's
    first message on, so a topic takes more than the deque did for its first ~80 messages
    and less from then on.
    """

    __slots__ = ("_filled", "_micros", "_next", "_ring", "_seq")

    def __init__(self) -> None:
        self._ring = bytearray(_RING_BYTES)
        self._next = 0  # the byte offset the next pair is written at
        self._filled = 0  # bytes written, up to the ring's size
        # The largest identity ever added. Identities grow with the timestamp, so a message
        # in order is larger and cannot be a repeat: the search is left for reordered ones.
        self._micros = -1 << 63
        self._seq = -1

    def add(self, micros: int, seq: int) -> bool:
        """Remember the message stamped `micros` (since the epoch) with the unsigned 64-bit
        `seq`; False if it was remembered already."""
        if micros > self._micros or (micros == self._micros and seq > self._seq):
            self._micros, self._seq = micros, seq
        elif self._holds(_PAIR.pack(micros, seq)):
            return False
        at = self._next
        _pack_pair_into(self._ring, at, micros, seq)  # not the packed pair: the fast path has none
        at += _PAIR_BYTES
        if at > self._filled:  # until the ring is full once
            self._filled = at
        self._next = at % _RING_BYTES
        return True

    def _holds(self, pair: bytes) -> bool:
        at = self._ring.find(pair, 0, self._filled)
        while at >= 0 and at % _PAIR_BYTES:  # a match astride two pairs is not one
            at = self._ring.find(pair, at - at % _PAIR_BYTES + _PAIR_BYTES, self._filled)
        return at >= 0


def _filter(template: str) -> str | None:
    """The subscription for a templated topic, or None when a placeholder is not a whole level
    (then only the machines' own topics are subscribed)."""
    levels = template.split("/")
    if not any(p in template for p in PLACEHOLDERS):
        return None
    if any(p in level and level != p for level in levels for p in PLACEHOLDERS):
        return None
    return "/".join("+" if level in PLACEHOLDERS else level for level in levels)


def _pattern(template: str) -> re.Pattern[str]:
    regex = re.escape(template)
    for placeholder, name in PLACEHOLDERS.items():
        regex = regex.replace(re.escape(placeholder), f"(?P<{name}>[^/]+)", 1)
        regex = regex.replace(re.escape(placeholder), f"(?P={name})")
    return re.compile(regex)
