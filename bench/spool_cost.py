"""What the durable spool costs per record: the row-per-record SQLite side (spool_db.py
as of OLD_REV, the commit before the chunks, or --old-rev) against the chunked one in the
working tree, same run.

    python -m bench.spool_cost [--records 20000] [--reps 3] [--peek 2500] [--dir DIR]

Drives SpoolDb directly on its own (no thread, no event loop: those did not change), on
a fresh file in a temporary directory per case, with WAL and synchronous=FULL as in
production (every put is fsynced):
- put: `records` sample lines in batches of 100 and of 1,000, one commit per batch (what
  a source batch costs when nothing else is waiting to share its commit);
- peek and ack: then drain the file as the forwarder does, peek(`peek`, kind="sample")
  and ack those ids, until empty. 2,500 is not a multiple of 1,000 on purpose: half the
  peeks cut a chunk and ack part of it. "peek" includes making the request body and the
  ids to ack: with `peek_batch` (66b28e4 on) that is the batch itself, before it a
  `SpooledRecord` per record, their lines joined and their ids listed. `--old-rev
  66b28e4^` compares the two.
Prints wall and CPU (process_time) µs per record for each step, the median of `reps`
runs with old and new interleaved, and the CPU seconds of the whole run per version.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STEPS = ("put100", "put1000", "peek", "ack")


OLD_REV = "edcb7a3^"  # the last row-per-record spool


def load_old(rev: str, into: Path) -> ModuleType:
    """spool_db.py as it was at `rev`, imported as a module of its own."""
    src = subprocess.run(["git", "show", f"{rev}:collector/historian/spool_db.py"], cwd=REPO,
                         check=True, capture_output=True, text=True).stdout
    path = into / "spool_db_old.py"
    path.write_text(src)
    # Named inside the package, so that its relative imports (linebatch) resolve.
    spec = importlib.util.spec_from_file_location("collector.historian.spool_db_old", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def lines(n: int) -> list[str]:
    """Sample lines as SampleEncoder writes them (~100 bytes), 50 tags, 1 kHz timestamps."""
    t0 = 1_700_000_000_000_000_000
    return [f"sample,line=line-a,machine=press-{i % 50},quality=good,signal=temperature,"
            f"source=opcua value={20 + i % 997 / 10!r} {t0 + i * 1_000_000}" for i in range(n)]


def timed(acc: dict[str, float], step: str, fn: Callable[..., Any], *args: Any) -> Any:
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    acc[step + ".wall"] = acc.get(step + ".wall", 0.0) + time.perf_counter() - w
    acc[step + ".cpu"] = acc.get(step + ".cpu", 0.0) + time.process_time() - c
    return out


def request(db: Any, peek: int) -> tuple[int, tuple[Any, ...]]:
    """What the forwarder takes from the spool for one request: (records, ack's arguments)."""
    if hasattr(db, "peek_batch"):
        batch = db.peek_batch(peek, "sample", 0, None)
        return len(batch), (batch.ids, True)  # batch.lines.text is the body already
    got = db.peek(peek, "sample", 0, None)
    _body = "\n".join([r.lp for r in got])  # as the store made it
    return len(got), ([r.id for r in got],)


def run(mod: ModuleType, workdir: Path, n: int, peek: int) -> dict[str, float]:
    """Seconds per step, summed over the step's calls."""
    acc: dict[str, float] = {}
    data = lines(n)
    for batch in (100, 1000):
        records = [mod.Record(lp, "sample", False, 1_700_000_000_000_000_000 + i)
                   for i, lp in enumerate(data)]
        path = Path(tempfile.mkdtemp(dir=workdir)) / "spool.sqlite"
        db = mod.SpoolDb(path, 10**12)
        for i in range(0, n, batch):
            timed(acc, f"put{batch}", db.insert, [records[i:i + batch]])
        if batch == 1000:  # drain the second file the way the forwarder does
            drained = 0
            while True:
                got, ids = timed(acc, "peek", request, db, peek)
                if not got:
                    break
                timed(acc, "ack", db.ack, *ids)
                drained += got
            assert drained == n and db.counters().depth == 0, (drained, db.counters())
        db.close()
    return acc


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peek", type=int, default=2500, help="peek limit (the forwarder batch)")
    ap.add_argument("--old-rev", default=OLD_REV)
    ap.add_argument("--dir", type=Path, default=None, help="where the files go (a real disk)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from collector.historian import spool_db as new

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="spool-cost-") as tmp:
        work = Path(tmp)
        versions = {"old": load_old(args.old_rev, work), "new": new}
        runs: dict[str, list[dict[str, float]]] = {v: [] for v in versions}
        cpu_total = dict.fromkeys(versions, 0.0)
        for _ in range(args.reps):
            for name, mod in versions.items():  # interleaved: drift hits both alike
                c = time.process_time()
                runs[name].append(run(mod, work, args.records, args.peek))
                cpu_total[name] += time.process_time() - c

    per_rec = {name: {key: statistics.median(r[key] for r in rs) / args.records * 1e6
                      for key in rs[0]} for name, rs in runs.items()}
    print(f"spool cost per record: {args.records} records, median of {args.reps} runs, "
          f"peek limit {args.peek}, fsync on every put")
    print(f"{'step':<9}{'old wall':>10}{'old cpu':>10}{'new wall':>10}{'new cpu':>10}"
          f"{'cpu new/old':>13}")
    for step in STEPS:
        o, w = per_rec["old"], per_rec["new"]
        print(f"{step:<9}{o[step + '.wall']:>8.2f}µs{o[step + '.cpu']:>8.2f}µs"
              f"{w[step + '.wall']:>8.2f}µs{w[step + '.cpu']:>8.2f}µs"
              f"{w[step + '.cpu'] / o[step + '.cpu']:>12.2f}x")
    for name in versions:
        print(f"CPU seconds, whole run, {name}: {cpu_total[name]:.2f}")
    return {"per_record_us": per_rec, "cpu_s": cpu_total, "records": args.records,
            "reps": args.reps, "peek": args.peek}


if __name__ == "__main__":
    main()
