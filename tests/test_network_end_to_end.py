"""Issue 17's "done when", end to end: the ring simulator's SNMP agents → the SNMP adapter → the network watch →
Mosquitto and InfluxDB. One cut is one ring_open alarm naming the link; a second cut the island alarm, the belt
behind it dark and its comm-loss alarm suppressed; everything clears when the links return."""
from __future__ import annotations

import asyncio
import json
import uuid

from gateway.config import parse_site
from gateway.contract import AlarmMessage
from gateway.network.messages import NetworkRingMessage
from gateway.historian.sink import HistorianSink
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from simulators.site import SiteSimulator, send_fault
from tests.mqtt_util import MqttCollector
from tests.sites import historian, mqtt
from tests.test_snmp_simulator import ring_site


async def test_cut_links_end_to_end(mosquitto, influxdb, tmp_path):
    prefix = f"e2e-ring-{uuid.uuid4().hex[:8]}"
    db = prefix.replace("-", "_")
    data = ring_site()
    for d in data["devices"]:
        d.update(poll_interval=1.0, timeout=0.4, retries=0) if d["adapter"] == "snmp" else d.update(
            poll_interval=0.5, timeout=0.4, retries=0)
    data["network"]["gateway_switch"] = "sw-1"
    data |= {"alarms": [{"id": "belt-link", "device": "belt-1", "kind": "comm_loss"}],
             "mqtt": mqtt(mosquitto, prefix), "historian": historian(influxdb, db, tmp_path / "b.sqlite3")}
    site = parse_site(data)
    ring_topic = f"{prefix}/t/network/ring/r1"
    open_topic = f"{prefix}/t/network/r1/alarm/net.r1.open"
    island_topic = f"{prefix}/t/network/r1/alarm/net.r1.segmented"
    belt_topic = f"{prefix}/t/belt/belt-1/alarm/belt-link"

    def retained(topic, **fields):
        def check(messages):
            ours = [m for m in messages if m.topic == topic]
            if not ours or not ours[-1].payload:
                return None
            body = json.loads(ours[-1].payload)
            return ours[-1] if all(body.get(k) == v for k, v in fields.items()) else None
        return check

    def gone(topic):
        return lambda ms: (ours := [m for m in ms if m.topic == topic]) and ours[-1].payload == b""

    async with SiteSimulator(site, seed=7, control_port=0, onvif_discovery_port=None) as sims:
        fault = lambda device, name=None, clear=False, **p: send_fault(  # noqa: E731
            *sims.control_address, device, name, p, clear=clear)
        with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/#") as sub:
            async with Gateway(site, [MqttSink(site.mqtt, site), HistorianSink(site.historian, site)]):
                await sub.until(retained(ring_topic, state="closed"), timeout=15)
                await fault("sw-2", "cut", port=2)
                # The MRP manager may say "open" a poll before the switches at the cut report their ports
                # down: the alarm then names the link as soon as they do (one alarm, re-announced).
                await sub.until(retained(open_topic, message="ring r1: open at sw-2 port 2 — sw-3 port 1"),
                                timeout=15)
                raised = [m for m in sub.messages if m.topic == open_topic and m.payload]
                assert {json.loads(m.payload)["state"] for m in raised} == {"active_unack"}
                await fault("sw-4", "cut", port=1)  # sw-3 is an island, the belt behind it dark
                ring = NetworkRingMessage.model_validate_json((await sub.until(
                    retained(ring_topic, state="segmented", cut_off_devices=["belt-1"]), timeout=15)).payload)
                assert ring.islands == [["sw-3"], ["sw-4", "sw-1", "sw-2"]] and ring.cut_off_switches == ["sw-3"]
                await sub.until(retained(island_topic), timeout=10)
                belt = AlarmMessage.model_validate_json((await sub.until(
                    retained(belt_topic, suppressed=True), timeout=15)).payload)
                assert belt.suppressed_by == "net.r1.segmented"
                await fault("sw-4", "cut", clear=True)
                await fault("sw-2", "cut", clear=True)
                await sub.until(retained(ring_topic, state="closed"), timeout=15)
                await sub.until(retained(open_topic, state="cleared_unack"), timeout=15)
                await sub.until(retained(belt_topic, state="cleared_unack", suppressed=False), timeout=15)
                assert not [m for m in sub.messages if m.topic == island_topic and m.payload
                            and json.loads(m.payload)["state"] == "active_unack"][1:]  # raised once
        rows = []
        for _ in range(50):
            rows = influxdb.query('SELECT "state", "open_links" FROM "network_ring"', db)
            if {"open", "segmented"} <= {r["state"] for r in rows} and rows[-1]["state"] == "closed":
                break
            await asyncio.sleep(0.2)
        assert "sw-2 port 2 — sw-3 port 1" in {r["open_links"] for r in rows if r["state"] == "open"}
        events = influxdb.query("SELECT \"state\", \"suppressed\" FROM \"alarm_event\" WHERE \"alarm\" = 'belt-link'",
                                db)
        assert any(e["suppressed"] for e in events)
