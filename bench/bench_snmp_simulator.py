"""What the simulated ring's SNMP agents cost: CPU of `minegw sim` for switches and UPS polled like the adapter does.

    python bench/bench_snmp_simulator.py --switches 20 --ports 28 --ups 5 --interval 10 --seconds 60

Writes a site of one ring of S switches (P ports each, ring ports 1 and 2) and U UPS, starts
``python -m gateway.cli sim SITE`` in its own session and polls every agent every ``--interval``
seconds from this process (pysnmp, v2c): per switch one GET (sysUpTime, the MRP domain's state and
count) and GETBULK walks of the IF-MIB columns the adapter reads (ifAdminStatus, ifOperStatus,
ifInDiscards, ifInErrors, ifHCInOctets, ifHCOutOctets, ifHighSpeed) and of lldpRemSysName /
lldpRemPortId; per UPS one GET of its seven objects. After one warm-up poll it measures the simulator's CPU
idle for 10 s, then (user + system, whole process group) over ``--seconds`` and prints CPU per poll
round and per second, and the varbinds served. A benchmark: it asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from benchproc import REPO, group_cpu_seconds
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    bulk_walk_cmd,
    get_cmd,
)

HOST = "127.0.0.1"
IDLE_SECONDS = 10.0  # the simulator's CPU with nobody polling, measured first
IF_COLUMNS = ["1.3.6.1.2.1.2.2.1.7", "1.3.6.1.2.1.2.2.1.8", "1.3.6.1.2.1.2.2.1.13", "1.3.6.1.2.1.2.2.1.14",
              "1.3.6.1.2.1.31.1.1.1.6", "1.3.6.1.2.1.31.1.1.1.10", "1.3.6.1.2.1.31.1.1.1.15",
              "1.0.8802.1.1.2.1.4.1.1.9", "1.0.8802.1.1.2.1.4.1.1.7"]
SWITCH_GET = ["1.3.6.1.2.1.1.3.0", "1.0.62439.1.1.1.1.10.1", "1.0.62439.1.1.1.1.15.1"]
UPS_GET = ["1.3.6.1.2.1.33.1.4.1.0", "1.3.6.1.2.1.33.1.2.1.0", "1.3.6.1.2.1.33.1.2.3.0", "1.3.6.1.2.1.33.1.2.4.0",
           "1.3.6.1.2.1.33.1.3.3.1.3.1", "1.3.6.1.2.1.33.1.4.4.1.5.1", "1.3.6.1.2.1.1.3.0"]


def udp_ports(count: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def ring_site(switches: int, ports: int, ups: int) -> dict:
    addresses = udp_ports(switches + ups)
    devices = [{"id": f"sw-{i + 1}", "adapter": "snmp", "area": "ring", "profile": "ring_switch", "host": HOST,
                "port": addresses[i], "ports": ports} for i in range(switches)]
    devices += [{"id": f"ups-{i + 1}", "adapter": "snmp", "area": "ring", "profile": "ups", "host": HOST,
                 "port": addresses[switches + i], "network": {"switch": f"sw-{i + 1}", "port": ports}}
                for i in range(ups)]
    return {"site": {"id": "bench"}, "areas": [{"id": "ring", "kind": "roadway"}], "devices": devices,
            "network": {"rings": [{"id": "r1", "switches": [{"device": f"sw-{i + 1}", "ports": [1, 2]}
                                                            for i in range(switches)]}]}}


async def poll_switch(engine: SnmpEngine, port: int) -> int:
    target = await UdpTransportTarget.create((HOST, port), timeout=2, retries=1)
    auth, ctx = CommunityData("public"), ContextData()
    err, _, _, binds = await get_cmd(engine, auth, target, ctx, *(ObjectType(ObjectIdentity(o)) for o in SWITCH_GET))
    served = 0 if err else len(binds)
    for column in IF_COLUMNS:
        async for err, _, _, binds in bulk_walk_cmd(engine, auth, target, ctx, 0, 30, ObjectType(ObjectIdentity(column)),
                                                    lexicographicMode=False):
            served += 0 if err else len(binds)
    return served


async def poll_ups(engine: SnmpEngine, port: int) -> int:
    target = await UdpTransportTarget.create((HOST, port), timeout=2, retries=1)
    err, _, _, binds = await get_cmd(engine, CommunityData("public"), target, ContextData(),
                                     *(ObjectType(ObjectIdentity(o)) for o in UPS_GET))
    return 0 if err else len(binds)


async def poll_round(engine: SnmpEngine, site: dict) -> int:
    jobs = [poll_ups(engine, d["port"]) if d["profile"] == "ups" else poll_switch(engine, d["port"])
            for d in site["devices"]]
    return sum(await asyncio.gather(*jobs))


async def measure(site: dict, pgid: int, interval: float, seconds: float) -> tuple[float, int, int, float, float]:
    engine = SnmpEngine()
    await poll_round(engine, site)  # warm-up: the simulator is up, imports done
    idle0 = group_cpu_seconds(pgid)
    await asyncio.sleep(IDLE_SECONDS)
    idle = (group_cpu_seconds(pgid) - idle0) / IDLE_SECONDS
    cpu0, t0, rounds, served = group_cpu_seconds(pgid), time.monotonic(), 0, 0
    while time.monotonic() - t0 < seconds:
        start = time.monotonic()
        served += await poll_round(engine, site)
        rounds += 1
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - start)))
    return group_cpu_seconds(pgid) - cpu0, rounds, served, time.monotonic() - t0, idle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--ports", type=int, default=28)
    parser.add_argument("--ups", type=int, default=5)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    site = ring_site(args.switches, args.ports, args.ups)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "site.yaml"
        path.write_text(yaml.safe_dump(site))
        control = udp_ports(1)[0]
        sim = subprocess.Popen([sys.executable, "-m", "gateway.cli", "sim", str(path), "--control", f"{HOST}:{control}"],
                               cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            time.sleep(3)
            if sim.poll() is not None:
                sys.exit(f"minegw sim exited: {sim.stderr.read().decode()}")
            cpu, rounds, served, wall, idle = asyncio.run(measure(site, sim.pid, args.interval, args.seconds))
        finally:
            os.killpg(sim.pid, signal.SIGTERM)
            sim.wait(10)
    print(f"{args.switches} switches x {args.ports} ports + {args.ups} UPS, polled every {args.interval:g} s, "
          f"{rounds} rounds over {wall:.1f} s")
    print(f"simulator CPU: {cpu:.3f} s = {cpu / wall * 100:.2f} % of a core; {cpu / rounds * 1000:.1f} ms per poll round; "
          f"{served / rounds:.0f} varbinds per round")
    polls = cpu - idle * wall
    print(f"idle (nobody polling): {idle * 100:.2f} % of a core; the polls alone: {polls / rounds * 1000:.1f} ms "
          f"per round, {polls / served * 1e6:.1f} us CPU per varbind")


if __name__ == "__main__":
    main()
