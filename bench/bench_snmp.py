"""SNMP adapter benchmark: CPU per poll of a 28-port ring switch and a UPS, and of a fleet of
20 switches × 28 ports + 5 UPS polled every 10 s.

    python bench/bench_snmp.py                   # 60 s fleet window (~1.5 min)
    python bench/bench_snmp.py --seconds 120 --switches 20 --ports 28 --ups 5

The agents (pysnmp's own command responder, tests/snmp_agent.py, counters moving every second)
run in a child process, so this process's CPU is the gateway side alone: SnmpAdapter polls
(GET of the scalars, GETBULK walks of 7 IF-MIB columns × 28 ports, the LLDP table), BER
encode/decode in pysnmp, rates, and the readings consumed from the adapters' streams.

- **per poll**: ``poll_once`` of one device in a loop, process CPU / polls;
- **fleet**: every adapter started as the gateway does (spread over the interval), CPU seconds
  per second of wall time over ``--seconds``, and per poll.

Prints a table and one ``BENCH_JSON {...}`` line. A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from adapters.snmp.adapter import SnmpAdapter  # noqa: E402
from adapters.snmp.config import SnmpDeviceConfig  # noqa: E402

HOST = "127.0.0.1"


def udp_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    for s in sockets:
        s.bind((HOST, 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# -- the agents (child process) --------------------------------------------------------
async def serve(switch_ports: list[int], ups_ports: list[int], ports_per_switch: int) -> None:
    from pysnmp.entity.rfc3413 import cmdrsp
    from pysnmp.proto import rfc1902

    from tests.snmp_agent import TestAgent, port_oid, switch_values, ups_values

    cmdrsp.BulkCommandResponder.max_varbinds = 256  # a switch fills a GETBULK answer as far as it fits
    agents = [TestAgent(switch_values(ports_per_switch, neighbors={1: ("sw-prev", "2"), 2: ("sw-next", "1")}), p)
              for p in switch_ports] + [TestAgent(ups_values(), p) for p in ups_ports]
    for agent in agents:
        agent.start()
    print("READY", flush=True)
    tick = 0
    while True:  # traffic: counters and uptime move every second
        await asyncio.sleep(1)
        tick += 1
        for agent in agents[:len(switch_ports)]:
            agent.values[(1, 3, 6, 1, 2, 1, 1, 3, 0)] = rfc1902.TimeTicks(100_000 + tick * 100)
            for n in range(1, ports_per_switch + 1):
                agent.values[port_oid("in_octets", n)] = rfc1902.Counter64(tick * 1_250_000 * n)
                agent.values[port_oid("out_octets", n)] = rfc1902.Counter64(tick * 625_000 * n)
                agent.values[port_oid("errors", n)] = rfc1902.Counter32(tick * (n % 3))


# -- the gateway side (this process) ----------------------------------------------------
def device(i: int, port: int, profile: str, ports: int, interval: float) -> SnmpDeviceConfig:
    return SnmpDeviceConfig.model_validate({"id": f"{profile}-{i}", "area": "network", "host": HOST, "port": port,
                                            "profile": profile, "ports": ports, "poll_interval": interval,
                                            "timeout": 2.0, "retries": 1})


async def per_poll(config: SnmpDeviceConfig, polls: int) -> dict:
    adapter = SnmpAdapter(config)
    try:
        for _ in range(5):  # warm up: engine, first-poll baselines
            await adapter.poll_once()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(polls):
            reading = await adapter.poll_once()
            assert reading is not None, adapter.state.reason
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await adapter.stop()
    bad = sum(1 for s in reading.samples if s.quality.value != "good")
    return {"signals": len(reading.values), "not_good": bad, "cpu_ms_per_poll": round(cpu / polls * 1000, 2),
            "wall_ms_per_poll": round(wall / polls * 1000, 2)}


async def fleet(configs: list[SnmpDeviceConfig], seconds: float) -> dict:
    adapters = [SnmpAdapter(c) for c in configs]
    readings = 0

    async def consume(adapter):
        nonlocal readings
        async for event in adapter.stream():
            readings += hasattr(event, "values")

    consumers = [asyncio.create_task(consume(a)) for a in adapters]
    for adapter in adapters:
        await adapter.start()
    await asyncio.sleep(configs[0].poll_interval + 1)  # every device polled once: baselines taken
    polls_before = sum(a.state.polls for a in adapters)
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    polls = sum(a.state.polls for a in adapters) - polls_before
    errors = sum(a.state.errors for a in adapters)
    for adapter in adapters:
        await adapter.stop()
    await asyncio.gather(*consumers)
    return {"devices": len(adapters), "seconds": round(wall, 1), "polls": polls, "errors": errors,
            "readings": readings, "cpu_s_per_s": round(cpu / wall, 4),
            "cpu_ms_per_poll": round(cpu / max(polls, 1) * 1000, 2)}


async def measure(args, switch_ports: list[int], ups_ports: list[int]) -> dict:
    switch = await per_poll(device(0, switch_ports[0], "ring_switch", args.ports, 10), args.polls)
    ups = await per_poll(device(0, ups_ports[0], "ups", 1, 10), args.polls)
    configs = [device(i, p, "ring_switch", args.ports, args.interval) for i, p in enumerate(switch_ports)] + \
              [device(i, p, "ups", 1, args.interval) for i, p in enumerate(ups_ports)]
    return {"switch_poll": switch, "ups_poll": ups, "fleet": await fleet(configs, args.seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--ports", type=int, default=28, help="ports per switch")
    parser.add_argument("--ups", type=int, default=5)
    parser.add_argument("--interval", type=float, default=10.0, help="poll interval of the fleet, s")
    parser.add_argument("--seconds", type=float, default=60.0, help="fleet measurement window")
    parser.add_argument("--polls", type=int, default=200, help="polls for the per-poll figures")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # child: switch ports;ups ports
    args = parser.parse_args()
    if args.serve:
        switch_ports, ups_ports = ([int(p) for p in part.split(",") if p] for part in args.serve.split(";"))
        asyncio.run(serve(switch_ports, ups_ports, args.ports))
        return
    ports = udp_ports(args.switches + args.ups)
    switch_ports, ups_ports = ports[:args.switches], ports[args.switches:]
    spec = ",".join(map(str, switch_ports)) + ";" + ",".join(map(str, ups_ports))
    agents = subprocess.Popen([sys.executable, __file__, "--serve", spec, "--ports", str(args.ports)],
                              stdout=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True)
    try:
        if agents.stdout.readline().strip() != "READY":
            sys.exit("the agents did not start")
        result = asyncio.run(measure(args, switch_ports, ups_ports))
    finally:
        agents.terminate()
        agents.wait(10)
    s, u, f = result["switch_poll"], result["ups_poll"], result["fleet"]
    print(f"{'what':<44} {'CPU ms/poll':>12} {'wall ms/poll':>13}")
    switch_label, ups_label = f"switch, {args.ports} ports ({s['signals']} signals)", f"UPS ({u['signals']} signals)"
    print(f"{switch_label:<44} {s['cpu_ms_per_poll']:>12} {s['wall_ms_per_poll']:>13}")
    print(f"{ups_label:<44} {u['cpu_ms_per_poll']:>12} {u['wall_ms_per_poll']:>13}")
    print(f"fleet: {args.switches} switches × {args.ports} ports + {args.ups} UPS every {args.interval:g} s: "
          f"{f['cpu_s_per_s']} CPU s/s, {f['cpu_ms_per_poll']} ms/poll ({f['polls']} polls in {f['seconds']} s, "
          f"{f['errors']} errors)")
    print("BENCH_JSON " + json.dumps({"bench": "snmp", **vars(args), **result}))


if __name__ == "__main__":
    main()
