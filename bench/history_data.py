"""The history dataset for figure 7, built once into ~/.cache/linemon and reused.

    python -m bench.history_data [--machines 50] [--days 30] [--rebuild]

What it holds (one fixed window of `days` whole UTC days ending at the build day's midnight):

- `sample`: one process value (`temperature`) per machine at 1 Hz, quality good, source
  `gateway`: machines x days x 86,400 points (50 x 30 d = 129.6 M);
- `state` and `downtime`: the stops of a machine that runs ~25 min between stops (exponential),
  65 % micro-stops (5-29 s), 30 % breakdowns (1-30 min), 5 % changeovers (10-40 min); reason
  codes from the demo plant's list, one stop in five uncoded;
- `parts`: one point every 15 s of running time (the engine writes one per counter change,
  i.e. up to one per cycle: this is fewer points than a 3 s-cycle machine's real history);
- no OEE snapshots (the API's OEE history then replays every shift: its slower path).

Events are encoded by the historian's own encoder (`schema.encode_event`). Samples and parts
take a fast path (a fixed series key plus value and time), checked against the encoder for
the first point of every series. InfluxDB gets line protocol over HTTP (two buckets, as the
store lays them out, infinite retention so the cache does not age out); SQLite gets the
store's own tables (`sqlite_tables.ddl`) filled with executemany in primary-key order,
without journal during the build, then switched to WAL as the store runs it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import queue
import random
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from collector.historian.backends import sqlite_tables as tables
from collector.historian.lineprotocol import parse_line
from collector.historian.schema import SampleEncoder, encode_event, to_ns
from linemon.model import (
    DowntimeCategory,
    DowntimeEnded,
    DowntimeEvent,
    MachineState,
    PartsProduced,
    Quality,
    Sample,
    StateChanged,
)
from tests.support.influx import InfluxServer, find_influxd

VERSION = "1"
NS = 1_000_000_000
LINES = 5
SIGNAL = "temperature"
SOURCE = "gateway"
PARTS_EVERY_S = 15
IDEAL_CYCLE_S = 3.0
RAW_BUCKET, LONG_BUCKET = "linemon", "linemon_1m"
REASONS = {"5": "Die change", "6": "Colour change", "17": "Jam", "19": "Sensor misread",
           "23": "Tool break", "31": "Material shortage", "41": "Hydraulic leak",
           "42": "Overheat", "55": "Misalignment", "61": "Conveyor stall"}
STOP_CODES = [c for c in REASONS if c not in ("5", "6")]
INFLUX_BATCH = 100_000  # lines per write request (about 8 MB)


@dataclass(frozen=True)
class Dataset:
    machines: int
    days: int

    @property
    def key(self) -> str:
        return f"{VERSION}-{self.machines}m{self.days}d"

    @property
    def root(self) -> Path:
        return Path.home() / ".cache" / "linemon" / f"bench-history-{self.key}"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def machine_ids(self) -> list[tuple[str, str]]:
        """(line, machine) pairs: the machines spread over LINES lines."""
        per_line = math.ceil(self.machines / LINES)
        return [(f"line-{i // per_line + 1}", f"m{i // per_line + 1}-{i % per_line + 1:02d}")
                for i in range(self.machines)]

    def manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.is_file():
            return None
        return json.loads(self.manifest_path.read_text())


def window_for(today: datetime, days: int) -> tuple[datetime, datetime]:
    end = today.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - timedelta(days=days), end


# --- what happened: stops, states, parts ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stop:
    start: datetime
    end: datetime
    state: MachineState
    category: DowntimeCategory
    micro: bool
    code: str | None


def stops_of(index: int, start: datetime, end: datetime) -> list[Stop]:
    rng = random.Random(1000 + index)
    out: list[Stop] = []
    t = start + timedelta(seconds=rng.uniform(0, 600))
    while True:
        t += timedelta(seconds=max(30.0, rng.expovariate(1 / 1500)))
        roll = rng.random()
        if roll < 0.65:
            length, micro = rng.uniform(5, 29), True
            state, category = MachineState.DOWN, DowntimeCategory.UNPLANNED
            code = rng.choice(STOP_CODES)
        elif roll < 0.95:
            length, micro = rng.uniform(60, 1800), False
            state, category = MachineState.DOWN, DowntimeCategory.UNPLANNED
            code = rng.choice(STOP_CODES)
        else:
            length, micro = rng.uniform(600, 2400), False
            state, category = MachineState.CHANGEOVER, DowntimeCategory.CHANGEOVER
            code = rng.choice(["5", "6"])
        if rng.random() < 0.2:
            code = None
        stop_end = t + timedelta(seconds=round(length, 3))
        if stop_end >= end:
            return out
        out.append(Stop(t, stop_end, state, category, micro, code))
        t = stop_end


def event_lines(line: str, machine: str, stops: list[Stop]) -> Iterator[str]:
    """State changes and downtime events, through the historian's own encoder."""
    for stop in stops:
        text = REASONS.get(stop.code) if stop.code else None
        yield encode_event(StateChanged(line, machine, stop.start, stop.state,
                                        MachineState.RUNNING, stop.code, text)).lp
        yield encode_event(StateChanged(line, machine, stop.end, MachineState.RUNNING,
                                        stop.state, None, None)).lp
        event = DowntimeEvent(id=f"{machine}:{stop.start.isoformat()}", line=line,
                              machine=machine, start=stop.start, end=stop.end,
                              reason_code=stop.code, reason_text=text,
                              category=stop.category, micro_stop=stop.micro)
        yield encode_event(DowntimeEnded(event)).lp


def parts_lines(line: str, machine: str, stops: list[Stop], start: datetime,
                end: datetime, index: int) -> Iterator[str]:
    """One parts point every PARTS_EVERY_S of running time; fast path, checked once."""
    rng = random.Random(5000 + index)
    prefix = encode_event(PartsProduced(line, machine, start, 5, 1, IDEAL_CYCLE_S)).lp
    key = prefix.split(" ", 1)[0]
    first = True
    t, e = to_ns(start), to_ns(end)
    bounds = [(to_ns(s.start), to_ns(s.end)) for s in stops] + [(e, e)]
    step = PARTS_EVERY_S * NS
    for stop_start, stop_end in bounds:
        t += step
        while t < stop_start:
            good = 4 + (rng.random() < 0.5)
            reject = 1 if rng.random() < 0.03 else 0
            fields = f"good={good}i,reject={reject}i" if reject else f"good={good}i"
            line_text = f"{key} {fields},ideal_cycle_time_s=3.0 {t}"
            if first:
                want = encode_event(PartsProduced(line, machine, datetime.fromtimestamp(
                    t / NS, UTC), good, reject, IDEAL_CYCLE_S)).lp
                assert line_text == want, (line_text, want)
                first = False
            yield line_text
            t += step
        t = max(t, stop_end)


def sample_prefix(encoder: SampleEncoder, machine: str, at: datetime) -> str:
    """`sample,<tags> value=` for one machine, taken from the historian's encoder."""
    record = encoder.encode(Sample(machine, SIGNAL, 70.5, at, at, Quality.GOOD, SOURCE))
    head, _, rest = record.lp.partition(" value=")
    assert rest == f"70.5 {to_ns(at)}", record.lp
    return head + " value="


VALUES = [f"{70 + 8 * math.sin(i / 600) + (i * 7919 % 100) / 100:.2f}" for i in range(3600)]


# --- InfluxDB -----------------------------------------------------------------------------


class InfluxWriter:
    """Line protocol batches on one keep-alive connection, posted from a thread."""

    def __init__(self, server: InfluxServer) -> None:
        self.server = server
        self.q: queue.Queue[tuple[str, str] | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.points = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, bucket: str, lines: list[str]) -> None:
        if self.error is not None:
            raise RuntimeError("influx write failed") from self.error
        if lines:
            self.points += len(lines)
            self.q.put((bucket, "\n".join(lines)))

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None:
            raise RuntimeError("influx write failed") from self.error

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=300)
        headers = {"Authorization": f"Token {self.server.operator_token}",
                   "Content-Type": "text/plain; charset=utf-8"}
        while (item := self.q.get()) is not None:
            bucket, body = item
            try:
                conn.request("POST", f"/api/v2/write?orgID={self.server.org_id}"
                             f"&bucket={bucket}&precision=ns", body=body.encode(),
                             headers=headers)
                resp = conn.getresponse()
                answer = resp.read()
                if resp.status != 204:
                    raise RuntimeError(f"influxd answered {resp.status}: {answer[:300]!r}")
            except BaseException as err:
                self.error = err
                while self.q.get() is not None:
                    pass
                return


def open_influx(root: Path) -> InfluxServer:
    binary = find_influxd()
    if binary is None:
        raise SystemExit("influxd not found; `make services` builds it")
    root.mkdir(parents=True, exist_ok=True)
    return InfluxServer(binary, root)


def build_influx(ds: Dataset, start: datetime, end: datetime) -> dict[str, Any]:
    root = ds.root / "influx"
    if root.exists():
        shutil.rmtree(root)
    server = open_influx(root)
    server.start()
    try:
        server.onboard()
        for bucket in (RAW_BUCKET, LONG_BUCKET):  # retention 0 = forever: the cache must last
            server.api("POST", "/api/v2/buckets", {"orgID": server.org_id, "name": bucket,
                                                   "retentionRules": []})
        began = time.monotonic()
        writer = InfluxWriter(server)
        machines = ds.machine_ids()
        encoder = SampleEncoder(dict((m, ln) for ln, m in machines))
        prefixes = [sample_prefix(encoder, m, start) for _, m in machines]
        events: list[str] = []
        for i, (line, machine) in enumerate(machines):
            stops = stops_of(i, start, end)
            events += event_lines(line, machine, stops)
            events += parts_lines(line, machine, stops, start, end, i)
        for k in range(0, len(events), INFLUX_BATCH):
            writer.put(LONG_BUCKET, events[k:k + INFLUX_BATCH])
        n_events = len(events)
        del events
        t0, seconds = to_ns(start) // NS, int((end - start).total_seconds())
        chunk = max(1, INFLUX_BATCH // len(machines))
        nv = len(VALUES)
        for s0 in range(0, seconds, chunk):
            s1 = min(seconds, s0 + chunk)
            batch = [f"{p}{VALUES[(s + j * 97) % nv]} {(t0 + s) * NS}"
                     for s in range(s0, s1) for j, p in enumerate(prefixes)]
            writer.put(RAW_BUCKET, batch)
            if s0 % (chunk * 200) == 0:
                done = s1 / seconds
                rate = writer.points / max(1e-9, time.monotonic() - began)
                print(f"  influx: {done:6.1%} of the samples, {rate:,.0f} points/s", flush=True)
        writer.close()
        took = time.monotonic() - began
        return {"operator_token": server.operator_token, "org_id": server.org_id,
                "port": server.port, "build_s": round(took, 1), "points": writer.points,
                "event_points": n_events, "disk_bytes": du(root)}
    finally:
        server.stop()


# --- SQLite -------------------------------------------------------------------------------


def build_sqlite(ds: Dataset, start: datetime, end: datetime) -> dict[str, Any]:
    path = ds.root / "history.sqlite"
    for p in path.parent.glob("history.sqlite*"):
        p.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    for stmt in tables.ddl():
        conn.execute(stmt)
    upserts = {m: tables.upsert_sql(m) for m in tables.PK}
    machines = ds.machine_ids()
    encoder = SampleEncoder(dict((m, ln) for ln, m in machines))
    t0, seconds = to_ns(start) // NS, int((end - start).total_seconds())
    nv, points = len(VALUES), 0
    sample_sql = upserts["sample"].split(" ON CONFLICT")[0]  # a fresh table: plain inserts
    for i, (line, machine) in enumerate(machines):
        stops = stops_of(i, start, end)
        lines = list(event_lines(line, machine, stops))
        lines += parts_lines(line, machine, stops, start, end, i)
        conn.execute("BEGIN")
        for m, rows in tables.rows_by_table(parse_line(x) for x in lines).items():
            conn.executemany(upserts[m], rows)
            points += len(rows)
        # Sample rows in the table's column order, checked against the store's own mapping.
        prefix = sample_prefix(encoder, machine, start)
        want = tables.rows_by_table([parse_line(f"{prefix}{VALUES[0]} {t0 * NS}")])["sample"][0]
        row0 = (machine, SIGNAL, line, SOURCE, "good", t0 * NS, float(VALUES[0]), None)
        assert want == row0, (want, row0)
        values = [float(v) for v in VALUES]
        for s0 in range(0, seconds, 86_400):
            s1 = min(seconds, s0 + 86_400)
            conn.executemany(sample_sql, ((machine, SIGNAL, line, SOURCE, "good",
                                           (t0 + s) * NS, values[(s + i * 97) % nv], None)
                                          for s in range(s0, s1)))
            points += s1 - s0
        conn.execute("COMMIT")
        rate = points / max(1e-9, time.monotonic() - began)
        print(f"  sqlite: machine {i + 1}/{len(machines)}, {rate:,.0f} rows/s", flush=True)
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    return {"build_s": round(time.monotonic() - began, 1), "points": points,
            "disk_bytes": path.stat().st_size}


def du(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def ensure(ds: Dataset, *, rebuild: bool = False) -> dict[str, Any]:
    """The dataset's manifest, building what is missing (each store is built once)."""
    manifest = ds.manifest() or {}
    if rebuild:
        manifest = {}
    if "start" not in manifest:
        start, end = window_for(datetime.now(UTC), ds.days)
        manifest = {"version": VERSION, "machines": ds.machines, "days": ds.days,
                    "start": start.isoformat(), "end": end.isoformat(),
                    "samples": ds.machines * ds.days * 86_400}
    start = datetime.fromisoformat(manifest["start"])
    end = datetime.fromisoformat(manifest["end"])
    ds.root.mkdir(parents=True, exist_ok=True)
    for store, build in (("sqlite", build_sqlite), ("influx", build_influx)):
        if store in manifest:
            continue
        print(f"building the {store} history ({ds.machines} machines x {ds.days} days at 1 Hz, "
              f"once, into {ds.root})", flush=True)
        manifest[store] = build(ds, start, end)
        ds.manifest_path.write_text(json.dumps(manifest, indent=2))
    return manifest


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--machines", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    ds = Dataset(args.machines, args.days)
    manifest = ensure(ds, rebuild=args.rebuild)
    print(json.dumps(manifest, indent=2))
    return manifest


if __name__ == "__main__":
    main()
