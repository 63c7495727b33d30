"""Figure (2): OPC-UA ingest cost, linemon vs a bare asyncua subscription (the ceiling).

    python -m bench.ingest_opcua [--reps 5] [--sizes 1000,5000] [--window 2]

One plain asyncua server process (bench/opcua_plant.py) serves 5,000 tags of which 70 %
change every second. Each measured subscriber is a process of its own, subscribing to the
first 1,000 or all 5,000 tags with the same subscription settings (publishing interval
250 ms, at most 1,000 notifications per publish, queue size 100):

- bare: asyncua's client and publish loop, with a callback that only counts the
  DataChangeNotification items (no Node objects, no per-item handler); one process
  measures 1,000 tags, then adds the other 4,000 to its subscription and measures 5,000;
- linemon: the real `Linemon` with the OPC-UA source from a generated config and the
  InfluxDB historian on a real influxd: decode, screen, spool (fsync), engine, forwarder.
  Its source reads the DataChangeNotifications of a Publish response itself
  (collector/sources/opcua_decode.py, ~1.1 µs per value against asyncua's ~11 µs) and
  leaves the rest of the response to asyncua; the bare subscriber uses asyncua's decoder.

After a warm-up (initial values, connection) each subscriber counts the notifications it
took in during the window and its own CPU seconds (all threads, getrusage); the figure is
notifications per CPU-second and linemon's ratio to the bare one, per repetition
(bare, linemon 1,000, linemon 5,000, baseline, bare, ... interleaved). Target: >= 0.5.
Both subscribers run on linemon's event loop (uvloop; linemon/event_loop.py). The linemon
runs also report resident memory, which figure (6) uses, and each repetition ends with a
linemon at 10 tags: figure (6)'s baseline, on the same servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.rig import NAMESPACE, TAGS, TOKEN_ENV, influxd, machine_ids, plant_config, workdir
from linemon.event_loop import run as run_on_loop
from tests.support.services import free_port

FIGURE = "2-ingest-opcua"
TARGET = 0.5
SERVER_MACHINES = 500
TICK_MS = 1000
PUBLISHING_MS = 250
BASELINE_TAGS = 10  # figure (6)'s baseline process, run in this figure's interleave


# --- the measured processes ---------------------------------------------------------------

async def _bare(endpoint: str, sizes: list[int], warmup_s: float, window_s: float
                ) -> dict[str, dict[str, Any]]:
    """Every size in turn on one subscription, which grows between the windows (one
    process start instead of one per size)."""
    from asyncua import Client, ua

    harness.nodelay_asyncua()
    client = Client(endpoint, timeout=30)
    await client.connect()
    count = 0

    async def on_publish(result: ua.PublishResult) -> None:
        nonlocal count
        for notification in result.NotificationMessage.NotificationData or []:
            if isinstance(notification, ua.DataChangeNotification):
                count += len(notification.MonitoredItems)

    ns = await client.get_namespace_index(NAMESPACE)
    nodes = [ua.NodeId(f"{line}.{machine}.{name}", ns)
             for line, machine in machine_ids(max(sizes) // len(TAGS))
             for name, _ in TAGS.values()]
    params = ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=PUBLISHING_MS, RequestedLifetimeCount=10_000,
        RequestedMaxKeepAliveCount=40, MaxNotificationsPerPublish=1000,
        PublishingEnabled=True, Priority=0)
    sub = await client.uaclient.create_subscription(params, on_publish)
    results: dict[str, dict[str, Any]] = {}
    monitored = 0
    for tags in sorted(sizes):
        for first in range(monitored, tags, 1000):
            await client.uaclient.create_monitored_items(ua.CreateMonitoredItemsParameters(
                SubscriptionId=sub.SubscriptionId, TimestampsToReturn=ua.TimestampsToReturn.Both,
                ItemsToCreate=[ua.MonitoredItemCreateRequest(
                    ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value),
                    MonitoringMode=ua.MonitoringMode.Reporting,
                    RequestedParameters=ua.MonitoringParameters(
                        ClientHandle=first + i, SamplingInterval=-1.0, QueueSize=100,
                        DiscardOldest=True))
                    for i, node in enumerate(nodes[first:min(first + 1000, tags)])]))
        monitored = tags
        await asyncio.sleep(warmup_s)  # the new items' initial values are not in the window
        n0, c0, t0 = count, harness.cpu_seconds(), time.monotonic()
        await asyncio.sleep(window_s)
        n1, c1, t1 = count, harness.cpu_seconds(), time.monotonic()
        results[str(tags)] = {"notifications": n1 - n0, "cpu_s": c1 - c0, "wall_s": t1 - t0,
                              "rss": harness.rss_bytes()}
    await asyncio.wait_for(client.disconnect(), 5)  # no orphan session left publishing
    return results


async def _linemon(endpoint: str, tags: int, warmup_s: float, window_s: float,
                   influx_url: str | None, profile: str | None) -> dict[str, Any]:
    from linemon.app import Linemon

    harness.nodelay_asyncua()
    with workdir("opcua-linemon") as data:
        config = plant_config(machines=max(1, tags // len(TAGS)), data_dir=data,
                              opcua_endpoint=endpoint, publishing_interval_ms=PUBLISHING_MS,
                              influx_url=influx_url)
        lm = Linemon(config)
        started = time.monotonic()
        await lm.start()
        source = lm.sources[0]
        if not await harness.poll_until(lambda: source.stats.monitored_items >= tags, 60, 0.05):
            raise RuntimeError(f"linemon monitors {source.stats.monitored_items} of "
                               f"{tags} tags after 60 s: {source.stats.last_error}")
        subscribed_s = time.monotonic() - started
        await asyncio.sleep(warmup_s)
        profiler = _start_profile(profile)
        n0, c0, t0 = source.stats.received, harness.cpu_seconds(), time.monotonic()
        await asyncio.sleep(window_s)
        n1, c1, t1 = source.stats.received, harness.cpu_seconds(), time.monotonic()
        _stop_profile(profiler, profile)
        result = {"notifications": n1 - n0, "cpu_s": c1 - c0, "wall_s": t1 - t0,
                  "rss": harness.rss_bytes(), "backlog": lm.historian.health()["backlog"],
                  "subscribed_s": subscribed_s}
        # Stop the source (closes the OPC-UA session); the spool is thrown away with `data`.
        for task in lm._tasks:
            task.cancel()
        await asyncio.wait(lm._tasks, timeout=5)
        return result


def _influx(config: Any, url: str) -> Any:
    from bench.rig import influx_backend
    from collector.historian.config import InfluxBackendConfig

    return InfluxBackendConfig.model_validate(influx_backend(None, url))


def _start_profile(path: str | None) -> Any:
    if not path:
        return None
    import cProfile

    profiler = cProfile.Profile(time.thread_time)  # CPU, not GIL waits
    profiler.enable()
    return profiler


def _stop_profile(profiler: Any, path: str | None) -> None:
    if profiler is not None and path:
        profiler.disable()
        profiler.dump_stats(path)


def child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["bare", "linemon"])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--tags", required=True,
                        help="linemon: one number; bare: comma-separated, measured in turn")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--influx-url")
    parser.add_argument("--profile")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    sizes = [int(t) for t in args.tags.split(",")]
    if args.kind == "bare":
        result: Any = run_on_loop(_bare(args.endpoint, sizes, args.warmup, args.window))
    else:
        result = run_on_loop(_linemon(args.endpoint, sizes[0], args.warmup, args.window,
                                      args.influx_url, args.profile))
    print("RESULT " + json.dumps(result), flush=True)
    os._exit(0)  # the measurement is taken; a clean shutdown would only cost time


# --- the parent -----------------------------------------------------------------------------

def run_child(kind: str, endpoint: str, tags: int | list[int], *, warmup_s: float,
              window_s: float, influx_url: str | None = None, profile: str | None = None
              ) -> dict[str, Any]:
    """linemon: one size; bare: a list of sizes, and the result is keyed by size."""
    sizes = tags if isinstance(tags, list) else [tags]
    cmd = [sys.executable, "-m", "bench.ingest_opcua", "--child", kind, "--endpoint", endpoint,
           "--tags", ",".join(map(str, sizes)), "--warmup", str(warmup_s),
           "--window", str(window_s)]
    if influx_url:
        cmd += ["--influx-url", influx_url]
    if profile:
        cmd += ["--profile", profile]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                          cwd=Path(__file__).resolve().parents[1])
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if os.environ.get("LINEMON_BENCH_DEBUG"):  # the children's logs
        print(done.stderr, file=sys.stderr)
    if line is None:
        raise RuntimeError(f"{kind} subscriber ({tags} tags) failed: "
                           f"{done.stderr.strip()[-4000:]}")
    return json.loads(line[len("RESULT "):])


class OpcUaPlant:
    """The server process of bench/opcua_plant.py."""

    def __init__(self, machines: int = SERVER_MACHINES, tick_ms: int = TICK_MS) -> None:
        self.port = free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.opcua_plant", "--machines", str(machines),
             "--port", str(self.port), "--tick-ms", str(tick_ms)],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline()
        if not ready.startswith("ready"):
            self.close()
            raise RuntimeError(f"the OPC-UA bench server did not start: {ready!r}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def measure(reps: int, sizes: list[int], warmup_s: float, window_s: float,
            plant: OpcUaPlant, influx_url: str, baseline_tags: int = 0
            ) -> tuple[dict[int, dict[str, list[dict[str, Any]]]], list[dict[str, Any]]]:
    """Per repetition: the bare subscriber (every size in turn, one process), then linemon
    at each size, then linemon at `baseline_tags` (figure 6's baseline; 0: not run).
    Returns the runs by size, and the baseline runs."""
    def linemon(tags: int) -> Any:
        return lambda: run_child("linemon", plant.endpoint, tags, warmup_s=warmup_s,
                                 window_s=window_s, influx_url=influx_url)

    cases = {"bare": lambda: run_child("bare", plant.endpoint, sizes, warmup_s=warmup_s,
                                       window_s=window_s)}
    cases.update({f"linemon {tags}": linemon(tags) for tags in sizes})
    if baseline_tags:
        cases["baseline"] = linemon(baseline_tags)
    found = harness.interleave(reps, cases)
    runs = {tags: {"bare": [r[str(tags)] for r in found["bare"]],
                   "linemon": found[f"linemon {tags}"]} for tags in sizes}
    return runs, found.get("baseline", [])


def summarize(runs: dict[int, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    out: dict[str, Any] = {"target_ratio": TARGET, "sizes": {}}
    rows = []
    for tags, cases in runs.items():
        rate = {k: [r["notifications"] / r["cpu_s"] for r in v] for k, v in cases.items()}
        ratios = [li / b for li, b in zip(rate["linemon"], rate["bare"], strict=True)]
        stats = {k: harness.Stats.of(v) for k, v in rate.items()}
        ratio = harness.Stats.of(ratios)
        flow = harness.Stats.of([r["notifications"] / r["wall_s"] for r in cases["linemon"]])
        out["sizes"][str(tags)] = {
            "bare_per_cpu_s": stats["bare"].as_dict(),
            "linemon_per_cpu_s": stats["linemon"].as_dict(),
            "ratio": ratio.as_dict(),
            "notifications_per_s": flow.as_dict(),
            "linemon_rss_bytes": [r["rss"] for r in cases["linemon"]],
            "runs": cases,
        }
        rows.append([tags, stats["bare"].spread("{:,.0f}"), stats["linemon"].spread("{:,.0f}"),
                     ratio.spread("{:.2f}"), flow.spread("{:,.0f}"),
                     "yes" if ratio.median >= TARGET else "NO"])
    out["ratio_median_min"] = min(s["ratio"]["median"] for s in out["sizes"].values())
    out["meets_target"] = out["ratio_median_min"] >= TARGET
    reps = min(len(c["linemon"]) for c in runs.values())
    harness.print_table(
        f"(2) OPC-UA ingest, notifications per CPU-second, median (min..max) of {reps} "
        "interleaved reps",
        ["tags", "bare asyncua", "linemon", "ratio", "notif/s", f">= {TARGET}x"], rows)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2 if harness.quick() else 5)
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--baseline-tags", type=int, default=BASELINE_TAGS,
                        help="also run linemon at this many tags for figure (6) (0: not)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    with influxd() as influx:
        plant = OpcUaPlant()
        try:
            runs, baseline = measure(args.reps, sizes, args.warmup, args.window, plant,
                                     influx.url, args.baseline_tags)
        finally:
            plant.close()
    out = summarize(runs)
    if baseline:
        out["baseline"] = {"tags": args.baseline_tags, "rss_bytes": [r["rss"] for r in baseline]}
    return harness.record(FIGURE, out)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        assert os.environ.get(TOKEN_ENV) is not None or "--influx-url" not in sys.argv
        child(sys.argv[2:])
    else:
        main()
