"""The trunk belt conveyor and its MT 872 protections."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from pydantic import Field

from simulators.faults import FaultParams, NoParams
from simulators.physics import approach, clamp, lag

from .base import MachineModel


class SlipParams(FaultParams):
    ratio: float = Field(0.6, gt=0, le=1.2, description=(
        "tail-pulley speed / rated speed while the drive drum slips; 0.5-0.7 trips after "
        "10 s, <= 0.5 or >= 1.1 at once (MT 872)"))


class MisalignmentParams(FaultParams):
    mm: float = Field(20.0, ge=-20, le=20, description=(
        "belt edge past the idler edge, + to the right; |mm| = 20 (sensor full scale) "
        "alarms and stops the belt after 5 s"))


class SmokeParams(FaultParams):
    level: float = Field(1.5, gt=0, le=1.5, description="smoke %, 1.5 held for 2 s stops the belt")


class BeltConveyorModel(MachineModel):
    """Trunk belt conveyor with the MT 872 protections.

    Injected faults are physical conditions (the drive drum slips, the belt runs off,
    smoke at the sensor...); the protections see them through the sensors, trip after
    the MT 872 delays, latch, and stop the belt. ``reset_command`` resets trips whose
    cause is gone; ``run_command`` starts (soft-start ramp) and stops (run-down ramp).
    """

    kind = "belt_conveyor"
    FAULTS = {**MachineModel.FAULTS, "slip": SlipParams, "misalignment": MisalignmentParams,
              "tear": NoParams, "pile_up": NoParams, "smoke": SmokeParams}
    START_TIME = 6.0  # s from standstill to rated speed
    STOP_TIME = 4.0  # s run-down
    SLIP_DROP_TIME = 1.5  # s for a slipping belt to fall from rated speed to standstill
    SLIP_BAND_DELAY = 10.0  # MT 872: 50-70 % of rated for 10 s
    SLIP_HARD_DELAY = 0.5  # <= 50 % or >= 110 %: at once (debounced)
    PILE_UP_DELAY = 2.0
    MISALIGNMENT_DELAY = 5.0  # MT 872 allows 5-15 s
    MISALIGNMENT_LIMIT = 20.0  # mm past the idler edge
    SMOKE_DELAY = 2.0
    SMOKE_LIMIT = 1.5  # %
    OVER_TEMPERATURE = 60.0  # °C at the drive drum: sprinkler

    def _init_state(self) -> None:
        u = self.noise.uniform
        self.rated = (3.5, 4.0, 4.5)[int(3 * u("rated"))]
        self.capacity = 2000 + 800 * u("capacity")  # t/h at full load
        self.speed = self.rated
        self.since_start = 60.0
        self.misalignment = 0.0
        self.smoke = 0.01
        self.drum_temp = 25 + 8 * u("drum")
        self.timers: dict[str, float] = defaultdict(float)
        self.tonnage = 1e6 + 4e6 * u("tonnage")
        self.running_hours = 5000 + 25000 * u("hours")
        self.starts = 300 + int(2700 * u("starts"))

    @property
    def slipping(self) -> bool:
        return "slip" in self.active and self.drive_on

    def _load_fraction(self, t: float) -> float:
        """Belt-scale load / capacity: coal supply, times belt speed; an overload while slipping."""
        if self.speed < 0.05:
            return 0.0
        if self.slipping:
            return 1.1 + 0.03 * self.noise.wave("overload", t, 5)
        n = self.noise
        supply = clamp(0.45 + 0.25 * n.wave("flow", t, 240) + 0.1 * n.wave("surge", t, 37), 0.05, 0.95)
        return supply * min(1.0, self.speed / self.rated)

    def _step(self, t: float, dt: float) -> None:
        self._move_sensors(t, dt)
        self._protect(dt)
        self._move_belt(dt)
        frac = self._load_fraction(t)
        heat = 35 if self.slipping else 0  # a slipping drum heats up by friction
        self.drum_temp = lag(self.drum_temp, 22 + 18 * frac + heat, 400, dt)
        self.tonnage += frac * self.capacity * dt / 3600
        if self.drive_on:
            self.running_hours += dt / 3600

    def _move_sensors(self, t: float, dt: float) -> None:
        fault = self.active.get("misalignment")
        target = fault.mm if fault else 6 * self.noise.wave("drift", t, 25)
        self.misalignment = approach(self.misalignment, target, 5.0, dt)
        smoke = self.active.get("smoke")
        self.smoke = approach(self.smoke, smoke.level if smoke else 0.01, 0.5, dt)

    def _protect(self, dt: float) -> None:
        ratio = self.speed / self.rated
        watch_slip = self.drive_on and self.since_start > self.START_TIME + 1  # not while starting
        self._hold("slip", watch_slip and (ratio <= 0.5 or ratio >= 1.1), self.SLIP_HARD_DELAY, dt, "slip_hard")
        self._hold("slip", watch_slip and 0.5 < ratio < 0.7, self.SLIP_BAND_DELAY, dt, "slip_band")
        self._hold("pile_up", "pile_up" in self.active, self.PILE_UP_DELAY, dt)
        self._hold("misalignment", self.drive_on and abs(self.misalignment) >= self.MISALIGNMENT_LIMIT,
                   self.MISALIGNMENT_DELAY, dt)
        self._hold("smoke", self.smoke >= self.SMOKE_LIMIT, self.SMOKE_DELAY, dt)
        self._hold("tear", "tear" in self.active, 0.0, dt)

    def _hold(self, trip: str, present: bool, delay: float, dt: float, timer: str | None = None) -> None:
        """Trip once a condition has held for ``delay`` seconds."""
        key = timer or trip
        self.timers[key] = self.timers[key] + dt if present else 0.0
        if present and self.timers[key] >= delay and trip not in self.trips:
            self._trip(trip)

    def _move_belt(self, dt: float) -> None:
        if self.drive_on:
            self.since_start += dt
        slip = self.active.get("slip")
        target = self.rated * (slip.ratio if slip else 1.0) if self.drive_on else 0.0
        if target > self.speed:
            ramp = self.START_TIME
        else:
            ramp = self.SLIP_DROP_TIME if self.slipping else self.STOP_TIME
        self.speed = approach(self.speed, target, self.rated / ramp, dt)

    def _on_start(self) -> None:
        self.since_start = 0.0
        self.starts += 1

    def _cause_present(self, trip: str) -> bool:
        if trip == "misalignment":
            return abs(self.misalignment) >= self.MISALIGNMENT_LIMIT
        if trip == "smoke":
            return self.smoke >= self.SMOKE_LIMIT
        return trip in self.active and trip != "slip"  # slip is judged again once running

    def _on_fault_cleared(self, name: str) -> None:
        if name == "misalignment":  # the belt is trained back: the sensor sees it at once
            self.misalignment = 0.0
        elif name == "smoke":
            self.smoke = 0.01
        self.timers.clear()
        super()._on_fault_cleared(name)

    def _outputs(self, t: float) -> dict[str, Any]:
        n, on = self.noise, self.drive_on
        frac = self._load_fraction(t)
        starting = on and self.since_start < self.START_TIME
        wobble = 0 if "misalignment" in self.active else n.jitter("mis", t)  # a stuck-out belt reads steady
        if not on:
            current = 0.0
        elif self.slipping:
            current = 380 + 15 * n.jitter("i", t)
        else:
            current = 60 + 150 * frac + (120 if starting else 0) + 3 * n.jitter("i", t)
        tension = 140 + 90 * frac + (60 if starting else 0) if on else 95.0
        return {
            "speed": self.speed + (0.01 * n.jitter("v", t) if self.speed > 0.05 else 0),
            "rated_speed": self.rated,
            "load": frac * self.capacity,
            "motor_current": current,
            "drive_drum_temperature": self.drum_temp,
            "misalignment": round(self.misalignment + wobble),
            "smoke": self.smoke,
            "tension": tension + 4 * n.wave("tension", t, 13),
            "supply_voltage": 1140 + 6 * n.wave("grid", t, 90) - 0.08 * current + n.jitter("u", t),
            "total_tonnage": self.tonnage,
            "running_hours": self.running_hours,
            "start_count": self.starts,
            **self.status_bits(),
            "slip": "slip" in self.trips,
            "pile_up": "pile_up" in self.trips,
            "misalignment_trip": "misalignment" in self.trips,
            "tear": "tear" in self.trips,
            "smoke_trip": "smoke" in self.trips,
            "over_temperature": self.drum_temp >= self.OVER_TEMPERATURE,
            "run_command": self.run_cmd,
            "reset_command": False,  # momentary: reads back 0
            "lockout_command": self.locked,
        }
