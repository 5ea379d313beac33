"""CPU of ``minegw console`` alone: the Textual app running headless in a process of its own against a
Mosquitto that receives a demo-sized stream, published here at 1 s: 10 devices (shearer, face conveyor,
four belts, a camera, two broadcast nodes, each 25 signals plus its derived status) and a 150-support
roof-pressure face (450 signals: 300 leg pressures, roof separation, anchor loads), with the retained
states, health and a few alarms. Prints the console process's CPU as % of one core over the window.

    PYTHONPATH=. python bench/bench_console.py [--seconds 30] [--warmup 5] [--payload full|compact]
                                               [--refresh 1.0]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.benchproc import BENCH, PY, Processes, group_cpu_seconds
from tests.conftest import Mosquitto
from tests.console_util import Publisher, console_site

MACHINES = ("shearer-1201", "afc-1201", "belt-main-1", "belt-main-2", "belt-main-3", "belt-main-4")
OTHERS = ("cam-1", "bn-1", "bn-2")


def machine_values(i: int, t: int) -> dict:
    return {**{f"signal_{k:02d}": round(10.0 + k + ((t + i) % 7) * 0.1, 2) for k in range(23)},
            "running": True, "fault": False}


def face_extra(t: int) -> dict:
    extra = {f"headgate_roof_sep_{n:02d}_deep": 10.0 + (n + t) % 5 for n in range(1, 51)}
    extra |= {f"headgate_bolt_load_{n:02d}": 120.0 + (n * t) % 30 for n in range(1, 51)}
    return extra


def publish_round(p: Publisher, t: int, compact: bool) -> int:
    for i, device in enumerate(MACHINES):
        p.data(device, machine_values(i, t), compact=compact, wait=False)
        p.data(device, {"status": "running", "status_code": 1}, compact=compact, poll_ms=0.0, derived=True,
               wait=False)
    for device in OTHERS:
        p.data(device, machine_values(9, t), compact=compact, wait=False)
    pressures = {n: (20.0 + (n + t) % 20, 21.0 + (n * 3 + t) % 20) for n in range(1, 151)}
    values = {}
    for n, (front, rear) in pressures.items():
        values[f"support_{n:03d}_front_leg_pressure"] = front
        values[f"support_{n:03d}_rear_leg_pressure"] = rear
    p.data("rp-1201", values | face_extra(t), compact=compact, wait=False)
    p.data("rp-1201", {"supports_below_setting": t % 12}, compact=compact, poll_ms=0.0, derived=True, wait=False)
    p.health(queued=t % 5)
    return 2 * len(MACHINES) + len(OTHERS) + 3


def child(args) -> None:
    from gateway.config import parse_site
    from gateway.console.app import ConsoleApp

    site = parse_site(json.loads(Path(args.child).read_text()))
    app = ConsoleApp(site, refresh=args.refresh)

    def done() -> None:
        print(json.dumps({"event": "done", "received": app.model.received}), flush=True)
        app.exit()

    app.call_later(lambda: app.set_timer(args.seconds + args.warmup + 2, done))
    app.run(headless=True, size=(160, 60))


def main(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="minegw-bench-console-"))
    broker = Mosquitto(work / "mosquitto")
    (work / "mosquitto").mkdir()
    broker.start()
    procs = Processes(work)
    try:
        site = console_site(broker, "bench", belts=4)
        path = work / "site.json"
        path.write_text(site.model_dump_json(exclude_none=True))
        p = Publisher(site)
        for device in (*MACHINES, *OTHERS, "rp-1201"):
            p.state(device)
        p.alarm("shearer-1201", "shearer-ch4")
        p.alarm("belt-main-2", "belt-slip", priority=2)
        console = procs.start("console", [PY, str(BENCH / "bench_console.py"), "--child", str(path), "--seconds",
                                          str(args.seconds), "--warmup", str(args.warmup), "--refresh",
                                          str(args.refresh)], json_stdout=True)
        sent, t, cpu0, t0 = 0, 0, None, None
        start = time.monotonic()
        while time.monotonic() - start < args.warmup + args.seconds:
            if cpu0 is None and time.monotonic() - start >= args.warmup:
                cpu0, t0, sent = group_cpu_seconds(console.proc.pid), time.monotonic(), 0
            sent += publish_round(p, t, args.payload == "compact")
            t += 1
            time.sleep(max(0.0, start + t - time.monotonic()))
        cpu = group_cpu_seconds(console.proc.pid) - cpu0
        wall = time.monotonic() - t0
        done = console.expect("done", 30)
        p.close()
        print(json.dumps({"payload": args.payload, "refresh_s": args.refresh, "window_s": round(wall, 1),
                          "messages_per_s": round(sent / wall, 1), "received_total": done["received"],
                          "console_cpu_pct_of_core": round(100 * cpu / wall, 2)}))
    finally:
        procs.stop_all()
        broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--payload", choices=("full", "compact"), default="full")
    parser.add_argument("--refresh", type=float, default=1.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    child(arguments) if arguments.child else main(arguments)
