"""Data loss is never silent: a sink dropping data raises a gateway alarm on MQTT and in the historian."""
import asyncio
import json
import uuid

from gateway.historian.sink import HistorianSink
from gateway.contract import GatewayAlarmMessage
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from tests.mqtt_util import MqttCollector
from tests.sites import historian, make_site, mqtt
from tests.util import RecordingSink


async def test_drops_raise_then_clear_a_retained_gateway_alarm(mosquitto, influxdb, tmp_path, monkeypatch):
    monkeypatch.setattr(Gateway, "WATCH_INTERVAL_S", 0.1)
    monkeypatch.setattr(Gateway, "QUIET_TO_CLEAR_S", 0.5)
    prefix = f"alarm-{uuid.uuid4().hex[:8]}"
    db = prefix.replace("-", "_")
    site = make_site(areas={"a": "roadway"}, mqtt=mqtt(mosquitto, prefix),
                     historian=historian(influxdb, db, tmp_path / "b.sqlite3"))
    dropping = RecordingSink("spool")  # its queue overflows on demand: stands in for a full buffer, nothing else
    dropping.counters["dropped"] = 0
    topic = f"{prefix}/s1/gateway/gateway-1/alarm/spool-dropping"
    with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/#") as sub:
        async with Gateway(site, [MqttSink(site.mqtt, site), HistorianSink(site.historian, site), dropping]):
            dropping.counters["dropped"] = 42
            raised = await sub.until(lambda ms: [m for m in ms if m.topic == topic], timeout=5)
            alarm = GatewayAlarmMessage.model_validate_json(raised[0].payload)
            assert alarm.active and alarm.count == 42 and "dropped" in alarm.message
            cleared = await sub.until(lambda ms: [m for m in ms if m.topic == topic and
                                                  not json.loads(m.payload)["active"]], timeout=5)
            assert json.loads(cleared[0].payload)["count"] == 42
            expected = [("spool-dropping", True, 42), ("spool-dropping", False, 42)]
            for _ in range(50):  # the historian gets both transitions through its buffer
                rows = influxdb.query('SELECT "active", "count", "alarm" FROM "gateway_alarm"', db)
                if len(rows) == 2:
                    break
                await asyncio.sleep(0.1)
            assert [(r["alarm"], r["active"], r["count"]) for r in rows] == expected
