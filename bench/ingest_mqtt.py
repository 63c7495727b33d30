"""Figure (1): MQTT ingest cost, linemon's whole pipeline vs a bare paho subscriber (ceiling).

    python -m bench.ingest_mqtt [--reps 5] [--messages 10000] [--machines 20]

A real mosquitto (started here, max_inflight_messages 100 as in the test suite) and a
real influxd. Each repetition:

1. purges both subscribers' sessions, then creates them again (MQTT 5, clean start,
   session expiry 1 h, QoS 1 subscriptions: `plant/#` for the bare one, linemon's own
   filters for linemon), and disconnects them;
2. publishes the same stream of N messages at QoS 1 in the simulators' format
   (`plant/<line>/<machine>/<signal>`, `{"value": ..., "ts": "...Z", "seq": n}`; 20
   machines x 10 signals, one value per signal per simulated second), which mosquitto
   queues for both offline sessions;
3. lets each subscriber drain its queue, in alternating order (bare first on even reps):
   - bare: paho-mqtt 2.x, `json.loads` of each payload, automatic PUBACK;
   - linemon: the real `Linemon` from a generated config, MQTT source (manual PUBACK after
     the spool commit), rules engine, spool (SQLite WAL, fsync) and the forwarder writing
     line protocol to influxd; the run ends when every message is received and the
     historian has flushed everything to influxd.

The figure is messages per CPU-second of the subscriber (this process, all threads,
getrusage, from connect to drained) and linemon's ratio to the bare one. Target >= 0.5.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench import harness
from bench.rig import TAGS, influxd, machine_ids, mosquitto, plant_config, workdir
from linemon.event_loop import run as run_on_loop

FIGURE = "1-ingest-mqtt"
TARGET = 0.5
BARE_ID = "bench-bare-paho"
LINEMON_ID = "bench-linemon"


def _client(client_id: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    harness.nodelay_paho(client)
    return client


def _props(expiry_s: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry_s
    return props


def _wait(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.005)


def make_session(port: int, client_id: str, filters: list[str]) -> None:
    """A persistent session with QoS 1 subscriptions, left offline to queue messages."""
    client = _client(client_id)
    acked: list[int] = []
    client.on_subscribe = lambda *args: acked.append(1)
    client.connect("127.0.0.1", port, 30, clean_start=True, properties=_props(3600))
    client.loop_start()
    _wait(client.is_connected, 10, f"{client_id} to connect")
    client.subscribe([(f, 1) for f in filters])
    _wait(lambda: acked, 10, f"{client_id}'s SUBACK")
    client.disconnect()
    client.loop_stop()


def messages(n: int, machines: int, start: datetime) -> list[tuple[str, bytes]]:
    """The stream: one value per signal per simulated second, the simulators' format."""
    out: list[tuple[str, bytes]] = []
    ids = machine_ids(machines)
    second = 0
    seq = 0
    while len(out) < n:
        ts = (start + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        for k, (line, machine) in enumerate(ids):
            for name, _ in TAGS.values():
                value: float | int
                if name == "state_code":
                    value = 1
                elif name in ("fault_code", "reject_count"):
                    value = 0
                elif name == "good_count":
                    value = second // 2  # a part every 2 s
                else:
                    value = round(50 + 10 * math.sin(second / 7 + k), 3)
                seq += 1
                payload = json.dumps({"value": value, "ts": ts, "seq": seq},
                                     separators=(",", ":"))
                out.append((f"plant/{line}/{machine}/{name}", payload.encode()))
        second += 1
    return out[:n]


def publish(port: int, stream: list[tuple[str, bytes]]) -> None:
    client = _client("bench-publisher")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, 30, clean_start=True, properties=_props(0))
    client.loop_start()
    _wait(client.is_connected, 10, "the publisher to connect")
    infos = [client.publish(topic, payload, qos=1) for topic, payload in stream]
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def drain_bare(port: int, n: int) -> dict[str, float]:
    count = 0

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        nonlocal count
        json.loads(message.payload)
        count += 1

    client = _client(BARE_ID)
    client.on_message = on_message
    c0, t0 = harness.cpu_seconds(), time.monotonic()
    client.connect("127.0.0.1", port, 30, clean_start=False, properties=_props(3600))
    deadline = t0 + 120
    while count < n and time.monotonic() < deadline:
        client.loop(timeout=0.05)
    c1, t1 = harness.cpu_seconds(), time.monotonic()
    client.disconnect()
    if count < n:
        raise TimeoutError(f"bare subscriber drained {count} of {n} messages in 120 s")
    return {"messages": count, "cpu_s": c1 - c0, "wall_s": t1 - t0}


async def drain_linemon(port: int, n: int, machines: int, influx_url: str,
                        profile: str | None = None) -> dict[str, float]:
    from linemon.app import Linemon

    with workdir("mqtt-linemon") as data:
        config = plant_config(machines=machines, data_dir=data, mqtt_port=port,
                              influx_url=influx_url, client_id=LINEMON_ID)
        lm = Linemon(config)
        source = lm.sources[0]
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile(time.thread_time)
            profiler.enable()
        c0, t0 = harness.cpu_seconds(), time.monotonic()
        await lm.start()
        await harness.poll_until(lambda: source.stats.received >= n, 180, 0.01)
        flushed = await lm.historian.flush(60)
        c1, t1 = harness.cpu_seconds(), time.monotonic()
        if profiler is not None and profile:
            profiler.disable()
            profiler.dump_stats(profile)
        stats = source.stats
        result = {"messages": stats.received, "cpu_s": c1 - c0, "wall_s": t1 - t0,
                  "emitted": stats.emitted, "duplicates": stats.duplicates,
                  "rejected": sum(stats.rejected.values()),
                  "written": lm.historian.forwarder.counters.written,
                  "commits": lm.historian.spool.counters().commits}
        await lm.stop()
    if result["messages"] < n or not flushed:
        raise TimeoutError(f"linemon drained {result['messages']} of {n} messages "
                           f"(history flushed: {flushed})")
    return result


def filters_of_linemon(machines: int) -> list[str]:
    from collector.sources.base import build_sources

    with workdir("filters") as data:
        config = plant_config(machines=machines, data_dir=data, mqtt_port=1,
                              client_id=LINEMON_ID)
        return build_sources(config)[0].decoder.subscriptions()  # type: ignore[attr-defined]


def measure(reps: int, n: int, machines: int, port: int, influx_url: str,
            profile: str | None = None) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {"bare": [], "linemon": []}
    linemon_filters = filters_of_linemon(machines)
    for rep in range(reps):
        harness.purge_sessions("127.0.0.1", port, [BARE_ID, LINEMON_ID])
        make_session(port, BARE_ID, ["plant/#"])
        make_session(port, LINEMON_ID, linemon_filters)
        start = datetime.now(UTC) - timedelta(hours=1) + timedelta(minutes=rep)
        publish(port, messages(n, machines, start))
        order = ["bare", "linemon"] if rep % 2 == 0 else ["linemon", "bare"]
        for case in order:
            if case == "bare":
                runs["bare"].append(drain_bare(port, n))
            else:
                runs["linemon"].append(run_on_loop(drain_linemon(
                    port, n, machines, influx_url,
                    profile=profile if rep == reps - 1 else None)))
    return runs


def summarize(runs: dict[str, list[dict[str, float]]], n: int) -> dict[str, Any]:
    rate = {k: [r["messages"] / r["cpu_s"] for r in v] for k, v in runs.items()}
    ratios = [li / b for li, b in zip(rate["linemon"], rate["bare"], strict=True)]
    stats = {k: harness.Stats.of(v) for k, v in rate.items()}
    ratio = harness.Stats.of(ratios)
    wall = {k: harness.Stats.of([r["messages"] / r["wall_s"] for r in v])
            for k, v in runs.items()}
    harness.print_table(
        f"(1) MQTT ingest of {n:,} queued QoS 1 messages, messages per CPU-second, median "
        f"(min..max) of {len(ratios)} interleaved reps",
        ["subscriber", "msg/CPU-s", "msg/s (wall)", "ratio", f">= {TARGET}x"],
        [["bare paho + json.loads", stats["bare"].spread("{:,.0f}"),
          wall["bare"].spread("{:,.0f}"), "1 (ceiling)", ""],
         ["linemon (influx historian)", stats["linemon"].spread("{:,.0f}"),
          wall["linemon"].spread("{:,.0f}"), ratio.spread("{:.2f}"),
          "yes" if ratio.median >= TARGET else "NO"]])
    return {"messages": n, "target_ratio": TARGET,
            "bare_per_cpu_s": stats["bare"].as_dict(),
            "linemon_per_cpu_s": stats["linemon"].as_dict(), "ratio": ratio.as_dict(),
            "meets_target": ratio.median >= TARGET, "runs": runs}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2 if harness.quick() else 5)
    parser.add_argument("--messages", type=int, default=5000 if harness.quick() else 10000)
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--profile", help="cProfile linemon's last run into this file")
    args = parser.parse_args(argv)
    with influxd() as influx, mosquitto() as broker:
        runs = measure(args.reps, args.messages, args.machines, broker.port, influx.url,
                       args.profile)
    return harness.record(FIGURE, summarize(runs, args.messages))


if __name__ == "__main__":
    main()
