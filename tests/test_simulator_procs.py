"""`minegw sim --procs N`: one site's simulators over several processes, faults reaching every one."""
from __future__ import annotations

import psutil
import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.config import parse_site
from simulators.procs import SiteProcesses
from simulators.site import ControlError, send_fault, site_parts
from tests.util import free_port

HOST = "127.0.0.1"


def belt_site(ports: list[int]):
    return parse_site({
        "site": {"id": "procs-mine"},
        "areas": [{"id": "main", "kind": "belt_line"}],
        "devices": [{"id": f"belt-{i}", "adapter": "modbus", "area": "main", "host": HOST, "port": port,
                     "unit_id": 1, "profile": "belt_conveyor"} for i, port in enumerate(ports)]})


def listening_ports(pid: int) -> set[int]:
    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp") if c.status == "LISTEN"}


async def read_speed(port: int):
    client = AsyncModbusTcpClient(HOST, port=port, timeout=2, retries=0)
    try:
        if not await client.connect():
            return None
        return await client.read_input_registers(0, count=2, device_id=1)
    finally:
        client.close()


def test_devices_are_split_by_endpoint_and_other_kinds_stay_in_part_0():
    site = parse_site({
        "site": {"id": "m"}, "areas": [{"id": "a", "kind": "belt_line"}],
        "devices": [
            {"id": "b1", "adapter": "modbus", "area": "a", "host": HOST, "port": 1502, "unit_id": 1, "profile": "belt_conveyor"},
            {"id": "b2", "adapter": "modbus", "area": "a", "host": HOST, "port": 1502, "unit_id": 2, "profile": "belt_conveyor"},
            {"id": "b3", "adapter": "modbus", "area": "a", "host": HOST, "port": 1503, "unit_id": 1, "profile": "belt_conveyor"},
            {"id": "cam", "adapter": "onvif", "area": "a", "host": HOST, "port": 8080},
        ]})
    assert site_parts(site, 2) == {"b1": 0, "b2": 0, "b3": 1, "cam": 0}  # units of one port stay together
    assert set(site_parts(site, 1).values()) == {0}


async def test_two_processes_serve_the_site_and_a_sim_fault_reaches_the_second():
    ports = [free_port() for _ in range(4)]
    site = belt_site(ports)
    async with SiteProcesses(site, 2, seed=1, control_port=0) as sims:
        owner = sims.owner
        assert sorted(owner.values()) == [0, 0, 1, 1]
        pids = sims.pids
        assert pids[0] != pids[1]
        for device, port in zip(owner, ports):
            assert port in listening_ports(pids[owner[device]]), device
            assert port not in listening_ports(pids[1 - owner[device]]), device
            rr = await read_speed(port)
            assert rr is not None and not rr.isError(), device
        remote = next(d for d, part in owner.items() if part == 1)
        port = ports[list(owner).index(remote)]
        control = sims.local.control_address

        reply = await send_fault(*control, remote, "exception", {"code": 4})  # what `minegw sim-fault` sends
        assert reply["faults"] == {"exception": {"code": 4, "table": None}}
        rr = await read_speed(port)
        assert rr.isError() and rr.exception_code == 4
        await send_fault(*control, remote, "offline")
        assert await read_speed(port) is None  # its port, in the other process, closed
        await send_fault(*control, remote, clear=True)
        rr = await read_speed(port)
        assert rr is not None and not rr.isError()
        with pytest.raises(ControlError, match="unknown fault"):
            await send_fault(*control, remote, "no_such_fault")
        with pytest.raises(ControlError, match="no simulated device"):
            await send_fault(*control, "belt-99", "slip")
    assert not psutil.pid_exists(pids[1]) or psutil.Process(pids[1]).status() == psutil.STATUS_ZOMBIE
