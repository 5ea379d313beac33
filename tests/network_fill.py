"""Network data for the dashboard site's historian (tests/dashboard_site.py): a ring of three switches and a UPS
in the belt line, their readings as the SNMP adapter makes them and the gateway's ring diagnoses (closed, a link
cut, segmented, closed again), given to the real historian sink. Until the dashboard site runs SNMP agents
(the simulator of issue 17), this is how the network dashboard's queries meet real data."""
from __future__ import annotations

from datetime import timedelta

from adapters.snmp.config import SnmpDeviceConfig
from gateway.core.model import DeviceState, DeviceStatus, Quality, Reading, Schema, utcnow
from gateway.network.config import NetworkConfig
from gateway.network.watch import NetworkWatch

AREA = "belt-main"
SWITCHES = ("sw-belt-1", "sw-belt-2", "sw-belt-3")
PORTS = 4


def devices() -> list[SnmpDeviceConfig]:
    return [SnmpDeviceConfig(id=s, area=AREA, host="127.0.0.1", profile="ring_switch", ports=PORTS) for s in SWITCHES] \
        + [SnmpDeviceConfig(id="ups-belt", area=AREA, host="127.0.0.1", profile="ups")]


def switch_reading(device: str, ts, down=(), errors: float = 0.0, uptime: float = 5000.0) -> Reading:
    signals, units, values = ["uptime_s"], ["s"], [uptime]
    for p in range(1, PORTS + 1):
        signals += [f"port{p}_oper_up", f"port{p}_in_errors_ps", f"port{p}_in_bps", f"port{p}_out_bps"]
        units += ["", "1/s", "bit/s", "bit/s"]
        values += [p not in down, errors if p == 1 else 0.0, 2.0e6, 1.5e6]
    signals.append("mrp_ring_state")
    units.append("")
    values.append(None)
    qualities = [Quality.GOOD] * (len(values) - 1) + [Quality.BAD]
    return Reading(device, ts, 5.0, schema=Schema(signals, units), values=values, qualities=qualities)


def ups_reading(ts, on_battery: bool) -> Reading:
    signals = ["on_battery", "output_source", "battery_status", "minutes_remaining", "charge_percent",
               "input_voltage", "output_load"]
    values = [on_battery, "battery" if on_battery else "normal", "normal", 38 if on_battery else 45, 90, 
              0 if on_battery else 228, 35]
    return Reading("ups-belt", ts, 4.0, schema=Schema(signals, ["", "", "", "min", "%", "V", "%"]), values=values)


def fill_network(sink, seconds: int = 40) -> None:
    """Readings every 10 s over the last ``seconds`` seconds: sw-belt-2 port 2 — sw-belt-3 port 1 cut halfway,
    then a second cut isolating sw-belt-3; the UPS on battery meanwhile; the ring diagnosed by the real watch."""
    configs = {d.id: d for d in devices()}
    network = NetworkConfig(gateway_switch=SWITCHES[0], rings=[{"id": "belt-ring", "name": "belt line ring",
                            "switches": [{"device": s, "ports": [1, 2]} for s in SWITCHES]}])
    watch = NetworkWatch(network, list(configs.values()))
    now = utcnow()
    steps = range(0, seconds + 1, 10)
    for i, t in enumerate(steps):
        ts = now - timedelta(seconds=seconds - t)
        cut = {0: {}, 1: {"sw-belt-2": (2,), "sw-belt-3": (1,)},
               2: {"sw-belt-2": (2,), "sw-belt-1": (1,)}}.get(i, {})
        silent = ("sw-belt-3",) if i == 2 else ()
        for sw in SWITCHES:
            if sw in silent:
                state = DeviceState(device=sw, status=DeviceStatus.OFFLINE, reason="timeout", since=ts)
                sink.on_state(configs[sw], state)
                update = watch.on_state(sw, state)
            else:
                reading = switch_reading(sw, ts, cut.get(sw, ()), errors=0.5 * i)
                sink.on_reading(configs[sw], reading)
                update = watch.on_reading(reading)
            for status in update.rings:
                sink.on_ring_status(status)
        sink.on_reading(configs["ups-belt"], ups_reading(ts, on_battery=i in (1, 2)))
