"""Bytes per tag on MQTT for the full and the compact data payload, with and without report by exception,
and the CPU to build each; a Sparkplug B estimate for the same data.

    PYTHONPATH=. python bench/bench_payload.py [--minutes 10] [--interval 1] [--max-silence 25]
                                               [--deadband 0] [--seed 1]

Realistic readings: the real Modbus adapter polls the simulators of the four machine kinds (shearer, face
conveyor, roadheader, belt conveyor) over Modbus TCP, once per simulated ``--interval``, for ``--minutes``
of simulated time (the simulators' clock is stepped, so 10 minutes take seconds); every machine is stopped
(emergency stop) at 30 % of the run and started again at 60 %. Each reading is then built as each payload by the MQTT sink's
own builder (``DevicePublisher``); bytes are the payload (``payload``) and the whole MQTT 5 PUBLISH packet at
QoS 1 (``on the wire``: fixed header, topic, packet id, properties length), the retained schema messages
included. A tag is one signal of one poll. CPU: µs per message to build (report by exception's choice
included), best of 5 passes over the readings.

Where the compact bytes go, what if: ``no times`` (every sample at the poll's ts: what the ``times`` object
costs), ``decimals`` (the values as a decoder writing decimals would give them: what binary artifacts cost).
"""
from __future__ import annotations

import argparse
import asyncio
import struct
import time
from math import isnan

from adapters.modbus.adapter import ModbusAdapter
from adapters.modbus.config import ModbusDeviceConfig
from gateway.config import MqttConfig
from gateway.contract import Topics, epoch_ms
from gateway.core.model import Quality, Reading
from gateway.mqtt.payloads import DevicePublisher
from simulators.modbus.server import DeviceSimulator, ModbusSimServer
from tests.util import free_port

KINDS = ("shearer", "face_conveyor", "roadheader", "belt_conveyor")
VARIANTS = (("full", False), ("full", True), ("compact", False), ("compact", True))


async def poll_simulators(minutes: float, interval: float, seed: int) -> list[tuple[ModbusDeviceConfig, Reading]]:
    clock = [0.0]
    polls = int(minutes * 60 / interval)
    out = []
    for n, kind in enumerate(KINDS):
        sim = DeviceSimulator(f"{kind}-1", kind, seed=seed + n, clock=lambda: clock[0], tick=0)
        device = ModbusDeviceConfig(id=f"{kind}-1", area="face-1201", profile=kind, host="127.0.0.1",
                                    port=free_port(), poll_interval=interval)
        async with ModbusSimServer("127.0.0.1", device.port, [sim]):
            adapter = ModbusAdapter(device)
            await adapter._connect()
            for i in range(polls):
                clock[0] = i * interval
                if i == int(polls * 0.3):
                    sim.model.set_fault("emergency_stop", t=clock[0])
                elif i == int(polls * 0.6):  # the operator's reset: the machine starts again
                    sim.model.clear_fault("emergency_stop", t=clock[0])
                reading = await adapter.poll_once()
                if reading is not None:
                    out.append((device, reading))
            await adapter.stop()
    return out


def mqtt(payload: str, rbe: bool, max_silence: float, deadband: float) -> MqttConfig:
    return MqttConfig(payload=payload, report_by_exception={"enabled": rbe, "max_silence": max_silence,
                                                            "deadband": deadband})


def publish_packet(topic: str, payload: bytes) -> int:
    """Bytes of an MQTT 5 PUBLISH at QoS 1: fixed header, topic, packet id, properties length, payload."""
    remaining = 2 + len(topic.encode()) + 2 + 1 + len(payload)
    return 1 + len(varint(remaining)) + remaining


def measure(readings, payload: str, rbe: bool, args) -> dict:
    cfg = mqtt(payload, rbe, args.max_silence, args.deadband)
    topics = Topics("minegw", "demo-mine")
    publishers = {}
    count = wire = messages = 0
    for device, reading in readings:
        publisher = publishers.get(device.id) or publishers.setdefault(
            device.id, DevicePublisher(cfg, topics, "demo-mine", device))
        schema, data = publisher.build(reading)
        for topic, body in ((publisher.schema_topic, schema), (publisher.data_topic, data)):
            if body is not None:
                count, wire, messages = count + len(body), wire + publish_packet(topic, body), messages + 1
    best = min(build_time(readings, cfg, topics) for _ in range(5))
    return {"payload": count, "wire": wire, "messages": messages, "us": best / len(readings) * 1e6}


def build_time(readings, cfg, topics) -> float:
    publishers = {d.id: DevicePublisher(cfg, topics, "demo-mine", d) for d, _ in readings}
    started = time.perf_counter()
    for device, reading in readings:
        publishers[device.id].build(reading)
    return time.perf_counter() - started


# ---- a Sparkplug B estimate (exact protobuf sizes of the Tahu schema's fields, no protobuf package) ----

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field(number: int, kind: int, body: bytes) -> bytes:
    """A protobuf field: its key, and for length-delimited ones (kind 2) its length."""
    return varint(number << 3 | kind) + (varint(len(body)) if kind == 2 else b"") + body


def metric(alias: int, value, quality: Quality, ts_ms: int | None) -> bytes:
    """A Sparkplug B Metric by alias (no name after the birth): value as Float/Int32/Boolean/String, the
    quality (not good only) as a property set ``Quality`` (Int32), its own timestamp when not the payload's."""
    out = field(2, 0, varint(alias))
    if ts_ms is not None:
        out += field(3, 0, varint(ts_ms))
    if value is None:
        out += field(4, 0, varint(9)) + field(7, 0, varint(1))  # datatype Float, is_null
    elif isinstance(value, bool):
        out += field(4, 0, varint(11)) + field(14, 0, varint(int(value)))
    elif isinstance(value, int):
        out += field(4, 0, varint(3)) + field(10, 0, varint(value & 0xFFFFFFFF))
    elif isinstance(value, float):
        out += field(4, 0, varint(9)) + field(12, 5, struct.pack("<f", value))
    else:
        out += field(4, 0, varint(12)) + field(15, 2, str(value).encode())
    if quality is not Quality.GOOD:
        prop = field(1, 2, b"Quality") + field(2, 2, field(1, 0, varint(3)) + field(3, 0, varint(
            list(Quality).index(quality))))
        out += field(8, 2, prop)
    return field(2, 2, out)


def sparkplug(readings) -> int:
    """DDATA payload bytes of every reading: timestamp, seq and one metric per signal."""
    total = 0
    for seq, (_, r) in enumerate(readings):
        ts = epoch_ms(r.ts)
        body = field(1, 0, varint(ts)) + field(3, 0, varint(seq % 256))
        for i, value in enumerate(r.values):
            at = epoch_ms(r.time(i))
            body += metric(i, value, r.quality(i), None if at == ts else at)
        total += len(body)
    return total


def decimal(value):
    """What a decoder writing decimal values would give: a float32's shortest repr, no binary artifacts of
    scaling (474 * 0.1 = 47.400000000000006 → 47.4)."""
    if type(value) is not float or isnan(value):
        return value
    as32 = struct.unpack("<f", struct.pack("<f", value))[0] if abs(value) < 3.4e38 else None
    digits = 9 if as32 == value else 12
    for n in range(1, digits):
        short = float(f"{value:.{n}g}")
        if (struct.unpack("<f", struct.pack("<f", short))[0] if as32 == value else short) == value:
            return short
    return float(f"{value:.{digits}g}")


def what_if(readings, times: bool, decimals: bool):
    """The same readings with every sample at the poll's ts (``times`` False) and/or decimal values."""
    out = []
    for device, r in readings:
        values = [decimal(v) for v in r.values] if decimals else r.values
        out.append((device, Reading(r.device, r.ts, r.poll_ms, schema=r.schema, values=values,
                                    qualities=r.qualities, times=r.times if times else None)))
    return out


async def main(args) -> None:
    readings = await poll_simulators(args.minutes, args.interval, args.seed)
    tags = sum(len(r.values) for _, r in readings)
    print(f"{len(readings)} readings, {tags} tags: {', '.join(KINDS)} polled every {args.interval:g} s for "
          f"{args.minutes:g} min of simulated time (stopped at 30 %, started at 60 %); report by exception: "
          f"max_silence {args.max_silence:g} s, deadband {args.deadband:g}")
    print(f"{'payload':<22}{'messages':>9}{'B/tag payload':>15}{'B/tag on the wire':>19}{'µs/message':>12}")
    for payload, rbe in VARIANTS:
        m = measure(readings, payload, rbe, args)
        name = payload + (" + RBE" if rbe else "")
        print(f"{name:<22}{m['messages']:>9}{m['payload'] / tags:>15.2f}{m['wire'] / tags:>19.2f}{m['us']:>12.1f}")
    for label, times, decimals in (("compact, no times", False, False), ("compact, decimals", True, True),
                                   ("compact, both", False, True)):
        m = measure(what_if(readings, times, decimals), "compact", False, args)
        print(f"{label:<22}{m['messages']:>9}{m['payload'] / tags:>15.2f}{m['wire'] / tags:>19.2f}{m['us']:>12.1f}")
    print(f"{'Sparkplug B (estimate)':<22}{len(readings):>9}{sparkplug(readings) / tags:>15.2f}"
          f"{'':>19}{'':>12}  (DDATA by alias, Float values, per-metric timestamps)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=float, default=1.0, help="simulated seconds between polls")
    parser.add_argument("--max-silence", type=float, default=25)
    parser.add_argument("--deadband", type=float, default=0.0, help="absolute, every signal")
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
