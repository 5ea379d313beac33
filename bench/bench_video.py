"""CPU of stream health: N simulated cameras' streams watched by gateway/video/health.py.

    python bench/bench_video.py                       # 16 cameras, sub streams (640x360, 15 fps, 512 kbit/s)
    python bench/bench_video.py --cameras 4 --profile main --seconds 20   # 1920x1080, 25 fps, 4 Mbit/s

The camera simulator (GStreamer's RTSP server, one x264 encoder per watched stream) runs in a
child process of its own session; this process runs one :class:`StreamHealth` per camera
(its worker thread: RTSP over TCP, every packet counted, a key frame decoded and judged
every ``--sample-every`` seconds, a report every ``--report-every``). After a warm-up it
measures this process's CPU time over ``--seconds`` and prints it per stream and in total,
with the simulator's beside it (what the encoders cost, not part of a gateway). Loopback only.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchproc import PY, Processes, free_ports, group_cpu_seconds, wait_port
from gateway.video.health import HealthSample, StreamHealth

SIMULATOR = """
import asyncio, json, sys
from simulators.onvif.camera import CameraSimulator
from simulators.onvif.stream import RtspSimServer

async def main(count, port):
    cameras = [CameraSimulator(f"cam-{i:02d}", {}, name=f"Camera {i}") for i in range(count)]
    async with RtspSimServer(cameras, "127.0.0.1", port):
        print(json.dumps({"event": "ready"}), flush=True)
        await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cameras", type=int, default=16)
    parser.add_argument("--profile", choices=("sub", "main"), default="sub")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=6.0)
    parser.add_argument("--report-every", type=float, default=5.0)
    parser.add_argument("--sample-every", type=float, default=2.0)
    args = parser.parse_args()

    (port,) = free_ports(1)
    with tempfile.TemporaryDirectory(prefix="bench-video-") as workdir:
        procs = Processes(Path(workdir))
        try:
            sim = procs.start("camera-sim", [PY, "-c", SIMULATOR, str(args.cameras), str(port)], json_stdout=True)
            sim.expect("ready", 60)
            wait_port(port, 10, sim)
            reports: list[HealthSample] = []
            lock = threading.Lock()

            def keep(sample: HealthSample) -> None:
                with lock:
                    reports.append(sample)
            watchers = [StreamHealth(f"rtsp://127.0.0.1:{port}/cam-{i:02d}/{args.profile}", name=f"cam-{i:02d}",
                                     report_every=args.report_every, sample_every=args.sample_every)
                        for i in range(args.cameras)]
            for watcher in watchers:
                watcher.subscribe(keep)
                watcher.start()
            time.sleep(args.warmup)
            cpu0, sim0, t0 = cpu_seconds(), group_cpu_seconds(sim.proc.pid), time.monotonic()
            with lock:
                reports.clear()
            time.sleep(args.seconds)
            cpu, sim_cpu, wall = cpu_seconds() - cpu0, group_cpu_seconds(sim.proc.pid) - sim0, time.monotonic() - t0
            for watcher in watchers:
                watcher.stop()
        finally:
            procs.stop_all()
    with lock:
        healthy = [r for r in reports if r.stream_ok and r.picture == "ok"]
        fps = sorted(r.fps for r in healthy if r.fps)
        kbps = sorted(r.kbps for r in healthy if r.kbps)
    total = cpu / wall * 100
    print(json.dumps({
        "cameras": args.cameras, "profile": args.profile, "seconds": round(wall, 1),
        "health_cpu_percent_total": round(total, 1), "health_cpu_percent_per_stream": round(total / args.cameras, 2),
        "simulator_cpu_percent_total": round(sim_cpu / wall * 100, 1),
        "reports": len(reports), "healthy_reports": len(healthy),
        "fps_median": fps[len(fps) // 2] if fps else None, "kbps_median": kbps[len(kbps) // 2] if kbps else None,
    }, indent=1))


if __name__ == "__main__":
    main()
