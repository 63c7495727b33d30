"""linemon's own CPU per OPC-UA sample, stage by stage, without a network.

    python -m bench.pipeline_cost [--seconds 20] [--reps 5] [--machines 500]
    python -m bench.pipeline_cost --digest [--varied] [--dump FILE]

The traffic of figure (2) (bench/ingest_opcua.py, bench/opcua_plant.py): `machines`
machines x 10 tags, first every tag's initial value, then each simulated second the good
count and the six process values of every machine change (70 % of the tags), in
notification messages of at most 1,000 values, each encoded (by asyncua) as the body of a
DataChangeNotification before the clock starts.

A real `Linemon` (constructed, not started: no source connects, nothing is spooled) takes
them the way its OPC-UA source and its ingest do:

- decode: opcua_decode's DataChangeNotification reader and the client handle -> tag lookup
  (what PushedValues does for a Publish response; asyncua's own decode of the rest of the
  response, one per message, is left out);
- convert: OpcUaSource._to_samples (value tuple -> Sample, type coercion);
- screen: TagScreen.screen (duplicates, counters);
- encode: the historian's line protocol for the samples (the spool put stubbed out);
- engine: the rest of Linemon.ingest (trackers, alerting, OEE booking);
- events: Historian.write_events of the events the samples made (PartsProduced ...);
- tick: Engine.on_tick and its events' encoding, every simulated second (half a second
  after the values; the real tick runs at its own phase).

Prints CPU µs (process_time) per notification for each stage, median of `reps` runs,
each on a fresh Linemon; the first two simulated seconds are a warm-up. The garbage
collector is tuned as `Linemon.start` tunes it.

`--digest` runs once with the receive clock frozen to the simulated time and prints a
hash of everything produced (samples, spool records, events, alerts, OEE figures), to
check that an optimisation changed no output; `--varied` adds rejects and defect spikes,
stops with fault codes, bad and uncertain quality, duplicates, counter resets, NaN, and
threshold, SPC and stale rules; `--dump` writes the digested text for a diff.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.ua.ua_binary import struct_to_binary

from bench.rig import NAMESPACE, TAGS, machine_ids, plant_config
from collector.sources.opcua_decode import read_data_changes
from collector.sources.opcua_subscription import tagged
from linemon.config import PlantConfig

STAGES = ("decode", "convert", "screen", "encode", "engine", "events")
PER_MESSAGE = 1000  # asyncua's MaxNotificationsPerPublish in figure (2)
WARMUP_S = 2
BASE = datetime(2025, 3, 4, 6, 0, tzinfo=UTC)  # a Tuesday morning, inside the all-day shift
VARIANT = {"auto": ua.VariantType.Int32, "int": ua.VariantType.UInt32,
           "float": ua.VariantType.Double}
CONSTANT = {"state_code": 1, "fault_code": 0, "reject_count": 0}


# --- traffic --------------------------------------------------------------------------------

def _value(value: Any, vtype: ua.VariantType, at: datetime,
           status: ua.StatusCode | None = None) -> ua.DataValue:
    """A DataValue as the bench server (bench/opcua_plant.py) sends it."""
    dv = ua.DataValue(ua.Variant(value, vtype), SourceTimestamp=at, ServerTimestamp=at)
    if status is not None:
        dv.StatusCode = status
    return dv


def _body(values: list[tuple[int, ua.DataValue]]) -> bytes:
    """The encoded body of a DataChangeNotification, as it arrives in a Publish response."""
    return struct_to_binary(ua.DataChangeNotification(MonitoredItems=[
        ua.MonitoredItemNotification(ClientHandle=handle, Value=dv) for handle, dv in values]))


def _varied(tick: int, n: int, name: str) -> tuple[Any, ua.StatusCode | None] | None:
    """--varied: a change of (value, status) on top of the figure's traffic, or None."""
    if name == "reject_count":
        if n % 5 == 0 and tick >= 5:  # a reject every second: a defect spike
            return tick - 4, None
        if n % 7 == 0 and tick % 4 == 0:
            return tick // 4, None
    if name == "state_code" and n % 11 == 0:
        if tick == 8:
            return 4, None  # down
        if tick == 11:
            return 1, None
        if tick == 14 and n % 22 == 0:
            return 9, None  # unmapped
    if name == "fault_code" and n % 11 == 0 and tick in (8, 11):
        return (17 if tick == 8 else 0), None
    if name == "temperature" and n % 13 == 0 and tick in (6, 7):
        return 0.0, ua.StatusCode(ua.StatusCodes.BadCommunicationError)
    if name == "pressure" and n % 17 == 0 and tick == 7:
        return 55.5, ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)
    if name == "good_count" and n % 23 == 0 and tick >= 12:
        return tick - 12, None  # the PLC restarted: a counter reset
    if name == "flow" and n % 29 == 0 and tick == 13:
        return math.nan, None
    return None


# One notification message: a DataChangeNotification body, its value count, and the source's
# tags by client handle
Message = tuple[bytes, int, dict[int, Any]]


def traffic(config: PlantConfig, seconds: int, varied: bool) -> list[list[Message]]:
    """Per simulated second (0: the initial values), its notification messages."""
    from collector.sources.opcua import OpcUaSource

    machines = [(line, m) for line, m in config.machines()]
    source = OpcUaSource(config.sources[0], config, machines)  # only for its _Tag objects
    nodes = [(n, name, kind, source.tags[f"nsu={NAMESPACE};s={line}.{machine}.{name}"])
             for n, (line, machine) in enumerate(machine_ids(len(machines)))
             for name, kind in TAGS.values()]
    handles = {id(tag): handle for handle, (_, _, _, tag) in enumerate(nodes)}
    tags = {handle: tag for handle, (_, _, _, tag) in enumerate(nodes)}
    out = []
    for tick in range(seconds + 1):
        at = BASE + timedelta(seconds=tick)
        values = []
        for n, name, kind, tag in nodes:
            vtype = VARIANT[kind]
            status = None
            if tick == 0:
                value: Any = 0.0 if kind == "float" else CONSTANT.get(name, 0)
            elif name in CONSTANT:
                value = None
            elif name == "good_count":
                value = tick
            else:
                value = 50.0 + 10 * math.sin(tick / 7 + n)
            if varied and tick:
                change = _varied(tick, n, name)
                if change is not None:
                    value, status = change
            if value is None:
                continue
            values.append((handles[id(tag)], _value(value, vtype, at, status)))
            if varied and n % 19 == 0 and tick == 9 and name == "speed":
                # redelivered: a duplicate
                values.append((handles[id(tag)], _value(value, vtype, at)))
        out.append([(_body(part), len(part), tags)
                    for part in (values[i:i + PER_MESSAGE]
                                 for i in range(0, len(values), PER_MESSAGE))])
    return out


def varied_rules(config: PlantConfig) -> PlantConfig:
    machines = [m.id for _, m in config.machines()]
    rules: dict[str, Any] = {
        "thresholds": [{"id": f"hot-{mid}", "machine": mid, "signal": "temperature",
                        "above": 58.0, "clear": 55.0} for mid in machines[::9]]
        + [{"id": f"low-{mid}", "machine": mid, "signal": "pressure", "below": 42.0}
           for mid in machines[::10]],
        "spc": [{"id": f"imr-{mid}", "machine": mid, "kind": "imr", "signal": "speed",
                 "baseline_points": 5} for mid in machines[::12]]
        + [{"id": f"p-{mid}", "machine": mid, "kind": "p", "subgroup_parts": 5,
            "baseline_points": 2} for mid in machines[::15]],
        "stale": [{"source": config.sources[0].name, "after_s": 3.0},
                  {"machine": machines[3], "after_s": 4.0},
                  {"machine": machines[4], "signal": "vibration", "after_s": 2.0},
                  {"machine": machines[6], "signal": "reject_count", "after_s": 5.0}],
    }
    data = config.model_dump(mode="json")
    data["rules"] = rules
    data["reason_codes"] = {"17": "jam"}
    return PlantConfig.model_validate(data)


# --- driving linemon without an event loop ------------------------------------------------

def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never really waits (the spool put is stubbed out)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine waited for something")


class Run:
    """One fresh Linemon fed the traffic; CPU seconds per stage."""

    def __init__(self, config: PlantConfig, sim: list[datetime],
                 on_record: Callable[..., None] | None = None) -> None:
        from linemon.app import Linemon

        self.sim = sim  # [now]: the simulated clock, moved by feed()
        self.lm = Linemon(config, clock=lambda: self.sim[0])
        self.source: Any = self.lm.sources[0]
        self.cpu = dict.fromkeys((*STAGES, "tick"), 0.0)
        self.notifications = 0
        self._bucket = "events"
        historian = self.lm.historian

        async def put(kind: str, records: list[Any]) -> int:
            if on_record is not None:
                on_record(kind, records)
            return len(records)

        async def spool_put(records: list[Any]) -> list[int]:  # Historian.write's one put
            for kind, run in groupby(records, key=lambda r: r.kind):
                await put(kind, list(run))
            return []

        historian._put = put
        historian.spool.put = spool_put
        sample_records, event_records = historian._sample_records, historian._event_records

        def timed_samples(samples: Any) -> list[Any]:
            c = time.process_time()
            records = sample_records(samples)
            self.cpu["encode"] += time.process_time() - c
            return records

        def timed_events(events: Any) -> list[Any]:
            c = time.process_time()
            records = event_records(events)
            self.cpu[self._bucket] += time.process_time() - c
            return records

        historian._sample_records = timed_samples
        historian._event_records = timed_events

    def second(self, at: datetime, messages: list[Message],
               on_samples: Callable[[list[Any]], None] | None = None) -> None:
        pt, cpu, lm, source = time.process_time, self.cpu, self.lm, self.source
        self.sim[0] = at + timedelta(seconds=0.2)
        for body, count, tags in messages:
            self.notifications += count
            cd = pt()
            values = tagged(read_data_changes(body), tags)
            c0 = pt()
            cpu["decode"] += c0 - cd
            samples = source._to_samples(values)
            c1 = pt()
            samples = source.screen.screen(samples)
            c2 = pt()
            before = cpu["encode"] + cpu["events"]
            if samples:
                drive(lm.ingest(samples))
            c3 = pt()
            cpu["convert"] += c1 - c0
            cpu["screen"] += c2 - c1
            cpu["engine"] += (c3 - c2) - (cpu["encode"] + cpu["events"] - before)
            if on_samples is not None:
                on_samples(samples)
        self.sim[0] = now = at + timedelta(seconds=0.5)
        self._bucket = "tick"
        c0 = pt()
        drive(lm._publish(lm.engine.on_tick(now)))
        cpu["tick"] += pt() - c0
        self._bucket = "events"


def measure(config: PlantConfig, seconds_traffic: list[Any]) -> dict[str, float]:
    """µs per notification per stage, over the seconds after the warm-up."""
    from linemon.app import settle_heap

    sim = [BASE]
    run = Run(config, sim)
    for tick, messages in enumerate(seconds_traffic[:WARMUP_S]):
        run.second(BASE + timedelta(seconds=tick), messages)
    run.cpu = dict.fromkeys(run.cpu, 0.0)
    run.notifications = 0
    settle_heap()
    try:
        for tick, messages in enumerate(seconds_traffic[WARMUP_S:], start=WARMUP_S):
            run.second(BASE + timedelta(seconds=tick), messages)
    finally:
        gc.unfreeze()
    return {k: v / run.notifications * 1e6 for k, v in run.cpu.items()}


# --- the digest -------------------------------------------------------------------------------

def digest(config: PlantConfig, seconds_traffic: list[Any], dump: Path | None) -> str:
    """Everything the pipeline produced, hashed, with the receive clock frozen."""
    import collector.sources.opcua as opcua_module

    sim = [BASE]

    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return sim[0]

    lines: list[str] = []

    def on_record(kind: str, records: list[Any]) -> None:
        lines.extend(f"R {kind} {r!r}" for r in records)

    def on_samples(samples: list[Any]) -> None:
        lines.extend(f"S {s!r}" for s in samples)

    real = opcua_module.datetime
    opcua_module.datetime = FrozenClock  # type: ignore[misc]
    try:
        run = Run(config, sim, on_record)
        run.lm.listeners.send = lambda events: lines.extend(f"E {e!r}" for e in events)
        for tick, messages in enumerate(seconds_traffic):
            run.second(BASE + timedelta(seconds=tick), messages, on_samples)
    finally:
        opcua_module.datetime = real  # type: ignore[misc]
    lm, now = run.lm, sim[0]
    stats = run.source.stats
    lines.append(f"STATS {stats.received} {stats.emitted} {stats.duplicates} "
                 f"{sorted(stats.rejected.items())} {sorted(stats.last_message_at.items())}")
    for mid in sorted(lm.engine.trackers):
        view = lm.engine.machine_view(mid, now)
        lines.append(f"V {view!r}")
    for lid in sorted(lm.engine._lines):
        lines.append(f"L {lm.engine.line_view(lid, now)!r}")
    for alert in lm.engine.alerts.active() + lm.engine.alerts.recent():
        lines.append(f"A {alert!r}")
    for mid, detector in sorted(lm.engine.alerts.spikes.items()):
        lines.append(f"D {mid} {detector.since!r} {detector.last!r}")
    text = "\n".join(lines) + "\n"
    if dump is not None:
        dump.write_text(text)
    kinds: dict[str, int] = {}
    for line in lines:
        kinds[line.split(" ", 1)[0]] = kinds.get(line.split(" ", 1)[0], 0) + 1
    print(f"lines by kind: {kinds}")
    return hashlib.sha256(text.encode()).hexdigest()


# --- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=20, help="simulated seconds per run")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--digest", action="store_true")
    parser.add_argument("--varied", action="store_true")
    parser.add_argument("--dump", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="linemon-bench-pipeline-") as tmp:
        config = plant_config(machines=args.machines, data_dir=Path(tmp),
                              opcua_endpoint="opc.tcp://127.0.0.1:4840/")
        if args.varied:
            config = varied_rules(config)
        seconds_traffic = traffic(config, args.seconds + WARMUP_S, args.varied)
        if args.digest:
            print(f"digest {digest(config, seconds_traffic, args.dump)}")
            return
        runs = [measure(config, seconds_traffic) for _ in range(args.reps)]
    per_sample = [sum(r[k] for k in STAGES) for r in runs]
    with_tick = [sum(r.values()) for r in runs]
    n = sum(count for m in seconds_traffic[WARMUP_S:] for _, count, _ in m)
    print(f"{args.machines} machines x {len(TAGS)} tags, {args.seconds} s measured "
          f"({n:,} notifications per run), CPU µs per notification, median (min..max) of "
          f"{args.reps} runs")

    def row(name: str, values: list[float]) -> None:
        print(f"  {name:<10} {statistics.median(values):7.2f}  "
              f"({min(values):.2f}..{max(values):.2f})")

    for stage in (*STAGES, "tick"):
        row(stage, [r[stage] for r in runs])
    row("per-sample", per_sample)
    row("+ tick", with_tick)


if __name__ == "__main__":
    sys.exit(main())
