"""Figure (6): resident memory per 1,000 monitored tags.

    python -m bench.memory [--reps 5]

linemon processes (OPC-UA source, InfluxDB historian on a real influxd, the engine) are
started against the bench OPC-UA server (bench/opcua_plant.py: 70 % of the tags change
every second) with 10, 1,000 and 5,000 tags configured and flowing; each one's resident
set size (/proc/<pid>/statm) is read after its warm-up and measuring window, i.e. with
every tag seen many times. Two figures, MB per 1,000 tags:

- marginal: (RSS at 5,000 - RSS at 1,000) / 4, what more tags cost;
- over baseline: (RSS at 1,000 - RSS at 10 tags) / 0.99, the baseline being the
  process with its imports, the API-less app and one machine.

When figure (2) ran in the same `python -m bench`, its linemon runs at 1,000, 5,000 and 10
tags (the baseline is part of its interleave) are reused: same servers, same moment.
Target: under 10 MB per 1,000 tags.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench import harness, ingest_opcua
from bench.rig import influxd

FIGURE = "6-memory"
TARGET_MB = 10.0
MB = 1024 * 1024


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2 if harness.quick() else 5)
    parser.add_argument("--window", type=float, default=2.0)
    args = parser.parse_args(argv)
    earlier = harness.RECORDS.get(ingest_opcua.FIGURE, {})
    rss: dict[int, list[int]] = {}
    for tags in (1000, 5000):
        if str(tags) in earlier.get("sizes", {}):
            rss[tags] = list(earlier["sizes"][str(tags)]["linemon_rss_bytes"])
    if earlier.get("baseline", {}).get("tags") == 10:
        rss[10] = list(earlier["baseline"]["rss_bytes"])
    wanted = [t for t in (10, 1000, 5000) if t not in rss]
    if wanted:
        with influxd() as influx:
            plant = ingest_opcua.OpcUaPlant()
            try:
                runs = harness.interleave(args.reps, {
                    str(tags): (lambda t=tags: ingest_opcua.run_child(
                        "linemon", plant.endpoint, t, warmup_s=1.5, window_s=args.window,
                        influx_url=influx.url))
                    for tags in wanted})
            finally:
                plant.close()
        for tags in wanted:
            rss[tags] = [r["rss"] for r in runs[str(tags)]]
    reps = min(len(v) for v in rss.values())
    marginal = [(rss[5000][i] - rss[1000][i]) / 4 / MB for i in range(reps)]
    over_base = [(rss[1000][i] - rss[10][i]) / 0.99 / MB for i in range(reps)]
    m, b = harness.Stats.of(marginal), harness.Stats.of(over_base)
    absolute = {t: harness.Stats.of([v / MB for v in rss[t]]) for t in (10, 1000, 5000)}
    rows = [[f"RSS at {t:,} tags", absolute[t].spread("{:.1f}") + " MB", ""]
            for t in (10, 1000, 5000)]
    rows += [["per 1,000 tags, marginal (5,000 vs 1,000)", m.spread("{:.1f}") + " MB",
              "yes" if m.median < TARGET_MB else "NO"],
             ["per 1,000 tags, over the 10-tag baseline", b.spread("{:.1f}") + " MB",
              "yes" if b.median < TARGET_MB else "NO"]]
    where = ("all from figure (2)" if not wanted else
             "all measured here" if len(wanted) == 3 else
             f"{', '.join(f'{t:,}' for t in wanted)} measured here, the rest from figure (2)")
    harness.print_table(f"(6) resident memory, median (min..max) of {reps} reps ({where})",
                        ["", "value", f"< {TARGET_MB:g} MB"], rows)
    return harness.record(FIGURE, {
        "target_mb_per_1000": TARGET_MB, "rss_bytes": {str(k): v for k, v in rss.items()},
        "marginal_mb_per_1000": m.as_dict(), "over_baseline_mb_per_1000": b.as_dict(),
        "meets_target": max(m.median, b.median) < TARGET_MB,
        "reused_from_figure_2": [t for t in (10, 1000, 5000) if t not in wanted]})


if __name__ == "__main__":
    main()
