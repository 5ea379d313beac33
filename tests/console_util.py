"""A site with every kind of device the console shows, and the messages a gateway would publish for it
(built with the contract's own builders: full and compact data, schema, state, alarm, health, linkage),
published to a real broker. Used by tests/test_console.py and bench/bench_console.py."""
from __future__ import annotations

import json
import threading
from datetime import datetime

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import parse_site
from gateway.contract import CompactPayloads, DataPayloads, Topics, schema_version
from gateway.core.model import Reading, Schema, iso, utcnow
from tests.sites import HOST
from tests.util import free_port

FACE, BELT = "face-1201", "belt-main"
SUPPORTS = 150


def console_site(broker, prefix: str, *, supports: int = SUPPORTS, operators: dict | None = None,
                 replay_store=None, belts: int = 1, **mqtt):
    def modbus(device_id, profile, area):
        return {"id": device_id, "adapter": "modbus", "area": area, "zone": area, "profile": profile, "host": HOST,
                "port": free_port()}
    devices = [modbus("shearer-1201", "shearer", FACE), modbus("afc-1201", "face_conveyor", FACE),
               {"id": "rp-1201", "adapter": "opcua", "area": FACE, "zone": FACE, "supports": supports,
                "url": f"opc.tcp://{HOST}:{free_port()}"},
               *(modbus(f"belt-main-{i}", "belt_conveyor", BELT) for i in range(1, belts + 1)),
               {"id": "cam-1", "adapter": "onvif", "area": FACE, "host": HOST, "port": free_port()},
               modbus("bn-1", "broadcast_node", FACE), modbus("bn-2", "broadcast_node", BELT)]
    return parse_site({
        "site": {"id": "mine-c", "name": "Console colliery"},
        "areas": [{"id": FACE, "kind": "longwall_face"}, {"id": BELT, "kind": "belt_line"}],
        "devices": devices,
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix, **mqtt},
        "broadcast": {"zones": [{"id": FACE, "nodes": ["bn-1"]},
                                {"id": "escape-intake", "nodes": ["bn-2"], "escape_route": True}]},
        "commands": {"operators": operators or {}, **({"replay_store": str(replay_store)} if replay_store else {})},
    })


class Publisher:
    """Publishes what a gateway would, QoS 1, waiting for each acknowledgement."""

    def __init__(self, site, protocol=paho.MQTTv5):
        self.site = site
        self.topics = Topics(site.mqtt.topic_prefix, site.site.id)
        self.devices = {d.id: d for d in site.devices}
        self.full = {}
        self.compact = CompactPayloads()
        self.versions: dict[str, dict] = {}  # device -> every schema version it used (the retained message)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        connected = threading.Event()
        self.client.on_connect = lambda *_: connected.set()
        self.client.connect(site.mqtt.host, site.mqtt.port)
        self.client.loop_start()
        assert connected.wait(5), "publisher: no CONNACK"

    def send(self, topic: str, payload: bytes | str | dict, retain: bool = False, wait: bool = True) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if wait:
            info.wait_for_publish(5)

    def reading(self, device: str, values: dict, ts: datetime | None = None, poll_ms: float = 12.5,
                derived: bool = False) -> Reading:
        units = [""] * len(values)
        return Reading(device, ts or utcnow(), poll_ms, schema=Schema(list(values), units),
                       values=list(values.values()), derived=derived)

    def data(self, device: str, values: dict, compact: bool = False, wait: bool = True, **kw) -> None:
        d = self.devices[device]
        reading = self.reading(device, values, **kw)
        if compact:
            version = schema_version(reading.schema.signals, reading.schema.units)
            schema, known = reading.schema, self.versions.setdefault(device, {})
            if version not in known:  # as the gateway: the retained schema again only for a new version
                known[version] = {"signals": list(schema.signals), "units": list(schema.units),
                                  "derived": reading.derived}
                self.schema(device, known)
            self.send(self.topics.data(d.area, device), self.compact.build(reading), wait=wait)
        else:
            builder = self.full.setdefault(device, DataPayloads(self.site.site.id, d.area, d.zone, d.equipment_kind))
            self.send(self.topics.data(d.area, device), builder.build(reading), wait=wait)

    def schema(self, device: str, versions: dict) -> None:
        d = self.devices[device]
        self.send(self.topics.schema(d.area, device),
                  {"site": self.site.site.id, "area": d.area, "zone": d.zone, "device": device,
                   "kind": d.equipment_kind, "schemas": versions}, retain=True)

    def state(self, device: str, online: bool = True, reason: str = "polling", polls: int = 10, errors: int = 0):
        d, now = self.devices[device], iso(utcnow())
        self.send(self.topics.state(d.area, device), {
            "site": self.site.site.id, "area": d.area, "device": device, "status": "online" if online else "offline",
            "reason": reason, "since": now, "last_good_poll": now, "polls": polls, "errors": errors,
            "consecutive_errors": 0, "exception_responses": 0, "timeouts": errors, "reconnects": 0,
            "last_poll_ms": 12.5}, retain=True)

    def alarm(self, device: str, alarm: str, priority: int = 1, state: str = "active_unack", value=1.6,
              message: str = "methane high", ts: datetime | None = None) -> None:
        d, at = self.devices[device], iso(ts or utcnow())
        self.send(self.topics.alarm(d.area, device, alarm), {
            "site": self.site.site.id, "area": d.area, "device": device, "alarm": alarm, "signal": "methane",
            "kind": "high", "priority": priority, "state": state, "value": value, "message": message, "ts": at,
            "raised_at": at, "cleared_at": None, "acked_at": None, "acked_by": None}, retain=True)

    def health(self, gateway: str = "gateway-1", connected: bool = True, queued: int = 0, dropped: int = 0, **extra):
        self.send(self.topics.gateway_health(gateway), {
            "site": self.site.site.id, "gateway": gateway, "connected": connected, "published": 1200,
            "delivered": 1190, "rejected": 0, "dropped": dropped, "queued": queued, "reconnects": 1,
            "ts": iso(utcnow()), **extra}, retain=True)

    def face(self, device: str = "rp-1201", pressures: dict[int, tuple[float, float]] | None = None,
             supports: int = SUPPORTS, below_setting: int | None = None, compact: bool = False) -> None:
        """Leg pressures of every support (30/31 MPa unless given), and the gateway's count when given."""
        values = {}
        for n in range(1, supports + 1):
            front, rear = (pressures or {}).get(n, (30.0 + n % 3, 31.0))
            values[f"support_{n:03d}_front_leg_pressure"] = front
            values[f"support_{n:03d}_rear_leg_pressure"] = rear
        self.data(device, values, compact=compact)
        if below_setting is not None:
            self.data(device, {"supports_below_setting": below_setting}, compact=compact, poll_ms=0.0, derived=True)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
