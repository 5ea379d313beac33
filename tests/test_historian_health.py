"""Health in the historian: per-device poll health (device_health) and the other sinks' counters in
gateway_health (mqtt_*), read back from a real influxd, with a real Mosquitto for the MQTT counters."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from gateway.core.device import DeviceConfig
from gateway.config import Area, BufferConfig, HistorianConfig, Site, SiteConfig
from gateway.historian.device_health import DeviceHealth
from gateway.historian.lineprotocol import device_health_line
from gateway.historian.sink import HistorianSink
from gateway.contract import GatewayHealth
from gateway.core.model import Quality, Reading, Sample
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from simulators.site import SiteSimulator
from tests import sites
from tests.util import until

SITE = SiteConfig(site=Site(id="mine-1", gateway_id="gw-1"), areas=[Area(id="face-1", kind="longwall_face")])
T0 = datetime(2025, 3, 14, 6, 0, tzinfo=timezone.utc)


def reading(device: str, i: int, poll_ms: float, *qualities: Quality, derived: bool = False) -> Reading:
    """A reading with one sample per quality given (good when none)."""
    ts = T0 + timedelta(milliseconds=i)
    samples = [Sample(signal=f"s{n}", value=None if q in (Quality.BAD, Quality.COMM_FAIL) else 1.0, quality=q, ts=ts)
               for n, q in enumerate(qualities or (Quality.GOOD,))]
    return Reading(device=device, ts=ts, poll_ms=poll_ms, samples=samples, derived=derived)


def feed(add) -> None:
    """One interval's readings: shearer-1 three timed polls (one with a stale sample) and a derived reading;
    belt-1 a good poll and a failed one; cam-1 an event (poll_ms 0, not derived)."""
    g, cf = Quality.GOOD, Quality.COMM_FAIL
    add("face-1", reading("shearer-1", 1, 10.0, g, g))
    add("face-1", reading("shearer-1", 2, 20.0, g, Quality.STALE))
    add("face-1", reading("shearer-1", 3, 36.0, g, g))
    add("face-1", reading("shearer-1", 3, 0.0, g, g, derived=True))  # e.g. the equipment status: not a poll
    add("belt", reading("belt-1", 1, 5.0))
    add("belt", reading("belt-1", 2, 1000.0, cf, cf, cf))
    add("face-1", reading("cam-1", 1, 0.0, g))


EXPECTED = {
    "shearer-1": {"area": "face-1", "polls": 3, "failed_polls": 0, "samples_not_good": 1, "poll_ms_mean": 22.0,
                  "poll_ms_max": 36.0},
    "belt-1": {"area": "belt", "polls": 2, "failed_polls": 1, "samples_not_good": 3, "poll_ms_mean": 502.5,
               "poll_ms_max": 1000.0},
    "cam-1": {"area": "face-1", "polls": 1, "failed_polls": 0, "samples_not_good": 0},  # no poll time to average
}


def test_device_health_accumulates_per_device_and_starts_over_at_each_take():
    acc = DeviceHealth()
    feed(acc.add)
    taken = {device: {"area": area, **fields} for area, device, fields in acc.take()}
    assert taken == EXPECTED
    assert all(type(taken[d][f]) is float for d in ("shearer-1", "belt-1") for f in ("poll_ms_mean", "poll_ms_max"))
    assert acc.take() == []  # nothing since
    acc.add("face-1", reading("shearer-1", 9, 4.0))
    assert acc.take() == [("face-1", "shearer-1", {"polls": 1, "failed_polls": 0, "samples_not_good": 0,
                                                    "poll_ms_mean": 4.0, "poll_ms_max": 4.0})]


def test_device_health_line():
    assert device_health_line("mine-1", "face-1", "shearer-1", {"polls": 3, "poll_ms_mean": 22.0}, T0) == (
        "device_health,site=mine-1,area=face-1,device=shearer-1 polls=3i,poll_ms_mean=22.0 1741932000000000000")


def historian(influx, database: str, tmp_path) -> HistorianConfig:
    return HistorianConfig(url=influx.url, database=influx.create_database(database), flush_interval=0.1,
                           buffer=BufferConfig(path=tmp_path / "buffer.sqlite3"))


def query(influx, q: str, db: str) -> list[dict]:
    try:
        return influx.query(q, db)
    except RuntimeError:  # the database is made by the first write
        return []


def field_types(influx, measurement: str, db: str) -> dict[str, str]:
    return {r["fieldKey"]: r["fieldType"] for r in influx.query(f'SHOW FIELD KEYS FROM "{measurement}"', db)}


async def test_device_health_points_per_device_per_health_tick(influxdb, tmp_path):
    db = f"devhealth_{uuid.uuid4().hex[:8]}"
    sink = HistorianSink(historian(influxdb, db, tmp_path), SITE, health_interval=0.3)
    await sink.start()
    try:
        feed(lambda area, r: sink.on_reading(DeviceConfig(id=r.device, adapter="shearer", area=area), r))
        rows = await until(lambda: len(r := query(influxdb, 'SELECT * FROM "device_health"', db)) == 3 and r)
        by_device = {r["device"]: r for r in rows}
        for device, expected in EXPECTED.items():
            row = by_device[device]
            assert row["site"] == "mine-1"
            assert {k: row[k] for k in expected} == expected, device
        assert by_device["cam-1"]["poll_ms_mean"] is None
        # stamped with the tick: the same time as the tick's gateway_health point
        ticks = {r["time"] for r in influxdb.query('SELECT "buffered" FROM "gateway_health"', db)}
        assert {r["time"] for r in rows} <= ticks and len({r["time"] for r in rows}) == 1

        latest = influxdb.query('SELECT last("poll_ms_mean") FROM "device_health" GROUP BY "device"', db)
        assert {r["device"]: r["last"] for r in latest} == {"shearer-1": 22.0, "belt-1": 502.5}

        # the next interval starts from nothing; a device without readings gets no point
        sink.on_reading(DeviceConfig(id="belt-1", adapter="belt_conveyor", area="belt"), reading("belt-1", 9, 7.0))
        second = await until(lambda: len(r := query(influxdb, 'SELECT * FROM "device_health"', db)) == 4 and r)
        assert [(r["device"], r["polls"], r["poll_ms_max"]) for r in second[3:]] == [("belt-1", 1, 7.0)]
        assert field_types(influxdb, "device_health", db) == {
            "polls": "integer", "failed_polls": "integer", "samples_not_good": "integer",
            "poll_ms_mean": "float", "poll_ms_max": "float"}
    finally:
        await sink.stop()


async def test_health_sources_go_into_gateway_health_with_their_prefix(influxdb, tmp_path, caplog):
    db = f"sources_{uuid.uuid4().hex[:8]}"
    sink = HistorianSink(historian(influxdb, db, tmp_path), SITE, health_interval=0.2)
    sink.add_health_source("mqtt", lambda: GatewayHealth(
        site="mine-1", gateway="gw-1", connected=True, published=5, delivered=4, rejected=0, dropped=0, queued=1,
        reconnects=2, ts=T0))
    sink.add_health_source("other", lambda: {"dropped": 3, "lag_s": 0.5, "name": "text is left out"})
    sink.add_health_source("broken", lambda: 1 / 0)  # logged; the others are written all the same
    with pytest.raises(ValueError):
        sink.add_health_source("bad\nprefix", dict)
    await sink.start()
    try:
        [row] = await until(lambda: query(influxdb, 'SELECT * FROM "gateway_health" LIMIT 1', db))
    finally:
        await sink.stop()
    assert {k: v for k, v in row.items() if k.startswith(("mqtt_", "other_", "broken_"))} == {
        "mqtt_connected": True, "mqtt_published": 5, "mqtt_delivered": 4, "mqtt_rejected": 0, "mqtt_dropped": 0,
        "mqtt_queued": 1, "mqtt_reconnects": 2, "other_dropped": 3, "other_lag_s": 0.5}
    assert set(sink.health()) <= set(row)  # the historian's own counters, unprefixed
    assert (row["site"], row["gateway"]) == ("mine-1", "gw-1")
    assert "broken: ZeroDivisionError" in caplog.text


async def test_gateway_health_holds_the_mqtt_counters_and_device_health_counts_polls_only(
        mosquitto, influxdb, tmp_path):
    prefix = f"health-{uuid.uuid4().hex[:8]}"
    db = prefix.replace("-", "_")
    site = sites.make_site(sites.modbus("shearer-1", "shearer"), gateway_id="gw-1",
                           mqtt=sites.mqtt(mosquitto, prefix),
                           historian=sites.historian(influxdb, db, tmp_path / "b.sqlite3"))
    async with SiteSimulator(site, seed=2):
        async with Gateway(site, [MqttSink(site.mqtt, site), HistorianSink(site.historian, site,
                                                                          health_interval=0.5)]):
            def mqtt_counters():
                rows = query(influxdb, 'SELECT last("mqtt_published") AS published, last("mqtt_delivered") AS '
                                       'delivered, last("mqtt_connected") AS connected FROM "gateway_health"', db)
                return rows and rows[0]["published"] > 0 and rows[0]["delivered"] > 0 and rows[0]
            got = await until(mqtt_counters)
            assert got["connected"] is True
            await until(lambda: sum(r["polls"] for r in query(influxdb, 'SELECT "polls" FROM "device_health"', db))
                        >= 10)  # a few health ticks
    types = field_types(influxdb, "gateway_health", db)
    assert {k: v for k, v in types.items() if k.startswith("mqtt_")} == {
        "mqtt_connected": "boolean", "mqtt_published": "integer", "mqtt_delivered": "integer",
        "mqtt_rejected": "integer", "mqtt_dropped": "integer", "mqtt_queued": "integer",
        "mqtt_reconnects": "integer"}
    assert types["buffered"] == "integer" and types["connected"] == "boolean"  # the historian's own, as before
    [row] = influxdb.query('SELECT * FROM "gateway_health" GROUP BY "gateway" ORDER BY time DESC LIMIT 1', db)
    assert (row["site"], row["gateway"]) == ("s1", "gw-1")

    # What the stop left in the buffer goes out with the next start; then every poll is in InfluxDB once.
    drain = HistorianSink(site.historian, site)
    await drain.start()
    await until(lambda: drain.health()["depth"] == 0 and drain.written > 0)
    await drain.stop()
    polls = sum(r["polls"] for r in influxdb.query('SELECT "polls" FROM "device_health"', db))
    [readings] = influxdb.query('SELECT count("position") AS good, count("position__quality") AS other '
                                'FROM "shearer"', db)
    statuses = influxdb.query('SELECT count("status_code") FROM "shearer"', db)[0]["count"]
    assert statuses >= 1 and polls == readings["good"] + (readings["other"] or 0)  # derived readings not counted
    health = influxdb.query('SELECT "poll_ms_mean", "poll_ms_max", "failed_polls" FROM "device_health"', db)
    assert all(0 < r["poll_ms_mean"] <= r["poll_ms_max"] < 500 and r["failed_polls"] == 0 for r in health)
