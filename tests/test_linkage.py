"""Alarm linkage (issue 6, item 3): methane on the shearer -> evacuation in the face and escape-route zones."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from gateway.alarms import AlarmEvent, AlarmKind, AlarmState, Priority
from gateway.historian.sink import HistorianSink
from gateway.config import ConfigError, parse_site
from gateway.linkage import LinkageRule
from gateway.contract import LinkageMessage
from gateway.core.model import utcnow
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from simulators.site import SiteSimulator
from tests.mqtt_util import MqttCollector
from tests.sites import make_site, modbus
from tests.util import free_port

NODES = {"bn-1": "face-1", "bn-2": "face-1", "bn-3": "main", "bn-4": "main"}


def linkage_site(prefix: str, mqtt=None, **extra):
    node_port = free_port()
    return make_site(
        modbus("shearer-1", "shearer", "face-1"),
        *(modbus(node, "broadcast_node", area, port=node_port, unit_id=i, timeout=1.0, retries=1)
          for i, (node, area) in enumerate(NODES.items(), 1)),
        areas={"face-1": "longwall_face", "main": "roadway"},
        alarms=[{"id": "ch4", "device": "shearer-1", "signal": "methane", "kind": "methane", "location": "machine"}],
        broadcast={
            "zones": [{"id": "face", "nodes": ["bn-1", "bn-2"]},
                      {"id": "belt", "nodes": ["bn-3"]},
                      {"id": "escape-intake", "nodes": ["bn-4"], "escape_route": True}],
            "escape_routes": {"face-1": ["escape-intake"]},
            "confirm_timeout": 3.0},
        mqtt={"host": mqtt.host, "port": mqtt.port, "topic_prefix": prefix} if mqtt else None,
        **{"linkage": [{"kind": "methane", "message": "evacuation"}], **extra})


def event(**kw) -> AlarmEvent:
    base = dict(alarm="a", device="d", signal="x", area="face-1", kind=AlarmKind.METHANE, priority=Priority.HIGH,
                state=AlarmState.ACTIVE_UNACK, value=1.2, ts=utcnow(), message="m")
    return AlarmEvent(**{**base, **kw})


def test_rules_match_on_kind_ids_and_priority_and_default_to_emergency():
    rule = LinkageRule(kind="methane", alarms=["a", "a-cut"], min_priority="high", message="evacuation")
    assert int(rule.priority) == 3 and rule.snapshot
    assert rule.matches(event())
    assert rule.matches(event(alarm="a-cut", priority=Priority.CRITICAL))
    assert not rule.matches(event(alarm="b"))
    assert not rule.matches(event(priority=Priority.MEDIUM))
    assert not rule.matches(event(kind=AlarmKind.HIGH))
    assert LinkageRule(message="gas", priority="dispatcher").matches(event(kind=AlarmKind.RATE))


def test_site_file_checks_the_linkage_section():
    with pytest.raises(ConfigError, match="unknown message 'nope'"):
        linkage_site("p", linkage=[{"kind": "methane", "message": "nope"}])
    site = linkage_site("p")
    data = site.model_dump(mode="json")
    data["devices"][0]["id"] = data["alarms"][0]["device"] = "linkage"
    with pytest.raises(ConfigError, match="'linkage' is reserved"):
        parse_site(data)
    with pytest.raises(ConfigError, match="needs a broadcast"):
        parse_site({**site.model_dump(mode="json", exclude={"broadcast"}), "broadcast": None})


async def test_methane_on_the_shearer_evacuates_face_and_escape_route(mosquitto, influxdb, tmp_path):
    prefix = f"linkage-{uuid.uuid4().hex[:8]}"
    db = prefix.replace("-", "_")
    site = linkage_site(prefix, mosquitto, snapshots={"directory": str(tmp_path / "snap")},
                        historian={"url": influxdb.url, "database": db, "flush_interval": 0.1,
                                   "buffer": {"path": str(tmp_path / "b.sqlite3")}})
    topics = {a: f"{prefix}/s1/face-1/linkage/{a}" for a in ("ch4", "ch4-cut")}

    def linked(messages):
        got = {m.topic: m for m in messages if m.topic in topics.values()}
        return got if len(got) == len(topics) else None

    with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/#") as sub:
        async with SiteSimulator(site, onvif_discovery_port=None) as sim:
            async with Gateway(site, [MqttSink(site.mqtt, site), HistorianSink(site.historian, site)]) as gw:
                assert gw.broadcast.emergency_zones("face-1") == ["face", "escape-intake"]
                for _ in range(50):  # the shearer reports normal methane first
                    if "shearer-1" in gw.latest:
                        break
                    await asyncio.sleep(0.1)
                routine = await gw.broadcast.play("all_clear", ["face"], "routine")
                assert routine.ok, routine.failed
                assert sim.simulator("bn-1").current_values()["playing_message"] == 4

                # 1.6 % would be the realistic rise, but out_of_range only takes values outside the 0..4 range
                sim.simulator("shearer-1").set_fault("out_of_range", signal="methane", value=4.4)
                got = await sub.until(linked, timeout=15)

                for node in ("bn-1", "bn-2", "bn-4"):  # face zone and escape route: evacuation, emergency
                    v = sim.simulator(node).current_values()
                    assert (v["playing"], v["playing_message"], v["playing_priority"]) == (True, 1, 3), node
                assert not sim.simulator("bn-3").current_values()["playing"]  # the unrelated belt zone

                for alarm, topic in topics.items():
                    m = got[topic]
                    link = LinkageMessage.model_validate_json(m.payload)
                    assert link.ok and link.alarm == alarm and link.area == "face-1"
                    assert link.zones == ["face", "escape-intake"]
                    assert (link.message, link.priority) == ("evacuation", 3)
                    assert set(link.nodes) == {"bn-1", "bn-2", "bn-4"}
                    assert all(n.confirmed for n in link.nodes.values())
                    assert link.snapshots == [] and link.snapshot_errors == {}  # no camera in face-1
                    assert 0 < link.trigger_to_confirmed_ms < 10_000
                    assert json.loads(m.payload)["trigger_ts"].endswith("Z")
                    print(f"linkage {alarm}: trigger to all {len(link.nodes)} nodes confirmed "
                          f"{link.trigger_to_confirmed_ms} ms (broadcast {link.broadcast_elapsed_ms} ms)")
                for _ in range(50):  # and in the historian, through its buffer
                    rows = influxdb.query('SELECT "ok", "trigger_to_confirmed_ms", "zones", "alarm" FROM "linkage_event"', db)
                    if len(rows) == 2:
                        break
                    await asyncio.sleep(0.1)
                assert sorted(r["alarm"] for r in rows) == ["ch4", "ch4-cut"]
                assert all(r["ok"] and 0 < r["trigger_to_confirmed_ms"] < 10_000 for r in rows)
                assert {r["zones"] for r in rows} == {"face,escape-intake"}
                with MqttCollector(mosquitto.host, mosquitto.port, topics["ch4"]) as late:  # retained
                    kept = await late.until(lambda ms: ms or None, timeout=5)
                    assert kept[0].retain and kept[0].payload == got[topics["ch4"]].payload


def test_linkage_line_for_the_historian():
    from gateway.broadcast import NodeResult
    from gateway.historian.lineprotocol import linkage_line
    from gateway.linkage import LinkageEvent
    ts = utcnow()
    nodes = {"bn-1": NodeResult(node="bn-1", zone="face", confirmed=True, confirm_ms=300.0),
             "bn-4": NodeResult(node="bn-4", zone="escape-intake", confirmed=False, reason="line fault")}
    ev = LinkageEvent(alarm="ch4", device="shearer-1", area="face-1", zones=["face", "escape-intake"],
                      message="evacuation", priority=3, nodes=nodes, ok=False, trigger_ts=ts,
                      trigger_to_confirmed_ms=None, broadcast_elapsed_ms=None, ts=ts)
    line = linkage_line("s1", ev)
    assert line.startswith("linkage_event,site=s1,area=face-1,alarm=ch4 ")
    assert "ok=false" in line and 'failed_nodes="bn-4"' in line and "trigger_to_confirmed_ms" not in line
    ok = ev.model_copy(update={"ok": True, "trigger_to_confirmed_ms": 412.5, "nodes": {"bn-1": nodes["bn-1"]}})
    assert "trigger_to_confirmed_ms=412.5" in linkage_line("s1", ok)
