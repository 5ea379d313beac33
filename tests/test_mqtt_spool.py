"""The MQTT sink's spool (``mqtt.spool``): data the broker has not acknowledged is kept on disk.

Real Mosquitto brokers, a real SQLite file, a gateway process killed with SIGKILL; no mocks.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.config import ConfigError, parse_site
from gateway.historian.sink import buffer_status
from gateway.contract import DataMessage, Topics
from gateway.core.model import Reading, Sample, utcnow
from gateway.mqtt import MqttSink
from gateway.runtime import DropWatch
from tests.mqtt_util import MqttCollector, Received, TcpProxy
from tests.test_mqtt import REPO, make_site, payloads, seqs, until


def stamped(device: str, seq: int, t0: datetime, blob: str = "") -> Reading:
    """Reading ``seq`` of a run, its ts ``seq`` ms after ``t0``: (device, ts) identifies it, as consumers dedupe."""
    ts = t0 + timedelta(milliseconds=seq)
    samples = [Sample(signal="seq", value=seq, ts=ts), Sample(signal="motor_current", value=182.4, unit="A", ts=ts)]
    if blob:
        samples.append(Sample(signal="blob", value=blob, ts=ts))
    return Reading(device=device, ts=ts, poll_ms=3.0, samples=samples)


def keys(messages: list[Received], topic: str) -> list[tuple[str, datetime]]:
    return [(d.device, d.ts) for d in payloads(messages, topic, DataMessage)]


def spool_site(broker, path: Path, **spool):
    return make_site(broker, spool={"path": str(path), **spool})


def depth(path: Path) -> int:
    return buffer_status(path)["depth"]


SPOOLING_GATEWAY = """
import asyncio, json, sys
from gateway.config import parse_site
from gateway.core.model import utcnow
from gateway.mqtt import MqttSink
from tests.test_mqtt_spool import stamped
async def main():
    site = parse_site(json.loads(sys.argv[1]))
    sink = MqttSink(site.mqtt, site)
    await sink.start()
    t0 = utcnow()
    for seq in range(int(sys.argv[2])):
        sink.on_reading(site.devices[0], stamped("shearer-1", seq, t0))
    print("published", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


async def test_a_gateway_killed_during_an_outage_loses_nothing_it_spooled(fresh_mosquitto, tmp_path):
    """Exactly once here: nothing was sent before the kill. In general at least once (see docs/mqtt.md)."""
    broker, count = fresh_mosquitto, 300
    path = tmp_path / "mqtt-spool.sqlite3"
    site = spool_site(broker, path)
    data_topic = Topics(site.mqtt.topic_prefix, "pit-7").data("face-1201", "shearer-1")
    live = MqttCollector(broker.host, broker.port, data_topic, persistent=True, client_id="spool-kill-test")
    broker.stop()
    gateway = subprocess.Popen([sys.executable, "-c", SPOOLING_GATEWAY, site.model_dump_json(), str(count)],
                               env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE)
    try:
        assert gateway.stdout.readline() == b"published\n"
        await until(lambda: path.exists() and depth(path) == count, timeout=5)  # committed: ~100 ms
        gateway.kill()  # SIGKILL: no stop(), no final commit
        gateway.wait()
    finally:
        gateway.kill()
        gateway.wait()
        gateway.stdout.close()

    broker.start()
    sink = MqttSink(site.mqtt, site)  # a new gateway process, the same spool file
    await sink.start()
    try:
        got = await live.until(lambda ms: (k := keys(ms, data_topic)) and len(set(k)) == count and k, timeout=10)
        assert len(got) == count  # no duplicates
        assert seqs(live.messages, data_topic) == list(range(count))  # back-fill: oldest first
        health = await until(lambda: (h := sink.health()).queued == 0 and h)
        assert (health.delivered, health.dropped) == (count + 1, 0)  # + the birth
    finally:
        await sink.stop()
        live.close()
    assert depth(path) == 0


async def test_spool_budget_overflow_is_counted_in_dropped(fresh_mosquitto, tmp_path, caplog):
    broker, count = fresh_mosquitto, 400
    path = tmp_path / "mqtt-spool.sqlite3"
    site = spool_site(broker, path, max_bytes=1_000_000)  # the smallest budget allowed: ~280 of these messages
    shearer = site.devices[0]
    data_topic = Topics(site.mqtt.topic_prefix, "pit-7").data("face-1201", "shearer-1")
    live = MqttCollector(broker.host, broker.port, data_topic, persistent=True, client_id="spool-budget-test")
    broker.stop()
    sink = MqttSink(site.mqtt, site)
    await sink.start()
    watch = DropWatch(sink, quiet_to_clear=60)
    try:
        t0 = utcnow()
        for seq in range(count):  # random text: ~3.6 KB a message on disk, compressed
            sink.on_reading(shearer, stamped("shearer-1", seq, t0, blob=secrets.token_hex(3500)))
            if seq % 50 == 49:
                await asyncio.sleep(0.15)  # several commits, as a long outage makes them
        health = await until(lambda: (h := sink.health()).queued + h.dropped == count and h.dropped and h, timeout=5)
        assert 100 < health.dropped < 300 and depth(path) == health.queued  # nothing lost silently
        alarm = watch.check(time.monotonic())
        assert alarm.active and alarm.id == "mqtt-dropping" and alarm.count == health.dropped
        assert any("MQTT spool: dropped" in r.getMessage() for r in caplog.records)

        broker.start()
        kept = count - health.dropped
        assert await live.until(lambda ms: seqs(ms, data_topic) == list(range(health.dropped, count)), timeout=10)
        assert (await until(lambda: (h := sink.health()).queued == 0 and h)).dropped == health.dropped
        assert kept == len(live.messages)
    finally:
        await sink.stop()
        live.close()


async def test_with_the_broker_up_data_does_not_touch_the_spool(mosquitto, tmp_path):
    path = tmp_path / "mqtt-spool.sqlite3"
    site = spool_site(mosquitto, path)
    shearer = site.devices[0]
    data_topic = Topics(site.mqtt.topic_prefix, "pit-7").data("face-1201", "shearer-1")
    with MqttCollector(mosquitto.host, mosquitto.port, data_topic) as live:
        sink = MqttSink(site.mqtt, site)
        await sink.start()
        try:
            await until(lambda: sink.health().connected)
            t0 = utcnow()
            for seq in range(500):  # a burst, below SPOOL_AFTER
                sink.on_reading(shearer, stamped("shearer-1", seq, t0))
            assert await live.until(lambda ms: seqs(ms, data_topic) == list(range(500)))
            assert buffer_status(path)["in_per_s"] == 0  # not one row was put
        finally:
            await sink.stop()


async def test_messages_in_flight_when_the_connection_drops_go_through_the_spool(mosquitto, tmp_path, caplog):
    proxy = TcpProxy(mosquitto.host, mosquitto.port)
    path = tmp_path / "mqtt-spool.sqlite3"
    site = make_site(mosquitto, port=proxy.port, spool={"path": str(path)})
    shearer = site.devices[0]
    data_topic = Topics(site.mqtt.topic_prefix, "pit-7").data("face-1201", "shearer-1")
    live = MqttCollector(mosquitto.host, mosquitto.port, data_topic)  # not through the proxy
    sink = MqttSink(site.mqtt, site)
    await sink.start()
    try:
        await until(lambda: sink.health().connected)
        t0 = utcnow()
        sink.on_reading(shearer, stamped("shearer-1", 0, t0))
        await live.until(lambda ms: seqs(ms, data_topic) == [0])
        proxy.blackhole = True  # no PUBACK comes back: 1-3 stay in flight
        for seq in (1, 2, 3):
            sink.on_reading(shearer, stamped("shearer-1", seq, t0))
        await asyncio.sleep(0.3)
        assert sink.health().queued == 3 and depth(path) == 0  # sent at once, not spooled
        proxy.blackhole = False
        proxy.cut()
        assert await live.until(lambda ms: seqs(ms, data_topic) == [0, 1, 2, 3], timeout=5)
        health = await until(lambda: (h := sink.health()).queued == 0 and h)
        assert (health.reconnects, health.dropped) == (1, 0)
        assert buffer_status(path)["in_per_s"] > 0  # through the file,
        await until(lambda: depth(path) == 0)  # and out of it once acknowledged
    finally:
        await sink.stop()
        live.close()
        proxy.close()


async def test_a_broker_too_slow_sends_data_to_the_spool(mosquitto, tmp_path):
    proxy = TcpProxy(mosquitto.host, mosquitto.port)
    path = tmp_path / "mqtt-spool.sqlite3"
    site = make_site(mosquitto, port=proxy.port, queue_limit=50, spool={"path": str(path)})  # spool beyond 50
    shearer = site.devices[0]
    data_topic = Topics(site.mqtt.topic_prefix, "pit-7").data("face-1201", "shearer-1")
    live = MqttCollector(mosquitto.host, mosquitto.port, data_topic)
    sink = MqttSink(site.mqtt, site)
    await sink.start()
    try:
        await until(lambda: sink.health().connected)
        proxy.blackhole = True  # connected, but nothing is acknowledged: the window fills, then memory
        t0 = utcnow()
        for seq in range(100):
            sink.on_reading(shearer, stamped("shearer-1", seq, t0))
        await until(lambda: depth(path) > 0)
        assert sink.health().queued == 100 and sink.health().connected
        proxy.blackhole = False
        proxy.cut()  # what was in memory and in flight goes to the file too, then all of it out again
        assert await live.until(lambda ms: sorted(seqs(ms, data_topic)) == list(range(100)), timeout=5)
        assert sink.health().dropped == 0
        await until(lambda: depth(path) == 0)
    finally:
        await sink.stop()
        live.close()
        proxy.close()


def test_the_spool_cannot_be_the_historian_buffer(tmp_path):
    path = tmp_path / "shared.sqlite3"
    data = spool_site(SimpleNamespace(host="127.0.0.1", port=1883), path).model_dump(mode="json")
    data["mqtt"]["password"] = None
    data["historian"] = {"buffer": {"path": str(path)}}
    with pytest.raises(ConfigError, match="mqtt.spool.path: .* is the historian's buffer file"):
        parse_site(data)
