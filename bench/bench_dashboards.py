"""How fast the dispatch dashboards answer: every panel's query against a real influxd holding
hours of a mine's history.

    python bench/bench_dashboards.py --hours 6          # ~2-3 min on 2 cores
    python bench/bench_dashboards.py --hours 1 --supports 50

It starts its own influxd (1.x) in a temporary directory, writes ``--hours`` of history for
one longwall face (shearer, face conveyor, a roof-pressure system of ``--supports`` supports,
every leg, gauge and load cell every second), a heading (roadheader, camera), a belt line
(two belts, camera), four broadcast nodes, and the gateway's own measurements, with the
schema's own line builders (gateway/historian/lineprotocol.py). Then, per dashboard, with
every variable on "All" as the dashboards open, it runs every panel's query for the last
hour and for the whole history (``$__interval`` as Grafana would make it for a ~1000 px
panel), three times each, and prints the median time of a full refresh (all queries one
after the other) and the slowest query.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dashboards  # noqa: E402
from adapters.modbus.profile import load_profile  # noqa: E402
from adapters.opcua.nodemap import load_nodemap  # noqa: E402
from gateway.historian.lineprotocol import point  # noqa: E402
from tests.conftest import Influx  # noqa: E402
from tests.grafana_util import InfluxQuery, Variables, panel_queries, resolve_variables  # noqa: E402

SITE = "demo-mine"
MACHINES = [("shearer-1201", "face-1201", "shearer"), ("afc-1201", "face-1201", "face_conveyor"),
            ("roadheader-1302", "heading-1302", "roadheader"), ("belt-main-1", "belt-main", "belt_conveyor"),
            ("belt-main-2", "belt-main", "belt_conveyor")]
NODES = [("bn-1201-1", "face-1201"), ("bn-1201-2", "face-1201"), ("bn-1302", "heading-1302"),
         ("bn-belt-main", "belt-main")]
CAMERAS = [("cam-1302", "heading-1302"), ("belt-transfer-cam", "belt-main")]


def wave(lo: float, hi: float, t: float, phase: float) -> float:
    return round(lo + (hi - lo) * (0.5 + 0.45 * math.sin(t / 300 + phase)), 3)


def profile_fields(kind: str, t: float, phase: float) -> dict:
    fields = {}
    for p in load_profile(kind).points:
        if p.writable or p.type.value == "string":
            continue
        if p.type.value == "bool":
            fields[p.name] = p.name == "running"
        else:
            lo, hi = p.range or (0, 100)
            value = wave(lo, hi, t, phase)
            integer = p.type.value not in ("float32", "float64") and p.scale == 1 and p.offset == 0
            fields[p.name] = int(value) if integer else float(value)
    return fields


def history(hours: float, supports: int, start: datetime):
    """Line-protocol lines, one second at a time."""
    roof = load_nodemap("longwall", supports).expanded
    for s in range(int(hours * 3600)):
        ts = start + timedelta(seconds=s)
        t = float(s)
        lines = []
        for i, (dev, area, kind) in enumerate(MACHINES):
            tags = {"site": SITE, "area": area, "device": dev}
            fields = profile_fields(kind, t, i)
            if s % 30 == 0:
                fields |= {"status": "running", "status_code": 1}
            lines.append(point(kind, tags, fields, ts))
        lines.append(point("roof_pressure", {"site": SITE, "area": "face-1201", "device": "rp-1201"},
                           {sig.name: wave(*(sig.range or (0, 60)), t, j / 7) for j, sig in enumerate(roof)}, ts))
        for dev, area in NODES:
            lines.append(point("broadcast_node", {"site": SITE, "area": area, "device": dev},
                               {"online": True, "battery_level": 100, "playing_priority": 0, "volume": 80,
                                "amplifier_fault": False, "line_fault": False, "on_battery": False}, ts))
        if s % 5 == 0:
            for dev, area in CAMERAS:
                lines.append(point("camera", {"site": SITE, "area": area, "device": dev},
                                   {"online": True, "response_ms": 12.0, "motion": s % 600 < 30}, ts))
        if s % 10 == 0:
            lines += periodic(s, ts, supports)
        yield from lines


def periodic(s: int, ts: datetime, supports: int) -> list[str]:
    """Every 10 s: the gateway's health, derived roof metrics, now and then an alarm and a state."""
    lines = [point("gateway_health", {"site": SITE, "gateway": "gateway-1"},
                   {"buffered": s * 30, "written": s * 30, "depth": 0, "dead_letters": 0, "retries": 0, "dropped": 0,
                    "oldest_age_s": 0.0, "connected": True, "mqtt_published": s * 12, "mqtt_delivered": s * 12,
                    "mqtt_queued": 0, "mqtt_dropped": 0}, ts)]
    for dev, area, _ in [*MACHINES, ("rp-1201", "face-1201", ""), *((d, a, "") for d, a in NODES + CAMERAS)]:
        lines.append(point("device_health", {"site": SITE, "area": area, "device": dev},
                           {"polls": 10, "failed_polls": 0, "samples_not_good": 0, "poll_ms_mean": 4.2,
                            "poll_ms_max": 9.5}, ts))
    leg = f"support_{s // 10 % supports + 1:03d}_front_leg_"
    lines.append(point("roof_pressure", {"site": SITE, "area": "face-1201", "device": "rp-1201"},
                       {leg + "setting_load": 25.1, leg + "end_resistance": 37.2, leg + "load_rise_rate": 1.4,
                        leg + "yield_openings": 0, "supports_below_setting": 2}, ts))
    if s % 600 == 0:
        for state in ("active_unack", "active_ack", "normal"):
            lines.append(point("alarm_event", {"site": SITE, "area": "belt-main", "device": "belt-main-1",
                                               "alarm": "belt-1-slip"},
                               {"state": state, "priority": 2, "kind": "state", "message": "belt slip"}, ts))
            ts += timedelta(milliseconds=1)
        lines.append(point("device_state", {"site": SITE, "area": "heading-1302", "device": "roadheader-1302"},
                           {"status": "online", "reason": "polling", "polls": s, "errors": 0}, ts))
        lines.append(point("device_inventory", {"site": SITE, "area": "belt-main", "device": "belt-transfer-cam"},
                           {"online": True, "reason": "", "model": "SIM-IPC-2M", "profiles": "[]"}, ts))
        lines.append(point("command_audit", {"site": SITE, "gateway": "gateway-1", "result": "accepted"},
                           {"ok": True, "source": "mqtt", "device": "broadcast", "signal": "play", "by": "zhang"}, ts))
        lines.append(point("linkage_event", {"site": SITE, "area": "face-1201", "alarm": "shearer-ch4"},
                           {"ok": True, "device": "shearer-1201", "message": "evacuation", "priority": 3,
                            "zones": "face-1201", "nodes": 2, "snapshots": 0, "trigger_to_confirmed_ms": 420.0}, ts))
        lines.append(point("gateway_alarm", {"site": SITE, "gateway": "gateway-1", "alarm": "mqtt-dropping"},
                           {"active": False, "message": "", "count": 0}, ts))
    return lines


def fill(url: str, database: str, hours: float, supports: int) -> tuple[int, float]:
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=hours)
    batch, count, began = [], 0, time.monotonic()
    with httpx.Client(timeout=120) as client:
        def send():
            answer = client.post(f"{url}/write", params={"db": database, "precision": "ns"},
                                 content="\n".join(batch).encode())
            answer.raise_for_status()
        for line in history(hours, supports, start):
            batch.append(line)
            if len(batch) >= 2000:
                send()
                count += len(batch)
                batch = []
        if batch:
            send()
            count += len(batch)
    return count, time.monotonic() - began


def interval_for(hours: float) -> str:
    """Grafana's $__interval for a ~1000 px panel, rounded as it does (1s, 2s, 5s, 10s, 20s, 30s, 1m, ...)."""
    raw = hours * 3600 / 1000
    return next(f"{s}s" if s < 60 else f"{s // 60}m" for s in (1, 2, 5, 10, 20, 30, 60, 300, 600, 1800, 3600)
                if s >= raw)


def time_dashboards(influx: InfluxQuery, hours: float) -> None:
    print(f"\n{'dashboard':<24} {'queries':>7} {'range':>6} {'refresh ms':>10}  slowest query (ms)")
    for uid, model in dashboards.build_all().items():
        try:
            base = resolve_variables(model, influx)
        except AssertionError as exc:  # a dashboard whose data this history does not write (network)
            print(f"{uid:<24} skipped: {str(exc).splitlines()[0]}")
            continue
        for label, range_h in (("1h", 1.0), (f"{hours:g}h", hours)):
            chosen = Variables(base.values, base.all_values, time_filter=f"time > now() - {int(range_h * 3600)}s",
                               interval=interval_for(range_h))
            texts = [(q, chosen.interpolate(q.text)) for q in panel_queries(model)]
            per_query: dict[int, float] = {}
            for i, (q, text) in enumerate(texts):
                runs = []
                for _ in range(3):
                    began = time.perf_counter()
                    influx.series(text)
                    runs.append((time.perf_counter() - began) * 1000)
                per_query[i] = statistics.median(runs)
            slowest = max(per_query, key=per_query.get)
            print(f"{uid:<24} {len(texts):>7} {label:>6} {sum(per_query.values()):>10.0f}  "
                  f"{per_query[slowest]:.0f} ({texts[slowest][0].panel})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--supports", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Influx(Path(tmp))
        server.start()
        try:
            database = server.create_database("bench")
            lines, seconds = fill(server.url, database, args.hours, args.supports)
            print(f"history: {args.hours:g} h, {args.supports} supports: {lines} points written in {seconds:.0f} s "
                  f"({lines / seconds:.0f} points/s)")
            time_dashboards(InfluxQuery(server.url, database), args.hours)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
