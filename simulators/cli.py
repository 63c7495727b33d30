"""Command line: run a scenario, serve it over OPC-UA / MQTT, write its ground truth.

    python -m simulators --scenario simulators/scenarios/demo.yaml --speed 60 \
        --opcua-port 4840 --mqtt-host 127.0.0.1 --truth truth.json

Without --opcua-port and --mqtt-host (and without --speed) the scenario runs as fast as
possible and only the ground truth is written. Ctrl-C stops cleanly (and still writes it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from simulators.opcua.security import OpcUaSecurity
from simulators.plant import SimulatedPlant
from simulators.scenario import MQTT_MODES, ScenarioError, load_scenario

log = logging.getLogger("simulators")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linemon simulate", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", required=True, type=Path, help="scenario YAML file")
    p.add_argument("--speed", type=float, help="simulated seconds per second; 0 = max (default 1)")
    p.add_argument("--seed", type=int, help="random seed (default: the scenario's)")
    p.add_argument("--start", type=_iso, help="simulated start, ISO 8601 with offset (default now)")
    p.add_argument("--forever", action="store_true", help="keep running past the scenario")
    p.add_argument("--truth", type=Path, help="write the ground truth JSON here at the end")
    p.add_argument("--opcua-port", type=int, help="serve OPC-UA machines on this port (0 = any)")
    p.add_argument("--opcua-host", default="127.0.0.1")
    p.add_argument("--opcua-cert-dir", type=Path, help="secure the endpoint (Basic256Sha256)")
    p.add_argument("--opcua-trust", type=Path, action="append", default=[], help="client cert")
    p.add_argument("--opcua-user", action="append", default=[], help="user:password")
    p.add_argument("--opcua-anonymous", action="store_true", help="secured, but anonymous ok")
    p.add_argument("--mqtt-host", help="publish MQTT machines to this broker")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--mqtt-mode", choices=MQTT_MODES, help="default: the scenario's")
    p.add_argument("--mqtt-prefix", help="topic prefix for JSON modes (default: the scenario's)")
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = args.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        logging.getLogger("asyncua").setLevel(logging.WARNING)  # very chatty at INFO
    try:
        scenario = load_scenario(args.scenario)
    except (OSError, ScenarioError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    serving = args.opcua_port is not None or args.mqtt_host is not None
    speed = args.speed if args.speed is not None else (1.0 if serving else 0.0)
    security = None
    if args.opcua_cert_dir is not None:
        try:
            users = dict(u.split(":", 1) for u in args.opcua_user)
        except ValueError:
            print("error: --opcua-user expects user:password", file=sys.stderr)
            return 2
        security = OpcUaSecurity(
            cert_dir=args.opcua_cert_dir,
            users=users,
            allow_anonymous=args.opcua_anonymous,
            trusted_client_certs=tuple(args.opcua_trust),
        )
    try:
        plant = SimulatedPlant(
            scenario,
            speed=speed,
            seed=args.seed,
            start=args.start,
            opcua_port=args.opcua_port,
            opcua_host=args.opcua_host,
            opcua_security=security,
            mqtt_host=args.mqtt_host,
            mqtt_port=args.mqtt_port,
            mqtt_mode=args.mqtt_mode,
            mqtt_prefix=args.mqtt_prefix,
            realtime_forever=args.forever,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(plant, args.truth))
    except ConnectionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


async def _run(plant: SimulatedPlant, truth: Path | None) -> int:
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # not possible outside the main thread, or on Windows: Ctrl-C then ends asyncio.run
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, interrupted.set)
    await plant.start()
    if plant.opcua_endpoint:
        log.info("OPC-UA: %s (namespace %s)", plant.opcua_endpoint, plant.namespace_uri)
    if plant.mqtt_host:
        log.info("MQTT: %s:%s (%s)", plant.mqtt_host, plant.mqtt_port, plant.mqtt_mode)
    done = asyncio.ensure_future(plant.wait_until_done())
    stop = asyncio.ensure_future(interrupted.wait())
    try:
        await asyncio.wait({done, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if truth is not None:
            plant.write_truth(truth)
            log.info("ground truth written to %s", truth)
        await plant.stop()
        done.cancel()
        await asyncio.gather(done, stop, return_exceptions=True)
    return 0


def _iso(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError("--start needs a UTC offset, e.g. 2024-03-04T06:00:00Z")
    return parsed.astimezone(UTC)
