"""Device alarms per shift from ``alarm_event`` (one point per ISA-18.2 transition, docs/alarms.md): raised,
acknowledged, the longest time active, and what was still unacknowledged when the shift ended."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.reports.config import ShiftWindow
from gateway.reports.source import Historian, between, ident
from gateway.reports.table import minutes

ACTIVE = ("active_unack", "active_ack")
UNACKED = ("active_unack", "cleared_unack")
LOOK_BACK = timedelta(days=31)  # how far back the state an alarm entered the shift in is looked for
COLUMNS = ["shift", "device", "alarm", "priority", "raised", "acknowledged", "longest_active_min", "state_at_end",
           "unacked_at_end"]


@dataclass
class AlarmFigures:
    device: str
    alarm: str
    priority: int | None
    raised: int
    acknowledged: int
    longest_active_s: float
    state_at_end: str

    @property
    def unacked_at_end(self) -> bool:
        return self.state_at_end in UNACKED


async def alarm_events(historian: Historian, window: ShiftWindow) -> tuple[list[dict], list[dict]]:
    """The transitions within the shift, and each alarm's last transition before it."""
    measurement = historian.measurement("alarm_event")
    inside = await historian.rows(f"SELECT {ident('state')}, {ident('priority')} FROM {measurement} "
                                  f"WHERE {between(window.start, window.end)} GROUP BY {ident('device')}, "
                                  f"{ident('alarm')}")
    before = await historian.rows(f"SELECT last({ident('state')}) AS {ident('state')} FROM {measurement} "
                                  f"WHERE {between(window.start - LOOK_BACK, window.start)} GROUP BY "
                                  f"{ident('device')}, {ident('alarm')}")
    return inside, before


def figures(inside: list[dict], before: list[dict], window: ShiftWindow) -> list[AlarmFigures]:
    start_state = {(r["device"], r["alarm"]): r["state"] for r in before}
    events: dict[tuple, list[dict]] = {key: [] for key, state in start_state.items() if state != "normal"}
    for row in inside:
        events.setdefault((row["device"], row["alarm"]), []).append(row)
    return [_one(key, start_state.get(key, "normal"), sorted(rows, key=lambda r: r["time"]), window)
            for key, rows in sorted(events.items())]


def _one(key: tuple, state: str, rows: list[dict], window: ShiftWindow) -> AlarmFigures:
    raised = acked = 0
    longest = 0.0
    active_since: datetime | None = window.start if state in ACTIVE else None
    for row in rows:
        new = row["state"]
        raised += new == "active_unack" and state != "active_unack"
        acked += (state, new) in (("active_unack", "active_ack"), ("cleared_unack", "normal"))
        if new in ACTIVE and active_since is None:
            active_since = row["time"]
        elif new not in ACTIVE and active_since is not None:
            longest = max(longest, (row["time"] - active_since).total_seconds())
            active_since = None
        state = new
    if active_since is not None:
        longest = max(longest, (window.end - active_since).total_seconds())
    priority = next((r["priority"] for r in reversed(rows) if r.get("priority") is not None), None)
    return AlarmFigures(key[0], key[1], priority, raised, acked, longest, state)


def alarm_row(shift: int, f: AlarmFigures) -> list:
    return [shift, f.device, f.alarm, f.priority, f.raised, f.acknowledged, minutes(f.longest_active_s),
            f.state_at_end, f.unacked_at_end]
