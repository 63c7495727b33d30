"""The parts of a scenario: machines, lines and options, as validated frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field

PROTOCOLS = ("opcua", "mqtt")
MQTT_MODES = ("json-per-signal", "json-per-machine", "sparkplug")
UINT32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class RandomStops:
    """Stops arriving at random (exponential gaps) while running, lasting min_s..max_s."""

    every_s: float  # mean time between arrivals
    min_s: float
    max_s: float
    reasons: tuple[tuple[int, float], ...]


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    temperature: float = 40.0  # degC while running
    ambient: float = 22.0  # degC the machine cools towards when stopped
    temperature_noise: float = 0.2
    temperature_drift_per_h: float = 0.5  # std-dev of the random-walk drift per hour
    thermal_tau_s: float = 600.0
    pressure: float = 6.0  # bar while running
    idle_pressure: float = 1.0
    pressure_noise: float = 0.05


@dataclass(frozen=True, slots=True)
class MachineSpec:
    id: str
    ideal_cycle_time_s: float
    name: str = ""
    protocol: str = "opcua"
    speed_loss: float = 0.05  # mean slowdown over the ideal cycle time (gamma distributed)
    reject_rate: float = 0.01
    random: bool = True  # False: no random stops, exact cycle times, every n-th part rejected
    mtbf_s: float | None = None
    mttr_s: float | None = None
    fault_reasons: tuple[tuple[int, float], ...] = ()
    micro_stops: RandomStops | None = None  # short faults
    changeovers: RandomStops | None = None  # reasons are changeover codes
    counter_max: int = UINT32_MAX
    buffer_capacity: int = 10  # parts between this machine and the next one
    buffer_initial: int | None = None  # None: half full
    plc_restart_s: float = 8.0
    idle_report_s: float = 2.0  # starved/blocked shown only after waiting this long
    process: ProcessSpec = field(default_factory=ProcessSpec)


@dataclass(frozen=True, slots=True)
class LineSpec:
    id: str
    machines: tuple[MachineSpec, ...]
    name: str = ""


@dataclass(frozen=True, slots=True)
class MqttOptions:
    mode: str = "json-per-signal"
    prefix: str = "plant"
    group_id: str = "linemon"
    retain: bool = False
