"""Equipment status, normalised: one of running / stopped / fault / offline per machine.

For dispatch screens (a status tile per machine and per area) the status bits of every
machine kind are folded into one signal, computed from each reading of a Modbus machine
whose profile has a ``running`` bit (shearer, roadheader, belt and face conveyors):

- ``offline``: the reading's ``running`` (or ``fault``) sample is comm-fail: no answer;
- ``fault``: ``fault`` or ``emergency_stop`` is true;
- ``running``: ``running`` is true;
- ``stopped``: otherwise (also when ``running`` is bad: the device answered without it).

Emitted as two samples of a derived reading of the same device, stamped with the reading's
``ts``: ``status`` (the name) and ``status_code`` (0 stopped, 1 running, 2 offline, 3 fault:
ordered by severity, so ``max(status_code)`` over an area's machines is the area's status).
Only when the status changes, and otherwise every ``HEARTBEAT_S`` at most, so a dashboard's
"last value within the last minutes" always finds one. See docs/historian.md.
"""
from __future__ import annotations

from datetime import datetime
from enum import IntEnum

from gateway.core.model import Quality, Reading, Schema, Value

SIGNALS = ("status", "status_code")  # the derived signals' names
_SCHEMA = Schema(SIGNALS, ("", ""))


class Status(IntEnum):
    """The normalised status; the value is ``status_code``, ordered by severity."""

    STOPPED = 0
    RUNNING = 1
    OFFLINE = 2
    FAULT = 3

    @property
    def label(self) -> str:
        return self.name.lower()


def _value(reading: Reading, signal: str) -> tuple[Value, Quality | None]:
    """A signal's value and quality in the reading; (None, None) when the reading does not carry it."""
    i = reading.schema.index.get(signal)
    return (None, None) if i is None else (reading.values[i], reading.quality(i))


def _true(value: Value) -> bool:
    """The status bit is known and set (a bad or comm-fail sample has no value)."""
    return isinstance(value, (bool, int, float)) and bool(value)


def status_of(reading: Reading) -> Status:
    """The status one reading of a machine shows (three look-ups, whatever the reading's size)."""
    (running, running_q), (fault, fault_q) = _value(reading, "running"), _value(reading, "fault")
    if running_q is Quality.COMM_FAIL or fault_q is Quality.COMM_FAIL:
        return Status.OFFLINE
    if _true(fault) or _true(_value(reading, "emergency_stop")[0]):
        return Status.FAULT
    return Status.RUNNING if _true(running) else Status.STOPPED


class EquipmentStatus:
    """The processor for one machine: readings in, a derived ``status``/``status_code`` reading out
    on a change of status, on the first reading, and as a heartbeat every ``HEARTBEAT_S``."""

    HEARTBEAT_S = 30.0

    def __init__(self, device_id: str):
        self.device_id = device_id
        self.status: Status | None = None  # as last emitted
        self.emitted_at: datetime | None = None

    def process(self, reading: Reading) -> Reading | None:
        status = status_of(reading)
        if status is self.status and not self._heartbeat_due(reading.ts):
            return None
        self.status, self.emitted_at = status, reading.ts
        return Reading(device=self.device_id, ts=reading.ts, poll_ms=0.0, schema=_SCHEMA,
                       values=[status.label, int(status)], derived=True)

    def _heartbeat_due(self, ts: datetime) -> bool:
        # a clock stepped back (NTP) counts as due: better one heartbeat too many than none for a while
        elapsed = (ts - self.emitted_at).total_seconds()
        return elapsed >= self.HEARTBEAT_S or elapsed < 0
