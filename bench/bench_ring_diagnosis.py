"""CPU of the network watch and alarm engine per switch reading: a ring of 20 switches x 28 ports and 5 UPS,
polled every 10 s, readings built as the SNMP adapter makes them (no agent: the diagnosis alone).

    python bench/bench_ring_diagnosis.py [--switches 20] [--ports 28] [--rounds 200]

Prints µs CPU per switch reading (closed ring, then with a cut link and a second cut), and the sample-time
delay from the poll round in which a link goes down to the ring_open alarm event (the diagnosis raises it on
the first reading that shows the port down; the SNMP poll interval adds up to one interval before that)."""
from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta, timezone

from adapters.snmp.config import SnmpDeviceConfig
from gateway.alarms import AlarmEngine
from gateway.core.model import Quality, Reading, Schema
from gateway.network.config import NetworkConfig
from gateway.network.watch import NetworkWatch

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def readings(switches: list[str], ports: int, t: float, down: dict[str, tuple[int, ...]]) -> list[Reading]:
    signals, units = ["uptime_s", "mrp_ring_state", "mrp_ring_open_count"], ["s", "", ""]
    for p in range(1, ports + 1):
        for name, unit in (("oper_up", ""), ("admin_up", ""), ("speed_mbps", "Mbit/s"), ("in_bps", "bit/s"),
                           ("out_bps", "bit/s"), ("in_errors_ps", "1/s"), ("in_discards_ps", "1/s"),
                           ("neighbor", ""), ("neighbor_port", "")):
            signals.append(f"port{p}_{name}")
            units.append(unit)
    schema = Schema(signals, units)
    out = []
    n = len(switches)
    for i, sw in enumerate(switches):
        values = [1000.0 + t, "closed", 0]
        for p in range(1, ports + 1):
            up = p not in down.get(sw, ())
            neighbour = (switches[(i + 1) % n], "1") if p == 2 else (switches[i - 1], "2") if p == 1 else ("", "")
            values += [up, True, 1000, 1.0e6, 2.0e6, 0.0, 0.0, *(neighbour if up else ("", ""))]
        qualities = [Quality.GOOD] * len(values)
        out.append(Reading(sw, T0 + timedelta(seconds=t + i * 10 / n), 8.0, schema=schema, values=values,
                           qualities=qualities))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--ports", type=int, default=28)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    switches = [f"sw{i:02d}" for i in range(1, args.switches + 1)]
    devices = [SnmpDeviceConfig(id=s, area="a", host="127.0.0.1", profile="ring_switch", ports=args.ports)
               for s in switches] + [SnmpDeviceConfig(id=f"ups{i}", area="a", host="127.0.0.1", profile="ups")
                                    for i in range(5)]
    network = NetworkConfig(gateway_switch=switches[0], rings=[{"id": "main", "switches": [
        {"device": s, "ports": [1, 2]} for s in switches]}])
    for label, down in (("closed ring", {}), ("one cut", {switches[5]: (2,), switches[6]: (1,)}),
                        ("two cuts", {switches[5]: (2,), switches[6]: (1,), switches[12]: (2,), switches[13]: (1,)})):
        watch = NetworkWatch(network, devices)
        engine = AlarmEngine([], {d.id: d.area for d in devices})
        rounds = [readings(switches, args.ports, r * 10.0, down) for r in range(args.rounds)]
        start = time.process_time()
        for batch in rounds:
            for reading in batch:
                update = watch.on_reading(reading)
                engine.on_network(update.alarms, update.ts)
        cpu = time.process_time() - start
        per = cpu / (args.rounds * len(switches)) * 1e6
        print(f"{label:12s}: {per:7.1f} µs CPU per switch reading ({args.switches} switches x {args.ports} ports), "
              f"{per * len(switches) / 1000:.2f} ms per poll round of the ring")

    watch = NetworkWatch(network, devices)
    engine = AlarmEngine([], {d.id: d.area for d in devices})
    for reading in readings(switches, args.ports, 0.0, {}):
        engine.on_network(*(lambda u: (u.alarms, u.ts))(watch.on_reading(reading)))
    cut_at = T0 + timedelta(seconds=10)
    for reading in readings(switches, args.ports, 10.0, {switches[5]: (2,), switches[6]: (1,)}):
        update = watch.on_reading(reading)
        events = [e for e in engine.on_network(update.alarms, update.ts) if e.alarm == "net.main.open"]
        if events:
            print(f"ring_open raised by the reading of {reading.device}, "
                  f"{(events[0].ts - cut_at).total_seconds():.1f} s (sample time) into the poll round "
                  f"that saw the cut: {events[0].message}")
            break


if __name__ == "__main__":
    main()
