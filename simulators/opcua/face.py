"""One simulated roof-pressure device: the face's physics for the signals of a node map, and
the faults injected into it (see simulators/opcua/server.py for the faults and the server).

A :class:`FaceSimulator` samples the model once per update and keeps what it served (value,
status, source timestamp) and a short history, so tests can compare what a client received
with what was served.
"""
from __future__ import annotations

import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, NamedTuple

from asyncua import ua
from pydantic import Field, model_validator

from adapters.opcua.nodemap import DataType, NodeMap
from simulators.faults import FaultError, FaultHolder, FaultParams, NoParams

from .longwall import FaceParams, LongwallModel

log = logging.getLogger(__name__)

GOOD = ua.StatusCodes.Good
HISTORY = 120  # updates kept for comparison


# -- faults -------------------------------------------------------------------------------
class SensorParams(FaultParams):
    signals: list[str] = Field(min_length=1, description="signal names (or give one as `signal`)")

    @model_validator(mode="before")
    @classmethod
    def _one_signal(cls, data: Any) -> Any:
        if isinstance(data, dict) and "signal" in data:
            data = {**data, "signals": [data["signal"], *data.get("signals", [])]}
            del data["signal"]
        if isinstance(data, dict) and isinstance(data.get("signals"), str):
            data = {**data, "signals": [data["signals"]]}
        return data


class OutOfRangeParams(SensorParams):
    value: float | None = Field(None, description="value served; default: 10 % of the span above the range")


class RestartParams(FaultParams):
    downtime: float = Field(0.0, ge=0, le=600, description="seconds the port stays closed")


class WeightingParams(FaultParams):
    first: int = Field(description="first support number")
    last: int = Field(description="last support number")
    factor: float = Field(4.0, gt=1, le=20, description="load-rise rates × this")
    duration: float = Field(3 * 3600, gt=0, description="face seconds")


FAULTS: dict[str, type[FaultParams]] = {
    "offline": NoParams, "restart": RestartParams, "weighting": WeightingParams,
    "stuck": SensorParams, "dead": SensorParams, "no_communication": SensorParams,
    "out_of_range": OutOfRangeParams,
}
STATUS_OF_FAULT = {"stuck": ua.StatusCodes.UncertainLastUsableValue, "dead": ua.StatusCodes.BadSensorFailure,
                   "no_communication": ua.StatusCodes.BadNoCommunication}
ONE_SHOT = {"restart", "weighting"}  # actions, not states: they do not stay in ``faults``


class Served(NamedTuple):
    """What a node holds: value (None with a Bad status), status code, source timestamp."""

    value: Any
    status: int
    ts: datetime


# -- one face -----------------------------------------------------------------------------
class FaceSimulator(FaultHolder):
    """One simulated roof-pressure system: a seeded face model plus injected faults.

    ``clock`` gives seconds since the start (default: since construction); face time
    runs ``time_scale`` times faster, from ``start_at`` face seconds.
    """

    def __init__(self, device_id: str, nodemap: NodeMap, seed: int = 0,
                 clock: Callable[[], float] | None = None, time_scale: float = 1.0, start_at: float = 0.0,
                 params: FaceParams | None = None):
        self.device_id = device_id
        self.nodemap = nodemap
        self.model = LongwallModel(nodemap, seed, params)
        self.signals = {s.name: s for s in nodemap.expanded}
        self.time_scale, self.start_at = time_scale, start_at
        start = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - start)
        self.served: dict[str, Served] = {}
        self.history: OrderedDict[datetime, dict[str, Served]] = OrderedDict()
        self._faults: dict[str, FaultParams] = {}
        self._frozen: dict[str, Served | None] = {}
        self._listeners: list[Callable[[FaceSimulator, str, FaultParams | None], None]] = []

    def __repr__(self) -> str:
        return f"FaceSimulator({self.device_id!r}, {len(self.signals)} signals)"

    def face_time(self) -> float:
        return self.start_at + self.clock() * self.time_scale

    # -- values ---------------------------------------------------------------------------
    def sample(self, now: datetime | None = None) -> dict[str, Served]:
        """Sample the model now, apply the faults, remember and return what is served."""
        now = now or datetime.now(timezone.utc)
        values = self.model.values(self.face_time())
        served = {name: Served(as_served(self.signals[name].type, v), GOOD, now) for name, v in values.items()}
        self._apply_faults(served)
        self.served = served
        self.history[now] = served
        while len(self.history) > HISTORY:
            self.history.popitem(last=False)
        return served

    def current_values(self) -> dict[str, Any]:
        """The values served right now, exactly as a client decodes them."""
        return {name: s.value for name, s in self.served.items()}

    def served_at(self, ts: datetime) -> dict[str, Served] | None:
        """What was served by the update stamped ``ts`` (a sample's source timestamp; within
        1 ms, as MQTT payloads carry milliseconds)."""
        exact = self.history.get(ts)
        if exact is not None:
            return exact
        return next((v for k, v in reversed(self.history.items()) if abs((k - ts).total_seconds()) < 0.001), None)

    def _apply_faults(self, served: dict[str, Served]) -> None:
        if oor := self._faults.get("out_of_range"):
            for name in oor.signals:
                served[name] = Served(as_served(self.signals[name].type, self._outside(name, oor)), GOOD,
                                      served[name].ts)
        for fault in ("dead", "no_communication"):
            for name in getattr(self._faults.get(fault), "signals", ()):
                served[name] = Served(None, STATUS_OF_FAULT[fault], served[name].ts)
        for name, frozen in self._frozen.items():
            if frozen is None:  # stuck before anything was served: freeze the first value
                frozen = self._frozen[name] = served[name]
            served[name] = Served(frozen.value, STATUS_OF_FAULT["stuck"], frozen.ts)

    def _outside(self, name: str, p: OutOfRangeParams) -> float:
        if p.value is not None:
            return p.value
        low, high = self.signals[name].range
        return high + 0.1 * (high - low)

    # -- faults ---------------------------------------------------------------------------
    @property
    def fault_kinds(self) -> dict[str, type[FaultParams]]:
        return FAULTS

    def _check_targets(self, name: str, p: FaultParams) -> FaultParams:
        for signal in getattr(p, "signals", ()):
            if signal not in self.signals:
                raise FaultError(f"{self.device_id}: {name}: no signal {signal!r} in the node map")
            if name == "out_of_range" and p.value is None and self.signals[signal].range is None:
                raise FaultError(f"{self.device_id}: out_of_range: {signal} has no range to leave")
        if isinstance(p, WeightingParams):
            try:
                self.model.index_of(p.first), self.model.index_of(p.last)
            except ValueError as exc:
                raise FaultError(f"{self.device_id}: weighting: {exc}") from None
        return p

    def set_fault(self, name: str, **params: Any) -> FaultParams:
        """Inject a fault now (replacing the same fault's earlier parameters)."""
        checked = self.check_fault(name, params)
        if isinstance(checked, WeightingParams):
            self.model.add_weighting(self.face_time(), checked.duration, checked.first, checked.last, checked.factor)
        elif name == "stuck":
            for signal in checked.signals:
                self._frozen.setdefault(signal, self.served.get(signal))
        if name not in ONE_SHOT:
            self._faults[name] = checked
        self._notify(name, checked)
        return checked

    def _fault_cleared(self, name: str) -> None:
        if name == "stuck":
            self._frozen.clear()


def as_served(data_type: DataType, value: Any) -> Any:
    """The value as a client decodes it: Float travels as IEEE single precision."""
    if value is None:
        return None
    if data_type is DataType.FLOAT:
        return struct.unpack("<f", struct.pack("<f", value))[0]
    if data_type is DataType.DOUBLE:
        return float(value)
    if data_type.is_integer:
        return int(round(value))
    if data_type is DataType.BOOLEAN:
        return bool(value)
    return str(value)

