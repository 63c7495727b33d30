"""An MQTT load publisher for the sustained bench: JSON {value, ts, seq} per signal, QoS 1.

    python -m bench.loadgen --port 1883 --machines 0:25 --of 50 --rate 5000 --seconds 600 \
        --out counts.json

Publishes the rig's plant (bench/rig.py: `plant/<line>/<machine>/<signal>`, ten signals a
machine) at a fixed total rate, spread evenly over its topics, in 5 ms batches. Every topic
has its own `seq` (1, 2, ...); the last seq of each topic is what was published. Runs until
`--seconds` have passed or SIGTERM, then waits for every PUBACK and writes the counts:
{"topics": {topic: last_seq}, "published": n, "acked": n, "seconds": s, "cpu_s": s,
 "behind_max": n}. `behind_max` is the most messages the publisher ever owed its schedule
(it falls behind when it cannot keep the rate).

A load generator, not a client under test: it speaks MQTT 3.1.1 itself on a plain socket
(CONNECT, QoS 1 PUBLISH, PUBACK, DISCONNECT; TCP_NODELAY), because paho-mqtt costs about
115 us of CPU per QoS 1 message here (measured: 2 paho publishers at 5,000 msg/s took
1.15 cores), which on a 2-CPU machine would take the CPU linemon is being measured on.
What the broker and linemon see is the same: QoS 1 messages from a v3.1.1 client.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import socket
import struct
import threading
import time
from pathlib import Path

from bench.harness import cpu_seconds, nodelay
from bench.rig import TAGS, machine_ids

TICK_S = 0.005
MAX_UNACKED = 30_000  # packet ids are 16 bit: never reuse one still in flight


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + varint(len(body)) + body


def utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


class RawPublisher:
    """QoS 1 publishes on one socket; a reader thread counts the PUBACKs."""

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        nodelay(self.sock)
        # CONNECT: MQTT 3.1.1, clean session, keepalive 0 (no pings needed)
        self.sock.sendall(packet(0x10, utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0)
                                 + utf8(client_id)))
        connack = self._read_exact(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise SystemExit(f"loadgen: CONNACK refused: {connack!r}")
        self.sock.settimeout(None)
        self.acked = 0
        self.sent = 0
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return buf

    def _read_acks(self) -> None:
        pending = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            # Only PUBACKs (0x40 0x02 id id) come back on a publish-only 3.1.1 session.
            whole = len(pending) // 4
            for i in range(whole):
                if pending[4 * i] != 0x40:
                    raise RuntimeError(f"unexpected packet from the broker: {pending[4 * i]:#x}")
            self.acked += whole
            pending = pending[4 * whole:]

    def publish_many(self, items: list[tuple[bytes, bytes]]) -> None:
        buf = bytearray()
        for topic, payload in items:
            self.sent += 1
            pid = self.sent % 65535 + 1
            buf += packet(0x32, topic + struct.pack("!H", pid) + payload)
        self.sock.sendall(buf)

    def close(self) -> None:
        self.sock.sendall(bytes([0xE0, 0]))
        self.sock.close()


def topics_for(indexes: range, of: int) -> list[tuple[str, str, str]]:
    """(topic, signal, machine) for the machines `indexes` of a plant of `of` machines."""
    plant = machine_ids(of)
    return [(f"plant/{plant[i][0]}/{plant[i][1]}/{name}", sig, plant[i][1])
            for i in indexes for sig, (name, _) in TAGS.items()]


def value_of(signal: str, t: float, seq: int) -> str:
    if signal == "state":
        return "1"  # running throughout: the probes make the state changes
    if signal == "good_count":
        return str(int(t / 2.0) % 60000)  # one part per ideal cycle (2 s in the rig)
    if signal in ("reject_count", "fault_code"):
        return "0"
    return f"{50 + 10 * math.sin(t / 30 + seq % 7):.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--machines", required=True, help="first:last (exclusive) index")
    parser.add_argument("--of", type=int, required=True, help="machines in the whole plant")
    parser.add_argument("--rate", type=float, required=True, help="messages per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--client-id", default="linemon-bench-load")
    args = parser.parse_args(argv)
    first, last = (int(x) for x in args.machines.split(":"))
    topics = topics_for(range(first, last), args.of)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pub = RawPublisher(args.port, args.client_id)
    encoded = [utf8(topic) for topic, _, _ in topics]
    seqs = [0] * len(topics)
    sent, behind_max, k = 0, 0, 0
    began = time.monotonic()
    cpu0 = cpu_seconds()
    end = began + args.seconds
    n = len(topics)
    while not stop.is_set():
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - began) * args.rate) - sent
        behind_max = max(behind_max, due)
        due = min(due, MAX_UNACKED - (pub.sent - pub.acked))
        batch = []
        for _ in range(max(0, due)):
            i = k % n
            k += 1
            sig = topics[i][1]
            seq = seqs[i] = seqs[i] + 1
            wall = time.time()  # per message: a point's identity is its series and time
            payload = f'{{"value": {value_of(sig, wall, seq)}, "ts": {wall:.6f}, "seq": {seq}}}'
            batch.append((encoded[i], payload.encode()))
        if batch:
            pub.publish_many(batch)
            sent += len(batch)
        time.sleep(max(0.0, began + (sent + 1) / args.rate - time.monotonic(), TICK_S))
    elapsed = time.monotonic() - began
    deadline = time.monotonic() + 60
    while pub.acked < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    cpu = cpu_seconds() - cpu0
    acked = pub.acked
    pub.close()
    args.out.write_text(json.dumps({
        "topics": {topics[i][0]: s for i, s in enumerate(seqs)}, "published": sent,
        "acked": acked, "seconds": round(elapsed, 3), "cpu_s": round(cpu, 2),
        "behind_max": behind_max}))


if __name__ == "__main__":
    main()
