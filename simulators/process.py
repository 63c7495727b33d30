"""Process values of a machine: temperature and pressure with noise and drift, and speed."""

from __future__ import annotations

import math
import random

from simulators.specs import ProcessSpec


class ProcessValues:
    """Temperature follows a first-order lag towards its setpoint (running) or ambient (stopped),
    plus a slow random-walk drift and measurement noise; pressure jumps between working and idle
    pressure with noise. Uses its own random stream, so sampling never changes the machine's
    stops, parts or states."""

    def __init__(self, spec: ProcessSpec, rng: random.Random, start_ms: int) -> None:
        self.spec = spec
        self.rng = rng
        self._last_ms = start_ms
        self._drift = 0.0
        self._temperature = spec.temperature
        self.temperature = round(spec.temperature, 2)
        self.pressure = round(spec.pressure, 3)

    def sample(self, now_ms: int, running: bool) -> None:
        spec = self.spec
        dt_s = max(0, now_ms - self._last_ms) / 1000
        self._last_ms = now_ms
        if spec.temperature_drift_per_h > 0 and dt_s > 0:
            self._drift += self.rng.gauss(0, spec.temperature_drift_per_h * math.sqrt(dt_s / 3600))
            self._drift *= 0.999  # keep the drift bounded over long runs
        target = spec.temperature + self._drift if running else spec.ambient
        alpha = 1 - math.exp(-dt_s / spec.thermal_tau_s) if spec.thermal_tau_s > 0 else 1.0
        self._temperature += (target - self._temperature) * alpha
        noisy = self._temperature + self.rng.gauss(0, spec.temperature_noise)
        self.temperature = round(noisy, 2)
        base = spec.pressure if running else spec.idle_pressure
        self.pressure = round(max(0.0, base + self.rng.gauss(0, spec.pressure_noise)), 3)


def speed_of(cycle_ms: int | None, running: bool) -> float:
    """Instantaneous speed in parts/min from the current cycle time; 0 when not running."""
    if not running or not cycle_ms:
        return 0.0
    return round(60_000 / cycle_ms, 2)
