"""What every machine model shares: event replay, start/stop, lockout, latched protection trips."""
from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar

from adapters.modbus.profile import Profile, load_profile

from simulators.faults import FaultParams, NoParams
from simulators.physics import Noise, clamp

STEP = 0.25  # s: state integration step; an event takes effect at the next step boundary


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
            value = out[name]
            if value < low or value > high:
                out[name] = type(value)(clamp(value, low, high))
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

    def status_bits(self) -> dict[str, bool]:
        """The status bits every machine profile has."""
        return {"running": self.drive_on, "fault": bool(self.trips) or self.estop,
                "emergency_stop": self.estop, "lockout": self.locked}

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
