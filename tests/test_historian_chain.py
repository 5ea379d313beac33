"""Issue 22, the shipped default end to end: a gateway with ``historian.api: mqtt`` (no InfluxDB account) →
real Mosquitto → ``minegw ingest`` (the only InfluxDB writer, ``writers:`` naming the gateway's areas) →
real InfluxDB. What the dashboards read arrives: readings, device states, device alarm events, the
gateway's status; nothing the worker refused."""
from __future__ import annotations

from gateway.historian.sink import HistorianSink
from gateway.runtime import Gateway
from gateway.surface.ingest import IngestWorker, parse_ingest
from simulators.site import SiteSimulator
from tests.test_historian_mqtt import site_for
from tests.util import until
from tests.sites import modbus


def ingest_for(site, mosquitto, influxdb, tmp_path) -> IngestWorker:
    prefix = site.mqtt.topic_prefix
    return IngestWorker(parse_ingest({
        "ingest": {"id": prefix, "group": prefix, "session_expiry": 60},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "protocol": "5", "topic_prefix": prefix, "qos": 1},
        "historian": {"url": influxdb.url, "database": influxdb.create_database(prefix.replace("-", "_")),
                      "flush_interval": 0.1, "buffer": {"path": str(tmp_path / "ingest.sqlite3")}},
        "writers": {site.site.id: {site.site.gateway_id: {"areas": ["face"], "rings": []}}}}))


async def test_a_gateways_complete_record_reaches_influxdb_through_ingest_alone(mosquitto, influxdb, tmp_path):
    site = site_for(mosquitto, tmp_path, modbus("shearer-1", "shearer"),
                    alarms=[{"id": "ch4", "device": "shearer-1", "signal": "methane", "kind": "methane",
                             "location": "machine"}])
    assert site.historian.api == "mqtt" and site.historian.username is None  # no InfluxDB account on the gateway
    worker = ingest_for(site, mosquitto, influxdb, tmp_path)
    db = worker.cfg.historian.database

    def count(measurement: str, where: str = "") -> int:
        rows = influxdb.query(f'SELECT count(*) FROM "{measurement}" WHERE "site" = \'s1\' {where}', db)
        return max((v for row in rows for k, v in row.items() if k.startswith("count_") and v), default=0)

    await worker.start()
    try:
        await until(worker.subscribed.is_set, what="the worker's SUBACK")
        async with (SiteSimulator(site, seed=3) as sims,
                    Gateway(site, [HistorianSink(site.historian, site, health_interval=0.3)])):
            await until(lambda: count("shearer") >= 3, timeout=30, what="readings in InfluxDB")
            sims.simulator("shearer-1").set_fault("out_of_range", signal="methane", value=4.4)
            await until(lambda: count("alarm_event", "AND \"alarm\" = 'ch4'") >= 1, timeout=30,
                        what="the methane alarm event in InfluxDB")
        await until(lambda: count("device_state") >= 1 and count("gateway_status") >= 1, timeout=20,
                    what="device state and gateway status")
    finally:
        await worker.stop()
    health = worker.health()
    assert health["historian_lines"] > 0 and health["refused_lines"] == 0 and health["refused"] == 0
