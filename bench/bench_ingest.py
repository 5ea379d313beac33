"""Ingest benchmark: how many points per second a historian ingest worker writes to InfluxDB.

    python bench/bench_ingest.py                       # 1 and 2 workers, 30 000 messages, ~2 min
    python bench/bench_ingest.py --workers 1 --messages 10000 --rate 0     # quick
    python bench/bench_ingest.py --workers 1 --signals 100 --rate 0 --messages 20000   # per worker, per payload

On loopback only, in a temporary directory: Mosquitto (its own config: queues large enough
for the backlog, max_inflight_messages 1000 as in deploy/surface/mosquitto.conf), influxd 1.x
(wal-fsync-delay 0s as in deploy/surface/influxdb.conf, no auth), and W workers, each
``python -m gateway.surface.ingest deploy/surface/ingest.yaml`` in its own process (the shipped file,
settings from the environment as docker-compose.yml gives them).

Two measurements per worker count W:

- **backlog**: the workers subscribe, are killed (their sessions stay), N data messages are
  published (the broker queues them for the workers, as during a worker outage or after an
  uplink outage), the workers start again. Points/s = N / time from the first to the last
  point landing in InfluxDB: the most a group of W workers takes, InfluxDB included.
- **steady**: ``--rate`` messages/s for ``--seconds`` with the workers running: the workers'
  CPU time per 1000 points (all threads, from /proc), for sizing.

Each message is a data message of ``--signals`` samples (default 25, the shipped
belt_conveyor profile), so one message = one point of 25 fields, in each ``--payload``: the full
payload, the compact one (retained schema messages first, then a values array), and report by
exception (compact, an object of seq and every ``--rbe-every``-th signal); ``lines`` is the gateways'
historian lines instead (issue 22: ``historian.api: mqtt``): the same points as line protocol, up to
256 KiB per message on ``minegw/demo-mine/gateway/gw-1201/historian`` (a writer of the shipped
ingest.yaml), each line checked against the gateway's scope. Tags/s per worker and
CPU µs per tag (all the worker's threads: MQTT, conversion, buffer, InfluxDB writes) are printed
per payload. Prints a table and one
``BENCH_JSON {...}`` line per W. Every process it starts is stopped on the way out.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.contract import data_payload, schema_version  # noqa: E402
from gateway.core.model import Reading, Sample  # noqa: E402

HOST = "127.0.0.1"
T0 = datetime(2025, 3, 14, 6, 0, tzinfo=timezone.utc)
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, all threads


class Bench:
    def __init__(self, workdir: Path, args):
        self.dir, self.args = workdir, args
        self.procs: list[subprocess.Popen] = []
        self.mqtt_port, self.influx_port = free_port(), free_port()
        self.workers: dict[int, subprocess.Popen] = {}

    # ---- servers ----
    def start_servers(self) -> None:
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = self.dir / "mosquitto.conf"
        conf.write_text(f"listener {self.mqtt_port} {HOST}\nallow_anonymous true\npersistence false\n"
                        f"max_inflight_messages 1000\nmax_queued_messages 10000000\n"
                        f"log_dest file {self.dir}/mosquitto.log\nlog_type error\nlog_type subscribe\n"
                        f"user {os.environ.get('USER') or 'root'}\n")
        self.procs.append(subprocess.Popen([mosquitto, "-c", str(conf)], stderr=subprocess.DEVNULL))
        wait_port(self.mqtt_port)
        influxd = shutil.which("influxd") or "/usr/bin/influxd"
        conf = self.dir / "influxdb.conf"
        conf.write_text("\n".join([
            "reporting-disabled = true", f'bind-address = "{HOST}:{free_port()}"',
            "[meta]", f'  dir = "{self.dir}/meta"', "  logging-enabled = false",
            "[data]", f'  dir = "{self.dir}/data"', f'  wal-dir = "{self.dir}/wal"', '  wal-fsync-delay = "0s"',
            '  index-version = "tsi1"', "  query-log-enabled = false",
            "[monitor]", "  store-enabled = false",
            "[http]", f'  bind-address = "{HOST}:{self.influx_port}"', "  log-enabled = false",
            "[logging]", '  level = "warn"', "[continuous_queries]", "  enabled = false"]) + "\n")
        with open(self.dir / "influxd.log", "ab") as log:
            self.procs.append(subprocess.Popen([influxd, "-config", str(conf)], stdout=log, stderr=log))
        wait_port(self.influx_port)
        time.sleep(0.5)
        self.query('CREATE DATABASE "minegw"')

    def query(self, q: str) -> dict:
        data = urllib.parse.urlencode({"q": q, "db": "minegw"}).encode()
        with urllib.request.urlopen(f"http://{HOST}:{self.influx_port}/query", data, timeout=30) as r:
            return json.load(r)

    def points(self, measurement: str) -> int:
        series = self.query(f'SELECT count("seq") FROM "{measurement}"')["results"][0].get("series")
        return series[0]["values"][0][1] if series else 0

    # ---- workers ----
    def start_worker(self, n: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "MINEGW_INGEST_ID": str(n), "MINEGW_MQTT_HOST": HOST,
               "MINEGW_MQTT_PORT": str(self.mqtt_port), "MINEGW_MQTT_INGEST_PASSWORD": "-",
               "MINEGW_INFLUX_URL": f"http://{HOST}:{self.influx_port}", "MINEGW_INFLUX_WRITE_USER": "",
               "MINEGW_INFLUX_WRITE_PASSWORD": "", "MINEGW_STATE_DIR": str(self.dir),
               # plain HTTP here; the shipped file names the mine's CA, which this machine has not
               "MINEGW_INFLUX_CA": ssl.get_default_verify_paths().openssl_cafile}
        log = open(self.dir / f"ingest-{n}.log", "ab")
        self.workers[n] = subprocess.Popen(
            [sys.executable, "-m", "gateway.surface.ingest", str(REPO / "deploy/surface/ingest.yaml")],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def profile(self, n: int) -> subprocess.Popen:
        """py-spy on worker ``n`` until it exits: its collapsed stacks (speedscope, flamegraph.pl read them)."""
        out = Path(f"{self.args.profile}.{self.payload}.w{n}-of-{len(self.workers)}.txt")
        out.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(["py-spy", "record", "--threads", "-f", "raw", "-r", "250", "-o", str(out), "--pid",
                                 str(self.workers[n].pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_subscribed(self, n: int, times: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        needle = f"minegw-ingest-ingest-{n} 1 $share/minegw-ingest/minegw/+/+/+/data"
        while (self.dir / "mosquitto.log").read_text().count(needle) < times:
            if time.monotonic() > deadline:
                raise SystemExit(f"worker {n} did not subscribe; see {self.dir}/ingest-{n}.log")
            time.sleep(0.05)

    def stop_worker(self, n: int, sig=signal.SIGTERM) -> None:
        p = self.workers.pop(n)
        p.send_signal(sig)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop_all(self) -> None:
        for n in list(self.workers):
            self.stop_worker(n, signal.SIGKILL)
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    # ---- load ----
    def messages(self, measurement: str, count: int, payload: str = "full") -> list[tuple[str, bytes]]:
        """``count`` data messages of 200 devices: the full payload, the compact one (all values, an array), or
        report by exception ("rbe": seq and every ``--rbe-every``-th signal, an object); for the compact ones the
        retained schema messages come first."""
        if payload == "lines":
            return self.lines(measurement, count)
        if payload != "full":
            return self.schema_messages(measurement) + self.compact(count, payload == "rbe")
        out = []
        for i in range(count):
            ts = T0 + timedelta(milliseconds=i)
            samples = [Sample(signal="seq", value=i, ts=ts)] + [
                Sample(signal=f"signal_{k:02d}", value=100.0 + k + (i % 1000) / 10, unit="A", ts=ts)
                for k in range(self.args.signals - 1)]
            device = f"dev-{i % 200:03d}"
            reading = Reading(device=device, ts=ts, poll_ms=10.0, samples=samples)
            out.append((f"minegw/bench-mine/face/{device}/data",
                        data_payload("bench-mine", "face", "face", measurement, reading)))
        return out

    def lines(self, measurement: str, count: int, limit: int = 256 * 1024) -> list[tuple[str, bytes]]:
        """The points of ``messages`` as gw-1201's historian writer publishes them: line protocol, messages of
        at most ``limit`` bytes (docs/mqtt.md, the historian topic)."""
        from gateway.historian.lineprotocol import ReadingLines
        builder = ReadingLines("demo-mine", "face-1201", measurement)
        out, chunk, size = [], [], 0
        for i in range(count):
            ts = T0 + timedelta(milliseconds=i)
            samples = [Sample(signal="seq", value=i, ts=ts)] + [
                Sample(signal=f"signal_{k:02d}", value=100.0 + k + (i % 1000) / 10, unit="A", ts=ts)
                for k in range(self.args.signals - 1)]
            line = builder.lines(Reading(device=f"dev-{i % 200:03d}", ts=ts, poll_ms=10.0, samples=samples))[0]
            if chunk and size + len(line) + 1 > limit:
                out.append("\n".join(chunk).encode())
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1
        out.append("\n".join(chunk).encode())
        return [("minegw/demo-mine/gateway/gw-1201/historian", body) for body in out]

    def signals(self) -> tuple[list[str], list[str]]:
        return (["seq"] + [f"signal_{k:02d}" for k in range(self.args.signals - 1)],
                [""] + ["A"] * (self.args.signals - 1))

    def schema_messages(self, measurement: str) -> list[tuple[str, bytes]]:
        signals, units = self.signals()
        schemas = {schema_version(signals, units): {"signals": signals, "units": units}}
        return [(f"minegw/bench-mine/face/dev-{d:03d}/schema", json.dumps(
            {"site": "bench-mine", "area": "face", "zone": "face", "device": f"dev-{d:03d}", "kind": measurement,
             "schemas": schemas}).encode()) for d in range(200)]

    def compact(self, count: int, rbe: bool) -> list[tuple[str, bytes]]:
        version = schema_version(*self.signals())
        every = self.args.rbe_every
        out = []
        for i in range(count):
            values = [i] + [100.0 + k + (i % 1000) / 10 for k in range(self.args.signals - 1)]
            if rbe:
                values = {str(k): v for k, v in enumerate(values) if k % every == 0}
            body = {"schema": version, "ts": int(T0.timestamp() * 1000) + i, "poll_ms": 10.0, "values": values}
            out.append((f"minegw/bench-mine/face/dev-{i % 200:03d}/data", json.dumps(body, separators=(",", ":"))
                        .encode()))
        return out

    def tags_per_message(self, payload: str) -> int:
        return len(range(0, self.args.signals, self.args.rbe_every)) if payload == "rbe" else self.args.signals

    def publish(self, messages: list[tuple[str, bytes]], rate: float = 0) -> float:
        """Publish at QoS 1 (``rate`` per second, 0: as fast as possible); seconds until all are acknowledged."""
        done = threading.Event()
        acked = [0]

        def on_publish(*_):
            acked[0] += 1
            if acked[0] == len(messages):
                done.set()

        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.on_publish = on_publish
        client.connect(HOST, self.mqtt_port)
        client.loop_start()
        start = time.monotonic()
        for i, (topic, payload) in enumerate(messages):
            client.publish(topic, payload, qos=1, retain=topic.endswith("/schema"))
            if rate:
                ahead = start + (i + 1) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        done.wait(600)
        elapsed = time.monotonic() - start
        client.disconnect()
        client.loop_stop()
        return elapsed

    # ---- the two measurements ----
    def backlog(self, w: int, payload: str) -> dict:
        measurement = f"backlog_{payload}_w{w}"
        n = self.args.messages
        batch = self.messages(measurement, n, payload)
        for i in range(1, w + 1):
            self.start_worker(i)
        for i in range(1, w + 1):
            self.wait_subscribed(i, self.subscriptions[i] + 1)
            self.subscriptions[i] += 1
        for i in range(1, w + 1):  # killed: their sessions stay and the broker queues their share
            self.stop_worker(i, signal.SIGKILL)
        self.publish(batch)
        for i in range(1, w + 1):
            self.start_worker(i)
        for i in range(1, w + 1):  # from their subscription: not the workers' start-up (imports)
            self.wait_subscribed(i, self.subscriptions[i] + 1)
            self.subscriptions[i] += 1
        first = time.monotonic()
        profilers = [self.profile(i) for i in self.workers] if self.args.profile else []
        cpu0 = {i: cpu_seconds(p.pid) for i, p in self.workers.items()}
        servers0 = [cpu_seconds(p.pid) for p in self.procs]
        last = None
        deadline = first + 600
        while time.monotonic() < deadline:
            if self.points(measurement) >= n:
                last = time.monotonic()
                break
            time.sleep(0.1)
        cpu = sum(cpu_seconds(p.pid) - cpu0[i] for i, p in self.workers.items())
        mosquitto, influxd = (cpu_seconds(p.pid) - c0 for p, c0 in zip(self.procs, servers0))
        for i in range(1, w + 1):
            self.stop_worker(i)
        for p in profilers:
            p.wait(60)
        if last is None:
            raise SystemExit(f"backlog of {n} did not land within 600 s")
        window = max(last - first, 1e-3)
        tags = n * self.tags_per_message(payload)
        return {"backlog_points_per_s": round(n / window), "backlog_s": round(window, 1),
                "backlog_tags_per_s_per_worker": round(tags / window / w),
                "backlog_cpu_us_per_tag": round(cpu / tags * 1e6, 2),
                "backlog_cpu_s_per_1k": round(cpu / n * 1000, 3),
                "backlog_cpu_pct": {"workers": round(cpu / window * 100), "influxd": round(influxd / window * 100),
                                    "mosquitto": round(mosquitto / window * 100)}}

    def direct(self, payload: str) -> dict:
        """InfluxDB's own pace on this machine, in the same run: the lines the backlog's messages become (the
        worker's own converter), written by one serial writer in the worker's batch size, until counted."""
        from gateway.surface.convert import Converter
        measurement = f"direct_{payload}"
        n, batch = self.args.messages, 5000
        converter, lines = Converter("minegw"), []
        for topic, body in self.messages(measurement, n, payload):
            if payload == "lines":
                lines += body.decode().split("\n")
            elif topic.endswith("/schema"):
                converter.learn(topic, body)
            else:
                lines += [line for _, line in converter.convert(topic, body)]
        url = f"http://{HOST}:{self.influx_port}/write?db=minegw&precision=ns"
        start = time.monotonic()
        for i in range(0, len(lines), batch):
            body = ("\n".join(lines[i:i + batch]) + "\n").encode()
            with urllib.request.urlopen(urllib.request.Request(url, body, method="POST"), timeout=60) as r:
                r.read()
        while self.points(measurement) < n:
            time.sleep(0.1)
        window = time.monotonic() - start
        return {"direct_points_per_s": round(n / window),
                "direct_tags_per_s": round(n * self.tags_per_message(payload) / window)}

    def steady(self, w: int, payload: str) -> dict:
        measurement = f"steady_{payload}_w{w}"
        rate, seconds = self.args.rate, self.args.seconds
        n = int(rate * seconds)
        batch = self.messages(measurement, n, payload)
        for i in range(1, w + 1):
            self.start_worker(i)
        for i in range(1, w + 1):
            self.wait_subscribed(i, self.subscriptions[i] + 1)
            self.subscriptions[i] += 1
        time.sleep(1)
        cpu0 = {i: cpu_seconds(p.pid) for i, p in self.workers.items()}
        start = time.monotonic()
        self.publish(batch, rate * len(batch) / n if payload == "lines" else rate)  # lines: ``rate`` points/s
        elapsed = time.monotonic() - start
        cpu = {i: cpu_seconds(p.pid) - cpu0[i] for i, p in self.workers.items()}
        deadline = time.monotonic() + 120
        while self.points(measurement) < n and time.monotonic() < deadline:
            time.sleep(0.25)
        landed = self.points(measurement)
        for i in range(1, w + 1):
            self.stop_worker(i)
        total_cpu = sum(cpu.values())
        return {"steady_msgs_per_s": round(n / elapsed), "steady_landed": landed, "steady_expected": n,
                "steady_cpu_pct_per_worker": round(total_cpu / elapsed / w * 100, 1),
                "steady_cpu_s_per_1k": round(total_cpu / n * 1000, 3),
                "steady_cpu_us_per_tag": round(total_cpu / (n * self.tags_per_message(payload)) * 1e6, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--messages", type=int, default=30000, help="backlog size")
    parser.add_argument("--signals", type=int, default=25, help="samples per message")
    parser.add_argument("--payload", nargs="+", choices=["full", "compact", "rbe", "lines"],
                        default=["full", "compact", "rbe"],
                        help="data payloads to measure: full, compact (values array), rbe (report by exception), "
                             "lines (the gateways' historian lines, 256 KiB messages)")
    parser.add_argument("--rbe-every", type=int, default=5, help="rbe: seq and every n-th signal in a message")
    parser.add_argument("--rate", type=float, default=1000, help="steady messages/s (0: skip)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--profile", metavar="PATH", help="py-spy profiles of the workers "
                        "(collapsed stacks): PATH.w<n>-of-<W>.txt")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--direct", action="store_true",
                        help="also write the same lines straight to InfluxDB (one writer): its own pace, same run")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="minegw-bench-ingest-"))
    bench = Bench(workdir, args)
    bench.subscriptions = {i: 0 for i in range(1, max(args.workers) + 1)}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    rows = []
    try:
        bench.start_servers()
        for w in args.workers:
            for payload in args.payload:
                bench.payload = payload
                row = {"workers": w, "payload": payload, "signals": args.signals,
                       "tags_per_message": bench.tags_per_message(payload),
                       "payload_bytes": len(bench.messages("x", 1, payload)[-1][1]), **bench.backlog(w, payload)}
                if args.direct:
                    row.update(bench.direct(payload))
                    row["of_direct_pct"] = round(100 * row["backlog_points_per_s"] / row["direct_points_per_s"])
                if args.rate:
                    row.update(bench.steady(w, payload))
                rows.append(row)
                print("BENCH_JSON " + json.dumps(row), flush=True)
    finally:
        bench.stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{'workers':>7} {'payload':>7} {'tags/msg':>8} {'bytes':>6} {'backlog pts/s':>13} "
          f"{'tags/s/worker':>13} {'CPU us/tag':>10} {'CPU % wrk/influxd/mosq':>22} "
          f"{'steady msg/s':>12} {'landed':>13} {'CPU %/worker':>12} {'CPU s/1k':>9} {'direct pts/s':>12} {'of direct':>9}")
    for r in rows:
        pct = "/".join(str(v) for v in r["backlog_cpu_pct"].values())
        print(f"{r['workers']:>7} {r['payload']:>7} {r['tags_per_message']:>8} {r['payload_bytes']:>6} "
              f"{r['backlog_points_per_s']:>13} {r['backlog_tags_per_s_per_worker']:>13} "
              f"{r['backlog_cpu_us_per_tag']:>10} {pct:>22} "
              f"{r.get('steady_msgs_per_s', '-'):>12} "
              f"{str(r.get('steady_landed', '-')) + '/' + str(r.get('steady_expected', '-')):>13} "
              f"{r.get('steady_cpu_pct_per_worker', '-'):>12} {r.get('steady_cpu_s_per_1k', '-'):>9} "
              f"{r.get('direct_points_per_s', '-'):>12} {str(r.get('of_direct_pct', '-')) + ' %':>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
