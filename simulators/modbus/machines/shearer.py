"""The drum shearer of a longwall face."""
from __future__ import annotations

from typing import Any

from pydantic import Field

from simulators.faults import FaultParams
from simulators.physics import approach, clamp, lag

from .base import MachineModel


class GasParams(FaultParams):
    level: float = Field(1.2, gt=0, le=4, description="%CH4 the machine's sensor rises to (alarm at 1.0, cut at 1.5)")
    rate: float = Field(0.1, gt=0, le=10, description="%CH4 per second it rises (and falls back once cleared)")


class ShearerModel(MachineModel):
    """MG300/700-WD drum shearer cutting both ways along a longwall face.

    Each pass has its own mean haulage speed; at a face end the machine stops for the
    turnaround (cut-in, drums swapped) and comes back. The leading drum cuts the roof
    and carries most of the load; the trailing drum cleans up the floor.
    """

    kind = "shearer"
    FAULTS = {**MachineModel.FAULTS, "gas": GasParams}
    MODEL = "MG300/700-WD"
    FACE_LENGTH = 200.0  # m
    SUPPORT_SPACING = 1.5  # m per hydraulic support
    HAULAGE_RAMP = 4.0  # m/min per s
    DRUM_RATE = 4.0  # cm/s, ranging arm
    IDLE_CURRENT = 40.0  # A, drum turning without cutting

    def _init_state(self) -> None:
        u = self.noise.uniform
        self.position = 20 + 160 * u("position")
        self.direction = 1 if u("direction") < 0.5 else -1  # + towards the tail gate
        self.pass_index = 0
        self.turnaround = 0.0  # s left of the stop at a face end
        self.speed = self._auto_speed(0.0)  # m/min, magnitude
        self.speed_override: float | None = None  # |set-point| until the pass ends
        self.drum_override: dict[str, float | None] = {"left": None, "right": None}
        self.drum = {side: self._drum_auto(side) for side in ("left", "right")}
        self.temperature = {k: 45 + 10 * u("temp", i) for i, k in enumerate(("left", "right", "haulage"))}
        self.running_hours = 1200 + 3600 * u("hours")
        self.cut_distance = 50_000 + 150_000 * u("cut")
        self.cycles = 200 + int(1300 * u("cycles"))
        self.gas = 0.0  # %CH4 of a gas inflow (fault ``gas``); the sensor reads the higher of it and the background

    # speeds and drums
    def _auto_speed(self, t: float) -> float:
        mean = 4.5 + 2.0 * self.noise.uniform("pass", self.pass_index)
        return mean + 1.2 * self.noise.wave("haulage", t, 45)

    def _target_speed(self, t: float) -> float:
        if not self.drive_on or self.turnaround > 0:
            return 0.0
        wanted = self.speed_override if self.speed_override is not None else self._auto_speed(t)
        to_end = self.FACE_LENGTH - self.position if self.direction > 0 else self.position
        return min(wanted, 0.5 + 0.6 * to_end)  # slow down into the face end

    def _leading(self) -> str:
        return "right" if self.direction > 0 else "left"

    def _drum_auto(self, side: str) -> float:
        if side == self._leading():  # follows the roof: seam height varies along the face
            return 300 + 25 * self.noise.wave("seam", self.position, 25)
        return 5 + 8 * self.noise.wave("floor", self.position, 18)

    def _drum_target(self, side: str) -> float:
        override = self.drum_override[side]
        return self._drum_auto(side) if override is None else override

    def _hardness(self) -> float:
        return 1 + 0.15 * self.noise.wave("hardness", self.position, 30)

    def _cutting_currents(self) -> dict[str, float]:
        """Noise-free drum currents: cutting load grows with haulage speed and coal hardness."""
        if not self.drive_on:
            return {"left": 0.0, "right": 0.0, "haulage": 0.0}
        load = self.speed / 6.0 * self._hardness()
        lead, trail = self.IDLE_CURRENT + 150 * load, self.IDLE_CURRENT + 55 * load
        left, right = (trail, lead) if self.direction > 0 else (lead, trail)
        return {"left": left, "right": right, "haulage": 12 + 6 * self.speed}

    # state
    def _step(self, t: float, dt: float) -> None:
        gas = self.active.get("gas")
        self.gas = approach(self.gas, gas.level if gas else 0.0, gas.rate if gas else 0.1, dt)
        self.speed = approach(self.speed, self._target_speed(t), self.HAULAGE_RAMP, dt)
        self.position = clamp(self.position + self.direction * self.speed / 60 * dt, 0, self.FACE_LENGTH)
        if self.drive_on and self.turnaround > 0:
            self.turnaround = max(0.0, self.turnaround - dt)
        elif self.position in (0, self.FACE_LENGTH) and self.speed > 0 and self._heading_out():
            self._turn_around()
        for side in self.drum:
            self.drum[side] = approach(self.drum[side], self._drum_target(side), self.DRUM_RATE, dt)
        for key, current in self._cutting_currents().items():
            target = 28 + (0.6 if key == "haulage" else 0.22) * current
            self.temperature[key] = lag(self.temperature[key], target, 900, dt)
        if self.drive_on:
            self.running_hours += dt / 3600
            self.cut_distance += self.speed / 60 * dt

    def _heading_out(self) -> bool:
        return (self.position == self.FACE_LENGTH) == (self.direction > 0)

    def _turn_around(self) -> None:
        self.speed = 0.0
        self.direction = -self.direction
        self.pass_index += 1
        self.cycles += 1
        self.turnaround = 40 + 50 * self.noise.uniform("turnaround", self.pass_index)
        self.speed_override = None  # memory cutting takes over again
        self.drum_override = {"left": None, "right": None}

    def _on_setpoint(self, signal: str, value: Any) -> None:
        if signal == "haulage_speed_setpoint":
            self.speed_override = abs(value)
            if value:
                self.direction = 1 if value > 0 else -1
        elif signal in ("left_drum_target", "right_drum_target"):
            self.drum_override[signal.split("_")[0]] = float(value)

    def _outputs(self, t: float) -> dict[str, Any]:
        n, on = self.noise, self.drive_on
        currents = {k: v + (6 * n.jitter(f"i_{k}", t) if on else 0) for k, v in self._cutting_currents().items()}
        cutting = on and self.speed > 0.1
        speed_shown = self.speed + (0.05 * n.jitter("v", t) if self.speed > 0.2 else 0)
        mean_speed = self.speed_override if self.speed_override is not None else self._auto_speed(t)
        return {
            "position": self.position,
            "support_number": int(self.position / self.SUPPORT_SPACING) + 1,
            "haulage_speed": self.direction * speed_shown,
            "left_drum_height": round(self.drum["left"]),
            "right_drum_height": round(self.drum["right"]),
            "left_cutting_current": currents["left"],
            "right_cutting_current": currents["right"],
            "left_cutting_temperature": self.temperature["left"],
            "right_cutting_temperature": self.temperature["right"],
            "haulage_current": currents["haulage"],
            "haulage_temperature": self.temperature["haulage"],
            "hydraulic_pressure": 17.8 + 1.2 * n.wave("hyd", t, 20) + 0.2 * n.jitter("hyd", t) if on else 0.3,
            "cooling_water_pressure": 3.0 + 0.25 * n.wave("cwp", t, 60),
            "cooling_water_flow": 80 + 10 * n.wave("cwf", t, 50) if on else 0.0,
            "pitch": 4 * n.wave("pitch", self.position, 40),
            "roll": 1 + 2.5 * n.wave("roll", self.position, 30),
            "methane": max(self.gas, 0.02, 0.18 + 0.12 * n.wave("ch4", t, 300) + 0.03 * n.jitter("ch4", t)
                           + (0.08 * self.speed / 6 if cutting else 0)),
            "running_hours": self.running_hours,
            "cut_distance_total": self.cut_distance,
            "shear_cycles": self.cycles,
            "model": self.MODEL,
            **self.status_bits(),
            "haulage_speed_setpoint": self.direction * mean_speed if on else 0.0,
            "left_drum_target": round(self._drum_target("left")),
            "right_drum_target": round(self._drum_target("right")),
            "run_command": self.run_cmd,
            "lockout_command": self.locked,
        }
