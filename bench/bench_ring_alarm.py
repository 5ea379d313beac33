"""From a cut ring link to the ring-open alarm on MQTT: the simulated ring → SNMP adapter → network watch → Mosquitto.

    PYTHONPATH=. python bench/bench_ring_alarm.py --switches 20 --ports 28 --ups 5 --interval 10 --cuts 3

A ring of S switches (P ports each) and U UPS served by the project's SNMP agents (in this process),
a gateway (in this process) polling every switch every ``--interval`` seconds, a Mosquitto of its own.
Each round cuts one ring link (a different one each time), waits for the retained
``…/network/{area}/alarm/net.{ring}.open`` message naming that link, then mends it and waits for the
ring to be closed again. Prints the time from the cut to the alarm naming the link, in seconds and in
poll intervals (target: under 2). A benchmark: it asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.config import parse_site  # noqa: E402
from gateway.mqtt import MqttSink  # noqa: E402
from gateway.runtime import Gateway  # noqa: E402
from simulators.site import SiteSimulator, send_fault  # noqa: E402
from tests.conftest import Mosquitto  # noqa: E402
from tests.mqtt_util import MqttCollector  # noqa: E402

HOST = "127.0.0.1"


def free_udp_port() -> int:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def ring_site(switches: int, ports: int, ups: int, interval: float, broker: Mosquitto) -> dict:
    devices = [{"id": f"sw-{i}", "adapter": "snmp", "area": "net", "profile": "ring_switch", "host": HOST,
                "port": free_udp_port(), "ports": ports, "community": "ring-ro", "poll_interval": interval,
                "timeout": 2.0, "retries": 1} for i in range(1, switches + 1)]
    devices += [{"id": f"ups-{i}", "adapter": "snmp", "area": "net", "profile": "ups", "host": HOST,
                 "port": free_udp_port(), "community": "ring-ro", "poll_interval": interval,
                 "network": {"switch": f"sw-{i}", "port": 8}} for i in range(1, ups + 1)]
    return {
        "site": {"id": "bench"}, "areas": [{"id": "net", "kind": "roadway"}], "devices": devices,
        "network": {"gateway_switch": "sw-1",
                    "rings": [{"id": "r1", "switches": [{"device": f"sw-{i}", "ports": [1, 2]}
                                                        for i in range(1, switches + 1)]}]},
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": "bench"},
    }


async def main(args) -> None:
    broker = Mosquitto(Path(tempfile.mkdtemp(prefix="minegw-bench-ring-")))
    broker.start()
    site = parse_site(ring_site(args.switches, args.ports, args.ups, args.interval, broker))
    ring_topic = "bench/bench/network/ring/r1"
    open_topic = "bench/bench/network/r1/alarm/net.r1.open"

    def latest(messages, topic):
        ours = [m for m in messages if m.topic == topic and m.payload]
        return json.loads(ours[-1].payload) if ours else None

    times = []
    try:
        async with SiteSimulator(site, seed=1, control_port=0, onvif_discovery_port=None) as sims:
            with MqttCollector(broker.host, broker.port, "bench/#") as sub:
                async with Gateway(site, [MqttSink(site.mqtt, site)]):
                    await sub.until(lambda ms: (r := latest(ms, ring_topic)) and r["state"] == "closed",
                                    timeout=4 * args.interval)
                    for k in range(args.cuts):
                        a = 2 + k % (args.switches - 2)  # sw-a port 2 — sw-(a+1) port 1
                        link = f"ring r1: open at sw-{a} port 2 — sw-{a + 1} port 1"
                        t0 = time.monotonic()
                        await send_fault(*sims.control_address, f"sw-{a}", "cut", {"port": 2})
                        await sub.until(lambda ms: (m := latest(ms, open_topic)) and m.get("message") == link
                                        and m["state"].startswith("active"), timeout=6 * args.interval)
                        took = time.monotonic() - t0
                        times.append(took)
                        print(f"cut {k + 1}: sw-{a} port 2 — sw-{a + 1} port 1: alarm after {took:.1f} s "
                              f"({took / args.interval:.2f} poll intervals)", flush=True)
                        await send_fault(*sims.control_address, f"sw-{a}", "cut", clear=True)
                        await sub.until(lambda ms: (r := latest(ms, ring_topic)) and r["state"] == "closed",
                                        timeout=6 * args.interval)
    finally:
        broker.stop()
    if times:
        print(f"\n{args.switches} switches × {args.ports} ports + {args.ups} UPS, poll {args.interval:g} s: "
              f"cut → ring-open alarm naming the link: mean {sum(times) / len(times):.1f} s, "
              f"max {max(times):.1f} s = {max(times) / args.interval:.2f} poll intervals (target < 2)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switches", type=int, default=20)
    ap.add_argument("--ports", type=int, default=28)
    ap.add_argument("--ups", type=int, default=5)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--cuts", type=int, default=3)
    asyncio.run(main(ap.parse_args()))
