"""Notification latency: from the alert firing to the message at the receiver.

    python -m bench.notify_latency [--alerts 25] [--every 1.5]

The real path: the simulated plant (OPC-UA + mosquitto) stops its machines in turn,
linemon's collectors and engine fire `machine_stopped`, the notifier queues the messages
in its outbox (SQLite, fsync) and the worker POSTs them to a real HTTP receiver (ntfy's
publish API and a JSON webhook). Two figures per alert, both on this machine's clock:

- fired -> received: the alert's `fired_at` (the engine tick that fired it) to the
  webhook's arrival; this is the notifier's own latency (target: under 2 s).
- stop -> received: the simulator's stop command to the arrival; it adds the plant side
  (OPC-UA publishing interval or MQTT, and up to one 1 s engine tick).

Needs mosquitto (`make services`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from linemon.app import Linemon
from linemon.model import MachineState
from simulators import SimulatedPlant
from tests.notify.receivers import HttpReceiver
from tests.support.plants import demo_config, eventually, quiet_scenario
from tests.support.services import Mosquitto

MACHINES = ("press-1", "weld-1", "paint-1", "inspect-1", "pack-1")


def notifications(receiver: HttpReceiver, outbox: Path) -> dict[str, object]:
    return {
        "outbox": {"path": str(outbox)},
        "channels": [{"kind": "ntfy", "name": "phones", "server": receiver.url},
                     {"kind": "webhook", "name": "hook", "url": f"{receiver.url}/hook/bench"}],
        "people": [{"id": "alice", "ntfy_topic": "alice-phone"}],
        "routes": [{"match": {"rules": ["machine_stopped"]},
                    "notify": [{"channel": "phones", "to": ["alice"]}, {"channel": "hook"}]}],
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(name: str, values: list[float]) -> None:
    ms = [v * 1000 for v in values]
    print(f"{name:<22} n={len(ms):3d}  p50 {percentile(ms, 0.5):7.1f} ms  "
          f"p99 {percentile(ms, 0.99):7.1f} ms  max {max(ms):7.1f} ms  "
          f"mean {statistics.fmean(ms):7.1f} ms")


async def run(alerts: int, every_s: float) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="linemon-bench-notify-"))
    broker = Mosquitto(workdir / "mosquitto")
    broker.start()
    receiver = HttpReceiver()
    await receiver.start()
    plant = SimulatedPlant(quiet_scenario(), speed=1.0, opcua_port=0, mqtt_host="127.0.0.1",
                           mqtt_port=broker.port, realtime_forever=True)
    await plant.start()
    assert plant.opcua_endpoint is not None
    config = demo_config(opcua_endpoint=plant.opcua_endpoint, mqtt_port=broker.port,
                         data_dir=workdir, notifications=notifications(
                             receiver, workdir / "outbox.sqlite"))
    lm = Linemon(config)
    await lm.start()
    try:
        await eventually(lambda: all(lm.engine.trackers[m].state is MachineState.RUNNING
                                     for m in MACHINES), 60, "every machine running")
        stops: dict[str, list[float]] = {m: [] for m in MACHINES}
        for i in range(alerts):
            machine = MACHINES[i % len(MACHINES)]
            stops[machine].append(time.time())
            await plant.stop_machine(machine, reason=17, for_s=2.5)
            await asyncio.sleep(every_s)  # the bench paces the plant; nothing waits to settle
        await eventually(lambda: len(receiver.hooks("bench")) >= alerts, 30, "every message")
    finally:
        await lm.stop()
        await plant.stop()
        await receiver.stop()
        broker.stop()

    fired_to_received, stop_to_received, ntfy = [], [], []
    firing = [r for r in receiver.hooks("bench") if r.body["transition"] == "firing"]
    pushes = {r.key.rsplit("/", 3)[0]: r for r in receiver.ntfy("alice-phone")
              if "/firing/" in r.key}
    seen: dict[str, int] = {}
    for hook in firing:
        brief = hook.body["alerts"][0]
        fired = datetime.fromisoformat(brief["fired_at"]).timestamp()
        fired_to_received.append(hook.at - fired)
        push = pushes.get(hook.key.rsplit("/", 3)[0])
        if push is not None:
            ntfy.append(push.at - fired)
        machine = brief["machine"]
        n = seen[machine] = seen.get(machine, -1) + 1
        if n < len(stops[machine]):
            stop_to_received.append(hook.at - stops[machine][n])
    print(f"notification latency over {len(firing)} machine stops "
          f"({len(MACHINES)} machines, one stop every {every_s} s)")
    report("fired -> webhook", fired_to_received)
    report("fired -> ntfy", ntfy)
    report("sim stop -> webhook", stop_to_received)
    print(f"duplicates at the receiver: {receiver.duplicates}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--alerts", type=int, default=25)
    parser.add_argument("--every", type=float, default=1.5, help="seconds between stops")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args.alerts, args.every))


if __name__ == "__main__":
    main()
