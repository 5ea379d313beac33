"""The alarm engine: rules from the site file, each alarm's ISA-18.2 lifecycle, transition events.

Rules (``alarms:`` in the site file, :class:`AlarmRule`) watch one signal of one device
(limits, rate of change, status bits, the methane settings of AQ 1029) or the device's
link (``comm_loss``). :class:`AlarmEngine` is fed every reading and device state and
returns an :class:`AlarmEvent` for every transition of an alarm's state:

    normal --condition--> active_unack --ack--> active_ack --clear--> normal
                              |                                          ^
                              +--clear--> cleared_unack --ack------------+
                                          (condition again: active_unack)

Everything is driven by sample timestamps (on/off delays are measured in sample time),
so the engine is deterministic and never reads the clock except for an ack without ``ts``.
See docs/alarms.md.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, IntEnum
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.core.model import DeviceState, DeviceStatus, Quality, Reading, Value, utcnow

log = logging.getLogger(__name__)


class AlarmKind(str, Enum):
    HIGH = "high"
    HIGH_HIGH = "high_high"
    LOW = "low"
    LOW_LOW = "low_low"
    RATE = "rate"  # rise per ``rate_per`` seconds over ``window`` seconds (roof load-rise rate, MPa/h)
    STATE = "state"  # a status bit: belt tear, emergency stop
    COMM_LOSS = "comm_loss"  # the device's link is offline
    METHANE = "methane"  # alarm / power-cut / restore of the reference table
    # raised by the network diagnosis (gateway/network/), never by a rule of the site file
    RING_OPEN = "ring_open"
    RING_SEGMENTED = "ring_segmented"
    LINK_DOWN = "link_down"
    LINK_ERRORS = "link_errors"
    SWITCH_UNREACHABLE = "switch_unreachable"
    SWITCH_RESTARTED = "switch_restarted"
    UPS_ON_BATTERY = "ups_on_battery"


class Priority(IntEnum):
    CRITICAL = 1
    HIGH = 2
    MEDIUM = 3
    LOW = 4


class AlarmState(str, Enum):
    NORMAL = "normal"
    ACTIVE_UNACK = "active_unack"
    ACTIVE_ACK = "active_ack"
    CLEARED_UNACK = "cleared_unack"


class MethaneLocation(str, Enum):
    FACE = "face"  # longwall face T1
    UPPER_CORNER = "upper_corner"  # T0
    RETURN = "return"  # return roadway T2
    MACHINE = "machine"  # shearer, roadheader
    HEADING = "heading"  # heading face


# % CH4: (alarm at or above, power cut at or above, restore below); AQ 1029, see mine-domain.md
METHANE_SETTINGS: dict[MethaneLocation, tuple[float, float, float]] = {
    MethaneLocation.FACE: (1.0, 1.5, 1.0),
    MethaneLocation.UPPER_CORNER: (1.0, 1.5, 1.0),
    MethaneLocation.RETURN: (1.0, 1.0, 1.0),
    MethaneLocation.MACHINE: (1.0, 1.5, 1.0),
    MethaneLocation.HEADING: (1.0, 1.5, 1.0),
}

_SIGNAL_KINDS = {AlarmKind.HIGH, AlarmKind.HIGH_HIGH, AlarmKind.LOW, AlarmKind.LOW_LOW, AlarmKind.RATE,
                 AlarmKind.STATE, AlarmKind.METHANE}
NETWORK_KINDS = frozenset({AlarmKind.RING_OPEN, AlarmKind.RING_SEGMENTED, AlarmKind.LINK_DOWN, AlarmKind.LINK_ERRORS,
                           AlarmKind.SWITCH_UNREACHABLE, AlarmKind.SWITCH_RESTARTED, AlarmKind.UPS_ON_BATTERY})
NETWORK_PREFIX = "net."  # network alarm ids start with it; a rule's id may not
_LIMIT_KINDS = {AlarmKind.HIGH, AlarmKind.HIGH_HIGH, AlarmKind.LOW, AlarmKind.LOW_LOW, AlarmKind.RATE}
_DEFAULT_PRIORITY = {AlarmKind.HIGH_HIGH: Priority.HIGH, AlarmKind.LOW_LOW: Priority.HIGH,
                     AlarmKind.METHANE: Priority.HIGH, AlarmKind.COMM_LOSS: Priority.HIGH}


class AlarmRule(BaseModel):
    """One rule of the site file's ``alarms:`` list."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="unique in the site; used in topics")
    device: str
    signal: str | None = Field(None, description="not for comm_loss")
    kind: AlarmKind
    limit: float | None = Field(None, description="high/low: the limit; rate: units per rate_per seconds")
    active_value: bool = Field(True, description="state: the value that raises the alarm")
    deadband: float = Field(0.0, ge=0, description="the value must come back this far past the limit to clear")
    on_delay: float = Field(0.0, ge=0, description="seconds (sample time) the condition must hold to raise")
    off_delay: float = Field(0.0, ge=0, description="seconds (sample time) the condition must be gone to clear")
    priority: Priority | None = Field(None, description="1-4 or critical/high/medium/low; default by kind")
    message: str = ""
    location: MethaneLocation | None = Field(None, description="methane: where the sensor is")
    window: float = Field(600.0, gt=0, description="rate: seconds of samples the rate is taken over")
    rate_per: float = Field(3600.0, gt=0, description="rate: the limit is per this many seconds (3600: per hour)")

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_name(cls, v):
        if isinstance(v, str) and not v.isdigit():
            try:
                return Priority[v.upper()]
            except KeyError:
                raise ValueError(f"unknown priority {v!r} (1-4, critical, high, medium, low)") from None
        return v

    @model_validator(mode="after")
    def _fits_kind(self) -> "AlarmRule":
        if self.kind in NETWORK_KINDS:
            raise ValueError(f"{self.kind.value} alarms are raised by the network diagnosis (docs/network.md), "
                             "not by a rule")
        if self.id.startswith(NETWORK_PREFIX):
            raise ValueError(f"alarm ids starting with {NETWORK_PREFIX!r} are the network diagnosis' own")
        if self.kind in _SIGNAL_KINDS and not self.signal:
            raise ValueError(f"a {self.kind.value} rule needs a signal")
        if self.kind is AlarmKind.COMM_LOSS and self.signal:
            raise ValueError("a comm_loss rule watches the device, not a signal: leave signal out")
        if self.kind in _LIMIT_KINDS and self.limit is None:
            raise ValueError(f"a {self.kind.value} rule needs a limit")
        if self.kind is AlarmKind.METHANE and self.location is None:
            raise ValueError(f"a methane rule needs a location ({', '.join(m.value for m in MethaneLocation)})")
        if self.kind is not AlarmKind.METHANE and self.location is not None:
            raise ValueError("location is for methane rules only")
        return self

    @property
    def effective_priority(self) -> Priority:
        return self.priority or _DEFAULT_PRIORITY.get(self.kind, Priority.MEDIUM)


class AlarmEvent(BaseModel):
    """One transition of one alarm; ``ts`` and ``value`` are those of the sample that caused it
    (for an acknowledgement: when it was given, and the last value seen)."""

    alarm: str
    device: str
    signal: str | None
    area: str
    kind: AlarmKind
    priority: Priority
    state: AlarmState
    value: Value = None
    ts: datetime
    message: str
    raised_at: datetime | None = None  # when it last became active
    cleared_at: datetime | None = None  # when its condition last went away
    acked_at: datetime | None = None
    acked_by: str | None = None
    suppressed_by: str | None = None  # the network alarm that explains this comm_loss (designed suppression)

    @property
    def suppressed(self) -> bool:
        return self.suppressed_by is not None

    @property
    def active(self) -> bool:
        return self.state in (AlarmState.ACTIVE_UNACK, AlarmState.ACTIVE_ACK)


@dataclass
class _Condition:
    """One alarm the engine keeps: a rule, or half a methane rule (alarm level or power-cut level)."""

    id: str
    rule: AlarmRule
    area: str
    priority: Priority
    message: str
    raise_at: float | None = None  # methane: condition when value >= raise_at
    clear_below: float | None = None  # methane: gone when value < clear_below
    state: AlarmState = AlarmState.NORMAL
    condition: bool = False  # the debounced condition (after the delays)
    pending_since: datetime | None = None  # the raw condition differs from ``condition`` since
    pending_value: Value = None  # the value that started the pending change (comm_loss: the reason)
    value: Value = None
    raised_at: datetime | None = None
    cleared_at: datetime | None = None
    acked_at: datetime | None = None
    acked_by: str | None = None
    history: deque = field(default_factory=deque)  # rate: (ts, value)
    suppressed_by: str | None = None

    def event(self, ts: datetime) -> AlarmEvent:
        r = self.rule
        return AlarmEvent(alarm=self.id, device=r.device, signal=r.signal, area=self.area, kind=r.kind,
                          priority=self.priority, state=self.state, value=self.value, ts=ts, message=self.message,
                          raised_at=self.raised_at, cleared_at=self.cleared_at, acked_at=self.acked_at,
                          acked_by=self.acked_by, suppressed_by=self.suppressed_by)


@dataclass(frozen=True)
class NetworkAlarm:
    """A network alarm whose condition holds now (gateway/network/watch.py makes them from the diagnosis).

    ``suppresses``: device ids whose comm_loss alarms it explains (devices cut off behind it)."""

    id: str
    device: str
    area: str
    kind: AlarmKind
    priority: Priority
    message: str
    value: Value = None
    suppresses: tuple[str, ...] = ()
    on_delay: float = 0.0  # seconds (sample time): switches report one by one, so a verdict may need a poll round
    off_delay: float = 0.0


def _numeric(value: Value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class AlarmEngine:
    """Evaluates the rules on every reading and device state; keeps each alarm's lifecycle.

    ``areas`` maps device id to area id (an alarm's area is its device's). Not thread-safe:
    call it from one thread (the gateway's event loop).
    """

    def __init__(self, rules: Iterable[AlarmRule], areas: dict[str, str]):
        self._conditions: dict[str, _Condition] = {}
        self._by_device: dict[str, list[_Condition]] = {}
        self._network: dict[str, _Condition] = {}  # network alarms, made when first raised
        self._suppresses: dict[str, tuple[str, ...]] = {}  # network alarm -> devices it last explained
        for rule in rules:
            for cond in self._expand(rule, areas.get(rule.device, "")):
                if cond.id in self._conditions:
                    raise ValueError(f"alarm id {cond.id!r} used twice")
                self._conditions[cond.id] = cond
                self._by_device.setdefault(rule.device, []).append(cond)

    @staticmethod
    def alarm_ids(rule: AlarmRule) -> list[str]:
        """The alarms a rule makes: its id, and for methane also ``{id}-cut`` (the power-cut level)."""
        return [rule.id, f"{rule.id}-cut"] if rule.kind is AlarmKind.METHANE else [rule.id]

    @staticmethod
    def _expand(rule: AlarmRule, area: str) -> list[_Condition]:
        message = rule.message
        if rule.kind is not AlarmKind.METHANE:
            if not message:
                what = rule.signal or "link"
                message = {AlarmKind.COMM_LOSS: f"{rule.device}: communication lost",
                           AlarmKind.STATE: f"{rule.device}: {what} is {rule.active_value}"}.get(
                    rule.kind, f"{rule.device}: {what} {rule.kind.value} (limit {rule.limit:g})"
                    if rule.limit is not None else f"{rule.device}: {what} {rule.kind.value}")
            return [_Condition(rule.id, rule, area, rule.effective_priority, message)]
        alarm, cut, restore = METHANE_SETTINGS[rule.location]
        where = rule.location.value.replace("_", " ")
        base = message or f"{rule.device}: methane ({where})"
        return [
            _Condition(rule.id, rule, area, rule.effective_priority, f"{base} at or above {alarm:g} %",
                       raise_at=alarm, clear_below=restore),
            _Condition(f"{rule.id}-cut", rule, area, Priority.CRITICAL,
                       f"{base} at or above the power-cut level {cut:g} %", raise_at=cut, clear_below=restore),
        ]

    # ---- feeding ----

    def on_reading(self, device: str, reading: Reading) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        conditions = self._by_device.get(device)
        if not conditions:
            return events
        index = reading.schema.index  # only the signals the rules name are looked at, not every sample
        for cond in conditions:
            if cond.rule.kind is AlarmKind.COMM_LOSS:  # readings only advance its delays
                self._step(cond, cond.condition if cond.pending_since is None else not cond.condition,
                           reading.ts, cond.pending_value, events)
                continue
            i = index.get(cond.rule.signal)
            if i is None:
                continue
            value = reading.values[i]
            if value is None or reading.quality(i) in (Quality.BAD, Quality.COMM_FAIL):
                continue  # no value, no verdict: the alarm holds (comm_loss rules report the link)
            ts = reading.time(i)
            raw = self._evaluate(cond, value, ts)
            if raw is not None:
                self._step(cond, raw, ts, value, events)
        return events

    def on_state(self, device: str, state: DeviceState) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        for cond in self._by_device.get(device, ()):
            if cond.rule.kind is AlarmKind.COMM_LOSS:
                down = state.status is DeviceStatus.OFFLINE and state.reason != "not polled yet"
                self._step(cond, down, state.since, state.reason if down else None, events)
        return events

    def on_network(self, active: Iterable[NetworkAlarm], ts: datetime) -> list[AlarmEvent]:
        """The network alarms whose condition holds at ``ts`` (every other one seen before has cleared), and
        the comm_loss alarms they suppress: a suppressed or released alarm not normal is announced again."""
        events: list[AlarmEvent] = []
        now = {a.id: a for a in active}
        for alarm in now.values():
            cond = self._network.get(alarm.id) or self._add_network(alarm)
            was = cond.condition
            if not was:
                cond.message = alarm.message  # each raise names what is broken now
            self._step(cond, True, ts, alarm.value, events)
            if was and cond.message != alarm.message:  # an active alarm says what is broken now (a second island)
                cond.message = alarm.message
                events.append(cond.event(ts))
        for alarm_id, cond in self._network.items():
            if alarm_id not in now:
                self._step(cond, False, ts, cond.value, events)
        self._suppress(self._explained(now), ts, events)
        return events

    def _explained(self, now: dict[str, NetworkAlarm]) -> dict[str, str]:
        """Device -> the network alarm that explains its comm loss: one holding now (even before its on-delay ran
        out) or still active (its off-delay running); the most urgent first."""
        for alarm in now.values():
            self._suppresses[alarm.id] = alarm.suppresses
        holding = sorted((c for i, c in self._network.items() if i in now or c.condition), key=lambda c: c.priority)
        by: dict[str, str] = {}
        for cond in holding:
            for device in self._suppresses.get(cond.id, ()):
                by.setdefault(device, cond.id)
        return by

    def _add_network(self, alarm: NetworkAlarm) -> _Condition:
        rule = AlarmRule.model_construct(id=alarm.id, device=alarm.device, signal=None, kind=alarm.kind,
                                         priority=alarm.priority, on_delay=alarm.on_delay, off_delay=alarm.off_delay)
        cond = self._network[alarm.id] = self._conditions[alarm.id] = _Condition(
            alarm.id, rule, alarm.area, alarm.priority, alarm.message)
        return cond

    def _suppress(self, by: dict[str, str], ts: datetime, events: list[AlarmEvent]) -> None:
        for conditions in self._by_device.values():
            for cond in conditions:
                if cond.rule.kind is not AlarmKind.COMM_LOSS:
                    continue
                suppressed_by = by.get(cond.rule.device)
                if suppressed_by != cond.suppressed_by:
                    cond.suppressed_by = suppressed_by
                    if cond.state is not AlarmState.NORMAL:
                        events.append(cond.event(ts))

    def ack(self, alarm: str, by: str, ts: datetime | None = None) -> AlarmEvent | None:
        """Acknowledge an alarm; the event, or None when it had nothing to acknowledge.

        Raises KeyError for an unknown alarm id.
        """
        cond = self._conditions[alarm]
        ts = ts or utcnow()
        if cond.state is AlarmState.ACTIVE_UNACK:
            cond.state = AlarmState.ACTIVE_ACK
        elif cond.state is AlarmState.CLEARED_UNACK:
            cond.state = AlarmState.NORMAL
        else:
            return None
        cond.acked_at, cond.acked_by = ts, by
        return cond.event(ts)

    # ---- looking ----

    def alarms(self) -> list[AlarmEvent]:
        """Every alarm not normal, as its latest event would say."""
        return [c.event(c.raised_at or c.cleared_at or utcnow()) for c in self._conditions.values()
                if c.state is not AlarmState.NORMAL]

    def state(self, alarm: str) -> AlarmState:
        return self._conditions[alarm].state

    @property
    def ids(self) -> list[str]:
        return list(self._conditions)

    # ---- inside ----

    def _evaluate(self, cond: _Condition, value: Value, ts: datetime) -> bool | None:
        """The raw condition for this sample (deadband applied against the current state), None: unknown."""
        rule, on = cond.rule, cond.condition
        if rule.kind is AlarmKind.STATE:
            return bool(value) == rule.active_value
        x = _numeric(value)
        if x is None:
            return None
        if rule.kind is AlarmKind.METHANE:
            return x >= cond.clear_below if on else x >= cond.raise_at
        if rule.kind in (AlarmKind.HIGH, AlarmKind.HIGH_HIGH):
            return x >= rule.limit - rule.deadband if on else x >= rule.limit
        if rule.kind in (AlarmKind.LOW, AlarmKind.LOW_LOW):
            return x <= rule.limit + rule.deadband if on else x <= rule.limit
        # rate
        history = cond.history
        history.append((ts, x))
        while len(history) > 2 and (ts - history[1][0]).total_seconds() >= rule.window:
            history.popleft()  # keep one sample at least ``window`` old, if there is one
        first_ts, first = history[0]
        span = (ts - first_ts).total_seconds()
        if span <= 0:
            return None
        rate = (x - first) / span * rule.rate_per
        return rate >= rule.limit - rule.deadband if on else rate >= rule.limit

    def _step(self, cond: _Condition, raw: bool, ts: datetime, value: Value, events: list[AlarmEvent]) -> None:
        """Debounce the raw condition with the rule's delays; a change moves the lifecycle."""
        rule = cond.rule
        if raw == cond.condition:
            cond.pending_since = None
            if raw:
                cond.value = value  # the latest value of an active alarm
            return
        if cond.pending_since is None:
            cond.pending_since, cond.pending_value = ts, value
        delay = rule.on_delay if raw else rule.off_delay
        if (ts - cond.pending_since).total_seconds() < delay:
            return
        cond.condition, cond.pending_since, cond.value = raw, None, value
        if raw:
            cond.raised_at, cond.cleared_at, cond.acked_at, cond.acked_by = ts, None, None, None
            cond.state = AlarmState.ACTIVE_UNACK
        else:
            cond.cleared_at = ts
            cond.state = (AlarmState.NORMAL if cond.state is AlarmState.ACTIVE_ACK
                          else AlarmState.CLEARED_UNACK)
        events.append(cond.event(ts))
