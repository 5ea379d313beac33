"""Deterministic physics of the simulated machines: one model per profile kind.

``model.values(t)`` returns every signal of the kind's profile, in engineering units,
``t`` seconds after the model started. A model keeps a small state (speeds, ramps,
temperatures, counters, protection timers) advanced in fixed steps, and adds seeded
noise on top. Commands (register writes) and injected faults are events stamped with
their time and replayed in order, so the same seed, time and event history always
give the same values, however often and in whatever order they are asked for.
"""
from __future__ import annotations

import bisect
import itertools
import math
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from adapters.modbus.codec import DataType
from adapters.modbus.profile import Profile, load_profile

STEP = 0.25  # s: state integration step; an event takes effect at the next step boundary

# -- seeded noise -------------------------------------------------------------------------
_MASK = (1 << 64) - 1


def _splitmix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def derive_seed(seed: int, key: str) -> int:
    """A seed of its own for ``key`` (a device id, say), fixed by ``seed``."""
    return _splitmix((seed & _MASK) ^ zlib.crc32(key.encode()))


class Noise:
    """Reproducible randomness for one seed (Python's ``hash()`` is salted per process)."""

    def __init__(self, seed: int):
        self.seed = _splitmix(seed & _MASK)

    def uniform(self, key: str, k: int = 0) -> float:
        """A number in [0, 1) fixed by (seed, key, k)."""
        h = _splitmix(_splitmix(self.seed ^ zlib.crc32(key.encode())) ^ (k & _MASK))
        return (h >> 11) / float(1 << 53)

    def wave(self, key: str, x: float, period: float) -> float:
        """Smooth noise in [-1, 1]: random knots every ``period``, eased together."""
        k = math.floor(x / period)
        f = x / period - k
        a, b = 2 * self.uniform(key, k) - 1, 2 * self.uniform(key, k + 1) - 1
        return a + (b - a) * f * f * (3 - 2 * f)

    def jitter(self, key: str, t: float, rate: float = 10.0) -> float:
        """White noise in [-1, 1], held for 1/``rate`` seconds (sensor noise)."""
        return 2 * self.uniform(key, math.floor(t * rate)) - 1


def approach(value: float, target: float, rate: float, dt: float) -> float:
    """Move towards ``target`` by at most ``rate * dt``: a rate-limited actuator or ramp."""
    step = rate * dt
    return min(value + step, target) if target > value else max(value - step, target)


def lag(value: float, target: float, tau: float, dt: float) -> float:
    """First-order lag with time constant ``tau``: thermal masses."""
    return target + (value - target) * math.exp(-dt / tau)


def triangle(x: float) -> float:
    """Triangle wave in [-1, 1], period 1."""
    f = x - math.floor(x)
    return 4 * f - 1 if f < 0.5 else 3 - 4 * f


def clamp(x: float, low: float, high: float) -> float:
    return min(max(x, low), high)


# -- fault parameters ---------------------------------------------------------------------
class FaultParams(BaseModel):
    """Parameters of an injected fault; subclasses document their fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(FaultParams):
    pass


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


@dataclass(order=True)
class _Event:
    t: float
    seq: int
    action: str = field(compare=False)  # "command" | "set" | "clear"
    name: str | None = field(compare=False)
    value: Any = field(compare=False)


# -- base model ---------------------------------------------------------------------------
class MachineModel:
    """Common machinery: event replay, start/stop, lockout, latched protection trips.

    Subclasses implement ``_init_state`` (state at t=0), ``_step`` (advance one step)
    and ``_outputs`` (every profile signal from the state plus noise at ``t``).
    """

    kind: ClassVar[str]
    FAULTS: ClassVar[dict[str, type[FaultParams]]] = {"emergency_stop": NoParams}

    def __init__(self, seed: int = 0, profile: Profile | None = None):
        self.seed = seed
        self.noise = Noise(seed)
        self.profile = profile or load_profile(self.kind)
        self.signals = [p.name for p in self.profile.points]
        self._ranges = {p.name: p.range for p in self.profile.points if p.range}
        self._writable = {p.name for p in self.profile.points if p.writable}
        self._events: list[_Event] = []
        self._seq = itertools.count()
        self._now = 0.0
        self._rewind()

    # -- public ---------------------------------------------------------------------------
    def values(self, t: float) -> dict[str, Any]:
        """Every signal of the profile at ``t`` (seconds since start), engineering units."""
        self._advance(t)
        self._now = max(self._now, t)
        out = self._outputs(t)
        for name, (low, high) in self._ranges.items():  # sensors saturate at full scale
            out[name] = type(out[name])(clamp(out[name], low, high))
        return out

    def command(self, signal: str, value: Any, t: float | None = None) -> None:
        """A write to a writable signal, effective from ``t`` (default: the latest time asked)."""
        if signal not in self._writable:
            raise KeyError(f"{self.kind} has no writable signal {signal!r}")
        self._log(t, "command", signal, value)

    def set_fault(self, name: str, t: float | None = None, **params: Any) -> FaultParams:
        """Inject a physical fault (see ``FAULTS``) from ``t`` on; returns its parameters."""
        if name not in self.FAULTS:
            raise KeyError(f"{self.kind} has no fault {name!r} (known: {', '.join(self.FAULTS)})")
        checked = self.FAULTS[name](**params)
        self._log(t, "set", name, checked)
        return checked

    def clear_fault(self, name: str | None = None, t: float | None = None) -> None:
        """End one injected fault (or all): the condition goes, its trip resets, and a
        machine the protection stopped starts again (the operator's reset and restart)."""
        if name is not None and name not in self.FAULTS:
            raise KeyError(f"{self.kind} has no fault {name!r} (known: {', '.join(self.FAULTS)})")
        self._log(t, "clear", name, None)

    @property
    def faults(self) -> dict[str, FaultParams]:
        """Faults in effect at the latest time asked."""
        return dict(self.active)

    # -- event replay ---------------------------------------------------------------------
    def _log(self, t: float | None, action: str, name: str | None, value: Any) -> None:
        event = _Event(self._now if t is None else t, next(self._seq), action, name, value)
        bisect.insort(self._events, event)
        if event.t < self._k * STEP:  # the state has gone past it: replay from the start
            self._stale = True

    def _rewind(self) -> None:
        self._k = 0
        self._applied = 0
        self._stale = False
        self.active: dict[str, FaultParams] = {}
        self.run_cmd = True  # machines are running when the simulation starts
        self.locked = False
        self.trips: set[str] = set()
        self.stopped_by_protection = False
        self._init_state()

    def _advance(self, t: float) -> None:
        if self._stale or t < self._k * STEP:
            self._rewind()
        self._apply_due()
        while (self._k + 1) * STEP <= t:
            self._step(self._k * STEP, STEP)
            self._k += 1
            self._apply_due()

    def _apply_due(self) -> None:
        boundary = self._k * STEP
        while self._applied < len(self._events) and self._events[self._applied].t <= boundary:
            event = self._events[self._applied]
            self._applied += 1
            if event.action == "command":
                self._on_command(event.name, event.value)
            elif event.action == "set":
                self.active[event.name] = event.value
                self._on_fault(event.name, event.value)
            else:
                for name in [event.name] if event.name else list(self.active):
                    if self.active.pop(name, None) is not None:
                        self._on_fault_cleared(name)

    # -- start, stop and protections ------------------------------------------------------
    @property
    def estop(self) -> bool:
        return "emergency_stop" in self.active

    @property
    def drive_on(self) -> bool:
        return self.run_cmd and self._may_start()

    def _may_start(self) -> bool:
        return not (self.locked or self.trips or self.estop)

    def _on_command(self, signal: str, value: Any) -> None:
        if signal == "run_command":
            self._request_run(bool(value))
        elif signal == "lockout_command":
            self.locked = bool(value)
            if self.locked:
                self.run_cmd = self.stopped_by_protection = False
        elif signal == "reset_command":
            if value:  # trips whose cause is gone reset; the machine stays stopped
                self.trips = {trip for trip in self.trips if self._cause_present(trip)}
        else:
            self._on_setpoint(signal, value)

    def _request_run(self, on: bool) -> None:
        self.stopped_by_protection = False
        if on and not self.run_cmd and self._may_start():
            self.run_cmd = True
            self._on_start()
        elif not on:
            self.run_cmd = False

    def _trip(self, name: str) -> None:
        self.trips.add(name)
        self._protective_stop()

    def _protective_stop(self) -> None:
        if self.run_cmd:
            self.run_cmd = False
            self.stopped_by_protection = True

    def _cause_present(self, trip: str) -> bool:
        return trip in self.active

    def _on_fault(self, name: str, params: FaultParams) -> None:
        if name == "emergency_stop":
            self._protective_stop()

    def _on_fault_cleared(self, name: str) -> None:
        self.trips.discard(name)
        if self.stopped_by_protection and self._may_start():
            self.stopped_by_protection = False
            self.run_cmd = True
            self._on_start()

    # -- subclass hooks -------------------------------------------------------------------
    def _init_state(self) -> None:
        raise NotImplementedError

    def _step(self, t: float, dt: float) -> None:
        raise NotImplementedError

    def _outputs(self, t: float) -> dict[str, Any]:
        raise NotImplementedError

    def _on_start(self) -> None:
        """The drive was switched on."""

    def _on_setpoint(self, signal: str, value: Any) -> None:
        """A write to a set-point register or a machine-specific coil."""


def _status_bits(m: MachineModel) -> dict[str, bool]:
    return {"running": m.drive_on, "fault": bool(m.trips) or m.estop,
            "emergency_stop": m.estop, "lockout": m.locked}


# -- shearer ------------------------------------------------------------------------------
class ShearerModel(MachineModel):
    """MG300/700-WD drum shearer cutting both ways along a longwall face.

    Each pass has its own mean haulage speed; at a face end the machine stops for the
    turnaround (cut-in, drums swapped) and comes back. The leading drum cuts the roof
    and carries most of the load; the trailing drum cleans up the floor.
    """

    kind = "shearer"
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
            "methane": max(0.02, 0.18 + 0.12 * n.wave("ch4", t, 300) + 0.03 * n.jitter("ch4", t)
                           + (0.08 * self.speed / 6 if cutting else 0)),
            "running_hours": self.running_hours,
            "cut_distance_total": self.cut_distance,
            "shear_cycles": self.cycles,
            "model": self.MODEL,
            **_status_bits(self),
            "haulage_speed_setpoint": self.direction * mean_speed if on else 0.0,
            "left_drum_target": round(self._drum_target("left")),
            "right_drum_target": round(self._drum_target("right")),
            "run_command": self.run_cmd,
            "lockout_command": self.locked,
        }


# -- roadheader ---------------------------------------------------------------------------
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
            **_status_bits(self),
            "cutting_enable": self.cutting_enabled,
            "travel_speed_setpoint": self._tram_speed() if on else 0.0,
        }


# -- armoured face conveyor ---------------------------------------------------------------
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
            **_status_bits(self),
            "chain_break": "chain_break" in self.trips,
            "run_command": self.run_cmd,
        }


# -- belt conveyor ------------------------------------------------------------------------
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
            **_status_bits(self),
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


# -- emergency broadcast node -------------------------------------------------------------
class BroadcastNodeModel(MachineModel):
    """Emergency broadcast node: amplifier, speaker line, mains with a ~1 h battery.

    ``play_command`` plays the message in ``message_id`` / ``zone`` / ``priority`` (set
    beforehand) if its priority is at least the one playing: emergency (3) pre-empts
    dispatcher speech (2), which pre-empts routine (1). A message loops until
    ``stop_command``. A node with an amplifier or line fault plays nothing (a fault
    silences what was playing). ``mains_loss`` runs the node on its battery, which drains
    (faster while playing) and recharges when mains come back.
    """

    kind = "broadcast_node"
    FAULTS = {"amplifier_fault": NoParams, "line_fault": NoParams, "mains_loss": NoParams}
    DRAIN_IDLE = 100 / 7200  # %/s: two hours idle on the battery
    DRAIN_PLAYING = 100 / 3600  # %/s: one hour playing (≥ 85 dB)
    CHARGE = 100 / 14400  # %/s

    def _init_state(self) -> None:
        self.battery = 100.0
        self.volume = 80
        self.pending = {"message_id": 1, "zone": 0, "priority": 1}
        self.playing: tuple[int, int, int] | None = None  # (message, zone, priority)

    @property
    def silenced(self) -> bool:
        return "amplifier_fault" in self.active or "line_fault" in self.active or self.battery <= 0

    def _on_command(self, signal: str, value: Any) -> None:
        if signal in self.pending:
            self.pending[signal] = int(value)
        elif signal == "volume_setpoint":
            self.volume = int(value)
        elif signal == "stop_command" and value:
            self.playing = None
        elif signal == "play_command" and value and not self.silenced:
            priority = self.pending["priority"]
            if self.playing is None or priority >= self.playing[2]:
                self.playing = (self.pending["message_id"], self.pending["zone"], priority)

    def _on_fault(self, name: str, params: FaultParams) -> None:
        if self.silenced:
            self.playing = None

    def _on_fault_cleared(self, name: str) -> None:
        pass  # a repaired node stays quiet until told to play again

    def _step(self, t: float, dt: float) -> None:
        if "mains_loss" in self.active:
            self.battery = max(0.0, self.battery - (self.DRAIN_PLAYING if self.playing else self.DRAIN_IDLE) * dt)
            if self.battery <= 0:
                self.playing = None
        else:
            self.battery = min(100.0, self.battery + self.CHARGE * dt)

    def _outputs(self, t: float) -> dict[str, Any]:
        message, zone, priority = self.playing or (0, 0, 0)
        return {
            "battery_level": int(round(self.battery)),
            "volume": self.volume,
            "playing_message": message,
            "playing_zone": zone,
            "playing_priority": priority,
            "online": True,
            "on_battery": "mains_loss" in self.active,
            "amplifier_fault": "amplifier_fault" in self.active,
            "line_fault": "line_fault" in self.active,
            "playing": self.playing is not None,
            **self.pending,
            "volume_setpoint": self.volume,
            "play_command": False,  # momentary: reads back 0
            "stop_command": False,
        }


MODELS: dict[str, type[MachineModel]] = {
    m.kind: m for m in (ShearerModel, RoadheaderModel, FaceConveyorModel, BeltConveyorModel,
                        BroadcastNodeModel)}


class GenericModel(MachineModel):
    """For profiles without a machine model of their own (a site's custom register map):
    every numeric signal a slow sine wave well inside its range, with its own seeded
    phase and period; bits false; strings the profile's kind."""

    kind = "generic"

    def _init_state(self) -> None:
        u = self.noise.uniform
        self._fixed: dict[str, Any] = {}
        self._waves: list[tuple[str, float, float, float, float]] = []
        for p in self.profile.points:
            if not p.is_numeric:
                self._fixed[p.name] = False if p.type is DataType.BOOL else self.profile.kind[:p.length]
            else:
                low, high = p.range or (0.0, 1000.0)
                self._waves.append((p.name, (low + high) / 2, (high - low) * 0.4,
                                    2 * math.pi * u(p.name), 2 * math.pi / (20 + 100 * u(p.name, 1))))

    def _step(self, t: float, dt: float) -> None:
        pass  # stateless: a function of t

    def _outputs(self, t: float) -> dict[str, Any]:
        out = dict(self._fixed)
        for name, mid, amp, phase, omega in self._waves:
            out[name] = mid + amp * math.sin(omega * t + phase)
        return out


def make_model(profile: str | Profile, seed: int = 0) -> MachineModel:
    """The dynamics model for a profile (or built-in kind); a generic one for custom profiles."""
    if isinstance(profile, str):
        if profile not in MODELS:
            raise ValueError(f"no simulator model for kind {profile!r} (known: {', '.join(MODELS)})")
        return MODELS[profile](seed)
    model = MODELS.get(profile.kind, GenericModel)
    return model(seed, profile)
