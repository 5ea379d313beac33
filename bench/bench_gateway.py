"""Throughput benchmark: N simulated Modbus devices → minegw → Mosquitto → subscriber, and the
Node-RED peer on the same simulators and broker, in one run.

    python bench/bench_gateway.py                                  # 200, 500, 1 000 devices, ~15 min
    python bench/bench_gateway.py --quick                          # 20 devices, short windows, ~1.5 min
    python bench/bench_gateway.py --devices 200 --historian start  # historian off and on (own influxd)

For each device count N it starts, on loopback only, each in its own session: Mosquitto
on free ports, the simulators (``minegw sim``: N devices, 100 uint16 input registers each at
0..99 with a scale and a range, or ``--mixed`` uint16/int16/float32), and a subscriber
(``bench/subscriber.py``) stamping every data message's arrival. Then, one after the other
on those same processes, each gateway for a warm-up and a measured window:

- ``minegw``: ``minegw run SITE`` (``--gateway worker``: ``bench/gateway_worker.py``, the
  same classes in-process with a probe sink for overruns, missed ticks, poll and loop lag),
- ``minegw+hist`` (with ``--historian URL|start``): the same with the historian sink on;
  a reading goes to MQTT only after its group commit to the buffer file (latency includes it),
- ``node-red``: the peer of /work/shared/peers/nodered (raw registers, one message a poll).

Per gateway: CPU µs per tag (CPU seconds of its whole process group over the window / tags
the subscriber received in it), tags/s delivered of expected (kept up with: ≥ 99.5 %),
latency poll → subscriber p50/p99 (Node-RED stamps after its poll), peak RSS (VmHWM of the
group), the simulators' CPU seconds per second, and minegw/Node-RED. ``--uvloop`` runs minegw
on uvloop; ``--profile FILE`` records it with py-spy over the window (bench/hotspots.py).

A benchmark, not a test: it asserts nothing about speed, but exits non-zero when a run
could not be carried out. Every process it starts is stopped on the way out (Ctrl-C too).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from benchproc import (BENCH, HOST, PY, REPO, BenchError, Child, Processes, free_ports, group_cpu_seconds,
                       group_cpu_split, group_rss_peak_kb, mosquitto_binary, process_cpu_seconds, wait_port)

PEER = Path(os.environ.get("MINEGW_NODERED_PEER", "/work/shared/peers/nodered"))
KEPT_UP = 0.995  # share of the expected tags/s delivered that counts as keeping up
UVLOOP_MAIN = ("import sys, asyncio, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
               "from gateway.cli import main; sys.argv[0] = 'minegw'; main()")


# -- inputs ------------------------------------------------------------------------------
def make_profile(points: int, mixed: bool = False) -> dict:
    """``points`` uint16 input registers at 0..points-1 (what the Node-RED peer reads), each with a
    scale and a range; with ``mixed``, cycling uint16 / int16 / float32 (float32: two registers).
    Ranges are wide enough for anything a plausible simulator serves (values are checked, not
    trusted: the subscriber counts every sample whose quality is not ``good``)."""
    out = []
    address = 0
    for i in range(points):
        kind = i % 3 if mixed else 0
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


def make_site(n: int, profile_path: Path, mqtt_port: int, device_ports: list[int], units_per_port: int,
              interval: float, qos: int, protocol: str, payload: str = "full") -> dict:
    devices = []
    for i in range(n):
        devices.append({
            "id": f"bench-{i + 1:04d}", "adapter": "modbus", "area": "bench", "zone": "bench",
            "profile": str(profile_path), "host": HOST, "port": device_ports[i // units_per_port],
            "unit_id": i % units_per_port + 1, "poll_interval": interval})
    return {
        "site": {"id": "bench-mine", "name": "minegw throughput benchmark", "gateway_id": "bench-gw"},
        "areas": [{"id": "bench", "kind": "roadway", "zones": ["bench"]}],
        "devices": devices,
        "mqtt": {"host": HOST, "port": mqtt_port, "protocol": protocol, "qos": qos, "payload": payload,
                 "topic_prefix": "minegw", "client_id": "minegw-bench-gw"},
    }


def variant_site(site: dict, name: str, workdir: Path, historian: str | None) -> Path:
    """The site file of one gateway run: its own MQTT client id, its own buffer file."""
    site = json.loads(json.dumps(site))
    site["mqtt"]["client_id"] = f"minegw-bench-{name}"
    if historian:
        site["historian"] = {"url": historian, "database": "minegw_bench",
                             "buffer": {"path": str(workdir / f"buffer-{name}.sqlite3")}}
    path = workdir / f"site-{name}.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False, allow_unicode=True))
    return path


# -- one device count --------------------------------------------------------------------
class Run:
    """Broker, simulators and subscriber for one N; the gateways measured one after the other on them."""

    def __init__(self, n: int, args, workdir: Path, procs: Processes):
        self.n, self.args, self.workdir, self.procs = n, args, workdir, procs
        self.sub: Child | None = None
        self.others: dict[str, Callable[[], float]] = {}  # CPU seconds so far of what runs beside the gateway

    @property
    def sim_procs(self) -> int:
        """Simulator processes: ``--sim-procs``, or 2 from 500 devices on (a mine's devices answer in
        parallel; one process answering 500-1 000 in turn, and its garbage collector's pauses once a
        gateway's connections are gone, would be counted as the gateway's latency: bench/README.md)."""
        if self.args.sim_procs:
            return self.args.sim_procs
        return 2 if self.n >= 500 and (os.cpu_count() or 1) >= 2 else 1

    def start(self) -> None:
        n, args, workdir, procs = self.n, self.args, self.workdir, self.procs
        profile_path = workdir / "bench_machine.yaml"
        self.profile = make_profile(args.points, args.mixed)
        profile_path.write_text(yaml.safe_dump(self.profile, sort_keys=False, allow_unicode=True))
        self.registers = sum(2 if p["type"] == "float32" else 1 for p in self.profile["points"])
        # Every port in one call: two calls may hand the broker's port out again as a device's.
        ports = free_ports(2 + (n + args.units_per_port - 1) // args.units_per_port)
        mqtt_port, control_port = ports[:2]
        self.site = make_site(n, profile_path, mqtt_port, ports[2:], args.units_per_port, args.interval,
                              args.qos, args.protocol, args.payload)
        self.site_path = workdir / "site.yaml"
        self.site_path.write_text(yaml.safe_dump(self.site, sort_keys=False, allow_unicode=True))
        from gateway.config import load_site  # the gateway's own check: a bad generated file fails here
        load_site(self.site_path)

        conf = workdir / "mosquitto.conf"
        conf.write_text("\n".join([
            f"listener {mqtt_port} {HOST}", "allow_anonymous true", "persistence false",
            "log_dest stderr", "log_type error", "log_type warning", "log_type notice",
            # Room for a subscriber that lags during the run: loss must come from the gateway, not here.
            "max_queued_messages 1000000", "max_inflight_messages 100", ""]))
        broker = procs.start("mosquitto", [mosquitto_binary(), "-c", str(conf)])
        wait_port(mqtt_port, 10, broker)
        sim = procs.start("simulators", [PY, "-m", "gateway.cli", "sim", str(self.site_path),
                                         "--control", f"{HOST}:{control_port}", "--procs", str(self.sim_procs),
                                         *args.sim_arg])
        for port in sorted({d["port"] for d in self.site["devices"]}):
            wait_port(port, args.start_timeout, sim)
        self.sim = sim
        prefix = f"{self.site['mqtt']['topic_prefix']}/{self.site['site']['id']}"
        self.sub = procs.start("subscriber", [PY, str(BENCH / "subscriber.py"), "--port", str(mqtt_port),
                                              "--qos", str(args.qos), "--protocol", args.protocol,
                                              "--topic", f"{prefix}/+/+/data", "--topic", "nodered/+/data"],
                               json_stdout=True, stdin=True)
        self.sub.expect("subscribed", 15)
        self.others = {name: functools.partial(group_cpu_seconds, child.proc.pid)  # each in a session of its own
                       for name, child in (("simulators", sim), ("mosquitto", broker), ("subscriber", self.sub))}
        if args.influxd_pid:  # the bench's influxd shares the bench's process group
            self.others["influxd"] = functools.partial(process_cpu_seconds, args.influxd_pid)

    # -- the gateways ----------------------------------------------------------------
    def minegw(self, name: str, historian: str | None) -> dict:
        args = self.args
        vdir = self.workdir / name
        vdir.mkdir()
        site_path = variant_site(self.site, name.replace("+", "-"), vdir, historian)
        worker = args.gateway == "worker"
        if worker:
            argv = [PY, str(BENCH / "gateway_worker.py"), str(site_path), "--warmup", str(args.warmup),
                    "--seconds", str(args.seconds), "--linger", "120"] + (["--uvloop"] if args.uvloop else [])
            if args.cprofile:
                argv += ["--cprofile", str(Path(args.cprofile).resolve().with_suffix(f".n{self.n}.{name}.prof"))]
        else:
            argv = [PY, "-c", UVLOOP_MAIN] if args.uvloop else [PY, "-m", "gateway.cli"]
            argv += ["run", str(site_path)]
        gw = self.procs.start(name, argv, json_stdout=worker, stdin=worker, cwd=vdir)
        if worker:
            gw.expect("ready", args.start_timeout)
        profile = Path(args.profile).resolve().with_suffix(f".n{self.n}.{name}.txt") if args.profile else None
        row = self.measure(name, "minegw", gw, gw.proc.pid, worker, profile)
        row["uvloop"] = args.uvloop
        return row

    def nodered(self) -> dict:
        args = self.args
        run_py = PEER / "run.py"
        child = self.procs.start("node-red", [PY, str(run_py), str(self.site_path), "--points", str(args.points),
                                              "--node-red", str(Path(args.node_red).resolve())],
                                 json_stdout=True, cwd=PEER)
        pid = int(child.expect("line", 30)["value"])  # run.py prints node's PID: node has its own session
        self.procs.adopt_group("node-red", pid)
        return self.measure("node-red", "nodered", child, pid, False, None)

    # -- one measured window ---------------------------------------------------------
    def ask(self, command: str, event: str) -> dict:
        self.sub.send(command)
        return self.sub.expect(event, 15)

    def first_data(self, source: str, child: Child, since: float) -> None:
        """Until a message of a poll made at ``since`` or later came: the gateway before this one (of the same
        source: minegw, then minegw with the historian) sent the same topics until it stopped."""
        deadline = time.monotonic() + self.args.start_timeout
        while time.monotonic() < deadline:
            if child.proc.poll() is not None:
                raise BenchError(f"{child.name} exited ({child.proc.returncode}){child.tail()}")
            if self.ask(f"phase {self.args.interval} {source} {since}", "phase")["messages"]:
                return
            time.sleep(0.5)
        raise BenchError(f"{child.name}: no data within {self.args.start_timeout:g} s{child.tail()}")

    def cpu(self, pgid: int) -> dict[str, float]:
        user, system = group_cpu_split(pgid)
        return {"gateway": user + system, "gateway_sys": system,
                **{name: read() for name, read in self.others.items()}}

    def measure(self, name: str, source: str, child: Child, pgid: int, worker: bool, profile: Path | None) -> dict:
        args, interval = self.args, self.args.interval
        t_start, since = time.monotonic(), time.time()
        self.first_data(source, child, since)
        spy = None
        if worker:  # the worker opens its window itself (half an interval off the polls' phase)
            child.expect("window", args.warmup + 30)
        else:
            time.sleep(args.warmup)
            phase = self.ask(f"phase {interval} {source} {since}", "phase")["phase"] or 0.0
            now = time.time()
            time.sleep((phase + interval / 2 - now) % interval)
        cpu0, w0 = self.cpu(pgid), time.time()
        if profile:
            from hotspots import record
            spy = record(pgid, args.seconds, profile)
        if worker:
            child.expect("window_end", args.seconds + 30)
        else:
            time.sleep(args.seconds)
        cpu1, w1 = self.cpu(pgid), time.time()
        rss_kb = group_rss_peak_kb(pgid)
        result = child.expect("result", 30) if worker else {}
        t0, t1 = (result["t0"], result["t1"]) if worker else (w0, w1)

        report, previous = None, -1  # let polls of the window's end arrive: ask until the count stops growing
        deadline = time.monotonic() + args.drain
        while report is None or time.monotonic() < deadline:
            time.sleep(1.0)
            report = self.ask(f"report {t0} {t1} {source}", "report")
            if report["unique_polled_in_window"] == previous:
                break
            previous = report["unique_polled_in_window"]

        warnings: list[str] = []
        stopped: dict = {}
        t_stop = time.monotonic()
        if worker:
            child.send("stop")
            try:
                stopped = child.expect("stopped", args.stop_timeout)
            except BenchError as exc:
                warnings.append(f"{name} did not stop within {args.stop_timeout:g} s: {exc}")
        if source == "nodered":
            self.procs.stop_group(name, pgid)
        self.procs.stop(child, grace=args.stop_timeout)
        stop_s = time.monotonic() - t_stop
        if report["messages"] == 0:
            raise BenchError(f"N={self.n} {name}: the subscriber received no data message in the window"
                             f"{child.tail()}{self.sim.tail()}")
        hot = None
        if spy is not None:
            from hotspots import summarise
            _, err = spy.communicate(timeout=args.seconds + 120)
            if spy.returncode == 0 and profile.exists():
                hot = summarise(profile)
            else:
                warnings.append(f"py-spy failed ({spy.returncode}): {err.strip().splitlines()[:1]}")
        return self.row(name, t0, t1, w1 - w0, cpu0, cpu1, rss_kb, report, result, stopped, hot, stop_s,
                        warnings, time.monotonic() - t_start)

    def row(self, name, t0, t1, wall, cpu0, cpu1, rss_kb, report, result, stopped, hot, stop_s, warnings,
            spent) -> dict:
        args, n = self.args, self.n
        window = t1 - t0
        expected = n * args.points / args.interval
        expected_polls = round(n * window / args.interval)
        cpu_s = cpu1["gateway"] - cpu0["gateway"]
        samples = report["samples"]
        row = {
            "gateway": name, "devices": n, "points_per_device": args.points, "registers_per_device": self.registers,
            "poll_interval_s": args.interval, "qos": args.qos, "payload": args.payload, "window_s": round(window, 3),
            "expected_tags_per_s": expected,
            "tags_per_s": round(samples / window, 1),
            "delivered_pct": round(100 * samples / window / expected, 2),
            "kept_up": samples / window >= KEPT_UP * expected,
            "msgs_per_s": round(report["messages_per_s"], 2),
            "cpu_s": round(cpu_s, 3), "cpu_pct": round(100 * cpu_s / wall, 1),
            "cpu_sys_pct": round(100 * (cpu1["gateway_sys"] - cpu0["gateway_sys"]) / wall, 1),
            "cpu_us_per_tag": round(cpu_s / samples * 1e6, 2) if samples else None,
            "latency_ms": {k: _r(v) for k, v in report["latency_ms"].items()},
            "latency_after_poll_ms": {k: _r(v) for k, v in report["latency_after_poll_ms"].items()},
            "rss_peak_mb": round(rss_kb / 1024, 1) if rss_kb else None,
            "sim_cpu_s_per_s": round((cpu1["simulators"] - cpu0["simulators"]) / wall, 3), "sim_procs": self.sim_procs,
            "other_cpu_pct": {k: round((cpu1[k] - cpu0[k]) / wall * 100, 1) for k in self.others},
            "expected_polls": expected_polls,
            "delivered_polls": report["unique_polled_in_window"],
            "missing_polls": expected_polls - report["unique_polled_in_window"],
            "duplicates": report["polled_in_window"] - report["unique_polled_in_window"],
            "not_good_samples": report["not_good"], "parse_errors": report["parse_errors"],
            "stop_s": _r(stop_s), "warnings": warnings, "wall_s": round(spent, 1),
        }
        if result:  # the in-process worker's own view
            probe = result["probe"]
            final = stopped.get("sink_health") or {}
            row.update({
                "poll_ms": {k: _r(v) for k, v in probe["poll_ms"].items()},
                "loop_lag_ms": {k: _r(v) for k, v in result["loop_lag_ms"].items()},
                "overran_polls": probe["overran"], "missed_ticks": probe["missed_ticks"],
                "lost": probe["readings"] - report["unique_polled_in_window"],
                "sink_dropped_total": _dropped(final), "adapters": result["adapters"],
                "threads": result.get("threads"), "state_changes": result.get("state_changes", []),
            })
        if hot:
            row["hotspots"] = hot
        return row


def run_one(n: int, args, workdir: Path) -> list[dict]:
    procs = Processes(workdir)
    try:
        run = Run(n, args, workdir, procs)
        run.start()
        rows = []
        if not args.historian_only:
            rows.append(run.minegw("minegw", None))
            print_progress(rows[-1])
        if args.historian:
            rows.append(run.minegw("minegw+hist", args.historian))
            print_progress(rows[-1])
        if args.peer:
            rows.append(run.nodered())
            print_progress(rows[-1])
        return rows
    finally:
        procs.stop_all()


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
def print_progress(r: dict) -> None:
    print(f"   {r['gateway']}: {r['cpu_us_per_tag']} µs CPU/tag, {r['tags_per_s']:.0f} tags/s of "
          f"{r['expected_tags_per_s']:.0f} ({r['delivered_pct']:.1f} %), latency p50 {_ms(r['latency_ms']['p50'])} "
          f"p99 {_ms(r['latency_ms']['p99'])} ms, peak RSS {r['rss_peak_mb']} MB, sim {r['sim_cpu_s_per_s']} CPU s/s "
          f"({r['wall_s']} s)", flush=True)


OTHERS = ("mosquitto", "subscriber", "influxd")  # CPU % printed beside the gateway's


def print_table(rows: list[dict]) -> None:
    cols = [
        ("N", lambda r: str(r["devices"])),
        ("gateway", lambda r: r["gateway"]),
        ("µs CPU/tag", lambda r: "-" if r["cpu_us_per_tag"] is None else f"{r['cpu_us_per_tag']:.2f}"),
        ("tags/s", lambda r: f"{r['tags_per_s']:.0f}"),
        ("of", lambda r: f"{r['expected_tags_per_s']:.0f}"),
        ("delivered", lambda r: f"{r['delivered_pct']:.1f}%"),
        ("kept up", lambda r: "yes" if r["kept_up"] else "NO"),
        ("lat p50", lambda r: _ms(r["latency_ms"]["p50"])),
        ("p99 ms", lambda r: _ms(r["latency_ms"]["p99"])),
        ("peak RSS MB", lambda r: f"{r['rss_peak_mb']:.0f}" if r["rss_peak_mb"] else "-"),
        ("GW CPU%", lambda r: f"{r['cpu_pct']:.0f}"),
        ("GW user/sys %", lambda r: f"{r['cpu_pct'] - r.get('cpu_sys_pct', 0):.1f}/{r.get('cpu_sys_pct', 0):.1f}"),
        ("sim CPU s/s (procs)", lambda r: f"{r['sim_cpu_s_per_s']:.2f} ({r['sim_procs']})"),
        ("broker/sub/influxd CPU%", lambda r: "/".join(f"{r['other_cpu_pct'][k]:.0f}" for k in OTHERS
                                                       if k in r["other_cpu_pct"])),
        ("missing polls", lambda r: str(r["missing_polls"])),
        ("not good", lambda r: str(sum(r["not_good_samples"].values()))),
    ]
    cells = [[c[0] for c in cols]] + [[c[1](r) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    for k, row in enumerate(cells):
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    for n in dict.fromkeys(r["devices"] for r in rows):
        peer = next((r for r in rows if r["devices"] == n and r["gateway"] == "node-red"), None)
        for r in rows:
            if r["devices"] == n and r["gateway"] != "node-red" and peer and peer["cpu_us_per_tag"] and \
                    r["cpu_us_per_tag"]:
                print(f"N={n}: {r['gateway']} / node-red CPU per tag = {r['cpu_us_per_tag']:.2f} / "
                      f"{peer['cpu_us_per_tag']:.2f} = {r['cpu_us_per_tag'] / peer['cpu_us_per_tag']:.2f}x")


def _ms(v) -> str:
    return "-" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")


# -- main --------------------------------------------------------------------------------
def _interrupt(*_):
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, nargs="+", default=None, help="device counts (default 200 500 1000)")
    ap.add_argument("--seconds", type=float, default=None, help="measured window per gateway (default 30)")
    ap.add_argument("--warmup", type=float, default=None, help="seconds after the first data, not measured (5)")
    ap.add_argument("--quick", action="store_true", help="a short check: 20 devices, 10 s windows")
    ap.add_argument("--points", type=int, default=100, help="input-register points per device")
    ap.add_argument("--mixed", action="store_true",
                    help="uint16/int16/float32 points (133 registers for 100 points); the Node-RED peer "
                         "then reads raw registers 0..points-1 of it")
    ap.add_argument("--interval", type=float, default=1.0, help="poll interval, seconds")
    ap.add_argument("--units-per-port", type=int, default=1,
                    help="simulated devices sharing one TCP port (different unit ids; no Node-RED peer)")
    ap.add_argument("--qos", type=int, choices=[0, 1, 2], default=1, help="MQTT QoS (site default: 1)")
    ap.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    ap.add_argument("--payload", choices=["full", "compact"], default="full",
                    help="minegw's data payload (mqtt.payload; docs/mqtt.md)")
    ap.add_argument("--gateway", choices=["run", "worker"], default="run",
                    help="run: `minegw run SITE`; worker: bench/gateway_worker.py (Gateway + sinks in-process, "
                         "with a probe: overruns, missed ticks, poll time, loop lag, sink drops)")
    ap.add_argument("--historian", default=None, metavar="URL|start",
                    help="also measure minegw with the historian sink on, writing to this InfluxDB (`start`: "
                         "an influxd of its own); an unreachable URL still buffers every reading")
    ap.add_argument("--historian-only", action="store_true", help="with --historian: skip the run without it")
    ap.add_argument("--peer", dest="peer", action="store_true", default=None,
                    help="measure the Node-RED peer too (default: when it is installed)")
    ap.add_argument("--no-peer", dest="peer", action="store_false")
    ap.add_argument("--node-red", default=str(REPO / ".cache" / "node-red"), metavar="DIR",
                    help="where `npm install node-red node-red-contrib-modbus@5.23.3` was run")
    ap.add_argument("--uvloop", action="store_true", help="run minegw on uvloop (pip install uvloop)")
    ap.add_argument("--profile", default=None, metavar="FILE",
                    help="py-spy record minegw over the window: FILE.n<N>.<gateway>.txt, hot spots printed")
    ap.add_argument("--cprofile", default=None, metavar="FILE",
                    help="with --gateway worker: cProfile of its main thread, FILE.n<N>.<gateway>.prof")
    ap.add_argument("--sim-procs", type=int, default=0, metavar="N",
                    help="processes the simulators are spread over (default: 2 from 500 devices on, else 1)")
    ap.add_argument("--sim-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for `minegw sim` (repeat: --sim-arg=--seed --sim-arg=3)")
    ap.add_argument("--start-timeout", type=float, default=60.0, help="seconds for simulators/gateways to come up")
    ap.add_argument("--stop-timeout", type=float, default=30.0, help="seconds a gateway may take to stop")
    ap.add_argument("--drain", type=float, default=None, help="longest wait for in-flight messages (10)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary files (site, profile, logs)")
    args = ap.parse_args(argv)
    quick = args.quick
    args.influxd_pid = None  # with --historian start: its CPU is printed beside the broker's
    args.devices = args.devices or ([20] if quick else [200, 500, 1000])
    args.seconds = args.seconds or (10.0 if quick else 30.0)
    args.warmup = args.warmup if args.warmup is not None else (3.0 if quick else 5.0)
    args.drain = args.drain or (5.0 if quick else 10.0)
    if not 1 <= args.units_per_port <= 247:
        ap.error("--units-per-port must be 1..247")
    installed = (Path(args.node_red) / "node_modules" / "node-red" / "red.js").exists() and (PEER / "run.py").exists()
    if args.peer and not installed:
        ap.error(f"no Node-RED peer: {PEER}/run.py and {args.node_red}/node_modules/node-red (see {PEER}/README.md)")
    if args.peer is None:
        args.peer = installed and args.units_per_port == 1
        if not installed:
            print(f"note: Node-RED peer not installed ({args.node_red}): not measured", file=sys.stderr)
    if args.historian_only and not args.historian:
        ap.error("--historian-only needs --historian")
    if args.cprofile and args.gateway != "worker":
        ap.error("--cprofile needs --gateway worker (use --profile for py-spy)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM (CI timeout, kill) unwinds like Ctrl-C, so the finally blocks stop every child.
    signal.signal(signal.SIGTERM, _interrupt)
    sys.path.insert(0, str(REPO))
    influx = None
    rows: list[dict] = []
    failed = False
    try:
        if args.historian == "start":
            from tests.conftest import Influx  # the test suite's influxd: own directory, own ports
            influx = Influx(Path(tempfile.mkdtemp(prefix="minegw-bench-influx-")))
            influx.start()
            args.historian, args.influxd_pid = influx.url, influx.process.pid
        for n in args.devices:
            workdir = Path(tempfile.mkdtemp(prefix=f"minegw-bench-n{n}-"))
            print(f"== N={n}: {n} devices x {args.points} points every {args.interval:g} s, "
                  f"warm-up {args.warmup:g} s, window {args.seconds:g} s ({workdir})", flush=True)
            keep = args.keep
            try:
                got = run_one(n, args, workdir)
                keep = keep or any(r["warnings"] for r in got)
                rows += got
            except BenchError as exc:
                print(f"N={n}: FAILED: {exc}\n  (files and logs kept in {workdir})", file=sys.stderr)
                failed = keep = True
            finally:
                if not keep:
                    shutil.rmtree(workdir, ignore_errors=True)
    except KeyboardInterrupt:
        print("interrupted: all benchmark processes stopped", file=sys.stderr)
        return 130
    finally:
        if influx is not None:
            influx.stop()
            shutil.rmtree(influx.workdir, ignore_errors=True)

    if rows:
        print()
        print(f"gateway throughput ({args.points} points = {rows[0]['registers_per_device']} registers per device, "
              f"poll {args.interval:g} s, MQTT QoS {args.qos}, minegw: `minegw {args.gateway}`, {args.payload} payload"
              f"{' on uvloop' if args.uvloop else ''}, {os.cpu_count()} CPUs, window {args.seconds:g} s; "
              f"CPU = process-group CPU time over the window / tags delivered in it)")
        print_table(rows)
        for row in rows:
            for warning in row["warnings"]:
                print(f"N={row['devices']} {row['gateway']}: WARNING: {warning}")
            if row.get("hotspots"):
                from hotspots import table
                print(f"\nN={row['devices']} {row['gateway']}: hot spots (py-spy)\n{table(row['hotspots'])}")
        print()
        for row in rows:
            print("BENCH_JSON " + json.dumps({"bench": "gateway", **row}, ensure_ascii=False))
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
