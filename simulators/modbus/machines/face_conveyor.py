"""The armoured face conveyor of a longwall face."""
from __future__ import annotations

import math
from typing import Any

from simulators.faults import NoParams
from simulators.physics import approach, clamp, lag

from .base import MachineModel


class FaceConveyorModel(MachineModel):
    """Armoured face conveyor, 2 x 400 kW (head and tail) at 1140 V, with a crusher."""

    kind = "face_conveyor"
    FAULTS = {**MachineModel.FAULTS, "chain_break": NoParams}
    START_TIME = 3.0  # s to chain speed (soft start)
    STOP_TIME = 2.0
    DRIVE_KW = 400.0
    HEAD_SHARE = 0.55  # the head drive pulls the loaded strand

    def _init_state(self) -> None:
        u = self.noise.uniform
        self.nominal = 1.2 + 0.05 * (2 * u("nominal") - 1)  # m/s
        self.speed = self._target_speed(0.0)
        self.since_start = 60.0
        self.gear_temp = 50 + 8 * u("gear")
        self.bearing_temp = 45 + 8 * u("bearing")
        self.energy = 1_000_000 + 4_000_000 * u("energy")
        self.chain_km = 2000 + 7000 * u("km")

    def _load(self, t: float) -> float:
        """Coal on the conveyor, 0..1: follows the shearer's cycle, with lumps."""
        n = self.noise
        return clamp(0.5 + 0.3 * n.wave("coal", t, 300) + 0.12 * n.wave("lumps", t, 29), 0.05, 1.0)

    def _target_speed(self, t: float) -> float:
        return self.nominal * (1 - 0.03 * self._load(t)) if self.drive_on else 0.0

    def _power(self, t: float) -> float:
        """Noise-free total drive power, kW: load, plus the surge while accelerating."""
        if not self.drive_on:
            return 0.0
        surge = 250 if self.since_start < self.START_TIME else 0
        return 2 * self.DRIVE_KW * (0.18 + 0.72 * self._load(t)) * self.speed / self.nominal + surge

    def _step(self, t: float, dt: float) -> None:
        if "chain_break" in self.active and "chain_break" not in self.trips:
            self._trip("chain_break")
        if self.drive_on:
            self.since_start += dt
        target = self._target_speed(t)
        rate = self.nominal / (self.START_TIME if target > self.speed else self.STOP_TIME)
        self.speed = approach(self.speed, target, rate, dt)
        load = self._load(t) if self.drive_on else 0.0
        self.gear_temp = lag(self.gear_temp, 30 + 45 * load, 900, dt)
        self.bearing_temp = lag(self.bearing_temp, 28 + 40 * load, 600, dt)
        self.energy += self._power(t) * dt / 3600
        self.chain_km += self.speed * dt / 1000

    def _on_start(self) -> None:
        self.since_start = 0.0

    def _outputs(self, t: float) -> dict[str, Any]:
        n, on = self.noise, self.drive_on
        power = self._power(t)
        head = power * self.HEAD_SHARE + (4 * n.jitter("ph", t) if on else 0)
        tail = power * (1 - self.HEAD_SHARE) + (4 * n.jitter("pt", t) if on else 0)
        amps_per_kw = 1 / (math.sqrt(3) * 1.14 * 0.86)  # I = P / (sqrt3 U cos phi)
        load = self._load(t) if on else 0.0
        return {
            "head_current": max(head, 0) * amps_per_kw,
            "tail_current": max(tail, 0) * amps_per_kw,
            "head_power": max(head, 0),
            "tail_power": max(tail, 0),
            "chain_speed": self.speed + (0.004 * n.jitter("v", t) if self.speed > 0.1 else 0),
            "chain_tension": 70 + (20 + 160 * load + 8 * n.wave("tension", t, 11) if on else 0),
            "gearbox_oil_temperature": self.gear_temp,
            "bearing_temperature": self.bearing_temp,
            "crusher_vibration": 3.0 + 1.5 * load + 0.6 * n.jitter("vib", t) if on else 0.05,
            "energy_total": int(self.energy),
            "chain_travel_total": self.chain_km,
            **self.status_bits(),
            "chain_break": "chain_break" in self.trips,
            "run_command": self.run_cmd,
        }
