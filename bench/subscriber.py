"""Benchmark subscriber: counts what a dispatch-centre client receives, in its own process.

Started by ``bench_gateway.py``; not meant to be run by hand. It subscribes to the
gateway's data topics, records for every message its receive time (``time.time()``),
its poll-start ``ts``, its device and its sample count and qualities, and answers
commands read from stdin, one per line, with one JSON line on stdout:

    report T0 T1 [SOURCE]   statistics over the window [T0, T1) (epoch seconds)
    phase INTERVAL [SOURCE [SINCE]]  the polls' mean phase (seconds into the interval) over the last 2
                            intervals, of polls made at SINCE (epoch seconds) or later
    quit                    disconnect and exit

SOURCE is ``minegw`` (default: every topic but ``nodered/...``) or ``nodered`` (the Node-RED
peer's ``nodered/{device}/data``: ``{"device", "ts": epoch ms, "values": [registers]}``).
Latency is receive time minus the message's ``ts`` (minegw: the poll start, stamped by the
gateway on the same machine and clock, to the millisecond; Node-RED: when its flow wrapped
the answer, so after the poll).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from datetime import datetime

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def epoch(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def samples_of(payload: dict) -> list:
    samples = payload.get("samples")
    if samples is None:  # the compact payload, or the Node-RED peer's raw registers
        values = payload.get("values") or []
        return list(values.values()) if isinstance(values, dict) else list(values)
    return list(samples.values()) if isinstance(samples, dict) else list(samples)


def ts_of(payload: dict) -> float:
    ts = payload["ts"]
    return ts / 1000.0 if isinstance(ts, (int, float)) else epoch(ts)


def source_of(topic: str) -> str:
    return "nodered" if topic.startswith("nodered/") else "minegw"


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        # (recv, ts, device, n_samples, n_not_good, qualities-or-None, poll_ms-or-None, source)
        self.rows: list[tuple] = []
        self.errors = 0
        self.other = 0  # messages on the subscribed topics that are not data messages
        self.subscribed = threading.Event()

    def on_message(self, _client, _userdata, msg) -> None:
        recv = time.time()
        try:
            payload = json.loads(msg.payload)
            samples = samples_of(payload)
            ts = ts_of(payload)
            device = payload.get("device", msg.topic)
        except (ValueError, KeyError, TypeError):
            with self.lock:
                self.errors += 1
            return
        bad: dict[str, int] | None = None
        qualities = payload.get("quality", {}).values() if "schema" in payload else (  # compact: non-good only
            s.get("quality", "good") if isinstance(s, dict) else "good" for s in samples)
        for q in qualities:
            if q != "good":
                bad = bad or {}
                bad[q] = bad.get(q, 0) + 1
        row = (recv, ts, device, len(samples), sum(bad.values()) if bad else 0, bad, payload.get("poll_ms"),
               source_of(msg.topic))
        with self.lock:
            self.rows.append(row)

    def phase(self, interval: float, source: str = "minegw", since: float = 0.0) -> dict:
        with self.lock:
            rows = [r for r in self.rows[-20000:] if r[7] == source and r[1] >= since]
        last = max((r[0] for r in rows), default=0.0)
        angles = [2 * math.pi * (r[1] % interval) / interval for r in rows if r[0] >= last - 2 * interval]
        if not angles:
            return {"event": "phase", "phase": None, "messages": 0}
        mean = math.atan2(sum(map(math.sin, angles)), sum(map(math.cos, angles)))
        return {"event": "phase", "phase": (mean / (2 * math.pi) % 1.0) * interval, "messages": len(angles)}

    def report(self, t0: float, t1: float, source: str = "minegw") -> dict:
        with self.lock:
            rows = [r for r in self.rows if r[7] == source]
            errors = self.errors
        span = t1 - t0
        by_recv = [r for r in rows if t0 <= r[0] < t1]
        lat = sorted((r[0] - r[1]) * 1000 for r in by_recv)
        after_poll = sorted((r[0] - r[1]) * 1000 - r[6] for r in by_recv if isinstance(r[6], (int, float)))
        samples = sum(r[3] for r in by_recv)
        qualities: dict[str, int] = {}
        for r in by_recv:
            for q, n in (r[5] or {}).items():
                qualities[q] = qualities.get(q, 0) + n
        # Messages whose poll started in the window (to compare with what the gateway polled).
        # ts is to the millisecond; compare on the same truncation the gateway side uses.
        lo, hi = int(t0 * 1000), int(t1 * 1000)
        by_ts = [r for r in rows if lo <= int(round(r[1] * 1000)) < hi]
        samples_by_ts = sum(r[3] for r in by_ts)
        keys = [(r[2], int(round(r[1] * 1000))) for r in by_ts]
        per_device: dict[str, int] = {}
        for dev, _ in keys:
            per_device[dev] = per_device.get(dev, 0) + 1
        return {
            "event": "report",
            "window_s": span,
            "messages": len(by_recv),
            "samples": samples,
            "samples_per_s": samples / span if span > 0 else 0.0,
            "messages_per_s": len(by_recv) / span if span > 0 else 0.0,
            "latency_ms": {
                "p50": percentile(lat, 50), "p90": percentile(lat, 90), "p99": percentile(lat, 99),
                "max": lat[-1] if lat else None, "mean": sum(lat) / len(lat) if lat else None},
            "latency_after_poll_ms": {
                "p50": percentile(after_poll, 50), "p99": percentile(after_poll, 99),
                "max": after_poll[-1] if after_poll else None},
            "not_good": qualities,
            "polled_in_window": len(by_ts),
            "unique_polled_in_window": len(set(keys)),
            "samples_polled_in_window": samples_by_ts,
            "devices_seen": len(per_device),
            "per_device_min": min(per_device.values()) if per_device else 0,
            "per_device_max": max(per_device.values()) if per_device else 0,
            "parse_errors": errors,
            "total_messages": len(rows),
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--topic", action="append", required=True, help="subscription filter (repeatable)")
    ap.add_argument("--qos", type=int, default=1)
    ap.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    args = ap.parse_args()

    rec = Recorder()
    proto = paho.MQTTv5 if args.protocol == "5" else paho.MQTTv311
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"minegw-bench-sub-{time.monotonic_ns()}",
                         protocol=proto)
    client.on_message = rec.on_message

    def on_connect(c, _userdata, _flags, reason_code, _props=None):
        if getattr(reason_code, "is_failure", False):
            emit({"event": "error", "error": f"connect refused: {reason_code}"})
            return
        c.subscribe([(t, args.qos) for t in args.topic])

    client.on_connect = on_connect
    client.on_subscribe = lambda *_a: (rec.subscribed.set(), emit({"event": "subscribed"}))
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    try:
        for line in sys.stdin:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "report":
                emit(rec.report(float(parts[1]), float(parts[2]), *parts[3:4]))
            elif parts[0] == "phase":
                emit(rec.phase(float(parts[1]), *parts[2:3], *map(float, parts[3:4])))
            elif parts[0] == "quit":
                break
    finally:
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    main()
