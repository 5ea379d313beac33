"""The network watch in the gateway, to a real Mosquitto and InfluxDB: a cut ring link is one retained ring-open
alarm naming it and a retained ring status; a second cut the island alarm, with the comm-loss alarms of the devices
behind it marked suppressed; everything clears when the links return. The switches' and devices' adapters here are
scripted (they emit what the SNMP and Modbus adapters would): the path under test is router → watch → engine → sinks.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

from adapters.base import Adapter
from gateway.config import parse_site
from gateway.contract import AlarmMessage
from gateway.network.messages import NetworkRingMessage
from gateway.core.model import DeviceState, DeviceStatus
from gateway.historian.sink import HistorianSink
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from tests.mqtt_util import MqttCollector
from tests.network_site import SWITCHES, T0, ring_site_dict, switch_reading
from tests.sites import historian, mqtt


class Scripted(Adapter):
    """An adapter whose events the test sends."""

    kind = "scripted"

    async def _run(self) -> None:
        await asyncio.Event().wait()

    async def write(self, signal, value):
        raise NotImplementedError

    def send(self, event) -> None:
        if isinstance(event, DeviceState):
            self.state = event
        self._emit(event)


def state(device: str, t: float, online: bool) -> DeviceState:
    return DeviceState(device=device, status=DeviceStatus.ONLINE if online else DeviceStatus.OFFLINE,
                       reason="connected" if online else "timeout", since=T0 + timedelta(seconds=t))


async def test_cut_links_on_mqtt_and_in_influxdb(mosquitto, influxdb, tmp_path):
    prefix = f"ring-{uuid.uuid4().hex[:8]}"
    db = prefix.replace("-", "_")
    data = ring_site_dict(alarms=[{"id": f"{d}-link", "device": d, "kind": "comm_loss"} for d in ("shearer", "pump")],
                          mqtt=mqtt(mosquitto, prefix), historian=historian(influxdb, db, tmp_path / "b.sqlite3"))
    for device in data["devices"]:
        device["enabled"] = False  # replaced by scripted adapters below
    site = parse_site(data)
    gateway = Gateway(site, [MqttSink(site.mqtt, site), HistorianSink(site.historian, site)])
    adapters = {d.id: Scripted(d) for d in site.devices}
    gateway.adapters.update(adapters)

    def poll(t: float, down: dict[str, tuple[int, ...]] | None = None, silent: tuple[str, ...] = ()) -> None:
        for sw in SWITCHES:
            if sw in silent:
                adapters[sw].send(state(sw, t, online=False))
            else:
                adapters[sw].send(state(sw, t, online=True))
                adapters[sw].send(switch_reading(sw, t, down=(down or {}).get(sw, ())))

    ring_topic = f"{prefix}/s1/network/ring/ring-1"
    open_topic = f"{prefix}/s1/network/ring-1/alarm/net.ring-1.open"
    island_topic = f"{prefix}/s1/network/ring-1/alarm/net.ring-1.segmented"
    pump_topic = f"{prefix}/s1/face/pump/alarm/pump-link"

    def latest(topic):
        def check(messages):
            ours = [m for m in messages if m.topic == topic]
            return ours[-1] if ours and ours[-1].payload else None
        return check

    def ring_state(expected, **fields):
        def check(messages):
            m = latest(ring_topic)(messages)
            ring = json.loads(m.payload) if m else {}
            return m if ring.get("state") == expected and all(ring[k] == v for k, v in fields.items()) else None
        return check

    with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/#") as sub:
        async with gateway:
            poll(0)
            await sub.until(ring_state("closed"))
            poll(10, down={"sw3": (2,), "sw4": (1,)})
            ring = NetworkRingMessage.model_validate_json((await sub.until(ring_state("open"))).payload)
            assert [x.model_dump() for x in ring.open_links] == [{"a": "sw3", "a_port": 2, "b": "sw4", "b_port": 1}]
            opened = AlarmMessage.model_validate_json((await sub.until(latest(open_topic))).payload)
            assert opened.message == "ring main ring: open at sw3 port 2 — sw4 port 1" and opened.kind == "ring_open"

            poll(20, down={"sw3": (2,), "sw4": (1,), "sw2": (2,), "sw5": (1,)}, silent=("sw3", "sw4"))
            for device in ("shearer", "pump"):
                adapters[device].send(state(device, 21, online=False))
            ring = NetworkRingMessage.model_validate_json((await sub.until(
                ring_state("segmented", cut_off_devices=["pump", "shearer"]))).payload)
            assert ring.islands == [["sw3", "sw4"], ["sw5", "sw6", "sw1", "sw2"]]
            assert ring.cut_off_devices == ["pump", "shearer"]
            await sub.until(latest(island_topic))
            pump = AlarmMessage.model_validate_json((await sub.until(latest(pump_topic))).payload)
            assert (pump.state, pump.suppressed, pump.suppressed_by) == ("active_unack", True, "net.ring-1.segmented")

            poll(30)
            for device in ("shearer", "pump"):
                adapters[device].send(state(device, 31, online=True))
            await sub.until(ring_state("closed"))
            poll(40)  # the ring alarms clear once it stayed whole for a poll round
            cleared = AlarmMessage.model_validate_json((await sub.until(
                lambda ms: (m := latest(open_topic)(ms)) and json.loads(m.payload)["state"] == "cleared_unack"
                and m)).payload)
            assert cleared.cleared_at is not None

            rows = []
            for _ in range(50):
                rows = influxdb.query('SELECT "state", "open_links", "islands", "cut_off_devices" FROM "network_ring"',
                                      db) if _measurements(influxdb, db) else []
                if rows and rows[-1]["state"] == "closed" and "segmented" in str(rows):
                    break
                await asyncio.sleep(0.1)
            states = [r["state"] for r in rows]
            assert [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s] == [
                "closed", "open", "segmented", "closed"]  # one point per ring and time: the last view of that time
            assert rows[states.index("open")]["open_links"] == "sw3 port 2 — sw4 port 1"
            last_segmented = [r for r in rows if r["state"] == "segmented"][-1]
            assert (last_segmented["islands"], last_segmented["cut_off_devices"]) == (2, "pump,shearer")
            events = influxdb.query('SELECT "state", "suppressed", "suppressed_by" FROM "alarm_event" '
                                    "WHERE \"alarm\" = 'pump-link'", db)
            assert events[0]["suppressed"] is True and events[0]["suppressed_by"] == "net.ring-1.segmented"


def _measurements(influxdb, db) -> bool:
    return any(r.get("name") == "network_ring" for r in influxdb.query("SHOW MEASUREMENTS", db))
