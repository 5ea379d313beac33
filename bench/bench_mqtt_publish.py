"""The MQTT sink's publish path alone: RATE data messages/s into ``MqttSink`` → a Mosquitto of its own
(QoS 1), CPU µs per message (process time, every thread) over a window; ``null`` measures the driver.

    PYTHONPATH=. python bench/bench_mqtt_publish.py [--rate 500] [--seconds 8] [--mode raw|reading|null]
                                                   [--burst 1] [--protocol 5]

``raw``: one prebuilt 100-signal payload handed to the sink's queue (the publish path only);
``reading``: a 100-signal columnar reading through ``on_reading`` (payload built too); ``--burst K``:
K messages per hand-off (what lingering to batch would give). Subtract ``null`` from the others."""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from gateway.config import parse_site
from gateway.core.model import Reading, Schema, utcnow
from gateway.mqtt import MqttSink
from gateway.mqtt.spool import Message
from tests.conftest import Mosquitto

DEVICES = 50


def site(port: int, protocol: str):
    return parse_site({
        "site": {"id": "pit", "gateway_id": "gw"}, "areas": [{"id": "a", "kind": "longwall_face"}],
        "devices": [{"id": f"d{i}", "adapter": "modbus", "area": "a", "profile": "shearer", "host": "127.0.0.1",
                     "port": 15020 + i} for i in range(DEVICES)],
        "mqtt": {"host": "127.0.0.1", "port": port, "topic_prefix": "bench", "protocol": protocol}})


async def main(args) -> None:
    broker = Mosquitto(Path(tempfile.mkdtemp(prefix="minegw-bench-mqtt-")))
    broker.start()
    cfg = site(broker.port, args.protocol)
    sink = MqttSink(cfg.mqtt, cfg)
    await sink.start()
    schema = Schema([f"s{i}" for i in range(100)], ["A"] * 100)

    def reading(device: str) -> Reading:
        return Reading(device, utcnow(), 5.0, schema=schema, values=[float(i) + 0.5 for i in range(100)])

    try:
        while not sink.health().connected:
            await asyncio.sleep(0.01)
        first = cfg.devices[0]
        sink.on_reading(first, reading(first.id))
        publisher = sink._data[first.id]
        topic, payload = publisher.data_topic, publisher.build(reading(first.id))[0]
        step = args.burst / args.rate

        async def run(duration: float) -> int:
            n, t0 = 0, time.monotonic()
            due = t0
            while time.monotonic() - t0 < duration:
                device = cfg.devices[n % DEVICES]
                if args.mode == "raw":
                    sink._queue_data([Message(topic, payload, False)] * args.burst)
                elif args.mode == "reading":
                    sink.on_readings([(device, reading(device.id))] * args.burst)
                n += args.burst
                due += step
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            return n

        await run(2.0)
        cpu0 = time.process_time()
        n = await run(args.seconds)
        while sink.health().queued:
            await asyncio.sleep(0.005)
        cpu = time.process_time() - cpu0
        print(f"{args.mode} burst {args.burst} rate {args.rate}/s MQTT {args.protocol}: {n} messages, "
              f"{cpu / n * 1e6:.1f} µs CPU/message")
    finally:
        await sink.stop()
        broker.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--mode", choices=("raw", "reading", "null"), default="raw")
    ap.add_argument("--burst", type=int, default=1)
    ap.add_argument("--protocol", choices=("5", "3.1.1"), default="5")
    asyncio.run(main(ap.parse_args()))
