"""linemon's own CPU per MQTT message, stage by stage, without a network.

    python -m bench.mqtt_cost [--seconds 10] [--reps 5] [--batch 21]

The traffic of figure (3) (bench/sustained.py, bench/loadgen.py): 50 machines x 10 signals,
one topic per signal, 20 messages a second per topic (10,000 msg/s), each an MQTT 5 QoS 1
PUBLISH without properties carrying `{"value": ..., "ts": <epoch s>, "seq": n}`, built as
bytes before the clock starts. The source takes them in batches of `--batch` messages: 21
is the median batch of a sustained run at 10,000 msg/s on this machine (session 9; the
loop turns faster than the messages come, so batches stay small and the per-batch costs
count).

A real `Linemon` (constructed, not started: nothing connects, nothing is spooled) and its
MQTT source take them the way `linemon run` does:

- receive: the connection's socket reader (`MqttConnection._read`: one `recv()` from a
  socketpair holding the batch's packets, paho's `loop_read`, the buffered socket, the
  PUBLISH decode) up to the queue the source reads;
- decode: MqttSource._decode_all (JSON, the topic's bindings, timestamps, the redelivery
  window);
- screen: TagScreen.screen (duplicates, counters);
- encode: the historian's line protocol for the samples (the spool put stubbed out);
- engine: the rest of Linemon.ingest (trackers, alerting, OEE booking, events);
- tick: Engine.on_tick once per simulated second (its events announced, not encoded).

Prints CPU µs (thread time) per message for each stage, median (min..max) of `reps` runs,
each on a fresh Linemon after a 2-second warm-up, with the garbage collector tuned as
`Linemon.start` tunes it. Use it to compare two trees on the same machine in the same
hour: the absolute figures move with the VM's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import statistics
import struct
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.loadgen import topics_for, value_of
from bench.pipeline_cost import drive
from bench.rig import plant_config

STAGES = ("receive", "decode", "screen", "encode", "engine", "tick")
MACHINES = 50
PER_TOPIC_HZ = 20
WARMUP_S = 2
PUBLISH_QOS1 = 0x32


def publish_packet(topic: bytes, mid: int, payload: bytes) -> bytes:
    """A whole PUBLISH packet, MQTT 5, QoS 1, no properties."""
    body = struct.pack("!H", len(topic)) + topic + struct.pack("!HB", mid, 0) + payload
    length, n = b"", len(body)
    while True:  # the remaining length, 7 bits a byte
        n, digit = n >> 7, n & 0x7F
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            return bytes([PUBLISH_QOS1]) + length + body


def traffic(seconds: int, start: float) -> list[list[bytes]]:
    """Per simulated second, its messages in publishing order (every topic in turn)."""
    topics = [(t.encode(), sig) for t, sig, _ in topics_for(range(MACHINES), MACHINES)]
    seqs = [0] * len(topics)
    out: list[list[bytes]] = []
    mid = 0
    for second in range(seconds):
        bodies = []
        for k in range(PER_TOPIC_HZ):
            for i, (topic, sig) in enumerate(topics):
                seq = seqs[i] = seqs[i] + 1
                wall = start + second + k / PER_TOPIC_HZ + i * 1e-6
                payload = f'{{"value": {value_of(sig, wall, seq)}, "ts": {wall:.6f}, "seq": {seq}}}'
                mid = mid % 65535 + 1
                bodies.append(publish_packet(topic, mid, payload.encode()))
        out.append(bodies)
    return out


class Run:
    """One fresh Linemon and MQTT client fed the traffic; CPU seconds per stage."""

    def __init__(self, config: Any, start: float) -> None:
        from collector.sources.mqtt_session import MqttConnection
        from collector.sources.mqtt_socket import BufferedSocket
        from linemon.app import Linemon

        self.sim = [datetime.fromtimestamp(start, UTC)]
        self.lm = Linemon(config, clock=lambda: self.sim[0])
        self.source: Any = self.lm.sources[0]
        self.cpu = dict.fromkeys(STAGES, 0.0)
        self.messages = 0
        # The source's own connection, never connected, reading from a socketpair.
        self.wire, theirs = socket.socketpair()
        theirs.setblocking(False)
        self.connection = MqttConnection(self.source.config, [], None, None)
        self.connection._sock = self.connection.client._sock = BufferedSocket(theirs)
        self.queue = self.connection.queue
        historian = self.lm.historian

        async def spool_put(records: list[Any]) -> list[int]:
            return []

        historian.spool.put = spool_put
        sample_records = historian._sample_records

        def timed_samples(samples: Any) -> list[Any]:
            c = time.thread_time()
            records = sample_records(samples)
            self.cpu["encode"] += time.thread_time() - c
            return records

        historian._sample_records = timed_samples

    def second(self, at: datetime, bodies: list[bytes], batch: int) -> None:
        tt, cpu, lm, source, queue = time.thread_time, self.cpu, self.lm, self.source, self.queue
        read, wire = self.connection._read, self.wire
        for first in range(0, len(bodies), batch):
            # The simulated clock moves with the messages, as the engine's would.
            self.sim[0] = at + timedelta(seconds=first / len(bodies))
            wire.sendall(b"".join(bodies[first:first + batch]))
            c0 = tt()
            read()
            messages = list(queue)
            queue.clear()
            c1 = tt()
            samples = source._decode_all(messages)
            c2 = tt()
            samples = source.screen.screen(samples)
            c3 = tt()
            before = cpu["encode"]
            if samples:
                drive(lm.ingest(samples))
            c4 = tt()
            cpu["receive"] += c1 - c0
            cpu["decode"] += c2 - c1
            cpu["screen"] += c3 - c2
            cpu["engine"] += (c4 - c3) - (cpu["encode"] - before)
            self.messages += len(messages)
        self.sim[0] = now = at + timedelta(seconds=1)
        c0 = tt()
        events = lm.engine.on_tick(now)
        if events:
            lm._announce(events)
        cpu["tick"] += tt() - c0


def measure(config: Any, seconds_traffic: list[list[bytes]], start: float,
            batch: int) -> dict[str, float]:
    """µs per message per stage, over the seconds after the warm-up."""
    from linemon.app import settle_heap

    run = Run(config, start)
    at = run.sim[0]
    for tick, bodies in enumerate(seconds_traffic[:WARMUP_S]):
        run.second(at + timedelta(seconds=tick), bodies, batch)
    run.cpu = dict.fromkeys(run.cpu, 0.0)
    run.messages = 0
    settle_heap()
    try:
        for tick, bodies in enumerate(seconds_traffic[WARMUP_S:], start=WARMUP_S):
            run.second(at + timedelta(seconds=tick), bodies, batch)
    finally:
        gc.unfreeze()
        run.wire.close()
        run.connection._sock.close()
    return {k: v / run.messages * 1e6 for k, v in run.cpu.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="simulated seconds per run")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=21, help="messages per source batch")
    args = parser.parse_args(argv)
    start = float(int(time.time()))  # payload times near now: the source checks their range
    seconds_traffic = traffic(args.seconds + WARMUP_S, start)
    with tempfile.TemporaryDirectory(prefix="linemon-bench-mqtt-cost-") as tmp:
        config = plant_config(machines=MACHINES, data_dir=Path(tmp), mqtt_port=1883)
        runs = [asyncio.run(_measure(config, seconds_traffic, start, args.batch))
                for _ in range(args.reps)]
    total = [sum(r.values()) for r in runs]
    n = sum(len(b) for b in seconds_traffic[WARMUP_S:])
    print(f"{MACHINES} machines x 10 signals, {args.seconds} s measured ({n:,} messages per "
          f"run, batches of {args.batch}), CPU µs per message, median (min..max) of "
          f"{args.reps} runs")
    for stage in STAGES:
        values = [r[stage] for r in runs]
        print(f"  {stage:<8} {statistics.median(values):7.2f}  "
              f"({min(values):.2f}..{max(values):.2f})")
    print(f"  {'total':<8} {statistics.median(total):7.2f}  ({min(total):.2f}..{max(total):.2f})")


async def _measure(config: Any, seconds_traffic: list[list[bytes]], start: float,
                   batch: int) -> dict[str, float]:
    # In a running loop: the connection's event and the engine's listeners expect one.
    return measure(config, seconds_traffic, start, batch)


if __name__ == "__main__":
    sys.exit(main())
