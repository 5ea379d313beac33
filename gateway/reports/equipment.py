"""Equipment per machine and shift from the derived ``status_code`` (0 stopped, 1 running, 2 offline,
3 fault; docs/historian.md): written on every change and as a 30 s heartbeat, so each value holds until the
next one, when that comes within :data:`HOLD_S`; a longer silence is time without data."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.reports.config import ShiftWindow
from gateway.reports.source import Historian, between, ident, literal
from gateway.reports.table import hours

HOLD_S = 60.0  # twice the status heartbeat; an offline machine's tries come at most 45 s apart
STOPPED, RUNNING, OFFLINE, FAULT = 0, 1, 2, 3
COLUMNS = ["shift", "machine", "area", "running_h", "stopped_h", "fault_h", "offline_h", "no_data_h", "stops",
           "faults"]


@dataclass
class MachineTime:
    seconds: dict[int | None, float] = field(default_factory=lambda: dict.fromkeys((0, 1, 2, 3, None), 0.0))
    stops: int = 0  # running -> stopped or fault
    faults: int = 0  # into fault


async def status_points(historian: Historian, kind: str, device: str, window: ShiftWindow) -> list[tuple]:
    """(time, status_code) from :data:`HOLD_S` before the shift (the state it began in) to its end."""
    rows = await historian.rows(
        f"SELECT {ident('status_code')} FROM {historian.measurement(kind)} WHERE {ident('device')} = "
        f"{literal(device)} AND {between(window.start - timedelta(seconds=HOLD_S), window.end)}")
    return [(r["time"], int(r["status_code"])) for r in rows if r.get("status_code") is not None]


def machine_time(points: list[tuple[datetime, int]], window: ShiftWindow) -> MachineTime:
    out = MachineTime()
    before = [p for p in points if p[0] < window.start]
    inside = [p for p in points if p[0] >= window.start]
    held = before[-1:] + inside
    cursor = window.start
    for i, (ts, code) in enumerate(held):
        next_ts = held[i + 1][0] if i + 1 < len(held) else window.end
        until = min(next_ts, window.end) if (next_ts - ts).total_seconds() <= HOLD_S else \
            min(ts, window.end)  # a longer silence: unknown from this point on
        begin = max(ts, window.start)
        if begin > cursor:
            out.seconds[None] += (begin - cursor).total_seconds()
        if until > begin:
            out.seconds[code] += (until - begin).total_seconds()
        cursor = max(cursor, until, begin)
        previous = held[i - 1][1] if i else None
        if ts >= window.start and previous is not None and previous != code:
            out.stops += previous == RUNNING and code in (STOPPED, FAULT)
        if ts >= window.start and code == FAULT and previous != FAULT:
            out.faults += 1
    if cursor < window.end:
        out.seconds[None] += (window.end - cursor).total_seconds()
    return out


def machine_row(shift: int, device: str, area: str, t: MachineTime) -> list:
    s = t.seconds
    return [shift, device, area, hours(s[RUNNING]), hours(s[STOPPED]), hours(s[FAULT]), hours(s[OFFLINE]),
            hours(s[None]), t.stops, t.faults]
