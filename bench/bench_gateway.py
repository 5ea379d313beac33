"""Throughput benchmark: N simulated Modbus devices → real gateway → real Mosquitto → subscriber.

    python bench/bench_gateway.py --devices 10 100 200 --seconds 30

For each device count N it starts, on loopback only and in separate processes:

- Mosquitto on a free port (``mosquitto`` on PATH or /usr/sbin/mosquitto),
- the simulators (``python -m gateway.cli sim SITE.yaml``), N devices serving a
  generated 100-point input-register profile (uint16/int16/float32 with scales),
- a subscriber (``bench/subscriber.py``, paho) that timestamps every message,
- the gateway (``bench/gateway_worker.py``: the real ``Gateway`` + ``MqttSink``, and with
  ``--historian URL`` the ``HistorianSink`` too), a fresh process per N so its CPU time
  and peak RSS are its own. With the historian on, a reading goes to MQTT only after its
  group commit to the buffer file: the latency figures include that wait.

After ``--warmup`` seconds it measures over ``--seconds``: tags (samples) per second
delivered to the subscriber, gateway CPU seconds per 1000 tags, latency from poll
start (the message ``ts``) to delivery, the gateway's peak RSS, overrun polls, missed
poll ticks, and dropped/lost messages. It prints one table at the end and one JSON
line per N (prefixed ``BENCH_JSON``). Every run is bounded in time; every process it
starts is stopped on the way out, also on Ctrl-C and on errors.

This is a benchmark, not a test: it asserts nothing about speed, but exits non-zero
when a run could not be carried out (a process failed to start, no data arrived).
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
HOST = "127.0.0.1"  # loopback only, always
PY = sys.executable


class BenchError(Exception):
    """A run that could not be carried out (not a slow gateway: a broken setup)."""


# -- inputs ------------------------------------------------------------------------------
def make_profile(points: int) -> dict:
    """``points`` input registers cycling uint16 / int16 / float32, each with a scale and a range
    wide enough for anything a plausible simulator serves (values are checked, not trusted:
    the subscriber counts every sample whose quality is not ``good``)."""
    out = []
    address = 0
    for i in range(points):
        kind = i % 3
        if kind == 0:
            p = {"name": f"u{i:03d}", "unit": "A", "type": "uint16", "scale": 0.1, "range": [0, 6553.5]}
        elif kind == 1:
            p = {"name": f"s{i:03d}", "unit": "°C", "type": "int16", "scale": 0.01, "range": [-327.68, 327.67]}
        else:
            p = {"name": f"f{i:03d}", "unit": "MPa", "type": "float32", "order": "ABCD", "scale": 0.5,
                 "range": [-1.0e6, 1.0e6]}
        p.update(table="input_register", address=address)
        address += 2 if p["type"] == "float32" else 1
        out.append(p)
    return {"kind": "bench_machine", "description": f"benchmark profile: {points} input-register points",
            "points": out}


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports below the kernel's ephemeral range.

    A port from ``bind(0)`` is an ephemeral one: by the time a server binds it, one of
    the hundreds of client connections the benchmark opens (or one in TIME_WAIT from
    the previous run) may have taken it. Ports below the range are never handed out
    to clients. Each is checked by binding it; all are held until the choice is made.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = list(range(10000, low)) if low > 11000 else []
    random.shuffle(candidates)
    socks, ports = [], []
    try:
        for port in candidates:
            if len(ports) == count:
                break
            s = socket.socket()
            try:
                s.bind((HOST, port))
            except OSError:
                s.close()
                continue
            socks.append(s)
            ports.append(port)
        while len(ports) < count:  # no room below the ephemeral range: fall back to any free port
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def make_site(n: int, profile_path: Path, mqtt_port: int, units_per_port: int, interval: float,
              qos: int, protocol: str) -> dict:
    ports = free_ports((n + units_per_port - 1) // units_per_port)
    devices = []
    for i in range(n):
        devices.append({
            "id": f"bench-{i + 1:04d}", "adapter": "modbus", "area": "bench", "zone": "bench",
            "profile": str(profile_path), "host": HOST, "port": ports[i // units_per_port],
            "unit_id": i % units_per_port + 1, "poll_interval": interval})
    return {
        "site": {"id": "bench-mine", "name": "minegw throughput benchmark", "gateway_id": "bench-gw"},
        "areas": [{"id": "bench", "kind": "roadway", "zones": ["bench"]}],
        "devices": devices,
        "mqtt": {"host": HOST, "port": mqtt_port, "protocol": protocol, "qos": qos,
                 "topic_prefix": "minegw", "client_id": "minegw-bench-gw"},
    }


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if not found:
        raise BenchError("mosquitto not found (apt-get install mosquitto)")
    return found


# -- processes ---------------------------------------------------------------------------
@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log: Path
    lines: "queue.Queue[dict]" = field(default_factory=queue.Queue)

    def expect(self, event: str, timeout: float) -> dict:
        """The next JSON line with this event; fails on timeout or if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name}: no {event!r} within {timeout:g} s{self.tail()}")
            try:
                msg = self.lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise BenchError(f"{self.name} exited ({self.proc.returncode}) before {event!r}{self.tail()}")
                continue
            if msg.get("event") == "error":
                raise BenchError(f"{self.name}: {msg.get('error')}{self.tail()}")
            if msg.get("event") == event:
                return msg

    def send(self, line: str) -> None:
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError, AttributeError):
            pass

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return ("\n  --- " + self.name + " log (" + str(self.log) + ") ---\n  " + "\n  ".join(text)) if text else ""


class Processes:
    """Every process the benchmark starts, each in its own session; stopped in reverse order."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.children: list[Child] = []

    def start(self, name: str, argv: list[str], json_stdout: bool = False, stdin: bool = False) -> Child:
        log = self.workdir / f"{name}.log"
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   PYTHONUNBUFFERED="1")
        logf = open(log, "w")
        try:
            proc = subprocess.Popen(
                argv, cwd=self.workdir, env=env, text=True, start_new_session=True,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if json_stdout else logf, stderr=logf)
        finally:
            logf.close()
        child = Child(name, proc, log)
        self.children.append(child)
        if json_stdout:
            threading.Thread(target=self._pump, args=(child,), daemon=True, name=f"read:{name}").start()
        return child

    @staticmethod
    def _pump(child: Child) -> None:
        with open(child.log, "a") as logf:
            for line in child.proc.stdout:
                line = line.strip()
                if not line:
                    continue
                try:
                    child.lines.put(json.loads(line))
                except ValueError:
                    logf.write(f"[stdout] {line}\n")
                    logf.flush()

    def stop(self, child: Child, grace: float = 10.0) -> None:
        p = child.proc
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # its own session: it and only its children
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        for stream in (p.stdin, p.stdout):
            try:
                stream and stream.close()
            except OSError:
                pass

    def stop_all(self) -> None:
        # A second Ctrl-C must not cut the clean-up short: it is delivered once everything is stopped.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for child in reversed(self.children):
                try:
                    self.stop(child)
                except Exception as exc:  # noqa: BLE001 - keep stopping the others
                    print(f"warning: could not stop {child.name} (pid {child.proc.pid}): {exc}", file=sys.stderr)
            self.children.clear()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def wait_port(port: int, timeout: float, child: Child) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise BenchError(f"{child.name} exited ({child.proc.returncode}){child.tail()}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"{child.name}: nothing listens on {HOST}:{port} after {timeout:g} s{child.tail()}")


def group_cpu_seconds(pgid: int) -> float:
    """utime+stime of every live process in a process group (a child started in its own session)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[2]) == pgid:  # field 5: pgrp
            total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return total / tick


# -- one run -----------------------------------------------------------------------------
def run_one(n: int, args, workdir: Path) -> dict:
    procs = Processes(workdir)
    try:
        return _run_one(n, args, workdir, procs)
    finally:
        procs.stop_all()


def _run_one(n: int, args, workdir: Path, procs: Processes) -> dict:
    t_start = time.monotonic()
    profile_path = workdir / "bench_machine.yaml"
    profile = make_profile(args.points)
    profile_path.write_text(yaml.safe_dump(profile, sort_keys=False, allow_unicode=True))
    mqtt_port, control_port = free_ports(2)
    site = make_site(n, profile_path, mqtt_port, args.units_per_port, args.interval, args.qos, args.protocol)
    if args.historian:  # readings reach MQTT only after the historian's group commit: its latency is measured too
        site["historian"] = {"url": args.historian, "database": "minegw_bench",
                             "buffer": {"path": str(workdir / "buffer.sqlite3")}}
    site_path = workdir / "site.yaml"
    site_path.write_text(yaml.safe_dump(site, sort_keys=False, allow_unicode=True))

    # Validate here (same code as the gateway) so a bad generated file fails fast and clearly.
    from adapters.modbus.plan import plan_reads
    from adapters.modbus.profile import load_profile
    from gateway.config import load_site
    load_site(site_path)
    blocks = plan_reads(load_profile(str(profile_path)).points)
    registers = sum(b.count for b in blocks)

    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join([
        f"listener {mqtt_port} {HOST}", "allow_anonymous true", "persistence false",
        "log_dest stderr", "log_type error", "log_type warning", "log_type notice",
        # Room for a subscriber that lags during the run: loss must come from the gateway, not here.
        "max_queued_messages 100000", "max_inflight_messages 100", ""]))
    broker = procs.start("mosquitto", [mosquitto_binary(), "-c", str(conf)])
    wait_port(mqtt_port, 10, broker)

    # `minegw sim`: the generated profile kind gets the simulator's generic model.
    sim = procs.start("simulators", [PY, "-m", "gateway.cli", "sim", str(site_path),
                                     "--control", f"{HOST}:{control_port}"])
    for port in sorted({d["port"] for d in site["devices"]}):
        wait_port(port, args.start_timeout, sim)

    prefix = f"{site['mqtt']['topic_prefix']}/{site['site']['id']}"
    sub = procs.start("subscriber", [PY, str(BENCH / "subscriber.py"), "--port", str(mqtt_port),
                                     "--qos", str(args.qos), "--protocol", args.protocol,
                                     "--topic", f"{prefix}/+/+/data"],
                      json_stdout=True, stdin=True)
    sub.expect("subscribed", 15)

    worker_argv = [PY, str(BENCH / "gateway_worker.py"), str(site_path), "--warmup", str(args.warmup),
                   "--seconds", str(args.seconds), "--linger", "60"]
    if args.cprofile:
        worker_argv += ["--cprofile", str(Path(args.cprofile).resolve().with_suffix(f".n{n}.prof"))]
    gw = procs.start("gateway", worker_argv, json_stdout=True, stdin=True)
    gw.expect("ready", args.start_timeout)
    others = {"simulators": sim.proc.pid, "mosquitto": broker.proc.pid, "subscriber": sub.proc.pid}

    # The worker stamps its window; sample the other processes' CPU as close to it as we can.
    gw.expect("window", args.warmup + 30)
    cpu0 = {k: group_cpu_seconds(v) for k, v in others.items()}
    w0 = time.time()
    gw.expect("window_end", args.seconds + 30)
    cpu1 = {k: group_cpu_seconds(v) for k, v in others.items()}
    w1 = time.time()
    result = gw.expect("result", 30)
    t0, t1 = result["t0"], result["t1"]

    # Let messages polled just before t1 arrive, then ask until the count stops growing.
    report, previous = None, -1
    deadline = time.monotonic() + args.drain
    while time.monotonic() < deadline:
        time.sleep(1.0)
        sub.send(f"report {t0} {t1}")
        report = sub.expect("report", 15)
        if report["unique_polled_in_window"] == previous:
            break
        previous = report["unique_polled_in_window"]
    if report is None:
        sub.send(f"report {t0} {t1}")
        report = sub.expect("report", 15)

    gw.send("stop")
    warnings: list[str] = []
    try:
        stopped = gw.expect("stopped", args.stop_timeout)
    except BenchError as exc:  # the figures are in; a shutdown that hangs is a finding, not a failed run
        stopped = {}
        warnings.append(f"gateway did not stop within {args.stop_timeout:g} s after 'stop'"
                        f"{dump_stacks(gw)}")
        print(f"   WARNING: {exc}", file=sys.stderr)
    sub.send("quit")

    probe = result["probe"]
    window = t1 - t0
    polled = probe["readings"]
    delivered_polled = report["unique_polled_in_window"]
    h0, h1 = result.get("sink_health_start") or {}, result.get("sink_health_end") or {}
    counters = ("published", "delivered", "rejected", "dropped", "reconnects")
    health = {k: v - h0[k] if k in counters and k in h0 else v  # counters over the window; gauges at its end
              for k, v in h1.items() if k not in ("site", "gateway", "ts")}
    final = stopped.get("sink_health") or {}
    row = {
        "devices": n,
        "points_per_device": args.points,
        "registers_per_device": registers,
        "reads_per_poll": len(blocks),
        "poll_interval_s": args.interval,
        "qos": args.qos,
        "window_s": round(window, 3),
        "expected_tags_per_s": n * args.points / args.interval,
        "tags_per_s": round(report["samples_per_s"], 1),
        "msgs_per_s": round(report["messages_per_s"], 2),
        "gateway_tags_per_s": round(probe["samples"] / window, 1),
        "cpu_s": round(result["cpu_s"], 3),
        "cpu_pct": round(result["cpu_pct"], 1),
        "cpu_s_per_1000_tags": round(result["cpu_s"] / (probe["samples"] / 1000), 5) if probe["samples"] else None,
        "latency_ms": {k: _r(v) for k, v in report["latency_ms"].items()},
        "latency_after_poll_ms": {k: _r(v) for k, v in report["latency_after_poll_ms"].items()},
        "poll_ms": {k: _r(v) for k, v in probe["poll_ms"].items()},
        "loop_lag_ms": {k: _r(v) for k, v in result["loop_lag_ms"].items()},
        "rss_peak_mb": round(result["rss_peak_kb"] / 1024, 1) if result.get("rss_peak_kb") else None,
        "rss_end_mb": round(result["rss_kb"] / 1024, 1) if result.get("rss_kb") else None,
        "threads": result.get("threads"),
        "overran_polls": probe["overran"],
        "missed_ticks": probe["missed_ticks"],
        "max_poll_gap_s": _r(probe["max_poll_gap_s"]),
        "polled_in_window": polled,
        "delivered_of_polled": delivered_polled,
        "lost": polled - delivered_polled,
        "duplicates": report["polled_in_window"] - report["unique_polled_in_window"],
        "not_good_samples": report["not_good"],
        "sink_health": health,
        "sink_dropped": _dropped(health),
        "sink_dropped_total": _dropped(final),
        "sink_undelivered_at_stop": final.get("queued"),
        "adapters": result["adapters"],
        "other_cpu_pct": {k: round((cpu1[k] - cpu0[k]) / (w1 - w0) * 100, 1) for k in others},
        "parse_errors": report["parse_errors"],
        "state_changes": result.get("state_changes", []),
        "warnings": warnings,
        "wall_s": round(time.monotonic() - t_start, 1),
        "gateway_stop_s": _r(stopped.get("stop_s")),
    }
    if report["messages"] == 0:
        raise BenchError(f"N={n}: the subscriber received no data message in the window"
                         f"{gw.tail()}{sim.tail()}")
    return row


def dump_stacks(child: Child) -> str:
    """py-spy's view of a stuck process (if py-spy is installed), written to its log."""
    spy = shutil.which("py-spy") or str(Path(PY).with_name("py-spy"))
    if not os.path.exists(spy) or child.proc.poll() is not None:
        return ""
    try:
        out = subprocess.run([spy, "dump", "--pid", str(child.proc.pid)], capture_output=True,
                             text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    with open(child.log, "a") as f:
        f.write("\n--- py-spy dump (stuck at stop) ---\n" + out)
    return f" (stacks: {child.log})"


def _r(v, nd: int = 1):
    return None if v is None else round(v, nd)


def _dropped(health: dict) -> int | None:
    total, found = 0, False
    for k, v in health.items():
        if "drop" in k and isinstance(v, (int, float)):
            total += v
            found = True
    return total if found else None


# -- report ------------------------------------------------------------------------------
def print_table(rows: list[dict]) -> None:
    cols = [
        ("N", lambda r: str(r["devices"])),
        ("tags/s", lambda r: f"{r['tags_per_s']:.0f}"),
        ("of", lambda r: f"{r['expected_tags_per_s']:.0f}"),
        ("msg/s", lambda r: f"{r['msgs_per_s']:.1f}"),
        ("CPU s/1k tags", lambda r: f"{r['cpu_s_per_1000_tags']:.4f}" if r["cpu_s_per_1000_tags"] is not None else "-"),
        ("GW CPU%", lambda r: f"{r['cpu_pct']:.0f}"),
        ("lat p50", lambda r: _ms(r["latency_ms"]["p50"])),
        ("p99", lambda r: _ms(r["latency_ms"]["p99"])),
        ("max ms", lambda r: _ms(r["latency_ms"]["max"])),
        ("after-poll p99", lambda r: _ms(r["latency_after_poll_ms"]["p99"])),
        ("poll p99", lambda r: _ms(r["poll_ms"]["p99"])),
        ("loop lag p99", lambda r: _ms(r["loop_lag_ms"]["p99"])),
        ("peak RSS MB", lambda r: f"{r['rss_peak_mb']:.0f}" if r["rss_peak_mb"] else "-"),
        ("overran", lambda r: str(r["overran_polls"])),
        ("missed", lambda r: str(r["missed_ticks"])),
        ("dropped", lambda r: "-" if r["sink_dropped"] is None else str(r["sink_dropped"])),
        ("lost", lambda r: str(r["lost"])),
        ("not good", lambda r: str(sum(r["not_good_samples"].values()))),
        ("sim/broker/sub CPU%", lambda r: "/".join(f"{r['other_cpu_pct'][k]:.0f}"
                                                   for k in ("simulators", "mosquitto", "subscriber"))),
    ]
    cells = [[c[0] for c in cols]] + [[c[1](r) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    line = "  ".join
    print(line(h.rjust(w) for h, w in zip(cells[0], widths)))
    print(line("-" * w for w in widths))
    for row in cells[1:]:
        print(line(v.rjust(w) for v, w in zip(row, widths)))


def _ms(v) -> str:
    return "-" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")


# -- main --------------------------------------------------------------------------------
def _interrupt(*_):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, nargs="+", default=[10, 100, 200], help="device counts, one run each")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured window per run")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds after the gateway starts, not measured")
    ap.add_argument("--points", type=int, default=100, help="input-register points per device")
    ap.add_argument("--interval", type=float, default=1.0, help="poll interval, seconds")
    ap.add_argument("--units-per-port", type=int, default=1,
                    help="simulated devices sharing one TCP port (different unit ids)")
    ap.add_argument("--qos", type=int, choices=[0, 1, 2], default=1, help="the gateway's MQTT QoS (site default: 1)")
    ap.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    ap.add_argument("--historian", default=None, metavar="URL",
                    help="with the historian sink on, writing to this InfluxDB (any URL: an unreachable one "
                         "still buffers every reading, which is what delays MQTT)")
    ap.add_argument("--start-timeout", type=float, default=60.0, help="seconds for simulators/gateway to come up")
    ap.add_argument("--stop-timeout", type=float, default=30.0, help="seconds the gateway may take to stop")
    ap.add_argument("--drain", type=float, default=10.0, help="longest wait for in-flight messages after the window")
    ap.add_argument("--cprofile", default=None, metavar="FILE",
                    help="cProfile the gateway over the window; writes FILE.n<N>.prof per run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary files (site, profile, logs)")
    args = ap.parse_args(argv)
    if not 1 <= args.units_per_port <= 247:
        ap.error("--units-per-port must be 1..247")

    # A SIGTERM (CI timeout, kill) unwinds like Ctrl-C, so the finally blocks stop every child.
    signal.signal(signal.SIGTERM, _interrupt)
    sys.path.insert(0, str(REPO))

    rows: list[dict] = []
    failed = False
    for n in args.devices:
        workdir = Path(tempfile.mkdtemp(prefix=f"minegw-bench-n{n}-"))
        print(f"== N={n}: {n} devices x {args.points} points every {args.interval:g} s, "
              f"warm-up {args.warmup:g} s, window {args.seconds:g} s ({workdir})", flush=True)
        keep = args.keep
        try:
            row = run_one(n, args, workdir)
            if row["warnings"]:
                keep = True
                print(f"   (files and logs kept in {workdir})", file=sys.stderr)
        except KeyboardInterrupt:
            print("interrupted: all benchmark processes stopped", file=sys.stderr)
            return 130
        except BenchError as exc:
            print(f"N={n}: FAILED: {exc}\n  (files and logs kept in {workdir})", file=sys.stderr)
            failed = keep = True
            continue
        finally:
            if not keep:
                shutil.rmtree(workdir, ignore_errors=True)
        rows.append(row)
        print(f"   {row['tags_per_s']:.0f} tags/s of {row['expected_tags_per_s']:.0f}, "
              f"gateway CPU {row['cpu_pct']:.0f}%, latency p50 {_ms(row['latency_ms']['p50'])} ms "
              f"p99 {_ms(row['latency_ms']['p99'])} ms, peak RSS {row['rss_peak_mb']} MB, "
              f"lost {row['lost']}, overran {row['overran_polls']} ({row['wall_s']} s)", flush=True)

    if rows:
        print()
        print(f"minegw gateway throughput ({rows[0]['points_per_device']} points = "
              f"{rows[0]['registers_per_device']} registers in {rows[0]['reads_per_poll']} reads per device, "
              f"poll {args.interval:g} s, MQTT QoS {args.qos}, historian {'on' if args.historian else 'off'}, "
              f"{os.cpu_count()} CPUs, "
              f"window {args.seconds:g} s)")
        print_table(rows)
        for row in rows:
            for warning in row["warnings"]:
                print(f"N={row['devices']}: WARNING: {warning}")
        print()
        for row in rows:
            print("BENCH_JSON " + json.dumps({"bench": "gateway", **row}, ensure_ascii=False))
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
