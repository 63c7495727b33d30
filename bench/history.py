"""Figure 7: history queries over 30 days of 50 machines, on SQLite and on InfluxDB.

    python -m bench.history [--reps 5] [--machines 50] [--days 30] [--rebuild]

The dataset (bench/history_data.py: 1 Hz process values, the stops and states of 30 days,
part counts) is built once into ~/.cache/linemon/bench-history-<version>; the build time is
reported separately and only when it happened. Then two `linemon run` processes serve it,
one per historian backend (the cached SQLite file; a real influxd on the cached data dir),
and every query goes through the real API over HTTP with a key: each query once to warm
up (shown, not counted), then `--reps` interleaved repetitions (query by query, backend by
backend), median and min..max. Both backends answer the same window; the table says whether
their answers agree.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import yaml

from bench.harness import Stats, interleave_async, print_table, quick, record, refuse_if_loaded
from bench.history_data import REASONS, SIGNAL, Dataset, ensure, open_influx
from bench.rig import mosquitto, workdir
from linemon.config import parse_config
from linemon.event_loop import run as run_on_loop
from tests.support.influx import ORG
from tests.support.services import free_port, wait_for_port

KEY_ENV = "LINEMON_BENCH_API_KEY"
TOKEN_ENV = "LINEMON_BENCH_HISTORY_TOKEN"
BIN = Path(sys.executable).parent
SHIFTS = [{"name": "early", "start": "06:00", "end": "14:00"},
          {"name": "late", "start": "14:00", "end": "22:00"},
          {"name": "night", "start": "22:00", "end": "06:00"}]
FOREVER_DAYS = 36_500  # the cached window must never fall out of a retention


def config_for(ds: Dataset, backend: dict[str, Any], wd: Path, mqtt_port: int,
               api_port: int, name: str) -> Path:
    lines: dict[str, list[dict[str, Any]]] = {}
    for line, machine in ds.machine_ids():
        lines.setdefault(line, []).append({
            "id": machine, "source": "gateway", "ideal_cycle_time_s": 3.0,
            "tags": {"state": {"topic": "plant/{line}/{machine}/state_code"},
                     SIGNAL: {"topic": "plant/{line}/{machine}/" + SIGNAL, "type": "float"}}})
    data = {
        "site": {"name": "Bench history", "timezone": "UTC"},
        "calendar": {"shifts": SHIFTS},
        "sources": [{"kind": "mqtt", "name": "gateway", "host": "127.0.0.1", "port": mqtt_port,
                     "client_id": f"bench-history-{name}-{os.getpid()}"}],
        "reason_codes": REASONS,
        "lines": [{"id": line, "machines": ms} for line, ms in lines.items()],
        "historian": {"backend": backend, "spool": {"path": str(wd / f"spool-{name}.sqlite")}},
        "api": {"host": "127.0.0.1", "port": api_port,
                "keys": [{"name": "bench", "role": "admin", "key_env": KEY_ENV}]},
    }
    text = yaml.safe_dump(data, sort_keys=False)
    parse_config(text)
    path = wd / f"plant-{name}.yaml"
    path.write_text(text)
    return path


@contextlib.contextmanager
def linemon(config: Path, port: int, env: dict[str, str], log: Path) -> Iterator[str]:
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(BIN / "linemon"), "run", "--config", str(config)],
                                env=env, stdout=out, stderr=out)
        try:
            wait_for_port(port, 60)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def queries(ds: Dataset, start: datetime, end: datetime) -> dict[str, str]:
    w = {"start": start.isoformat(), "end": end.isoformat()}
    line, machine = ds.machine_ids()[0]
    per_line = sum(1 for ln, _ in ds.machine_ids() if ln == line)
    d = f"{ds.days} days"

    def q(path: str, **params: Any) -> str:
        return f"{path}?{urlencode({**w, **params})}"

    m = f"/api/v1/lines/{line}/machines/{machine}"
    return {
        "downtime list, all machines, first page of 100": q("/api/v1/downtime", limit=100),
        "downtime list, one machine, page of 100": q("/api/v1/downtime", machine=machine,
                                                     limit=100),
        f"downtime list, {d}, page of 1000 by duration": q(
            "/api/v1/downtime", limit=1000, order="duration_desc"),
        "Pareto of stop reasons, all machines": q("/api/v1/pareto"),
        f"MTBF/MTTR, one line ({per_line} machines)": q("/api/v1/reliability", line=line),
        f"OEE per shift, one line ({per_line} machines)": q("/api/v1/oee", line=line, by="shift"),
        "OEE per shift, one machine": q("/api/v1/oee", line=line, machine=machine, by="shift"),
        f"signal series, one machine, {d}, hourly mean": q(f"{m}/signals/{SIGNAL}",
                                                            every_s=3600, agg="mean"),
        f"signal series, one machine, {d}, 1-min max": q(f"{m}/signals/{SIGNAL}",
                                                          every_s=60, agg="max"),
        f"part counts, one machine, {d}, hourly": q(f"{m}/counts", every_s=3600),
        f"state timeline, one machine, {d}": q(f"{m}/timeline"),
    }


async def timed(http: httpx.AsyncClient, path: str) -> tuple[float, int, str, int]:
    """(seconds, body bytes, body, status)."""
    t0 = time.perf_counter()
    r = await http.get(path)
    body = r.content
    return time.perf_counter() - t0, len(body), body.decode(), r.status_code


def same_answer(a: str, b: str) -> bool:
    """Equal JSON up to float noise (aggregates summed in a different order)."""
    def norm(x: Any) -> Any:
        if isinstance(x, float):
            return round(x, 6)
        if isinstance(x, dict):
            return {k: norm(v) for k, v in x.items()}
        if isinstance(x, list):
            return [norm(v) for v in x]
        return x
    return norm(json.loads(a)) == norm(json.loads(b))


async def measure(ds: Dataset, manifest: dict[str, Any], reps: int) -> dict[str, Any]:
    start = datetime.fromisoformat(manifest["start"])
    end = datetime.fromisoformat(manifest["end"])
    key = secrets.token_urlsafe(24)
    influx = open_influx(ds.root / "influx")
    influx.operator_token = manifest["influx"]["operator_token"]
    influx.org_id = manifest["influx"]["org_id"]
    with workdir("history") as wd, mosquitto() as broker:
        influx.start()
        try:
            ports = {"sqlite": free_port(), "influxdb": free_port()}
            backends = {
                "sqlite": {"kind": "sqlite", "path": str(ds.root / "history.sqlite"),
                           "retention_days": FOREVER_DAYS},
                "influxdb": {"kind": "influxdb", "url": influx.url, "org": ORG,
                             "bucket": "linemon", "downsampled_bucket": "linemon_1m",
                             "token_env": TOKEN_ENV, "retention_days": FOREVER_DAYS,
                             "downsampled_retention_days": FOREVER_DAYS}}
            env = {**os.environ, KEY_ENV: key, TOKEN_ENV: influx.operator_token}
            configs = {name: config_for(ds, backend, wd, broker.port, ports[name], name)
                       for name, backend in backends.items()}
            with linemon(configs["sqlite"], ports["sqlite"], env, wd / "sqlite.log") as u1, \
                    linemon(configs["influxdb"], ports["influxdb"], env, wd / "influx.log") as u2:
                headers = {"Authorization": f"Bearer {key}"}
                async with httpx.AsyncClient(base_url=u1, headers=headers, timeout=300) as h1, \
                        httpx.AsyncClient(base_url=u2, headers=headers, timeout=300) as h2:
                    clients = {"sqlite": h1, "influxdb": h2}
                    return await run_queries(queries(ds, start, end), clients, reps)
        finally:
            influx.stop()


async def run_queries(qs: dict[str, str], clients: dict[str, httpx.AsyncClient],
                      reps: int) -> dict[str, Any]:
    first: dict[str, dict[str, float]] = {}
    failed: dict[str, dict[str, str]] = {}
    agree: dict[str, bool | None] = {}
    sizes: dict[str, dict[str, int]] = {}
    for name, path in qs.items():  # warm-up: each query once per backend, not counted
        answers = {}
        for backend, http in clients.items():
            took, size, body, status = await timed(http, path)
            first.setdefault(name, {})[backend] = took
            sizes.setdefault(name, {})[backend] = size
            if status == 200:
                answers[backend] = body
            else:  # reported, and not repeated (a timeout would eat the time budget)
                detail = json.loads(body).get("detail", "") if body.startswith("{") else ""
                failed.setdefault(name, {})[backend] = f"{status} after {took:.1f} s: {detail}"
        agree[name] = (same_answer(answers["sqlite"], answers["influxdb"])
                       if len(answers) == 2 else None)

    def case(http: httpx.AsyncClient, path: str) -> Any:
        async def go() -> float:
            took, _, body, status = await timed(http, path)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status} {body[:300]}")
            return took
        return go

    cases = {f"{backend}|{name}": case(http, path)
             for name, path in qs.items() for backend, http in clients.items()
             if backend not in failed.get(name, {})}
    found = await interleave_async(reps, cases)
    out: dict[str, Any] = {}
    rows = []
    for name in qs:
        entry: dict[str, Any] = {"agree": agree[name], "bytes": sizes[name]}
        cells = [name]
        for backend in clients:
            why = failed.get(name, {}).get(backend)
            if why is not None:
                entry[backend] = {"failed": why}
                cells += [f"FAILED ({why.split(':')[0]})", "-"]
                continue
            st = Stats.of([v * 1000 for v in found[f"{backend}|{name}"]])
            entry[backend] = {"ms": st.as_dict(), "first_ms": round(first[name][backend] * 1000,
                                                                    1)}
            cells += [st.spread("{:.0f}"), f"{first[name][backend] * 1000:.0f}"]
        cells.append({True: "yes", False: "NO", None: "-"}[agree[name]])
        rows.append(cells)
        out[name] = entry
    print_table(f"figure 7: history queries through the API (ms, {reps} interleaved reps, "
                "median (min..max); 'first' = the warm-up run)",
                ["query", "SQLite", "first", "InfluxDB", "first", "same answer"], rows)
    for name, whys in failed.items():
        for backend, why in whys.items():
            print(f"  {backend}: {name}: {why}")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reps", type=int, default=2 if quick() else 5)
    parser.add_argument("--machines", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--force", action="store_true", help="run on a busy machine")
    args = parser.parse_args(argv)
    if args.force:
        os.environ["LINEMON_BENCH_FORCE"] = "1"
    ds = Dataset(args.machines, args.days)
    had = ds.manifest() or {}
    began = time.monotonic()
    manifest = ensure(ds, rebuild=args.rebuild)
    built_now = [s for s in ("sqlite", "influx") if s not in had or args.rebuild]
    if built_now:
        print(f"history: built {', '.join(built_now)} in {time.monotonic() - began:.0f} s "
              "(once; later runs reuse the cache)")
    refuse_if_loaded(figure="history")
    began = time.monotonic()
    results = run_on_loop(measure(ds, manifest, args.reps))
    took = time.monotonic() - began
    build = {s: {k: manifest[s].get(k) for k in ("build_s", "points", "disk_bytes")}
             for s in ("sqlite", "influx")}
    print_table("figure 7: the dataset (built once)", ["store", "points", "build", "on disk"], [
        [s, f"{b['points']:,}", f"{b['build_s']:.0f} s", f"{b['disk_bytes'] / 2**30:.1f} GiB"]
        for s, b in build.items()])
    print(f"history: window {manifest['start']} .. {manifest['end']}, {ds.machines} machines, "
          f"{manifest['samples']:,} samples at 1 Hz; queries took {took:.0f} s")
    return record("7-history", {
        "window": [manifest["start"], manifest["end"]], "machines": ds.machines,
        "days": ds.days, "samples": manifest["samples"], "reps": args.reps, "build": build,
        "built_this_run": built_now, "queries": results, "took_s": round(took, 1),
        "target": "none set (report)", "meets_target": None})


if __name__ == "__main__":
    main()
