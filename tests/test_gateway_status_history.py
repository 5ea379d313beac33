"""Gateway and uplink status reach the historian (issue 20): the gateway's own sink writes ``gateway_status``
at start and stop; surface ingest writes the gateways' birth / last will (``gateway_status``) and the
bridges' notifications (``uplink_status``). Real InfluxDB 1.x and Mosquitto."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dashboards
from dashboards import common
from gateway.config import Area, BufferConfig, HistorianConfig, Site, SiteConfig
from gateway.contract import GatewayStatus
from gateway.historian.sink import HistorianSink
from gateway.surface.convert import Converter, Refused
from tests.dashboard_site import drain
from tests.grafana_util import InfluxQuery, Variables, panel_queries
from tests.test_ingest_compact import publish, worker
from tests.util import until

T0 = datetime.now(timezone.utc).replace(microsecond=0)
SITE = SiteConfig(site=Site(id="mine-1", gateway_id="gw-7"), areas=[Area(id="face-1", kind="longwall_face")])


async def test_the_gateway_sink_writes_up_at_start_heartbeats_and_down_at_stop(influxdb, tmp_path):
    cfg = HistorianConfig(url=influxdb.url, database=influxdb.create_database("gwstatus"),
                          buffer=BufferConfig(path=tmp_path / "buffer.sqlite3"))
    changes = 'SELECT "up", "status", "reason" FROM "gateway_status" WHERE "status" =~ /./ GROUP BY "site", "gateway"'
    sink = HistorianSink(cfg, SITE)
    sink.health_interval = 0.2
    await sink.start()
    await until(lambda: influxdb.query('SELECT "heartbeat" FROM "gateway_status"', "gwstatus"), what="a heartbeat")
    await sink.stop()  # the stop's lines wait in the buffer: the next start drains them
    again = HistorianSink(cfg, SITE)
    await again.start()
    await until(lambda: len(influxdb.query(changes, "gwstatus")) == 3, what="stop, start")
    await again.stop()
    rows = influxdb.query(changes, "gwstatus")
    assert [(r["site"], r["gateway"], r["up"], r["status"], r["reason"]) for r in rows] == [
        ("mine-1", "gw-7", 1, "online", "started"), ("mine-1", "gw-7", 0, "offline", "stopped"),
        ("mine-1", "gw-7", 1, "online", "started")]
    beats = influxdb.query('SELECT "up", "heartbeat" FROM "gateway_status" WHERE "heartbeat" = 1', "gwstatus")
    assert beats and all(b["up"] == 1 for b in beats)


def status_message(prefix: str, gateway: str, online: bool, reason: str, ts: datetime) -> tuple[str, bytes]:
    msg = GatewayStatus(site="mine-1", gateway=gateway, status="online" if online else "offline", reason=reason,
                        version="1", started=datetime(2025, 3, 14, 6, tzinfo=timezone.utc), devices=["a"],
                        ts=ts)
    return f"{prefix}/mine-1/gateway/{gateway}/status", msg.model_dump_json().encode()


async def test_ingest_writes_gateway_and_uplink_status(mosquitto, influxdb, tmp_path):
    prefix = "gwst"
    w = worker(mosquitto, influxdb, tmp_path, prefix)
    await w.start()
    try:
        await until(w.subscribed.is_set, what="SUBACK")
        publish(mosquitto.port, [status_message(prefix, "gw-1", True, "connected", T0),
                                 (f"{prefix}/mine-1/bridge/district-2", b"1"),
                                 status_message(prefix, "gw-1", False, "connection lost", T0 + timedelta(seconds=1)),
                                 (f"{prefix}/mine-1/bridge/district-2", b"0")])
        await until(lambda: len(influxdb.query('SELECT * FROM "gateway_status"', prefix)) == 2
                    and len(influxdb.query('SELECT * FROM "uplink_status"', prefix)) == 2,
                    what="both statuses")
    finally:
        await w.stop()
    gateways = influxdb.query('SELECT "up", "reason" FROM "gateway_status" GROUP BY "gateway"', prefix)
    assert [(r["gateway"], r["up"], r["reason"]) for r in gateways] == [("gw-1", 1, "connected"),
                                                                       ("gw-1", 0, "connection lost")]
    uplinks = influxdb.query('SELECT "up" FROM "uplink_status" GROUP BY "district"', prefix)
    assert [(r["district"], r["up"]) for r in uplinks] == [("district-2", 1), ("district-2", 0)]
    assert w.health()["refused"] == 0
    assert not influxdb.query('SELECT * FROM "gateway_status" WHERE "gateway" = \'gwst\'', prefix)  # not a gateway


def test_bad_status_messages_are_refused_where_they_are_wrong():
    convert = Converter("mg")
    topic, payload = status_message("mg", "gw-1", True, "connected", T0)
    for bad_topic, bad_payload, reason in ((topic.replace("gw-1", "gw-2"), payload, "mismatch"),
                                           (topic, b"{}", "invalid"),
                                           ("mg/mine-1/bridge/d-1", b"up", "invalid"),
                                           ("mg/mine-1/bridge/d 1", b"1", "topic")):
        try:
            convert.convert(bad_topic, bad_payload)
        except Refused as exc:
            assert exc.reason == reason, (bad_topic, exc)
        else:
            raise AssertionError(f"{bad_topic} {bad_payload!r} was accepted")


async def test_a_stopped_gateway_shows_as_down_on_the_overview(influxdb, tmp_path):
    """The overview's Gateways tile, on what a real sink wrote: up while it runs, down once it stopped."""
    database = influxdb.create_database("gwdown")
    site = SITE.model_copy(update={"historian": HistorianConfig(
        url=influxdb.url, database=database, buffer=BufferConfig(path=tmp_path / "buffer.sqlite3"))})
    [tile] = [q for q in panel_queries(dashboards.build_all()[common.UID_OVERVIEW]) if q.panel == "Gateways"]
    text = Variables({"site": ["mine-1"]}).interpolate(tile.text)
    influx = InfluxQuery(influxdb.url, database)

    def shown() -> dict:
        return {s["tags"]["gateway"]: s["values"][0][1] for s in influx.series(text)}

    sink = HistorianSink(site.historian, site)
    sink.health_interval = 0.2
    await sink.start()
    try:
        await until(lambda: shown() == {"gw-7": 1}, what="up while it runs")
    finally:
        await sink.stop()
    await drain(site)  # what the stopped gateway left in its buffer: its "stopped" status
    assert shown() == {"gw-7": 0}
