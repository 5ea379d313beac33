"""The historian sink against a real influxd 1.x: buffer, outage and back-fill, dead letters, replay."""
from __future__ import annotations

import asyncio
import base64
import errno
import json
import logging
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.core.device import DeviceConfig
from gateway.commands import AuditEntry
from gateway.config import Area, BufferConfig, HistorianConfig, Site, SiteConfig, parse_site
from gateway.buffer import DurableBuffer
from gateway.historian.influx import InfluxV1Writer
from gateway.historian.sink import HistorianSink, list_dead, replay_dead
from gateway.contract import DataMessage
from gateway.core.model import DeviceState, DeviceStatus, GatewayAlarm, Reading, Sample
from simulators.site import SiteSimulator
from tests.mqtt_util import MqttCollector
from tests.util import free_port, until

REPO = Path(__file__).resolve().parent.parent
SITE = SiteConfig(site=Site(id="mine-1"), areas=[Area(id="face-1", kind="longwall_face")])
T0 = datetime(2025, 3, 14, 6, 0, tzinfo=timezone.utc)


def device(device_id: str, kind: str = "shearer") -> DeviceConfig:
    return DeviceConfig(id=device_id, adapter=kind, area="face-1")


def reading(device_id: str, i: int, value=None, signal: str = "speed") -> Reading:
    ts = T0 + timedelta(milliseconds=i)
    return Reading(device=device_id, ts=ts, poll_ms=1.0,
                   samples=[Sample(signal=signal, value=float(i) if value is None else value, ts=ts)])


def historian(influx, database: str, tmp_path, **settings) -> HistorianConfig:
    return HistorianConfig(url=influx.url, database=influx.create_database(database),
                           buffer=BufferConfig(path=tmp_path / "buffer.sqlite3"), **settings)


class RecordingWriter(InfluxV1Writer):
    """The real v1 writer; also notes, in order, the lines of every write InfluxDB accepted."""

    def __init__(self, cfg: HistorianConfig):
        super().__init__(cfg)
        self.landed: list[str] = []

    async def write(self, lines: list[str]) -> None:
        await super().write(lines)
        self.landed += lines


def counts(influx, database: str, measurement: str, field: str) -> dict[str, int]:
    rows = influx.query(f'SELECT count("{field}") FROM "{measurement}" GROUP BY device', database)
    return {row["device"]: row["count"] for row in rows}


async def test_outage_backfills_exactly_once_with_live_data_first(make_influx, tmp_path, monkeypatch):
    monkeypatch.setattr(HistorianSink, "BACKOFF_S", (0.05, 0.3))  # a test cannot wait a minute
    influx = make_influx()
    cfg = historian(influx, "outage", tmp_path, batch_lines=500, flush_interval=0.1)
    writer = RecordingWriter(cfg)
    sink = HistorianSink(cfg, SITE, writer)
    shearers = [device(f"shearer-{n}") for n in range(4)]
    live = device("live-1")
    await sink.start()
    try:
        for i in range(100):
            for d in shearers:
                sink.on_reading(d, reading(d.id, i))
        await until(lambda: sink.health()["written"] >= 400)

        influx.stop()
        for i in range(100, 5100):  # 20 000 points while InfluxDB is away
            for d in shearers:
                sink.on_reading(d, reading(d.id, i))
        await until(lambda: sink.health()["buffered"] >= 20_400 and sink.health()["retries"] >= 2)
        assert not sink.health()["connected"] and sink.health()["depth"] >= 20_000

        influx.start()
        fed = 0
        while fed < 5 or sink.health()["depth"] > 0:  # live data keeps coming while the back-fill drains
            sink.on_reading(live, reading(live.id, fed))
            fed += 1
            await asyncio.sleep(0.01)
        await until(lambda: counts(influx, "outage", "shearer", "speed").get(live.id) == fed)
    finally:
        await sink.stop()

    assert counts(influx, "outage", "shearer", "speed") == {**{d.id: 5100 for d in shearers}, live.id: fed}
    landed = [line for line in writer.landed if line.startswith("shearer,")]
    assert set(Counter(landed).values()) == {1}  # each point written once: acks are exact
    first_live = next(i for i, line in enumerate(landed) if "device=live-1" in line)
    last_backlog = max(i for i, line in enumerate(landed) if "device=shearer" in line)
    assert first_live < last_backlog / 4, "live data waited for the back-fill"
    health = sink.health()
    assert health["connected"] and health["retries"] >= 2 and health["dropped"] == 0


async def test_refused_line_is_dead_lettered_good_lines_land_and_replay_after_fix(influxdb, tmp_path):
    cfg = historian(influxdb, "poison", tmp_path, batch_lines=200, flush_interval=0.2)
    sink = HistorianSink(cfg, SITE, health_interval=0.2)
    shearer, gas = device("shearer-1"), device("gas-1", "gas_monitor")
    await sink.start()
    try:
        sink.on_reading(gas, reading(gas.id, 0, "n/a", signal="ch4"))  # a misconfigured profile wrote text
        await until(lambda: sink.health()["written"] >= 1)

        for i in range(1, 81):  # one batch: 80 good lines around one the server refuses (ch4 is text there)
            sink.on_reading(shearer, reading(shearer.id, i))
            if i == 40:
                sink.on_reading(gas, reading(gas.id, i, 0.5, signal="ch4"))
        await until(lambda: sink.health()["dead_lettered"] == 1 and sink.health()["depth"] == 0)
        assert counts(influxdb, "poison", "shearer", "speed") == {shearer.id: 80}  # bisected: the good ones landed
        [dead] = list_dead(cfg.buffer.path)
        assert "ch4=0.5" in dead["line"] and "field type conflict" in dead["error"]

        for i in range(81, 91):  # later batches flow
            sink.on_reading(shearer, reading(shearer.id, i))
        sink.on_state(shearer, DeviceState(device=shearer.id, status=DeviceStatus.ONLINE, reason="polling", since=T0))
        await until(lambda: counts(influxdb, "poison", "shearer", "speed") == {shearer.id: 90})
        await until(lambda: counts(influxdb, "poison", "device_state", "status") == {shearer.id: 1})

        influxdb.query('DROP MEASUREMENT "gas_monitor"', "poison")  # the fix: remove the mistyped data
        assert replay_dead(cfg.buffer.path) == 1
        await until(lambda: counts(influxdb, "poison", "gas_monitor", "ch4") == {gas.id: 1})
        assert influxdb.query('SELECT "ch4" FROM "gas_monitor"', "poison")[0]["ch4"] == 0.5
        assert influxdb.query('SELECT count("depth") FROM "gateway_health"', "poison")[0]["count"] > 0
    finally:
        await sink.stop()
    assert list_dead(cfg.buffer.path) == [] and sink.health()["dead_letters"] == 0




async def test_full_buffer_drops_readings_but_keeps_the_audit_and_alarms_of_an_outage(make_influx, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setattr(HistorianSink, "BACKOFF_S", (0.05, 0.3))
    influx = make_influx()
    cfg = historian(influx, "full", tmp_path, batch_lines=1000, flush_interval=0.1)
    cfg.buffer.max_bytes = 1_000_000
    sink = HistorianSink(cfg, SITE)
    shearer = device("shearer-1")
    noise = lambda: base64.b64encode(os.urandom(400)).decode()  # noqa: E731 - lines that do not compress
    await sink.start()
    try:
        influx.stop()
        sink.on_command_audit(AuditEntry(request_id="r-1", device=shearer.id, signal="run_command", value=False,
                                         by="dispatcher", reason="outage drill", source="mqtt", ok=True,
                                         error=None, ts=T0))
        for i in range(2000):
            sink.on_reading(shearer, reading(shearer.id, i, noise(), signal="note"))
        await until(lambda: sink.health()["buffered"] >= 2001)
        for i in range(2000, 6000):  # the budget holds ~2500: the oldest readings go, the audit stays
            sink.on_reading(shearer, reading(shearer.id, i, noise(), signal="note"))
            if i == 3000:
                await until(lambda: sink.health()["dropped"] > 0)
                sink.on_alarm(GatewayAlarm(id="historian-dropping", active=True, count=1, message="dropping"))
            if i % 500 == 0:  # commit by commit, as a gateway would
                await until(lambda: sink.health()["buffered"] >= i + 2)
        await until(lambda: sink.health()["buffered"] >= 6002)
        await until(lambda: sink.health()["dropped"] > 2000)  # health: as of the last drain step

        influx.start()
        await until(lambda: sink.health()["depth"] == 0, timeout=30)
    finally:
        await sink.stop()
    audit = influx.query('SELECT "request_id", "by" FROM "command_audit"', "full")
    assert [(row["request_id"], row["by"]) for row in audit] == [("r-1", "dispatcher")]
    alarms = influx.query('SELECT "active", "alarm" FROM "gateway_alarm"', "full")
    assert [(row["alarm"], row["active"]) for row in alarms] == [("historian-dropping", True)]
    kept = counts(influx, "full", "shearer", "note")[shearer.id]
    assert 0 < kept < 3000  # the newest readings, within the budget


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 8 MB (tmpfs), to fill up: needs root, skipped otherwise."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk) -> None:
    with open(disk / "filler", "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


async def test_full_disk_raises_unwritable_at_once_logs_the_cause_and_retries_flat(influxdb, small_disk, monkeypatch,
                                                                                   caplog):
    tried: list[int] = []  # lines per commit attempt: the retry cost
    put = DurableBuffer.put

    def counting_put(self, rows, events=()):
        tried.append(len(rows) + len(events))
        return put(self, rows, events)

    monkeypatch.setattr(DurableBuffer, "put", counting_put)
    cfg = HistorianConfig(url=influxdb.url, database=influxdb.create_database("fulldisk"), flush_interval=0.1,
                          buffer=BufferConfig(path=small_disk / "buffer.sqlite3"))
    sink = HistorianSink(cfg, SITE)
    alarms: list[GatewayAlarm] = []
    sink.set_alarm_handler(alarms.append)
    shearer = device("shearer-1")
    noise = lambda: base64.b64encode(os.urandom(300)).decode()  # noqa: E731
    await sink.start()
    try:
        fill(small_disk)
        with caplog.at_level(logging.WARNING):
            for i in range(4000):
                sink.on_reading(shearer, reading(shearer.id, i, noise(), signal="note"))
                if i % 400 == 0:
                    await asyncio.sleep(0.15)  # a commit or two
            await until(lambda: alarms)
            assert alarms[0].id == "historian-buffer-unwritable" and alarms[0].active
            assert "disk is full" in alarms[0].message
            failures = len(tried)
            await until(lambda: len(tried) >= failures + 5)  # more retries, with every line waiting
        refusals = [r for r in caplog.records if "cannot write the buffer file" in r.getMessage()]
        assert refusals and all(r.levelno == logging.ERROR and "disk is full" in r.getMessage() for r in refusals)
        assert "cannot rollback" not in caplog.text
        assert max(tried[failures:]) <= HistorianSink.PROBE_LINES < 4000 - sink.health()["buffered"]

        (small_disk / "filler").unlink()
        await until(lambda: len(alarms) == 2)
        assert alarms[1].id == "historian-buffer-unwritable" and not alarms[1].active
        await until(lambda: counts(influxdb, "fulldisk", "shearer", "note") == {shearer.id: 4000})
    finally:
        await sink.stop()
    assert sink.health()["dropped"] == 0


async def test_after_an_outage_the_first_write_goes_once_ping_answers_not_after_the_backoff(make_influx, tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setattr(HistorianSink, "BACKOFF_S", (120.0, 120.0))  # a backoff far longer than this test's patience
    influx = make_influx()
    cfg = historian(influx, "probe", tmp_path, flush_interval=0.1)
    sink = HistorianSink(cfg, SITE)
    shearer = device("shearer-1")
    await sink.start()
    try:
        await until(lambda: sink.health()["written"] >= 1)  # the gateway's "started" status: not in flight at the stop
        influx.stop()
        for i in range(50):
            sink.on_reading(shearer, reading(shearer.id, i))
        await until(lambda: sink.health()["retries"] >= 1)  # the write failed: backing off
        influx.start()
        await until(lambda: sink.health()["depth"] == 0 and sink.health()["written"] >= 50, timeout=20)
    finally:
        await sink.stop()
    assert counts(influx, "probe", "shearer", "speed") == {shearer.id: 50}
    assert sink.health()["retries"] == 1  # no write was tried before the server answered


def kill_test_site(mosquitto, influxdb, tmp_path, prefix: str) -> dict:
    devices = [{"id": device_id, "adapter": "modbus", "area": "face-1", "profile": profile, "host": "127.0.0.1",
                "port": free_port(), "poll_interval": 0.05, "timeout": 0.5}
               for device_id, profile in (("shearer-1", "shearer"), ("belt-1", "belt_conveyor"))]
    return {
        "site": {"id": "kill-mine"}, "areas": [{"id": "face-1", "kind": "longwall_face"}], "devices": devices,
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "topic_prefix": prefix},
        "historian": {"url": influxdb.url, "database": influxdb.create_database(prefix), "flush_interval": 0.1,
                      "buffer": {"path": str(tmp_path / "buffer.sqlite3")}},
    }


def influx_polls(influxdb, db: str) -> set[tuple[str, int]]:
    """(device, poll time in ms) of every reading point in InfluxDB."""
    rows = influxdb.query('SELECT * FROM "shearer", "belt_conveyor"', db)
    return {(row["device"], row["time"] // 1_000_000) for row in rows}


async def test_after_kill_9_every_reading_seen_on_mqtt_is_in_influxdb(mosquitto, influxdb, tmp_path):
    prefix = f"kill{os.getpid()}{random.randrange(1 << 16)}"
    site_yaml = tmp_path / "site.yaml"
    site = kill_test_site(mosquitto, influxdb, tmp_path, prefix)
    site_yaml.write_text(json.dumps(site))  # JSON is YAML
    seen: set[tuple[str, int]] = set()
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def minegw_run() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", str(site_yaml)], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def unique_polls(messages) -> int:
        return len({(m.topic, json.loads(m.payload)["ts"]) for m in messages})

    def on_mqtt(messages) -> int:
        for m in messages:
            data = DataMessage.model_validate_json(m.payload)
            seen.add((data.device, int(data.ts.timestamp() * 1000)))
        return len(messages)

    async with SiteSimulator(parse_site(site), seed=3):
        with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/+/+/+/data") as sub:
            for _ in range(4):  # kill -9 at random moments, each after data flowed
                gateway = minegw_run()
                try:
                    before = unique_polls(sub.messages)  # QoS 1: a message may come twice
                    await sub.until(lambda ms: unique_polls(ms) >= before + 20, timeout=20)
                    await asyncio.sleep(random.uniform(0.0, 0.5))
                finally:
                    gateway.send_signal(signal.SIGKILL)
                    gateway.wait()
            await asyncio.sleep(0.5)  # the last messages the broker had reach the subscriber
            on_mqtt(sub.messages)
            gateway = minegw_run()  # drains the buffer to InfluxDB
            try:
                await until(lambda: seen <= influx_polls(influxdb, prefix), timeout=30)
            except AssertionError:
                missing = sorted(seen - influx_polls(influxdb, prefix))
                raise AssertionError(f"{len(missing)} of {len(seen)} readings seen on MQTT are not in InfluxDB: "
                                     f"{missing[:5]}") from None
            finally:
                gateway.send_signal(signal.SIGTERM)
                gateway.wait(timeout=30)
    assert len(seen) >= 80
