"""Video relay benchmark: CPU per relayed stream, latency the RTSP relay adds, HLS latency.

    python bench/bench_relay.py                     # 16 cameras, 15 fps, one RTSP viewer each, 20 s
    python bench/bench_relay.py --cameras 4 --viewers 0 --seconds 10    # quick

On loopback: one RTSP test camera process (tests/rtsp_camera.py: 320x180 sub-stream, x264, GOP 2 s;
a shared media, so it encodes once whatever the number of sessions), the relay in a process of its own
(``--relay-worker``: gateway/video/relay.py with N cameras, each pulling the camera's ``/sub`` in its own
RTSP session, HLS written for each), and this process as the surface: ``--viewers`` RTSP viewers per
camera through the relay, and the latency probe.

- **CPU per stream**: utime+stime of the relay's process over ``--seconds`` / N, as % of one core
  (/proc; the camera and the viewers are other processes).
- **added latency**: one client straight at the camera and one through the relay receive the same
  access units (no transcoding: the same bytes); for each, arrival through the relay minus arrival
  direct, p50/p95/max. Both clients use the relay's ``upstream_latency_ms`` jitter buffer.
- **HLS**: the segments' EXTINF lengths and the time between playlist updates: a frame is listed at
  most one segment after it arrived; a player at ``liveSyncDurationCount`` 1 plays one more behind.

Prints the figures and one ``BENCH_JSON {...}`` line.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: gateway, tests

from benchproc import group_cpu_seconds

from tests.rtsp_util import RtspCamera


def relay_settings(camera_url: str, cameras: int, workdir: Path, latency_ms: int) -> dict:
    return {"cameras": [{"device": f"cam-{i:02d}", "sub": camera_url} for i in range(cameras)],
            "relay": {"bind": "127.0.0.1", "rtsp_port": 0, "http_port": 0, "hls_dir": str(workdir / "hls"),
                      "upstream_latency_ms": latency_ms}, "publish_interval_s": 5}


async def relay_worker(settings: str) -> None:
    """The relay alone in this process: prints its ports, runs until stdin closes."""
    from gateway.video.config import VideoConfig
    from gateway.video.relay import VideoRelay

    relay = VideoRelay(VideoConfig.model_validate_json(settings), areas={}, snapshots_dir=Path(tempfile.mkdtemp()))
    async with relay:
        print(json.dumps({"rtsp": relay.rtsp.port, "http": relay.http.port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def last_slice(data: bytes) -> bytes:
    """The access unit's last NAL unit (a slice): what both paths carry byte for byte."""
    return data[data.rfind(b"\x00\x00\x01") + 3:]


def arrivals(upstream, into: dict) -> None:
    upstream.add(lambda data, key: into.setdefault(hashlib.blake2b(last_slice(data), digest_size=8).digest(),
                                                   time.monotonic()))


def measure_latency(camera_url: str, relay_url: str, seconds: float, latency_ms: int) -> dict:
    from gateway.video.upstream import Upstream

    direct, relayed = {}, {}
    clients = [Upstream("direct", camera_url, latency_ms=latency_ms), Upstream("relayed", relay_url,
                                                                                 latency_ms=latency_ms)]
    arrivals(clients[0], direct)
    arrivals(clients[1], relayed)
    for c in clients:
        c.start()
    time.sleep(seconds)
    for c in clients:
        c.stop()
    added = sorted((relayed[k] - direct[k]) * 1000 for k in relayed.keys() & direct.keys())
    if not added:
        return {"frames": 0}
    return {"frames": len(added), "p50_ms": round(statistics.median(added), 1),
            "p95_ms": round(added[int(len(added) * 0.95) - 1], 1), "max_ms": round(added[-1], 1)}


def measure_hls(playlist: Path, seconds: float) -> dict:
    listed, last = [], None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        text = playlist.read_text() if playlist.exists() else ""
        segments = re.findall(r"(segment\d+\.ts)", text)
        if segments and segments[-1] != last:
            last = segments[-1]
            listed.append(time.monotonic())
        time.sleep(0.02)
    lengths = [float(x) for x in re.findall(r"#EXTINF:([\d.]+)", playlist.read_text())]
    gaps = [b - a for a, b in itertools.pairwise(listed)]
    return {"segment_s": round(statistics.mean(lengths), 2) if lengths else None,
            "update_every_s": round(statistics.mean(gaps), 2) if gaps else None}


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--cameras", type=int, default=16)
    args.add_argument("--fps", type=int, default=15)
    args.add_argument("--viewers", type=int, default=1, help="RTSP viewers per camera through the relay")
    args.add_argument("--seconds", type=float, default=20.0)
    args.add_argument("--latency-ms", type=int, default=100, help="rtspsrc jitter buffer (relay and probes)")
    args.add_argument("--relay-worker", help=argparse.SUPPRESS)
    opts = args.parse_args()
    if opts.relay_worker:
        asyncio.run(relay_worker(opts.relay_worker))
        return
    from gateway.video.upstream import Upstream

    workdir = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    camera = RtspCamera(None, "--fps", str(opts.fps)).start()
    settings = relay_settings(camera.url("sub"), opts.cameras, workdir, opts.latency_ms)
    relay = subprocess.Popen([sys.executable, __file__, "--relay-worker", json.dumps(settings)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    viewers: list[Upstream] = []
    try:
        ports = json.loads(relay.stdout.readline())
        base = f"rtsp://127.0.0.1:{ports['rtsp']}"
        camera.wait_connections(opts.cameras, timeout=30)
        for i in range(opts.cameras):
            for v in range(opts.viewers):
                viewer = Upstream(f"viewer-{i}-{v}", f"{base}/cam-{i:02d}/sub", stall_s=30)
                viewer.add(lambda data, key: None)
                viewer.start()
                viewers.append(viewer)
        time.sleep(5)  # warm-up: every session up, HLS writing
        cpu0, t0 = group_cpu_seconds(relay.pid), time.monotonic()
        frames0 = sum(v.frames for v in viewers)
        time.sleep(opts.seconds)
        cpu = group_cpu_seconds(relay.pid) - cpu0
        wall = time.monotonic() - t0
        delivered = (sum(v.frames for v in viewers) - frames0) / wall
        core_pct = cpu / wall * 100
        latency = measure_latency(camera.url("sub"), f"{base}/cam-00/sub", min(opts.seconds, 15), opts.latency_ms)
        hls = measure_hls(workdir / "hls/cam-00/index.m3u8", 12)
    finally:
        for viewer in viewers:
            viewer.stop()
        if relay.poll() is None:
            relay.stdin.close()
            try:
                relay.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(relay.pid, signal.SIGKILL)
        camera.stop()
    figures = {"cameras": opts.cameras, "fps": opts.fps, "viewers_per_camera": opts.viewers,
               "relay_core_pct": round(core_pct, 1), "per_stream_core_pct": round(core_pct / opts.cameras, 2),
               "viewer_fps_per_stream": round(delivered / max(len(viewers), 1), 1),
               "upstream_latency_ms": opts.latency_ms, "added_latency": latency, "hls": hls}
    print(f"relay: {opts.cameras} cameras x {opts.fps} fps, {opts.viewers} RTSP viewer(s) each, HLS for each")
    print(f"  CPU {figures['relay_core_pct']} % of one core, {figures['per_stream_core_pct']} % per stream; "
          f"viewers got {figures['viewer_fps_per_stream']} fps each")
    print(f"  latency added by the RTSP relay (jitter buffer {opts.latency_ms} ms): {latency}")
    print(f"  HLS: {hls}")
    print("BENCH_JSON " + json.dumps(figures))


if __name__ == "__main__":
    main()
