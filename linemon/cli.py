"""`linemon` command line: run, demo, simulate, check-config."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from linemon import event_loop
from linemon.config import ConfigError, PlantConfig, load_config, resolve_secret

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "deploy" / "demo" / "plant.yaml"
DEMO_SCENARIO = REPO / "simulators" / "scenarios" / "demo.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="linemon", description="Real-time monitor for factory production lines."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run collectors, engine, historian and API")
    run.add_argument("--config", required=True, type=Path, help="plant config YAML")
    run.add_argument("--host", help="API bind address (default from the config: 127.0.0.1)")
    run.add_argument("--port", type=int, help="API port (default from the config: 8000)")
    run.add_argument("--role", choices=["all", "engine", "api"], default="all",
                     help="scale out: 'engine' runs --lines (collectors, rules, history "
                     "writer), 'api' serves every line from the engines' bus; default: all")
    run.add_argument("--lines", help="engine role: comma-separated line ids it runs")
    run.add_argument("--engine-id", help="engine role: stable id (MQTT client ids, spool "
                     "directory); default: from the lines")

    demo = commands.add_parser("demo", help="simulated plant + linemon in one process")
    demo.add_argument("--config", type=Path, default=DEMO_CONFIG, help="demo plant config")
    demo.add_argument("--scenario", type=Path, default=DEMO_SCENARIO, help="simulator scenario")
    demo.add_argument("--port", type=int, default=None, help="API port (default 8000)")

    simulate = commands.add_parser(
        "simulate", help="run the machine simulators alone", add_help=False
    )
    simulate.add_argument("args", nargs=argparse.REMAINDER)

    check = commands.add_parser("check-config", help="validate a plant config and summarize it")
    check.add_argument("file", type=Path)

    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["simulate"]:
        from simulators.cli import main as simulate_main

        return simulate_main(argv[1:])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if not args.verbose:
        # asyncua logs every publish and read at INFO: only its warnings are news to a user.
        logging.getLogger("asyncua").setLevel(logging.WARNING)
    if args.command == "check-config":
        return check_config(args.file)
    try:
        if args.command == "run":
            from linemon.serve import serve

            config = load_config(args.config)
            event_loop.run(serve(config, host=args.host, port=args.port, on_ready=_announce,
                                 role=args.role, lines=args.lines, engine_id=args.engine_id))
        elif args.command == "demo":
            from linemon.demo import run_demo

            event_loop.run(run_demo(args.config, args.scenario, api_port=args.port))
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def check_config(path: Path) -> int:
    try:
        config = load_config(path)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    print(summarize(config, path))
    return 0


def summarize(config: PlantConfig, path: Path) -> str:
    out = [f"{path}: valid", f"site: {config.site.name} ({config.site.timezone})"]
    shifts = ", ".join(f"{s.name} {s.start:%H:%M}-{s.end:%H:%M}" for s in config.calendar.shifts)
    out.append(f"shifts: {shifts}")
    out.append(f"sources: {len(config.sources)}")
    for source in config.sources:
        where = source.endpoint if source.kind == "opcua" else f"{source.host}:{source.port}"
        out.append(f"  {source.name} ({source.kind}) {where}")
    machines = config.machines()
    tags = sum(len(m.tags) for _, m in machines)
    out.append(f"lines: {len(config.lines)}, machines: {len(machines)}, tags: {tags}")
    for line in config.lines:
        out.append(f"  {line.id}: {line.name or ''}")
        for m in line.machines:
            out.append(f"    {m.id} via {m.source}, ideal cycle {m.ideal_cycle_time_s}s, "
                       f"tags: {', '.join(m.tags)}")
    backend = config.historian.backend
    out.append(f"historian: {backend.kind}")
    missing = []
    for source in config.sources:
        for attr in ("username_env", "password_env"):
            try:
                resolve_secret(getattr(source, attr), f"{source.name}.{attr}")
            except ConfigError as err:
                missing.append(str(err.issues[0]))
    for line in missing:
        out.append(f"warning: {line}")
    return "\n".join(out)


def _announce(url: str) -> None:
    loop = event_loop.name(asyncio.get_running_loop())
    print(f"linemon API on {url}  (docs: {url}/docs; event loop: {loop})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
