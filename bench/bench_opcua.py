"""OPC UA benchmark: one gateway following a 150-support roof-pressure system → Mosquitto → subscriber.

    python bench/bench_opcua.py                       # 150 supports, 30 s window (~1 min)
    python bench/bench_opcua.py --supports 150 --seconds 60 --deadband 0.1

On loopback, each in its own process (started in its own session, stopped on the way out):

- Mosquitto on a free port,
- the simulator (``python -m gateway.cli sim SITE.yaml``): the ``longwall`` node map with
  ``--supports`` supports × 2 legs, 50 roof-separation gauges × 2 anchors and 50 anchor
  load cells (450 nodes at 150), updated every second,
- the gateway (``bench/gateway_worker.py``: the real ``Gateway`` + ``MqttSink``) with one
  OPC UA device subscribing to every node at 1 s sampling and publishing,

and, in this process, a paho subscriber on the device's data topic that stamps every
sample on arrival. After ``--warmup`` it measures over ``--seconds``:

- **notifications/s**: samples the gateway produced from data-change notifications,
  and samples the subscriber received, per second,
- **CPU per 1000 notifications**: gateway process CPU time (all threads) per 1000 samples,
- **lag**: arrival at the subscriber minus the sample's *source* timestamp, p50/p99/max.
  It includes up to one publishing interval of waiting on the server (a value changed
  just after a publish waits for the next one); *after-publish* is arrival minus the
  message's ``ts`` (when the gateway received the publish response): the gateway and MQTT part,
- **peak RSS** (VmHWM) of the gateway, its event-loop lag, dropped/not-good samples,
  and the CPU of the simulator, broker and this process for context.

It prints a table and one ``BENCH_JSON {...}`` line. A benchmark, not a test: it asserts
nothing about speed, and exits non-zero only when a run could not be carried out.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import benchproc as common  # noqa: E402 - the process plumbing is shared

HOST, PY = common.HOST, common.PY


def make_site(supports: int, opcua_port: int, mqtt_port: int, args) -> dict:
    device = {"id": "rp-bench", "adapter": "opcua", "area": "face", "zone": "face",
              "url": f"opc.tcp://{HOST}:{opcua_port}", "nodemap": "longwall", "supports": supports,
              "mode": args.mode, "sampling_interval": 1.0, "publishing_interval": args.publishing_interval,
              "poll_interval": 1.0, "queue_size": 1}
    if args.deadband:
        device["deadband"] = {"type": "absolute", "value": args.deadband}
    return {
        "site": {"id": "bench-mine", "gateway_id": "bench-gw"},
        "areas": [{"id": "face", "kind": "longwall_face", "zones": ["face"]}],
        "devices": [device],
        "mqtt": {"host": HOST, "port": mqtt_port, "qos": args.qos, "topic_prefix": "minegw",
                 "client_id": "minegw-bench-opcua"},
    }


class Subscriber:
    """Counts samples per message and each sample's lag from its source timestamp, by arrival time."""

    def __init__(self, port: int, topic: str):
        self.rows: list[tuple[float, float, list[float], int]] = []  # arrival, message ts, sample ts, not good
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-opcua-sub", protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(HOST, port)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, msg) -> None:
        arrival = time.time()
        body = json.loads(msg.payload)
        stamps = [_epoch(s["ts"]) for s in body["samples"].values()]
        not_good = sum(1 for s in body["samples"].values() if s["quality"] != "good")
        with self.lock:
            self.rows.append((arrival, _epoch(body["ts"]), stamps, not_good))

    def report(self, t0: float, t1: float) -> dict:
        with self.lock:
            rows = [r for r in self.rows if t0 <= r[0] < t1]
        lags = sorted((arrival - ts) * 1000 for arrival, _, stamps, _ in rows for ts in stamps)
        after = sorted((arrival - msg_ts) * 1000 for arrival, msg_ts, _, _ in rows)
        samples = sum(len(r[2]) for r in rows)
        return {"messages": len(rows), "samples": samples, "samples_per_s": samples / (t1 - t0),
                "not_good": sum(r[3] for r in rows), "lag_ms": _percentiles(lags),
                "after_publish_ms": _percentiles(after)}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _percentiles(values: list[float]) -> dict:
    return {"p50": _pct(values, 50), "p99": _pct(values, 99), "max": values[-1] if values else None}


def _pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return None
    return values[max(0, min(len(values) - 1, int(round(q / 100 * len(values) + 0.5)) - 1))]


def run(args, workdir: Path) -> dict:
    procs = common.Processes(workdir)
    try:
        return _run(args, workdir, procs)
    finally:
        procs.stop_all()


def _run(args, workdir: Path, procs: common.Processes) -> dict:
    mqtt_port, opcua_port = common.free_ports(2)
    site = make_site(args.supports, opcua_port, mqtt_port, args)
    site_path = workdir / "site.yaml"
    site_path.write_text(yaml.safe_dump(site, sort_keys=False))
    from adapters.opcua.nodemap import load_nodemap
    from gateway.config import load_site
    load_site(site_path)  # fail fast and clearly on a bad generated file
    nodes = len(load_nodemap("longwall", args.supports).expanded)

    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join([f"listener {mqtt_port} {HOST}", "allow_anonymous true", "persistence false",
                               "log_dest stderr", "log_type error", "log_type warning",
                               "max_queued_messages 100000", ""]))
    broker = procs.start("mosquitto", [common.mosquitto_binary(), "-c", str(conf)])
    common.wait_port(mqtt_port, 10, broker)
    sim = procs.start("simulator", [PY, "-m", "gateway.cli", "sim", str(site_path)])
    common.wait_port(opcua_port, args.start_timeout, sim)

    sub = Subscriber(mqtt_port, "minegw/bench-mine/face/rp-bench/data")
    try:
        if not sub.subscribed.wait(10):
            raise common.BenchError("subscriber: no SUBACK")
        gw = procs.start("gateway", [PY, str(BENCH / "gateway_worker.py"), str(site_path), "--warmup",
                                     str(args.warmup), "--seconds", str(args.seconds), "--linger", "30"],
                         json_stdout=True, stdin=True)
        gw.expect("ready", args.start_timeout)
        others = {"simulator": sim.proc.pid, "mosquitto": broker.proc.pid}
        gw.expect("window", args.warmup + 30)
        cpu0, c_self0, w0 = {k: common.group_cpu_seconds(v) for k, v in others.items()}, time.process_time(), time.time()
        gw.expect("window_end", args.seconds + 30)
        cpu1, c_self1, w1 = {k: common.group_cpu_seconds(v) for k, v in others.items()}, time.process_time(), time.time()
        result = gw.expect("result", 30)
        time.sleep(2.0)  # messages of the window's last publish are on their way
        report = sub.report(result["t0"], result["t1"])
        gw.send("stop")
        gw.expect("stopped", 30)
    finally:
        sub.close()
    if not report["messages"]:
        raise common.BenchError(f"the subscriber received nothing in the window{gw.tail()}{sim.tail()}")
    window = result["t1"] - result["t0"]
    produced = result["probe"]["samples"]
    other_cpu = {k: round((cpu1[k] - cpu0[k]) / (w1 - w0) * 100, 1) for k in others}
    other_cpu["subscriber"] = round((c_self1 - c_self0) / (w1 - w0) * 100, 1)
    return {
        "supports": args.supports, "nodes": nodes, "mode": args.mode, "deadband": args.deadband,
        "publishing_interval_s": args.publishing_interval, "window_s": round(window, 2),
        "notifications_per_s": round(produced / window, 1),
        "delivered_samples_per_s": round(report["samples_per_s"], 1),
        "readings_per_s": round(result["probe"]["readings"] / window, 2),
        "cpu_pct": round(result["cpu_pct"], 1),
        "cpu_s_per_1000_notifications": round(result["cpu_s"] / (produced / 1000), 4) if produced else None,
        "lag_ms": {k: _round(v) for k, v in report["lag_ms"].items()},
        "after_publish_ms": {k: _round(v) for k, v in report["after_publish_ms"].items()},
        "loop_lag_ms": {k: _round(v) for k, v in result["loop_lag_ms"].items()},
        "rss_peak_mb": round(result["rss_peak_kb"] / 1024, 1) if result.get("rss_peak_kb") else None,
        "sink_dropped": (result.get("sink_health_end") or {}).get("dropped"),
        "not_good_samples": report["not_good"],
        "adapter": result["adapters"],
        "other_cpu_pct": other_cpu,
        "state_changes": result.get("state_changes", []),
    }


def _round(v, nd: int = 1):
    return None if v is None else round(v, nd)


def print_report(r: dict) -> None:
    lines = [
        ("nodes followed", f"{r['nodes']} ({r['supports']} supports × 2 legs, 100 gauge anchors, 50 load cells), "
                           f"mode {r['mode']}, deadband {r['deadband'] or 'none'}"),
        ("notifications/s", f"{r['notifications_per_s']:.0f} produced, {r['delivered_samples_per_s']:.0f} delivered "
                            f"({r['readings_per_s']:.2f} readings/s)"),
        ("gateway CPU", f"{r['cpu_pct']:.1f} %, {r['cpu_s_per_1000_notifications']} s per 1000 notifications"),
        ("lag source ts → MQTT", f"p50 {r['lag_ms']['p50']} ms, p99 {r['lag_ms']['p99']} ms, "
                                 f"max {r['lag_ms']['max']} ms"),
        ("after publish", f"p50 {r['after_publish_ms']['p50']} ms, p99 {r['after_publish_ms']['p99']} ms"),
        ("event-loop lag", f"p99 {r['loop_lag_ms']['p99']} ms"),
        ("peak RSS", f"{r['rss_peak_mb']} MB"),
        ("dropped / not good", f"{r['sink_dropped']} / {r['not_good_samples']}"),
        ("other CPU %", ", ".join(f"{k} {v}" for k, v in r["other_cpu_pct"].items())),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--supports", type=int, default=150)
    ap.add_argument("--seconds", type=float, default=30.0, help="measured window")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds after the gateway starts, not measured")
    ap.add_argument("--mode", choices=["subscribe", "poll"], default="subscribe")
    ap.add_argument("--publishing-interval", type=float, default=1.0)
    ap.add_argument("--deadband", type=float, default=0.0, help="absolute deadband; 0: none")
    ap.add_argument("--qos", type=int, choices=[0, 1, 2], default=1)
    ap.add_argument("--start-timeout", type=float, default=60.0)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="minegw-bench-opcua-"))
    try:
        result = run(args, workdir)
    except common.BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)
    print_report(result)
    print("BENCH_JSON " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
