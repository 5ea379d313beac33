"""The demo mine: every device kind minegw knows, on free local ports, with alarms, linkage and commands.

- ``face-1201`` (longwall face): shearer and face conveyor (Modbus), the roof-pressure system over
  OPC UA (150 supports), a camera, two broadcast nodes;
- ``heading-1203`` (heading): roadheader (Modbus), a camera, a broadcast node;
- ``belt-main`` (belt line): two belt conveyors (one Modbus port, unit ids 1 and 2), the transfer
  camera, a broadcast node, and the escape route's node;
- the network ring of deploy/site.example.yaml: six SNMP switches (sw-1 SNMPv3) and a UPS.

Methane at the face plays the evacuation message in the face's zones and its escape route
(docs/broadcast.md, "Linkage"). Commands are signed by the demo operator, whose key the demo makes.
"""
from __future__ import annotations

import socket
from pathlib import Path

from gateway.config import MqttConfig, SiteConfig, parse_site

HOST = "127.0.0.1"
SITE_ID = "demo-mine"
FACE, HEADING, BELT, ESCAPE = "face-1201", "heading-1203", "belt-main", "escape-main"
SUPPORTS = 150
OPERATOR = "demo-operator"
POLL = 1.0  # s, Modbus, ONVIF; the OPC UA face samples every second too
SNMP_POLL = 5.0

# The devices the story acts on (gateway/demo/story.py).
SHEARER, BELT_1, BELT_CAMERA, ROOF = "shearer-1201", "belt-main-1", "cam-belt-transfer", "rp-1201"
BROADCAST_NODES = {"bn-1201-1": FACE, "bn-1201-2": FACE, "bn-1203": HEADING, "bn-belt-main": BELT,
                   "bn-escape-1": BELT}


def free_port(host: str = HOST, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _modbus(dev: str, area: str, profile: str, port: int, unit: int = 1, **extra) -> dict:
    return {"id": dev, "adapter": "modbus", "area": area, "zone": area, "profile": profile, "host": HOST,
            "port": port, "unit_id": unit, "poll_interval": POLL, "timeout": 2.0, "retries": 0, **extra}


def _camera(dev: str, area: str) -> dict:
    return {"id": dev, "adapter": "onvif", "area": area, "zone": area, "host": HOST, "port": free_port(),
            "username": "admin", "password": "Demo-Cam-2024", "poll_interval": POLL, "timeout": 2.0,
            "backoff_initial": 0.5, "backoff_max": 2.0}


def _snmp(dev: str, area: str, profile: str = "ring_switch", **extra) -> dict:
    return {"id": dev, "adapter": "snmp", "area": area, "profile": profile, "host": HOST,
            "port": free_port(kind=socket.SOCK_DGRAM), "poll_interval": SNMP_POLL, **extra}


def ring() -> list[dict]:
    """The ring of deploy/site.example.yaml: sw-1 (SNMPv3 authPriv, where the gateway hangs on) to sw-6, and a UPS."""
    v3 = {"user": "minegw", "auth_protocol": "SHA", "auth_key": "minegw-auth-key",
          "priv_protocol": "AES", "priv_key": "minegw-priv-key"}
    areas = (BELT, BELT, FACE, FACE, HEADING, HEADING)
    switches = [_snmp(f"sw-{i}", area, ports=8, **({"version": "3", "v3": v3} if i == 1 else {}))
                for i, area in enumerate(areas, 1)]
    return switches + [_snmp("ups-1", BELT, "ups", network={"switch": "sw-1", "port": 8})]


def devices() -> list[dict]:
    belt_port, node_port = free_port(), free_port()
    return [
        _modbus(SHEARER, FACE, "shearer", free_port(), network={"switch": "sw-3", "port": 3}),
        _modbus("afc-1201", FACE, "face_conveyor", free_port(), network={"switch": "sw-3", "port": 4}),
        {"id": ROOF, "adapter": "opcua", "area": FACE, "zone": FACE, "url": f"opc.tcp://{HOST}:{free_port()}",
         "nodemap": "longwall", "supports": SUPPORTS, "sampling_interval": 1.0, "publishing_interval": 1.0,
         "network": {"switch": "sw-4", "port": 3}},
        _camera("cam-1201", FACE),
        _modbus("roadheader-1203", HEADING, "roadheader", free_port(), network={"switch": "sw-5", "port": 3}),
        _camera("cam-1203", HEADING),
        _modbus(BELT_1, BELT, "belt_conveyor", belt_port, 1, network={"switch": "sw-2", "port": 3}),
        _modbus("belt-main-2", BELT, "belt_conveyor", belt_port, 2, network={"switch": "sw-2", "port": 3}),
        _camera(BELT_CAMERA, BELT),
        *(_modbus(node, area, "broadcast_node", node_port, unit) for unit, (node, area)
          in enumerate(BROADCAST_NODES.items(), 1)),
        *ring(),
    ]


def alarms() -> list[dict]:
    return [
        {"id": "shearer-ch4", "device": SHEARER, "signal": "methane", "kind": "methane", "location": "machine",
         "message": "methane at the shearer"},
        {"id": "shearer-link", "device": SHEARER, "kind": "comm_loss", "on_delay": 5},
        {"id": "afc-chain", "device": "afc-1201", "signal": "chain_break", "kind": "state", "priority": "critical"},
        {"id": "roof-under-set", "device": ROOF, "signal": "supports_below_setting", "kind": "high", "limit": 5,
         "priority": "medium", "message": "supports below setting load"},
        {"id": "roadheader-ch4", "device": "roadheader-1203", "signal": "methane", "kind": "methane",
         "location": "heading"},
        {"id": "belt-1-slip", "device": BELT_1, "signal": "slip", "kind": "state", "priority": "high",
         "message": "belt-main-1: drive drum slipping, belt tripped"},
        {"id": "belt-2-slip", "device": "belt-main-2", "signal": "slip", "kind": "state", "priority": "high"},
        {"id": "belt-1-smoke", "device": BELT_1, "signal": "smoke_trip", "kind": "state", "priority": "critical"},
        *({"id": f"{cam}-link", "device": cam, "kind": "comm_loss", "on_delay": 2, "priority": "medium",
           "message": f"{cam}: camera offline"} for cam in ("cam-1201", "cam-1203", BELT_CAMERA)),
    ]


def broadcast() -> dict:
    zones: dict[str, list[str]] = {}
    for node, area in BROADCAST_NODES.items():
        if node != "bn-escape-1":
            zones.setdefault(area, []).append(node)
    return {"zones": [*({"id": z, "nodes": n} for z, n in zones.items()),
                      {"id": ESCAPE, "nodes": ["bn-escape-1"], "escape_route": True}],
            "escape_routes": {FACE: [ESCAPE], HEADING: [ESCAPE]}, "confirm_timeout": 5.0}


def demo_site(mqtt: MqttConfig, state_dir: Path, operator_public: str, influx_url: str | None = None) -> SiteConfig:
    """The demo mine publishing to ``mqtt``; its buffers, replay store and snapshots under ``state_dir``;
    ``operator_public`` (``ed25519 BASE64``) may send commands; the historian writes to ``influx_url``
    (None: it only buffers, in ``state_dir``)."""
    return parse_site({
        "site": {"id": SITE_ID, "name": "minegw demo colliery", "gateway_id": "gw-demo"},
        "areas": [{"id": FACE, "kind": "longwall_face", "name": "1201 longwall face", "zones": [FACE]},
                  {"id": HEADING, "kind": "heading", "name": "1203 heading", "zones": [HEADING]},
                  {"id": BELT, "kind": "belt_line", "name": "Main trunk belt", "zones": [BELT, ESCAPE]}],
        "devices": devices(),
        "network": {"gateway_switch": "sw-1", "rings": [
            {"id": "ring-1", "name": "District 2 ring",
             "switches": [{"device": f"sw-{i}", "ports": [1, 2]} for i in range(1, 7)]}]},
        "alarms": alarms(),
        "broadcast": broadcast(),
        "linkage": [{"kind": "methane", "alarms": ["shearer-ch4", "roadheader-ch4"], "message": "evacuation",
                     "priority": "emergency"}],
        "commands": {"operators": {OPERATOR: operator_public},
                     "replay_store": str(state_dir / "command-ids.sqlite3")},
        "snapshots": {"directory": str(state_dir / "snapshots")},
        "mqtt": mqtt.model_dump(),
        "historian": {"url": influx_url or "http://127.0.0.1:8086", "database": "minegw_demo",
                      "buffer": {"path": str(state_dir / "historian.sqlite3")}},
    }, "<demo>")
