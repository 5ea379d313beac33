"""A site of two gateways and two longwall faces (and two belt lines, a heading) written into a real
InfluxDB with known values, for tests that check the numbers each dashboard panel's query returns.

Line protocol as the gateway writes it (gateway.historian.lineprotocol), stamped relative to now so
that freshness counts: ``gw-north`` is up and its devices fresh; ``gw-south`` crashed 120 s ago
(no clean stop: its status still says online, its health and its devices' readings stopped);
``gw-west`` is stored through ingest only (a status, no health). District 2's uplink went down.

| area | device | status history (oldest first) | readings until |
|---|---|---|---|
| face-1201 | shearer-1201 | fault, running | now |
| face-1201 | afc-1201 | running, stopped | now |
| face-1203 | shearer-1203 | running | 120 s ago (stale) |
| face-1203 | afc-1203 | stopped | 120 s ago (stale) |
| heading-1302 | roadheader-1302 | offline, running | now |
| belt-a | belt-a-1, belt-a-2 | running, fault; stopped | now |
| belt-b | belt-b-1 | stopped | now |
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from gateway.historian.lineprotocol import gateway_heartbeat_line, gateway_status_line, point, uplink_status_line

SITE = "two-gw-mine"
NOW_S = 0.0  # set at fill time
STALE_SINCE_S = 120  # gw-south and its devices stopped this long ago
KIND = {"shearer-1201": "shearer", "afc-1201": "face_conveyor", "shearer-1203": "shearer",
        "afc-1203": "face_conveyor", "roadheader-1302": "roadheader", "belt-a-1": "belt_conveyor",
        "belt-a-2": "belt_conveyor", "belt-b-1": "belt_conveyor"}
AREA = {"shearer-1201": "face-1201", "afc-1201": "face-1201", "shearer-1203": "face-1203", "afc-1203": "face-1203",
        "roadheader-1302": "heading-1302", "belt-a-1": "belt-a", "belt-a-2": "belt-a", "belt-b-1": "belt-b"}
STATUS_HISTORY = {  # device -> [(seconds ago, status code)]
    "shearer-1201": [(600, 3), (300, 1)], "afc-1201": [(600, 1), (100, 0)],
    "shearer-1203": [(600, 1)], "afc-1203": [(600, 0)],
    "roadheader-1302": [(600, 2), (400, 1)],
    "belt-a-1": [(600, 1), (60, 3)], "belt-a-2": [(600, 0)], "belt-b-1": [(600, 0)],
}
STALE_DEVICES = {"shearer-1203", "afc-1203"}
# What the dispatcher must see now: worst of each area's latest statuses, a stale device as STALE + its status
EXPECTED_AREAS = {"face-1201": 1, "face-1203": 11, "heading-1302": 1, "belt-a": 3, "belt-b": 0}
EXPECTED_GATEWAYS = {"gw-north": 1, "gw-south": 0, "gw-west": 1}  # 1 up, 0 down
EXPECTED_UPLINKS = {"district-1": 1, "district-2": 0}
HEALTH = {"gw-north": {"dropped": 0, "mqtt_dropped": 0, "mqtt_queued": 3, "depth": 5},
          "gw-south": {"dropped": 500, "mqtt_dropped": 7, "mqtt_queued": 1200, "depth": 100}}
LEGS = {"rp-1201": ("face-1201", 300, {1: 30.1, 2: 25.0}, 2), "rp-1203": ("face-1203", 150, {1: 2.0, 2: 3.0}, 7)}
LOAD_RISE = {"rp-1201": 1.5, "rp-1203": 3.0}  # MPa/h of support 1's front leg
OLD_ALARM_DAYS = 10  # raised this long ago and still active
REFILL_S = 8.0  # the freshest points are 1-2 s old; windows are 20-25 s


def _at(seconds_ago: float) -> datetime:
    return datetime.fromtimestamp(NOW_S - seconds_ago, timezone.utc)


def _status_lines() -> list[str]:
    lines = []
    for device, history in STATUS_HISTORY.items():
        tags = {"site": SITE, "area": AREA[device], "device": device}
        beats = [(ago, code) for ago, code in history]
        last_ago, last_code = history[-1]
        stop = STALE_SINCE_S if device in STALE_DEVICES else 0
        beats += [(ago, last_code) for ago in range(int(last_ago) - 30, stop, -30)]  # the 30 s heartbeat
        lines += [point(KIND[device], tags, {"status_code": code}, _at(ago)) for ago, code in beats]
        lines += [point(KIND[device], tags, {"running": True}, _at(ago)) for ago in range(600, stop, -5)]
        lines.append(point(KIND[device], tags, {"running": True}, _at(stop + 1)))
    return lines


def _gateway_lines() -> list[str]:
    lines = [gateway_status_line(SITE, gw, True, "started", _at(600)) for gw in ("gw-north", "gw-south", "gw-west")]
    for gw, counters in HEALTH.items():
        stop = STALE_SINCE_S if gw == "gw-south" else 2
        for ago in [*range(600, stop, -10), stop]:
            lines += [point("gateway_health", {"site": SITE, "gateway": gw}, counters, _at(ago)),
                      gateway_heartbeat_line(SITE, gw, _at(ago))]
    lines += [uplink_status_line(SITE, "district-1", True, _at(600)), uplink_status_line(SITE, "district-2", True, _at(600)),
              uplink_status_line(SITE, "district-2", False, _at(STALE_SINCE_S + 10))]
    return lines


def _roof_lines() -> list[str]:
    lines = []
    for device, (area, ago, legs, below) in LEGS.items():
        fields = {f"support_{n:03d}_front_leg_pressure": v for n, v in legs.items()}
        fields["supports_below_setting"] = below
        fields["support_001_front_leg_load_rise_rate"] = LOAD_RISE[device]
        lines.append(point("roof_pressure", {"site": SITE, "area": area, "device": device}, fields, _at(ago)))
    return lines


def _alarm_lines() -> list[str]:
    def event(alarm: str, device: str, state: str, seconds_ago: float) -> str:
        return point("alarm_event", {"site": SITE, "area": AREA[device], "device": device, "alarm": alarm},
                     {"state": state, "priority": 2, "kind": "high", "message": f"{alarm} {state}"}, _at(seconds_ago))
    old = OLD_ALARM_DAYS * 86400
    return [event("old-shearer-hot", "shearer-1201", "active_unack", old),
            event("belt-a-1-hot", "belt-a-1", "active_unack", 500), event("belt-a-1-hot", "belt-a-1", "normal", 400)]


@dataclass
class TwoGatewaySite:
    url: str
    database: str
    influx: object

    def query(self, q: str) -> list[dict]:
        return self.influx.query(q, self.database)


_FILLED: dict[str, TwoGatewaySite] = {}


def fill(influxdb) -> TwoGatewaySite:
    """Write the site into a new database of ``influxdb`` (a few thousand lines, well under a second)."""
    global NOW_S
    NOW_S = time.time()
    database = influxdb.create_database(f"two_gw_{uuid.uuid4().hex[:8]}")
    lines = _status_lines() + _gateway_lines() + _roof_lines() + _alarm_lines()
    status, body = influxdb.request("POST", "/write", {"db": database, "precision": "ns"},
                                    "\n".join(lines).encode())
    if status != 204:
        raise RuntimeError(f"two-gateway site: InfluxDB refused the lines: {status} {body[:300]!r}")
    return TwoGatewaySite(influxdb.url, database, influxdb)


@pytest.fixture
def two_gateway_site(influxdb) -> TwoGatewaySite:
    """The site, written once per session and InfluxDB (read only). Freshness is relative to the fill:
    a test reading "now" gets it written at most REFILL_S ago (else again, into a new database)."""
    filled = _FILLED.get(influxdb.url)
    if filled is None or time.time() - NOW_S > REFILL_S:
        filled = _FILLED[influxdb.url] = fill(influxdb)
    return filled
