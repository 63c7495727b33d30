"""`make bench`: every figure of issue #11 on real servers, a summary vs the targets, JSON.

    python -m bench [--quick] [--only NAME] [--force]

Runs the figure modules in order (each exposes `main(argv) -> dict` and records its JSON
through bench.harness.record), prints a summary table of every figure against its target
and writes bench/results/latest.json. Refuses to start on a loaded machine (--force or
LINEMON_BENCH_FORCE=1 to run anyway). --quick: fewer and shorter repetitions, for
developing the scripts only; never quote its numbers. Exit 1 when a figure could not be
measured (a module failed), 0 otherwise; a figure missing its target is reported, not an
error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
import traceback
from typing import Any

from bench import harness

# (module, what it measures); run in this order. Modules another helper may not have
# written yet are reported as missing, not as a failure of the others.
MODULES: list[tuple[str, str]] = [
    ("bench.ingest_mqtt", "(1) MQTT ingest cost"),
    ("bench.ingest_opcua", "(2) OPC-UA ingest cost"),
    ("bench.memory", "(6) memory per 1,000 tags"),
    ("bench.replay", "(8) spool replay rate"),
    ("bench.history", "(7) history queries"),
    ("bench.sustained", "(3)(4)(5) sustained load, latency, live API, RSS growth"),
]


def _get(data: dict[str, Any], *path: str) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _fmt(stats: Any, fmt: str) -> str:
    if not isinstance(stats, dict) or "median" not in stats:
        return "-"
    return (f"{fmt.format(stats['median'])} "
            f"({fmt.format(stats['min'])}..{fmt.format(stats['max'])})")


def _verdict(ok: Any) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def summary_rows(records: dict[str, Any]) -> list[list[str]]:
    """One row per figure of ours (others' records are listed with their own `meets_target`
    when they carry one)."""
    rows: list[list[str]] = []
    mqtt = records.get("1-ingest-mqtt")
    if mqtt:
        rows.append(["(1) MQTT ingest, linemon / bare paho (msg per CPU-s)",
                     _fmt(mqtt.get("ratio"), "{:.2f}"), ">= 0.5x",
                     _verdict(mqtt.get("meets_target"))])
    opcua = records.get("2-ingest-opcua")
    if opcua:
        for tags, data in opcua.get("sizes", {}).items():
            rows.append([f"(2) OPC-UA ingest at {int(tags):,} tags, linemon / bare asyncua",
                         _fmt(data.get("ratio"), "{:.2f}"), ">= 0.5x",
                         _verdict(_get(data, "ratio", "median") >= 0.5
                                  if _get(data, "ratio", "median") is not None else None)])
    memory = records.get("6-memory")
    if memory:
        rows.append(["(6) RSS per 1,000 tags, marginal (MB)",
                     _fmt(memory.get("marginal_mb_per_1000"), "{:.1f}"), "< 10 MB",
                     _verdict((_get(memory, "marginal_mb_per_1000", "median") or 99) < 10)])
        rows.append(["(6) RSS per 1,000 tags, over baseline (MB)",
                     _fmt(memory.get("over_baseline_mb_per_1000"), "{:.1f}"), "< 10 MB",
                     _verdict((_get(memory, "over_baseline_mb_per_1000", "median") or 99)
                              < 10)])
    replay = records.get("8-replay")
    if replay:
        for case, data in replay.get("cases", {}).items():
            rows.append([f"(8) replay, {case} (records/s)", _fmt(data.get("rate"), "{:,.0f}"),
                         "vs ceiling: " + _fmt(data.get("ratio"), "{:.2f}"), "-"])
    for figure, data in records.items():
        if figure in ("1-ingest-mqtt", "2-ingest-opcua", "6-memory", "8-replay"):
            continue
        ok = data.get("meets_target") if isinstance(data, dict) else None
        rows.append([figure, "see its table above", str(_get(data, "target") or "-"),
                     _verdict(ok)])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer/shorter reps for developing the scripts; not for figures")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this module (e.g. ingest_mqtt); repeatable")
    parser.add_argument("--force", action="store_true",
                        help=f"run even on a loaded machine (also {harness.FORCE_ENV}=1)")
    args = parser.parse_args(argv)
    if args.quick:
        os.environ[harness.QUICK_ENV] = "1"
    if args.force:
        os.environ[harness.FORCE_ENV] = "1"
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    chosen = [(m, what) for m, what in MODULES
              if not args.only or m.rsplit(".", 1)[-1] in args.only or m in args.only]
    if not chosen:
        parser.error(f"--only: no such module; known: "
                     f"{', '.join(m.rsplit('.', 1)[-1] for m, _ in MODULES)}")
    machine = harness.machine()
    print(f"linemon bench on {machine['nproc']} CPUs ({machine['cpu']}), "
          f"{machine['mem_gib']} GiB, Python {machine['python']}"
          + (" -- QUICK MODE: not for figures" if args.quick else ""), flush=True)
    harness.refuse_if_loaded(figure="make bench")
    failed: list[str] = []
    timings: list[list[str]] = []
    started = time.monotonic()
    for module_name, what in chosen:
        print(f"\n== {what}: {module_name}", flush=True)
        t0 = time.monotonic()
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            print(f"   {module_name} does not exist (yet): {what} not measured", flush=True)
            failed.append(f"{module_name} (missing)")
            continue
        try:
            module.main([])
        except SystemExit as err:
            if err.code not in (0, None):
                failed.append(f"{module_name} (exit {err.code})")
        except Exception:
            traceback.print_exc()
            failed.append(f"{module_name} (error)")
        timings.append([module_name, f"{time.monotonic() - t0:.0f} s"])
    path = harness.write_results()
    harness.print_table("Summary: every figure vs its target (median (min..max))",
                        ["figure", "measured", "target", "meets"],
                        summary_rows(harness.RECORDS))
    timings.append(["total", f"{time.monotonic() - started:.0f} s"])
    harness.print_table("Time taken", ["module", "wall"], timings)
    print(f"\nJSON: {path}")
    if failed:
        print("NOT MEASURED: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
