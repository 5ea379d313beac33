"""The historian over MQTT (``historian.api: mqtt``): how fast a gateway's back-log reaches the surface broker.

    python bench/bench_historian_mqtt.py                    # 200 devices, a 5-minute outage
    python bench/bench_historian_mqtt.py --outage 60        # quick

On loopback, in a temporary directory: Mosquitto with the surface broker's limits that matter here
(``max_packet_size 262144``, ``max_inflight_messages 1000``, as deploy/surface/mosquitto.conf), and a
subscriber on the historian topic (the ingest workers' place) counting lines.

1. **Outage**: the lines of ``--outage`` seconds of N machines (bench_buffer's ``Machines``: one
   100-field line per device a second, the gateway's own ``ReadingLines``) are committed into a real
   ``HistorianSink``'s buffer while no broker listens (the sink retries and keeps them).
2. **Back-fill**: the broker starts; the sink drains its buffer through ``MqttHistorianWriter``
   (every batch split into messages under 256 KiB, each acknowledged before the batch leaves the
   buffer). Printed: how long after the broker's start the first line arrived (the writer's
   reconnect delay and the sink's backoff), then lines/s and MB/s of line protocol from the first
   to the last line at the subscriber, messages and their mean size, and the CPU of this process
   (the sink, its buffer thread and the subscriber) per 1000 lines.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench_buffer import Machines, commits  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(workdir: Path, port: int) -> subprocess.Popen:
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_packet_size 262144\n"
                    f"max_inflight_messages 1000\nmax_queued_messages 200000\nuser {getpass.getuser()}\n"
                    f"log_dest file {workdir}/mosquitto.log\n")
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


class Counter:
    """Subscribes to the historian topic (reconnecting while the broker is away) and counts lines."""

    def __init__(self, port: int, topic: str):
        self.lines = self.messages = self.bytes = 0
        self.done = threading.Event()
        self.expected = 0
        self.first_at: float | None = None
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.messages += 1
        self.bytes += len(msg.payload)
        self.lines += sum(1 for line in msg.payload.split(b"\n") if line.startswith(b"bench_machine"))
        if self.expected and self.lines >= self.expected:
            self.done.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def run(devices: int, outage: int, batch_lines: int) -> dict:
    from gateway.config import parse_site
    from gateway.historian.mqtt_writer import historian_topic
    from gateway.historian.sink import HistorianSink

    workdir = Path(tempfile.mkdtemp(prefix="bench-historian-mqtt-"))
    port = free_port()
    site = parse_site({"site": {"id": "bench-mine", "gateway_id": "bench-gw"},
                       "areas": [{"id": "bench", "kind": "roadway"}], "devices": [],
                       "mqtt": {"host": "127.0.0.1", "port": port},
                       "historian": {"api": "mqtt", "url": f"mqtt://127.0.0.1:{port}", "timeout": 10,
                                     "batch_lines": batch_lines, "flush_interval": 0.2,
                                     "buffer": {"path": str(workdir / "buffer.sqlite3")}}})
    machines = Machines(devices)
    counter = Counter(port, historian_topic(site))
    sink = HistorianSink(site.historian, site, health_interval=3600)
    broker = None
    try:
        await sink.start()
        for s in range(outage):
            for chunk in commits(machines.second(s), devices):
                sink.put_lines(chunk)
            await sink.commit()
        while sink.health()["depth"] < devices * outage:
            await asyncio.sleep(0.1)
        counter.expected = devices * outage
        payload_bytes = sum(len(line) + 1 for s in range(min(outage, 5)) for _, line in machines.second(s))
        cpu0, t0 = time.process_time(), time.perf_counter()
        broker = start_broker(workdir, port)
        await asyncio.to_thread(counter.done.wait, 600)
        end, cpu = time.perf_counter(), time.process_time() - cpu0
        reconnect, elapsed = (counter.first_at or end) - t0, end - (counter.first_at or t0)
    finally:
        await sink.stop()
        counter.close()
        if broker:
            broker.terminate()
            broker.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    lines = devices * outage
    return {"lines": lines, "seconds": elapsed, "reconnect_s": reconnect, "lines_per_s": lines / elapsed,
            "mb_per_s": payload_bytes / min(outage, 5) * outage / elapsed / 1e6,
            "messages": counter.messages, "mean_kib": counter.bytes / max(1, counter.messages) / 1024,
            "cpu_ms_per_1000_lines": cpu / lines * 1e6, "received": counter.lines}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--outage", type=int, default=300, help="seconds of outage (lines: devices × seconds)")
    ap.add_argument("--batch-lines", type=int, default=5000, help="historian.batch_lines")
    args = ap.parse_args(argv)
    r = asyncio.run(run(args.devices, args.outage, args.batch_lines))
    print(f"back-fill of {r['lines']} lines ({args.devices} devices × {args.outage} s, 100 fields each) over MQTT: "
          f"first line {r['reconnect_s']:.1f} s after the broker started, then {r['seconds']:.1f} s, {r['lines_per_s']:,.0f} lines/s ({r['mb_per_s']:.1f} MB/s of line protocol), "
          f"{r['messages']} messages of {r['mean_kib']:.0f} KiB on average, "
          f"{r['cpu_ms_per_1000_lines']:.1f} ms CPU per 1000 lines (sink and subscriber, one process); "
          f"received {r['received']}")
    return 0 if r["received"] >= r["lines"] else 1


if __name__ == "__main__":
    sys.exit(main())
