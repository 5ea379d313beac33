"""Data completeness per device and shift: the points stored against those expected, the gaps longer than
the polling rule, the comm-fail share, and the outages the historian recorded that explain them."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.reports.config import ShiftWindow
from gateway.reports.source import Historian, between, ident, literal
from gateway.reports.table import clock, percent

HEALTH_GAP_S = 30.0  # gateway_health comes every 10 s: three missed ticks is a silent gateway
COLUMNS = ["shift", "device", "area", "basis", "interval_s", "expected", "stored", "completeness", "gaps",
           "longest_gap_s", "comm_fail_share"]
GAP_COLUMNS = ["shift", "device", "gap_start", "gap_end", "gap_s", "explained_by"]
OUTAGE_COLUMNS = ["shift", "outage", "subject", "outage_start", "outage_end", "outage_s"]


@dataclass(frozen=True)
class Expectation:
    """How often a device's points should come: every ``interval`` s (``polls``), or at least one per window
    of ``rule_s`` (``windows``: report by exception, OPC UA data-change subscriptions)."""
    device: str
    area: str
    kind: str
    probe: str | None  # a signal every point carries (its value or its __quality); None: SELECT *
    basis: str
    interval: float
    rule_s: float


@dataclass(frozen=True)
class Span:
    what: str  # gateway_silent, historian_down, mqtt_down, device_offline, a gateway alarm id
    subject: str  # the gateway or device
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end


async def stored_points(historian: Historian, e: Expectation, window: ShiftWindow) -> list[dict]:
    fields = f"{ident(e.probe)}, {ident(e.probe + '__quality')}" if e.probe else "*"
    return await historian.rows(f"SELECT {fields} FROM {historian.measurement(e.kind)} WHERE {ident('device')} = "
                                f"{literal(e.device)} AND {between(window.start, window.end)}")


def gaps(times: list[datetime], window: ShiftWindow, rule_s: float) -> list[tuple[datetime, datetime]]:
    """Stretches longer than ``rule_s`` without a point; the shift's start and end count as points."""
    edges = [window.start, *times, window.end]
    return [(a, b) for a, b in zip(edges, edges[1:]) if (b - a).total_seconds() > rule_s]


def device_row(shift: int, e: Expectation, rows: list[dict], window: ShiftWindow) -> tuple[list, list]:
    times = [r["time"] for r in rows]
    if e.basis == "polls":
        expected, stored = round(window.seconds / e.interval), len(rows)
    else:
        expected = math.ceil(window.seconds / e.rule_s)
        stored = len({int((t - window.start).total_seconds() // e.rule_s) for t in times})
    failed = sum(1 for r in rows if any(k.endswith("__quality") and v == "comm-fail" for k, v in r.items()))
    found = gaps(times, window, e.rule_s)
    longest = max(((b - a).total_seconds() for a, b in found), default=0.0)
    row = [shift, e.device, e.area, e.basis, e.interval if e.basis == "polls" else e.rule_s, expected, stored,
           percent(min(stored, expected), expected), len(found), round(longest, 1), percent(failed, len(rows))]
    return row, found


async def outages(historian: Historian, window: ShiftWindow) -> list[Span]:
    health = await historian.rows(
        f"SELECT {ident('connected')}, {ident('mqtt_connected')} FROM {historian.measurement('gateway_health')} "
        f"WHERE {between(window.start, window.end)} GROUP BY {ident('gateway')}")
    alarms = await historian.rows(
        f"SELECT {ident('active')} FROM {historian.measurement('gateway_alarm')} WHERE "
        f"{between(window.start, window.end)} GROUP BY {ident('gateway')}, {ident('alarm')}")
    states = await historian.rows(
        f"SELECT {ident('status')}, {ident('reason')} FROM {historian.measurement('device_state')} WHERE "
        f"{between(window.start, window.end)} GROUP BY {ident('device')}")
    spans: list[Span] = []
    for gateway in sorted({r["gateway"] for r in health}):
        points = [r for r in health if r["gateway"] == gateway]
        spans += [Span("gateway_silent", gateway, a, b)
                  for a, b in gaps([r["time"] for r in points], window, HEALTH_GAP_S)]
        spans += runs(points, "connected", False, "historian_down", gateway, window)
        spans += runs(points, "mqtt_connected", False, "mqtt_down", gateway, window)
    for key in sorted({(r["gateway"], r["alarm"]) for r in alarms}):
        spans += runs([r for r in alarms if (r["gateway"], r["alarm"]) == key], "active", True, key[1], key[0], window)
    for device in sorted({r["device"] for r in states}):
        spans += runs([r for r in states if r["device"] == device], "status", "offline", "device_offline", device,
                      window)
    return sorted(spans, key=lambda s: (s.start, s.what, s.subject))


def runs(points: list[dict], field: str, value, what: str, subject: str, window: ShiftWindow) -> list[Span]:
    """The stretches from a point whose ``field`` is ``value`` to the next point where it is not (or the end)."""
    out, since = [], None
    for p in points:
        if p.get(field) is None:
            continue
        if p[field] == value and since is None:
            since = p["time"]
        elif p[field] != value and since is not None:
            out.append(Span(what, subject, since, p["time"]))
            since = None
    if since is not None:
        out.append(Span(what, subject, since, window.end))
    return out


def explain(device: str, start: datetime, end: datetime, spans: list[Span]) -> str:
    """The outages overlapping a device's gap: the gateway-wide ones, and that device's own."""
    found = [s for s in spans if s.overlaps(start, end) and (s.what != "device_offline" or s.subject == device)]
    return ", ".join(dict.fromkeys(s.what for s in found))


def gap_row(shift: int, device: str, gap: tuple[datetime, datetime], spans: list[Span], zone: str) -> list:
    start, end = gap
    return [shift, device, clock(start, zone), clock(end, zone), round((end - start).total_seconds(), 1),
            explain(device, start, end, spans)]


def outage_row(shift: int, span: Span, zone: str) -> list:
    return [shift, span.what, span.subject, clock(span.start, zone), clock(span.end, zone), round(span.seconds, 1)]


