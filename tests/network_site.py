"""A site with a ring network for the tests of issue 17: six SNMP switches in one ring, a UPS, Modbus devices
hung on switch ports. Readings of switches and UPS are built here as the SNMP adapter makes them
(signals of docs/network.md), so diagnosis, alarms and sinks are tested without an agent."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.core.model import Quality, Reading, Schema
from tests.sites import HOST, modbus, site_dict

SWITCHES = [f"sw{i}" for i in range(1, 7)]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def switch(device_id: str, area: str = "face", ports: int = 8, **settings: Any) -> dict:
    return {"id": device_id, "adapter": "snmp", "area": area, "profile": "ring_switch", "host": HOST,
            "port": 16100, "ports": ports, **settings}


def ups(device_id: str = "ups-1", area: str = "face") -> dict:
    return {"id": device_id, "adapter": "snmp", "area": area, "profile": "ups", "host": HOST, "port": 16199}


def ring_site_dict(**sections: Any) -> dict:
    """sw1..sw6 in ring ``ring-1`` (ports 1, 2), the gateway on sw1; belt-1 on sw1 port 5, shearer on sw3 port 5,
    pump on sw4 port 5; a UPS on sw1 port 6."""
    devices = [switch(s) for s in SWITCHES] + [
        modbus("belt-1", "belt_conveyor", network={"switch": "sw1", "port": 5}),
        modbus("shearer", "belt_conveyor", network={"switch": "sw3", "port": 5}),
        modbus("pump", "belt_conveyor", network={"switch": "sw4", "port": 5}),
        ups() | {"network": {"switch": "sw1", "port": 6}}]
    network = {"gateway_switch": "sw1",
               "rings": [{"id": "ring-1", "name": "main ring", "switches": [
                   {"device": s, "ports": [1, 2]} for s in SWITCHES]}]}
    return site_dict(*devices, network=network, **sections)


def neighbours() -> dict[tuple[str, int], tuple[str, str]]:
    """(switch, port) -> (LLDP sysName, port id) as cabled on paper."""
    n = len(SWITCHES)
    found = {}
    for i, sw in enumerate(SWITCHES):
        nxt = SWITCHES[(i + 1) % n]
        found[sw, 2] = (nxt, "1")
        found[nxt, 1] = (sw, "2")
    return found


def switch_reading(device: str, seconds: float = 0, *, down: tuple[int, ...] = (), uptime: float | None = None,
                   errors: dict[int, float] | None = None, ports: int = 8, mrp: str | None = None) -> Reading:
    """A ``network_switch`` reading ``seconds`` after T0: every port up but ``down``, LLDP as cabled."""
    cabled = neighbours()
    errors = errors or {}
    signals, units, values, qualities = ["uptime_s"], ["s"], [1000.0 + seconds if uptime is None else uptime], []
    for p in range(1, ports + 1):
        up = p not in down
        name, port = cabled.get((device, p), ("", "")) if up else ("", "")
        signals += [f"port{p}_oper_up", f"port{p}_admin_up", f"port{p}_in_errors_ps", f"port{p}_neighbor",
                    f"port{p}_neighbor_port"]
        units += ["", "", "1/s", "", ""]
        values += [up, True, errors.get(p, 0.0), name, port]
    signals += ["mrp_ring_state"]
    units += [""]
    values += [mrp]
    qualities = [Quality.GOOD] * (len(values) - 1) + [Quality.GOOD if mrp else Quality.BAD]
    return Reading(device, T0 + timedelta(seconds=seconds), 4.0, schema=Schema(signals, units), values=values,
                   qualities=qualities)


def ups_reading(device: str = "ups-1", seconds: float = 0, on_battery: bool = False) -> Reading:
    signals = ["on_battery", "output_source", "battery_status", "minutes_remaining", "charge_percent",
               "input_voltage", "output_load"]
    values = [on_battery, "battery" if on_battery else "normal", "normal", 42, 97, 0 if on_battery else 229, 31]
    return Reading(device, T0 + timedelta(seconds=seconds), 3.0,
                   schema=Schema(signals, ["", "", "", "min", "%", "V", "%"]), values=values)
