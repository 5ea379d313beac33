"""The simulated ring (simulators/snmp): switches and a UPS as real SNMP agents, read with Net-SNMP's
snmpget / snmpbulkwalk (an independent client), and the faults as those clients see them."""
from __future__ import annotations

import asyncio
import shutil

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.config import parse_site
from simulators.site import SiteSimulator, send_fault
from tests.snmpd import free_udp_port
from tests.util import free_port

pytestmark = pytest.mark.skipif(shutil.which("snmpget") is None, reason="needs Net-SNMP (apt-get install snmp)")

HOST = "127.0.0.1"
SYS_UPTIME, SYS_NAME = "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.5.0"
IF_OPER, IF_IN_ERRORS, IF_HC_IN = "1.3.6.1.2.1.2.2.1.8", "1.3.6.1.2.1.2.2.1.14", "1.3.6.1.2.1.31.1.1.1.6"
IF_HIGH_SPEED, LLDP_REM = "1.3.6.1.2.1.31.1.1.1.15", "1.0.8802.1.1.2.1.4.1.1"
MRP_STATE, MRP_OPEN_COUNT = "1.0.62439.1.1.1.1.10.1", "1.0.62439.1.1.1.1.15.1"
UPS_SOURCE, UPS_MINUTES, UPS_INPUT_V = "1.3.6.1.2.1.33.1.4.1.0", "1.3.6.1.2.1.33.1.2.3.0", "1.3.6.1.2.1.33.1.3.3.1.3.1"
V3 = ["-v3", "-l", "authPriv", "-u", "minegw", "-a", "SHA", "-A", "auth-key-123", "-x", "AES", "-X", "priv-key-123"]


def ring_site(switches: int = 4) -> dict:
    """A ring sw-1..sw-N (sw-1 SNMPv3, the rest v2c), a UPS on sw-1 port 8, a belt on sw-3 port 5."""
    def switch(i: int) -> dict:
        d = {"id": f"sw-{i}", "adapter": "snmp", "area": "belt", "profile": "ring_switch", "host": HOST,
             "port": free_udp_port(), "ports": 8}
        return d | ({"version": "3", "v3": {"user": "minegw", "auth_key": "auth-key-123", "priv_key": "priv-key-123"}}
                    if i == 1 else {"community": "ring-ro"})
    return {
        "site": {"id": "t"}, "areas": [{"id": "belt", "kind": "belt_line"}],
        "devices": [*(switch(i) for i in range(1, switches + 1)),
                    {"id": "ups-1", "adapter": "snmp", "area": "belt", "profile": "ups", "host": HOST,
                     "port": free_udp_port(), "community": "ring-ro", "network": {"switch": "sw-1", "port": 8}},
                    {"id": "belt-1", "adapter": "modbus", "area": "belt", "profile": "belt_conveyor", "host": HOST,
                     "port": free_port(), "unit_id": 1, "network": {"switch": "sw-3", "port": 5}}],
        "network": {"rings": [{"id": "r1", "switches": [{"device": f"sw-{i}", "ports": [1, 2]}
                                                        for i in range(1, switches + 1)]}]},
    }


class Ring:
    def __init__(self, site, sims: SiteSimulator):
        self.site, self.sims = site, sims
        self.ports = {d.id: d.port for d in site.devices}

    async def net_snmp(self, tool: str, device: str, *args: str, timeout: float = 2.0) -> tuple[int, str]:
        auth = V3 if device == "sw-1" else ["-v2c", "-c", "ring-ro"]
        proc = await asyncio.create_subprocess_exec(
            tool, *auth, "-On", "-t", str(timeout), "-r", "0", f"{HOST}:{self.ports[device]}", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return proc.returncode, out.decode()

    async def get(self, device: str, *oids: str, fmt: str = "-Oqv") -> list[str]:
        code, out = await self.net_snmp("snmpget", device, fmt, *oids)
        assert code == 0, out
        return out.split("\n")[:len(oids)]

    async def answers(self, device: str) -> bool:
        code, _ = await self.net_snmp("snmpget", device, SYS_NAME, timeout=0.5)
        return code == 0

    async def fault(self, device: str, fault: str | None = None, clear: bool = False, **params) -> dict:
        return await send_fault(*self.sims.control_address, device, fault, params, clear=clear)


@pytest.fixture
async def ring():
    site = parse_site(ring_site(), "<ring>")
    async with SiteSimulator(site, seed=7, control_port=0, onvif_discovery_port=None) as sims:
        yield Ring(site, sims)


async def test_agents_answer_net_snmp_with_the_ring_as_cabled(ring):
    code, walk = await ring.net_snmp("snmpbulkwalk", "sw-2", "1.3.6.1.2.1")
    assert code == 0, walk
    assert f'.{SYS_NAME} = STRING: "sw-2"' in walk
    assert f".{IF_HIGH_SPEED}.1 = Gauge32: 1000" in walk and f".{IF_HIGH_SPEED}.3 = Gauge32: 100" in walk
    assert f".{IF_OPER}.1 = INTEGER: 1" in walk and f".{IF_OPER}.3 = INTEGER: 2" in walk  # nothing on port 3
    code, lldp = await ring.net_snmp("snmpbulkwalk", "sw-2", LLDP_REM)
    assert f'.{LLDP_REM}.9.0.1.1 = STRING: "sw-1"' in lldp and f'.{LLDP_REM}.7.0.1.1 = STRING: "2"' in lldp
    assert f'.{LLDP_REM}.9.0.2.1 = STRING: "sw-3"' in lldp and f'.{LLDP_REM}.7.0.2.1 = STRING: "1"' in lldp
    # sw-1 speaks v3 authPriv only, is the MRP manager, sees the UPS on port 8
    assert await ring.get("sw-1", SYS_NAME) == ['"sw-1"']
    state, count = await ring.get("sw-1", MRP_STATE, MRP_OPEN_COUNT, fmt="-Oqvx")
    assert state.strip('" ') == "00" and count == "0"
    code, _ = await ring.net_snmp("snmpget", "sw-2", MRP_STATE)
    assert "No Such Instance" in _  # only the manager serves the MRP domain
    code, lldp = await ring.net_snmp("snmpget", "sw-1", f"{LLDP_REM}.9.0.8.1")
    assert '"ups-1"' in lldp
    # live values: counters and uptime grow
    before = [int(v) for v in await ring.get("sw-2", f"{IF_HC_IN}.1", SYS_UPTIME, fmt="-Oqvt")]
    await asyncio.sleep(0.6)
    after = [int(v) for v in await ring.get("sw-2", f"{IF_HC_IN}.1", SYS_UPTIME, fmt="-Oqvt")]
    assert after[0] > before[0] and after[1] > before[1] > 3 * 86400 * 100
    source, minutes, volts = await ring.get("ups-1", UPS_SOURCE, UPS_MINUTES, UPS_INPUT_V)
    assert (source, minutes) == ("3", "45") and 210 <= int(volts) <= 230
    proc = await asyncio.create_subprocess_exec("snmpget", "-v2c", "-c", "wrong", "-t", "0.5", "-r", "0",
                                                f"{HOST}:{ring.ports['sw-2']}", SYS_NAME,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    assert await proc.wait() != 0  # a wrong community gets no answer


async def test_a_cut_takes_both_ends_down_and_opens_the_ring_until_it_is_mended(ring):
    reply = await ring.fault("sw-2", "cut", port=2)
    assert reply["faults"] == {"cut": {"port": 2}}
    assert await ring.get("sw-2", f"{IF_OPER}.2", f"{IF_OPER}.1") == ["2", "1"]
    assert await ring.get("sw-3", f"{IF_OPER}.1") == ["2"]  # the other end of the cable
    state, count = await ring.get("sw-1", MRP_STATE, MRP_OPEN_COUNT, fmt="-Oqvx")
    assert state.strip('" ') == "20" and count == "1"
    _, lldp = await ring.net_snmp("snmpbulkwalk", "sw-2", f"{LLDP_REM}.9")
    assert ".0.1.1" in lldp and ".0.2.1" not in lldp  # the neighbour behind the cut is gone
    assert await ring.answers("sw-3")  # one cut isolates nothing
    await ring.fault("sw-2", "cut", clear=True)
    assert await ring.get("sw-2", f"{IF_OPER}.2") == ["1"] and await ring.get("sw-3", f"{IF_OPER}.1") == ["1"]
    state, count = await ring.get("sw-1", MRP_STATE, MRP_OPEN_COUNT, fmt="-Oqvx")
    assert state.strip('" ') == "00" and count == "1"


async def test_flap_crc_errors_reboot_and_unreachable(ring):
    await ring.fault("sw-3", "flap", port=2, period=0.3)
    near, far = set(), set()
    for _ in range(12):
        near.update(await ring.get("sw-3", f"{IF_OPER}.2"))
        far.update(await ring.get("sw-4", f"{IF_OPER}.1"))  # the other end flaps with it
        await asyncio.sleep(0.1)
    assert near == far == {"1", "2"}
    await ring.fault("sw-3", "flap", clear=True)

    await ring.fault("sw-4", "crc_errors", port=1, rate=100)
    first = int((await ring.get("sw-4", f"{IF_IN_ERRORS}.1"))[0])
    await asyncio.sleep(0.5)
    assert int((await ring.get("sw-4", f"{IF_IN_ERRORS}.1"))[0]) - first >= 30
    assert (await ring.get("sw-4", f"{IF_IN_ERRORS}.2")) == ["0"]

    traffic, uptime = (int(v) for v in await ring.get("sw-2", f"{IF_HC_IN}.1", SYS_UPTIME, fmt="-Oqvt"))
    reply = await ring.fault("sw-2", "reboot")
    assert "reboot" not in reply["faults"]  # an event, not a state
    traffic2, uptime2 = (int(v) for v in await ring.get("sw-2", f"{IF_HC_IN}.1", SYS_UPTIME, fmt="-Oqvt"))
    assert uptime2 < 500 < uptime and traffic2 < traffic

    await ring.fault("sw-4", "unreachable")
    assert not await ring.answers("sw-4")
    assert (await ring.get("sw-1", MRP_STATE, fmt="-Oqvx"))[0].strip('" ') == "00"  # traffic still flows
    await ring.fault("sw-4", "unreachable", clear=True)
    assert await ring.answers("sw-4")


async def test_ups_on_battery(ring):
    await ring.fault("ups-1", "on_battery", runtime_min=30, time_scale=600)  # 10 battery minutes a second
    source, volts = await ring.get("ups-1", UPS_SOURCE, UPS_INPUT_V)
    assert (source, volts) == ("5", "0")
    first = int((await ring.get("ups-1", UPS_MINUTES))[0])
    await asyncio.sleep(0.5)
    assert int((await ring.get("ups-1", UPS_MINUTES))[0]) <= first - 3
    await ring.fault("ups-1", "on_battery", clear=True)
    assert (await ring.get("ups-1", UPS_SOURCE)) == ["3"]


async def modbus_answers(port: int) -> bool:
    client = AsyncModbusTcpClient(HOST, port=port, timeout=1, retries=0)
    try:
        if not await client.connect():
            return False
        return not (await client.read_input_registers(0, count=1, device_id=1)).isError()
    finally:
        client.close()


async def test_a_double_cut_isolates_switches_and_the_devices_behind_them_until_the_links_return(ring):
    belt = ring.ports["belt-1"]
    assert await modbus_answers(belt) and await ring.answers("sw-3")
    await ring.fault("sw-2", "cut", port=2)  # sw-2 | sw-3
    await ring.fault("sw-4", "cut", port=1)  # sw-3 | sw-4: sw-3 is an island, seen from sw-1
    assert not await ring.answers("sw-3")
    assert not await modbus_answers(belt)  # the belt hangs on sw-3: dark
    assert await ring.answers("sw-2") and await ring.answers("sw-4") and await ring.answers("ups-1")
    assert ring.sims.simulator("belt-1").isolated and "offline" not in ring.sims.simulator("belt-1").faults
    await ring.fault("sw-4", "cut", clear=True)
    assert await ring.answers("sw-3") and await modbus_answers(belt)
    _, count = await ring.get("sw-1", MRP_STATE, MRP_OPEN_COUNT)
    assert count == "1"  # still open (sw-2's cut): one opening
