"""Reachability (gateway/network/reach.py): TCP connect to each device's service port, into device_health."""
from __future__ import annotations

import asyncio
import uuid

from gateway.config import parse_site
from gateway.historian.device_health import DeviceHealth
from gateway.historian.sink import HistorianSink
from gateway.network.reach import Reach, reach_all, service_endpoint
from gateway.runtime import Gateway
from tests.network_site import switch_reading
from tests.sites import historian, modbus, site_dict
from tests.util import free_port


async def serve() -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_service_endpoints_by_kind():
    site = parse_site(site_dict(
        modbus("plc", "belt_conveyor", port=1502),
        {"id": "cam", "adapter": "onvif", "area": "face", "host": "10.0.0.7", "port": 8080,
         "username": "u", "password": "p"},
        {"id": "lw", "adapter": "opcua", "area": "face", "url": "opc.tcp://10.0.0.9/UA/Server"},
        {"id": "sw", "adapter": "snmp", "area": "face", "host": "10.0.0.2", "profile": "ring_switch"}))
    assert {d.id: service_endpoint(d) for d in site.devices} == {
        "plc": ("127.0.0.1", 1502), "cam": ("10.0.0.7", 8080), "lw": ("10.0.0.9", 4840), "sw": None}


async def test_reach_answers_and_refusals():
    server, port = await serve()
    try:
        site = parse_site(site_dict(modbus("up", "belt_conveyor", port=port),
                                    modbus("down", "belt_conveyor", port=free_port())))
        found = await reach_all(site.devices, timeout=1.0)
    finally:
        server.close()
    assert found["up"].reachable and found["up"].ms > 0
    assert not found["down"].reachable and found["down"].ms is None and found["down"].error


def test_device_health_fields():
    health = DeviceHealth()
    health.add("face", switch_reading("sw1"))
    rows = health.take_with_reach({"plc": Reach(True, 1.5), "dead": Reach(False, None, "timeout")},
                                  {"plc": "face", "dead": "belt", "sw1": "face"}, by_polls=["sw1"])
    by = {device: (area, fields) for area, device, fields in rows}
    assert by["plc"] == ("face", {"reachable": True, "reach_ms": 1.5})
    assert by["dead"] == ("belt", {"reachable": False})  # no readings: the point that matters
    assert by["sw1"][1]["reachable"] is True and by["sw1"][1]["reach_ms"] == 4.0  # SNMP: its own answer


async def test_gateway_writes_reach_into_device_health(influxdb, tmp_path):
    server, port = await serve()
    db = f"reach_{uuid.uuid4().hex[:8]}"
    data = site_dict(modbus("plc", "belt_conveyor", port=port, enabled=True),
                     modbus("gone", "belt_conveyor", port=free_port()),
                     historian=historian(influxdb, db, tmp_path / "b.sqlite3"), network={"reach_interval": 0.2})
    site = parse_site(data)
    sink = HistorianSink(site.historian, site, health_interval=0.3)
    try:
        async with Gateway(site, [sink]):
            for _ in range(100):
                rows = influxdb.query('SELECT "reachable", "reach_ms" FROM "device_health" GROUP BY "device"', db) \
                    if any(r.get("name") == "device_health" for r in influxdb.query("SHOW MEASUREMENTS", db)) else []
                devices = {r["device"] for r in rows}
                if {"plc", "gone"} <= devices:
                    break
                await asyncio.sleep(0.1)
    finally:
        server.close()
    plc = [r for r in rows if r["device"] == "plc" and r["reachable"] is not None]
    gone = [r for r in rows if r["device"] == "gone" and r["reachable"] is not None]
    assert plc and all(r["reachable"] is True and r["reach_ms"] > 0 for r in plc)
    assert gone and all(r["reachable"] is False and r["reach_ms"] is None for r in gone)

