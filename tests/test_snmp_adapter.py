"""The SNMP adapter against real agents on loopback: Net-SNMP's snmpd (IF-MIB, v2c and v3 authPriv)
and pysnmp's own command responder in-process (UPS-MIB, LLDP-MIB, IEC-62439-2-MIB, counters
that wrap and a switch that restarts)."""
from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from pysnmp.proto import rfc1902

from adapters.snmp.adapter import SnmpAdapter
from adapters.snmp.config import SnmpDeviceConfig
from adapters.snmp.profile import ProfileError, load_profile
from gateway.core.model import DeviceState, DeviceStatus, Quality
from tests.snmp_agent import MRP_OPEN_COUNT, MRP_STATE, TestAgent, oid, port_oid, switch_values, ups_values
from tests.snmpd import free_udp_port


def device(host: str, port: int, **settings) -> SnmpDeviceConfig:
    return SnmpDeviceConfig.model_validate({"id": "sw-test", "area": "network", "host": host, "port": port,
                                            "profile": "ring_switch", "timeout": 1.0, "retries": 0, **settings})


def value(reading, signal):
    sample = reading.get(signal)
    return sample.value, sample.quality


def snmpget(snmpd, oid_text: str) -> str:
    """One value as Net-SNMP's own snmpget prints it (-Oqvt: the bare value, timeticks as a number)."""
    return subprocess.run(["snmpget", "-v2c", "-c", snmpd.community, "-Oqvt", f"{snmpd.host}:{snmpd.port}", oid_text],
                          capture_output=True, text=True, check=True, env={"MIBS": ""}).stdout.strip()


async def test_if_mib_signals_from_snmpd(snmpd, caplog):
    adapter = SnmpAdapter(device(snmpd.host, snmpd.port, community=snmpd.community, ports=[1, 99]))
    caplog.set_level(logging.WARNING, logger="adapters.snmp.adapter")
    try:
        first = await adapter.poll_once()
        await asyncio.sleep(1.1)
        second = await adapter.poll_once()
    finally:
        await adapter.stop()
    assert adapter.state.status is DeviceStatus.ONLINE
    assert value(first, "port1_oper_up") == (True, Quality.GOOD)  # lo is ifIndex 1, up
    assert value(first, "port1_admin_up") == (True, Quality.GOOD)
    assert value(first, "port1_speed_mbps") == (int(snmpget(snmpd, "1.3.6.1.2.1.31.1.1.1.15.1")), Quality.GOOD)
    uptime, quality = value(first, "uptime_s")
    assert quality is Quality.GOOD and 0 < uptime < int(snmpget(snmpd, "1.3.6.1.2.1.1.3.0")) / 100 + 1
    # Rates: no baseline on the first poll, a number on the second.
    assert value(first, "port1_in_bps") == (None, Quality.BAD)
    for signal in ("port1_in_bps", "port1_out_bps", "port1_in_errors_ps", "port1_in_discards_ps"):
        rate, quality = value(second, signal)
        assert quality is Quality.GOOD and rate >= 0, signal
    # snmpd has no MRP: bad, null; no LLDP: no neighbour.
    assert value(second, "mrp_ring_state") == (None, Quality.BAD)
    assert value(second, "mrp_ring_open_count") == (None, Quality.BAD)
    assert value(second, "port1_neighbor") == ("", Quality.GOOD)
    # A port the switch does not have: every signal of it bad, and the log says which.
    assert all(s.quality is Quality.BAD and s.value is None for s in second.samples if s.signal.startswith("port99_"))
    assert adapter.missing_ports == {99}
    assert [r.getMessage() for r in caplog.records if "99" in r.getMessage()] == [
        "sw-test: port(s) 99 not on the device (no such ifIndex): their signals are bad"]


async def test_snmpv3_auth_priv(snmpd):
    adapter = SnmpAdapter(device(snmpd.host, snmpd.port, version="3", ports=1,
                                 v3={"user": snmpd.v3_user, "auth_protocol": "SHA", "auth_key": snmpd.auth_key,
                                     "priv_protocol": "AES", "priv_key": snmpd.priv_key}))
    try:
        reading = await adapter.poll_once()
    finally:
        await adapter.stop()
    assert value(reading, "port1_oper_up") == (True, Quality.GOOD)
    assert reading.get("uptime_s").quality is Quality.GOOD


@pytest.mark.parametrize("settings, reason", [
    ({"community": "not-the-community"}, "no answer to GET within 0.5 s × 1"),
    ({"version": "3", "v3": {"user": "minegw-v3", "auth_key": "wrong-key-123", "priv_key": "priv-key-123"}},
     "Wrong SNMP PDU digest (the v3 auth key or auth protocol is wrong)"),
])
async def test_wrong_credentials_go_offline_with_a_reason(snmpd, settings, reason):
    adapter = SnmpAdapter(device(snmpd.host, snmpd.port, timeout=0.5, ports=2, poll_interval=1, **settings))
    await adapter.start()
    events = []
    try:
        async with asyncio.timeout(5):
            async for event in adapter.stream():
                events.append(event)
                if len(events) == 2:
                    break
    finally:
        await adapter.stop()
    state, comm_fail = events  # the state change, then the reading that says why the values are missing
    assert isinstance(state, DeviceState) and state.status is DeviceStatus.OFFLINE
    assert f"{snmpd.host}:{snmpd.port}" in state.reason and reason in state.reason
    assert comm_fail.qualities == [Quality.COMM_FAIL] * len(comm_fail.values)


async def test_ups_profile_against_a_pysnmp_agent():
    port = free_udp_port()
    agent = TestAgent(ups_values(), port)
    agent.start()
    adapter = SnmpAdapter(device("127.0.0.1", port, community="public", profile="ups"))
    try:
        mains = await adapter.poll_once()
        agent.values.update(ups_values(source=5, battery=3, minutes=7, charge=18, volts=0, load=40))
        battery = await adapter.poll_once()
        agent.values[oid("1.3.6.1.2.1.33.1.4.1.0")] = rfc1902.Integer(9)  # not in the MIB's list
        unknown = await adapter.poll_once()
    finally:
        await adapter.stop()
        agent.stop()
    assert {s.signal: s.value for s in mains.samples} == {
        "on_battery": False, "output_source": "normal", "battery_status": "normal", "minutes_remaining": 42,
        "charge_percent": 100, "input_voltage": 230, "output_load": 35}
    assert {s.signal: s.value for s in battery.samples} == {
        "on_battery": True, "output_source": "battery", "battery_status": "low", "minutes_remaining": 7,
        "charge_percent": 18, "input_voltage": 0, "output_load": 40}
    assert mains.qualities is None and battery.qualities is None
    assert value(unknown, "output_source") == (None, Quality.BAD)
    assert value(unknown, "on_battery") == (False, Quality.GOOD)
    assert mains.schema.units[mains.schema.index["minutes_remaining"]] == "min"


async def test_mrp_lldp_and_rates_through_wrap_and_restart():
    port = free_udp_port()
    values = switch_values(4, uptime=100_000, neighbors={1: ("sw-2", "2"), 2: ("sw-6", "1")})
    agent = TestAgent(values, port)
    agent.start()
    adapter = SnmpAdapter(device("127.0.0.1", port, community="public", ports=4))
    errors = port_oid("errors", 1)

    async def poll(uptime: int, set_values: dict | None = None):
        values[oid("1.3.6.1.2.1.1.3.0")] = rfc1902.TimeTicks(uptime)
        values.update(set_values or {})
        return await adapter.poll_once()

    try:
        values[errors] = rfc1902.Counter32(2**32 - 100)
        values[port_oid("in_octets", 1)] = rfc1902.Counter64(1_000)
        first = await poll(100_000)
        wrapped = await poll(101_000, {errors: rfc1902.Counter32(400),  # +500 over the wrap in 10 s
                                         port_oid("in_octets", 1): rfc1902.Counter64(126_000),  # 1e5 bit/s
                                         MRP_STATE: rfc1902.OctetString(b"\x20"),  # ringOpen(2)
                                         MRP_OPEN_COUNT: rfc1902.Counter32(1),
                                         port_oid("oper", 2): rfc1902.Integer(2)})
        restarted = await poll(500, {errors: rfc1902.Counter32(3)})
        after = await poll(1_500, {errors: rfc1902.Counter32(13)})
    finally:
        await adapter.stop()
        agent.stop()
    assert value(first, "mrp_ring_state") == ("closed", Quality.GOOD)
    assert value(first, "port1_neighbor") == ("sw-2", Quality.GOOD)
    assert value(first, "port1_neighbor_port") == ("2", Quality.GOOD)
    assert value(first, "port2_neighbor") == ("sw-6", Quality.GOOD)
    assert value(first, "port3_neighbor") == ("", Quality.GOOD)
    assert value(wrapped, "port1_in_errors_ps") == (50.0, Quality.GOOD)
    assert value(wrapped, "port1_in_bps") == (100_000.0, Quality.GOOD)
    assert value(wrapped, "mrp_ring_state") == ("open", Quality.GOOD)
    assert value(wrapped, "mrp_ring_open_count") == (1, Quality.GOOD)
    assert value(wrapped, "port2_oper_up") == (False, Quality.GOOD)
    assert value(restarted, "uptime_s") == (5.0, Quality.GOOD)
    assert value(restarted, "port1_in_errors_ps") == (None, Quality.BAD)  # counters started again
    assert value(after, "port1_in_errors_ps") == (1.0, Quality.GOOD)


async def test_mrp_state_values():
    port = free_udp_port()
    values = switch_values(1)
    agent = TestAgent(values, port)
    agent.start()
    adapter = SnmpAdapter(device("127.0.0.1", port, community="public", ports=1))
    seen = []
    try:
        for bits in (b"\x80", b"\x40", b"", b"\x00\x00", rfc1902.Integer(2)):
            values[MRP_STATE] = bits if isinstance(bits, rfc1902.Integer) else rfc1902.OctetString(bits)
            seen.append(value(await adapter.poll_once(), "mrp_ring_state"))
    finally:
        await adapter.stop()
        agent.stop()
    assert seen == [("disabled", Quality.GOOD), (None, Quality.BAD), ("closed", Quality.GOOD),
                    ("closed", Quality.GOOD), ("open", Quality.GOOD)]


def test_profile_mistakes_are_located(tmp_path):
    bad = tmp_path / "bad_switch.yaml"
    bad.write_text("kind: network_switch\nports:\n  - {name: 'port{n}_up', oid: 1.3.6.1.2.1.2.2.1.8, type: integer}\n"
                   "  - {name: 'port{n}_bps', oid: 1.3.6.1.2.1.31.1.1.1.6, type: integer, rate: true}\n"
                   "  - {name: 'port{n}_x', oid: 'ifInErrors', type: counter32}\n")
    with pytest.raises(ProfileError) as caught:
        load_profile(str(bad))
    message = str(caught.value)
    assert message.startswith(f"{bad}: ")
    assert "ports[1]: port{n}_bps: rate needs a counter32 or counter64, not integer" in message
    assert "ports[2].oid: 'ifInErrors' is not a numeric OID" in message
    with pytest.raises(ProfileError, match="unknown SNMP profile 'switch'; built-in: ring_switch, ups"):
        load_profile("switch")


def minegw(*args):
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)


def test_net_walk_prints_what_snmpwalk_prints(snmpd):
    target = f"{snmpd.host}:{snmpd.port}"
    ours = minegw("net", "walk", snmpd.host, "1.3.6.1.2.1.2.2.1", "--port", str(snmpd.port),
                  "--community", snmpd.community)
    theirs = subprocess.run(["snmpwalk", "-v2c", "-c", snmpd.community, "-On", target, "1.3.6.1.2.1.2.2.1"],
                            capture_output=True, text=True, check=True, env={"MIBS": ""})
    assert ours.returncode == 0, ours.stderr
    # The interface table's counters move between the two walks: compare the OIDs and the types.
    assert [line.split(": ")[0] for line in ours.stdout.splitlines()] == \
        [line.lstrip(".").split(": ")[0] for line in theirs.stdout.splitlines()]
    assert '1.3.6.1.2.1.2.2.1.2.1 = STRING: "lo"' in ours.stdout.splitlines()
    v3 = minegw("net", "walk", snmpd.host, "1.3.6.1.2.1.1.5.0", "--port", str(snmpd.port), "--v3-user",
                snmpd.v3_user, "--auth-key", snmpd.auth_key, "--priv-key", snmpd.priv_key)
    assert v3.stdout == f'1.3.6.1.2.1.1.5.0 = STRING: "{snmpd.sys_name}"\n', v3.stderr
    wrong = minegw("net", "walk", snmpd.host, "--port", str(snmpd.port), "--community", "nope",
                   "--timeout", "0.3", "--retries", "0")
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert f"{target}: no answer to GET within 0.3 s × 1" in wrong.stderr
