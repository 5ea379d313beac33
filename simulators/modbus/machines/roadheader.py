"""The boom roadheader of a development heading."""
from __future__ import annotations

import math
from typing import Any

from simulators.physics import approach, lag, triangle

from .base import MachineModel


class RoadheaderModel(MachineModel):
    """EBZ160TY boom roadheader: cuts the heading face, trams forward, cuts again.

    While cutting (mode 1) the boom sweeps side to side working down from the roof,
    the cutting motor is loaded and the sprays run; while tramming (mode 2) the
    cutting motor is off and the crawlers move the machine about a metre.
    """

    kind = "roadheader"
    MODEL = "EBZ160TY"
    TRAM_RAMP = 3.0  # m/min per s
    BOOM_RATE = 4.0  # °/s
    SWEEP_PERIOD = 48.0  # s, boom side to side and back

    def _init_state(self) -> None:
        u = self.noise.uniform
        self.cycle = 0
        self.phase = "cut"
        self.phase_time = 60 * u("phase")  # already part-way into the first cut
        self.tram_left = 0.0  # m still to tram in this phase
        self.cutting_enabled = True
        self.speed_override: float | None = None  # m/min from the set-point
        self.speed = 0.0  # m/min, signed
        self.temperature = {"cutting": 50 + 10 * u("tc"), "pump": 45 + 8 * u("tp"), "oil": 42 + 6 * u("to")}
        self.energy = 150_000 + 450_000 * u("energy")
        self.advance = 800 + 3200 * u("advance")
        self.boom = self._boom_target()

    def _cut_duration(self) -> float:
        return 150 + 150 * self.noise.uniform("cut", self.cycle)

    @property
    def mode(self) -> int:
        if not self.drive_on:
            return 0
        if self.speed_override is not None or self.phase == "tram":
            return 2
        return 1 if self.cutting_enabled else 0

    def _tram_speed(self) -> float:
        if self.speed_override is not None:
            return self.speed_override
        if self.mode != 2 or self.tram_left <= 0:
            return 0.0
        return 3.0 + 1.5 * self.noise.uniform("tram", self.cycle)

    def _boom_target(self) -> dict[str, float]:
        if self.mode != 1:
            return {"h": 0.0, "v": 10.0}  # boom parked, centred and low, for tramming
        depth = self.phase_time / self._cut_duration()  # roof to floor over one cut
        return {"h": 32 * triangle(self.phase_time / self.SWEEP_PERIOD + 0.25), "v": 38 - 58 * depth}

    def _cutting_load(self, t: float) -> float:
        """0..1: harder near the floor, heavier while the boom swings into the rock."""
        floor = (38 - self.boom["v"]) / 58
        return 0.55 + 0.25 * floor + 0.2 * abs(self.noise.wave("rock", t, 9))

    def _step(self, t: float, dt: float) -> None:
        self._advance_cycle(dt)
        self.speed = approach(self.speed, self._tram_speed(), self.TRAM_RAMP, dt)
        self.advance += max(self.speed, 0) / 60 * dt
        for axis, target in self._boom_target().items():
            self.boom[axis] = approach(self.boom[axis], target, self.BOOM_RATE, dt)
        cutting_current, pump_current = self._currents(t)
        activity = {0: 0.2, 1: 1.0, 2: 0.7}[self.mode] if self.drive_on else 0.0
        self.temperature["cutting"] = lag(self.temperature["cutting"], 30 + 0.45 * cutting_current, 900, dt)
        self.temperature["pump"] = lag(self.temperature["pump"], 30 + 0.8 * pump_current, 900, dt)
        self.temperature["oil"] = lag(self.temperature["oil"], 32 + 22 * activity, 1200, dt)
        kw = math.sqrt(3) * 1.14 * (cutting_current + pump_current) * 0.85
        self.energy += kw * dt / 3600

    def _advance_cycle(self, dt: float) -> None:
        if not self.drive_on or self.speed_override is not None:
            return  # the operator's tramming holds the automatic cycle
        if self.phase == "cut":
            if self.cutting_enabled:
                self.phase_time += dt
            if self.phase_time >= self._cut_duration():
                self.phase = "tram"
                self.tram_left = 0.6 + 0.4 * self.noise.uniform("step", self.cycle)
        else:
            self.tram_left -= max(self.speed, 0) / 60 * dt
            if self.tram_left <= 0 and self.speed <= 0:  # stopped: the boom can sump in
                self.phase, self.phase_time, self.cycle = "cut", 0.0, self.cycle + 1

    def _currents(self, t: float) -> tuple[float, float]:
        """Noise-free cutting and pump motor currents (A at 1140 V)."""
        if not self.drive_on:
            return 0.0, 0.0
        cutting = 60 + 70 * self._cutting_load(t) if self.mode == 1 else 0.0
        return cutting, 28 + {0: 2, 1: 10, 2: 7}[self.mode]

    def _on_setpoint(self, signal: str, value: Any) -> None:
        if signal == "cutting_enable":
            self.cutting_enabled = bool(value)
        elif signal == "travel_speed_setpoint":
            self.speed_override = float(value) if value else None  # 0 hands back to the cycle

    def _outputs(self, t: float) -> dict[str, Any]:
        n, on, mode = self.noise, self.drive_on, self.mode
        cutting, pump = self._currents(t)
        if cutting:
            cutting += 8 * n.jitter("ic", t)
        if pump:
            pump += 1.5 * n.jitter("ip", t)
        pressure = {0: 6.0, 1: 19.0, 2: 14.0}[mode] + (1.5 * n.wave("p", t, 15) if on else 0)
        return {
            "cutting_current": cutting,
            "cutting_temperature": self.temperature["cutting"],
            "pump_current": pump,
            "pump_temperature": self.temperature["pump"],
            "oil_temperature": self.temperature["oil"],
            "oil_level": 86 + 3 * n.wave("oil", t, 900) + 0.2 * n.jitter("oil", t),
            "system_pressure": pressure if on else 0.2,
            "spray_water_pressure": 2.2 + 0.3 * n.wave("spray", t, 20) if mode == 1 else 0.1,
            "boom_horizontal_angle": self.boom["h"],
            "boom_vertical_angle": self.boom["v"],
            "travel_speed": self.speed + (0.05 * n.jitter("v", t) if abs(self.speed) > 0.2 else 0),
            "supply_voltage": 1140 + 8 * n.wave("grid", t, 90) - 0.15 * (cutting + pump) + n.jitter("u", t),
            "methane": max(0.02, 0.22 + 0.12 * n.wave("ch4", t, 400) + 0.03 * n.jitter("ch4", t)
                           + (0.06 if mode == 1 else 0)),
            "mode": mode,
            "energy_total": int(self.energy),
            "advance_total": self.advance,
            "model": self.MODEL,
            **self.status_bits(),
            "cutting_enable": self.cutting_enabled,
            "travel_speed_setpoint": self._tram_speed() if on else 0.0,
        }
