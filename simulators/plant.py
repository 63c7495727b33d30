"""SimulatedPlant: runs a Simulation against the wall clock and serves it over OPC-UA and MQTT.

This is the only place where wall time meets simulated time: simulated now = start +
(monotonic now - monotonic at start) x speed. `speed=0` runs as fast as possible.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from simulators.mqtt.json_publisher import JSON_MODES, JsonPublisher
from simulators.mqtt.sink import MqttSink
from simulators.opcua.security import OpcUaSecurity
from simulators.opcua.server import OpcUaServer, ServedLine
from simulators.scenario import MQTT_MODES, Scenario
from simulators.signals import to_datetime, to_ms
from simulators.simulation import Simulation
from simulators.sparkplug.edge_node import SparkplugEdgeNode
from simulators.timeline import resolve_reason

log = logging.getLogger(__name__)
_CHUNK_INSTANTS = 2000  # yield to the event loop at least this often


class SimulatedPlant:
    def __init__(
        self,
        scenario: Scenario,
        speed: float = 1.0,
        seed: int | None = None,
        start: datetime | None = None,
        opcua_port: int | None = None,
        opcua_host: str = "127.0.0.1",
        opcua_security: OpcUaSecurity | None = None,
        mqtt_host: str | None = None,
        mqtt_port: int = 1883,
        mqtt_mode: str | None = None,  # None: the scenario's (default json-per-signal)
        mqtt_prefix: str | None = None,  # None: the scenario's (default "plant")
        mqtt_protocol: str = "5",  # "3.1.1" for JSON to a broker without v5
        realtime_forever: bool = False,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0 (0 = as fast as possible)")
        if speed == 0 and realtime_forever:
            raise ValueError("realtime_forever needs a speed > 0")
        if scenario.duration_s is None and not realtime_forever:
            raise ValueError(f"scenario {scenario.name!r} has no duration; use realtime_forever")
        mode = mqtt_mode or scenario.mqtt.mode
        if mode not in MQTT_MODES:
            raise ValueError(f"unknown MQTT mode {mode!r} (one of {', '.join(MQTT_MODES)})")
        self.scenario = scenario
        self.speed = float(speed)
        self.seed = scenario.seed if seed is None else seed
        self._start = start if start is not None else scenario.start
        self.opcua_port = opcua_port
        self.opcua_host = opcua_host
        self.opcua_security = opcua_security
        self.mqtt_host = mqtt_host
        self.mqtt_port = mqtt_port
        self.mqtt_protocol = mqtt_protocol
        if mqtt_protocol != "5" and mode == "sparkplug":
            raise ValueError("Sparkplug B here needs MQTT 5 (its will on a scripted drop)")
        self.mqtt_mode = mode
        self.mqtt_prefix = mqtt_prefix or scenario.mqtt.prefix
        self.realtime_forever = realtime_forever
        self.namespace_uri = scenario.namespace_uri
        self.opcua_endpoint: str | None = None
        self.opcua: OpcUaServer | None = None
        self.mqtt: list[MqttSink] = []
        self.simulation: Simulation | None = None
        self._clock = clock
        self._mono0 = 0.0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._started = False

    @property
    def server_certificate_path(self) -> Path | None:
        return self.opcua_security.server_certificate_path if self.opcua_security else None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("a SimulatedPlant starts once")
        self._started = True
        sc = self.scenario
        try:
            if self.opcua_port is not None:
                await self._start_opcua()  # slow (asyncua loads its address space): first
            # "now" is taken once the slow part is done, so that speed 1 tracks the wall clock
            start = to_datetime(to_ms(self._start or datetime.now(UTC)))  # whole milliseconds
            end = None
            if not self.realtime_forever and sc.duration_s is not None:
                end = to_datetime(to_ms(start) + round(sc.duration_s * 1000))
            serving = self.opcua_port is not None or self.mqtt_host is not None
            sim = Simulation(sc, start=start, seed=self.seed, end=end, sample_process=serving)
            self.simulation = sim
            if self.opcua is not None:
                self.opcua.publish(sim.start_ms, sim.snapshot())
                await self.opcua.flush()
                sim.sinks.append(self.opcua)
            if self.mqtt_host is not None:
                await self._start_mqtt(sim)
        except BaseException:
            await self.stop()
            raise
        self._mono0 = self._clock()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="simulated-plant")

    async def wait_until_done(self) -> None:
        """Until the scenario's duration has been simulated (never, with realtime_forever)."""
        if self._task is None:
            raise RuntimeError("plant not started")
        await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Stop the simulation, say goodbye on MQTT (Sparkplug NDEATH), stop the servers."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("simulation loop failed")
        sinks, self.mqtt = self.mqtt, []
        results = await asyncio.gather(*(s.stop() for s in sinks), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("MQTT publisher did not stop cleanly: %s", result)
        if self.opcua is not None:
            server, self.opcua = self.opcua, None
            await server.stop()

    # -- time ------------------------------------------------------------------

    def now(self) -> datetime:
        """Current simulated time (UTC)."""
        return to_datetime(self._now_ms())

    def _now_ms(self) -> int:
        sim = self.simulation
        if sim is None:
            return to_ms(self._start or datetime.now(UTC))
        if self.speed == 0 or self._task is None:
            return sim.now_ms
        elapsed = (self._clock() - self._mono0) * self.speed
        now = sim.start_ms + round(elapsed * 1000)
        return min(now, sim.end_ms) if sim.end_ms is not None else now

    # -- commands --------------------------------------------------------------

    async def stop_machine(self, machine: str, reason: int | str, for_s: float) -> None:
        """A fault on `machine` starting now (simulated time), lasting `for_s`."""
        sim = self._running()
        code = reason if isinstance(reason, int) else resolve_reason(reason, self.scenario.reasons)
        sim.stop_machine(machine, code, round(for_s * 1000), max(sim.now_ms, self._now_ms()))
        await self._flush()
        self._wake.set()

    async def restart_plc(self, machine: str) -> None:
        sim = self._running()
        sim.restart_plc(machine, max(sim.now_ms, self._now_ms()))
        await self._flush()
        self._wake.set()

    # -- ground truth ----------------------------------------------------------

    def truth(self) -> dict:
        """The ground truth so far (the same document write_truth writes)."""
        sim = self._running()
        if not sim.finished and self._task is not None and self.speed > 0:
            sim.advance_to(self._now_ms())
        return sim.build_truth()

    def write_truth(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.truth(), indent=2) + "\n", encoding="utf-8")

    # -- internals -------------------------------------------------------------

    def _running(self) -> Simulation:
        if self.simulation is None:
            raise RuntimeError("plant not started")
        return self.simulation

    async def _start_opcua(self) -> None:
        port = self.opcua_port or _free_port(self.opcua_host)
        lines = [
            ServedLine(
                line.id,
                line.name,
                tuple((m.id, m.name) for m in line.machines if m.protocol == "opcua"),
            )
            for line in self.scenario.lines
        ]
        server = OpcUaServer(
            host=self.opcua_host,
            port=port,
            namespace_uri=self.namespace_uri,
            site=self.scenario.site,
            lines=[line for line in lines if line.machines],
            security=self.opcua_security,
        )
        self.opcua = server
        await server.start()
        self.opcua_endpoint = server.endpoint

    async def _start_mqtt(self, sim: Simulation) -> None:
        assert self.mqtt_host is not None
        opts = self.scenario.mqtt
        sinks: list[MqttSink] = []
        for line in self.scenario.lines:
            machines = {m.id: line.id for m in line.machines if m.protocol == "mqtt"}
            if machines and self.mqtt_mode == "sparkplug":
                sinks.append(
                    SparkplugEdgeNode(
                        host=self.mqtt_host,
                        port=self.mqtt_port,
                        group_id=opts.group_id,
                        edge_node_id=line.id,
                        machines=machines,
                        snapshot=sim.snapshot(),
                        now_ms=self._now_ms,
                    )
                )
        if self.mqtt_mode in JSON_MODES:
            machines = {
                m.id: line.id for line, m in self.scenario.machines() if m.protocol == "mqtt"
            }
            if machines:
                sinks.append(
                    JsonPublisher(
                        host=self.mqtt_host,
                        port=self.mqtt_port,
                        machines=machines,
                        snapshot=sim.snapshot(),
                        mode=self.mqtt_mode,
                        prefix=self.mqtt_prefix,
                        retain=opts.retain,
                        client_id=f"linemon-sim-{self.scenario.site}",
                        protocol=self.mqtt_protocol,
                    )
                )
        self.mqtt = sinks
        await asyncio.gather(*(s.start() for s in sinks))
        sim.sinks.extend(sinks)

    async def _flush(self) -> None:
        if self.opcua is not None:
            await self.opcua.flush()

    async def _run(self) -> None:
        sim = self._running()
        while not sim.finished:
            target = sim.end_ms if self.speed == 0 else self._now_ms()
            if target is None:
                raise RuntimeError("an open-ended scenario needs a speed > 0")
            caught_up = sim.advance_to(target, max_instants=_CHUNK_INSTANTS)
            await self._flush()
            if sim.finished:
                break
            if not caught_up or self.speed == 0:
                await asyncio.sleep(0)
                continue
            await self._sleep_until_next(sim)
        await self._flush()
        for sink in self.mqtt:
            await sink.settled()
        log.info("scenario %s done at %s", self.scenario.name, self.now().isoformat())

    async def _sleep_until_next(self, sim: Simulation) -> None:
        now = self._now_ms()
        nxt = sim.next_event_ms()
        wait_ms = (nxt - now) if nxt is not None else 500 * self.speed
        if sim.end_ms is not None:
            wait_ms = min(wait_ms, sim.end_ms - now)
        delay = min(max(wait_ms, 0) / 1000 / self.speed, 0.5)
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
