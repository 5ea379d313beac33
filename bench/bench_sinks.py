"""CPU per tag of what consumes readings, without network: the MQTT payload, the historian lines,
alarms + derived signals, and the router's whole way of a reading into both sinks.

    python bench/bench_sinks.py                       # this tree
    python bench/bench_sinks.py --against /tmp/base   # this tree and another (e.g. `git archive` of a
                                                      # base commit), alternating, in one run

Readings: one device, 100 signals (97 scaled numbers, the ``running``/``fault``/``emergency_stop``
bits), every sample good, two read blocks (two shared timestamps), as a Modbus poll gives them.
Figures are process CPU time (µs per tag, the best of ``--rounds``), not wall time.

(d) runs ``Gateway._route`` on a stand-in adapter with the real sinks: the historian sink (durable,
not started: a commit is simulated every 50 readings, like 50 devices per 100 ms group commit) and the
MQTT sink (not connected: its queue is emptied at each commit, as the publisher thread would).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import yaml

SIGNALS = 100
BITS = ("running", "fault", "emergency_stop")


def profile() -> dict:
    points = [{"name": f"p{i:03d}", "unit": "A", "type": "uint16", "scale": 0.1, "table": "input_register",
               "address": i, "range": [0, 6553.5]} for i in range(SIGNALS - len(BITS))]
    points += [{"name": b, "type": "bool", "table": "discrete_input", "address": i} for i, b in enumerate(BITS)]
    return {"kind": "bench_machine", "description": "bench_sinks", "points": points}


def site(profile_path: Path):
    from gateway.config import parse_site
    alarms = [{"id": "p001-high", "device": "dev-1", "signal": "p001", "kind": "high", "limit": 6000},
              {"id": "p002-low", "device": "dev-1", "signal": "p002", "kind": "low", "limit": 1},
              {"id": "dev-1-fault", "device": "dev-1", "signal": "fault", "kind": "state"},
              {"id": "dev-1-link", "device": "dev-1", "kind": "comm_loss"}]
    return parse_site({
        "site": {"id": "pit-7", "gateway_id": "gw-a"}, "areas": [{"id": "face", "kind": "longwall_face"}],
        "devices": [{"id": "dev-1", "adapter": "modbus", "area": "face", "zone": "z1", "profile": str(profile_path),
                     "host": "127.0.0.1", "port": 1502}],
        "mqtt": {"host": "127.0.0.1", "port": 1883}, "alarms": alarms,
        "historian": {"url": "http://127.0.0.1:8086", "database": "bench",
                      "buffer": {"path": str(profile_path.parent / "buffer.db")}}})


def readings(count: int):
    from gateway.core.model import Reading, Schema, utcnow
    p = profile()["points"]
    schema = Schema([x["name"] for x in p], [x.get("unit", "") for x in p])
    t0 = utcnow()
    out = []
    for k in range(count):
        ts = t0 + timedelta(seconds=k)
        t1 = ts + timedelta(milliseconds=3)  # the second block's answer
        values = [round((k * 7 + i * 13) % 5000 * 0.1, 1) for i in range(SIGNALS - len(BITS))] + [True, False, False]
        out.append(Reading("dev-1", ts, 4.2, schema=schema, values=values,
                           times=[ts] * (SIGNALS - 20) + [t1] * 20))
    return out


def per_tag(run, items: list, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        run(items)
        best = min(best, time.process_time() - t)
    return best / (len(items) * SIGNALS) * 1e6


def measure(n: int, rounds: int) -> dict[str, float]:
    import gateway.contract as contract
    import gateway.historian.lineprotocol as lp
    from gateway.alarms import AlarmEngine
    from gateway.derived import processor_for

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_machine.yaml"
        path.write_text(yaml.safe_dump(profile()))
        s = site(path)
        device = s.devices[0]
        rs = readings(n)
        out = {}
        if hasattr(contract, "DataPayloads"):
            payloads = contract.DataPayloads("pit-7", "face", "z1", "bench_machine")
            out["a_payload"] = per_tag(lambda items: [payloads.build(r) for r in items], rs, rounds)
        else:
            out["a_payload"] = per_tag(lambda items: [contract.data_payload("pit-7", "face", "z1", "bench_machine", r)
                                                      for r in items], rs, rounds)
        if hasattr(lp, "ReadingLines"):
            lines = lp.ReadingLines("pit-7", "face", "bench_machine")
            out["b_lines"] = per_tag(lambda items: [lines.lines(r) for r in items], rs, rounds)
        else:
            out["b_lines"] = per_tag(lambda items: [lp.reading_lines("pit-7", "face", "bench_machine", r)
                                                    for r in items], rs, rounds)

        def alarms_derived(items):
            engine = AlarmEngine(s.alarms, {"dev-1": "face"})
            processor = processor_for(device, s.roof_pressure)
            for r in items:
                engine.on_reading("dev-1", r)
                processor.process(r)
        out["c_alarms_derived"] = per_tag(alarms_derived, rs, rounds)
        out["d_route"] = per_tag(lambda items: asyncio.run(route(s, items)), rs, rounds)
    return out


class StandIn:
    """An adapter that yields the given readings at once."""

    def __init__(self, config, items):
        self.config, self.items = config, items

    async def stream(self):
        for r in self.items:
            yield r


async def route(s, items) -> None:
    from gateway.historian.sink import HistorianSink
    from gateway.mqtt.sink import MqttSink
    from gateway.runtime import Gateway

    historian, mqtt = HistorianSink(s.historian, s, writer=object()), MqttSink(s.mqtt, s)
    gw = Gateway(s, [historian, mqtt])
    for chunk in range(0, len(items), 50):
        await gw._route(StandIn(s.devices[0], items[chunk:chunk + 50]))
        commit = historian.when_committed()  # what the commit task does, less SQLite
        historian._next_commit = None
        historian._pending.clear()
        commit.set_result(None)
        await asyncio.sleep(0)  # the gate releases the readings to the MQTT sink
        with mqtt._cond:
            mqtt._pending.clear()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readings", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--against", default=None, help="another source tree, measured alternately in the same run")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.json:
        print(json.dumps(measure(args.readings, args.rounds)))
        return
    trees = {"this tree": str(Path(__file__).resolve().parents[1])}
    if args.against:
        trees = {"against": str(Path(args.against).resolve()), **trees}
    results: dict[str, dict[str, float]] = {}
    for _ in range(3):  # alternate, keep each tree's best
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": tree}
            out = subprocess.run([sys.executable, __file__, "--json", "--readings", str(args.readings),
                                  "--rounds", str(args.rounds)], env=env, cwd=tree, capture_output=True,
                                 text=True, check=True)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            best = results.setdefault(name, got)
            for k, v in got.items():
                best[k] = min(best[k], v)
    keys = list(next(iter(results.values())))
    print("CPU µs per tag  " + "".join(f"{k:>18}" for k in keys))
    for name, got in results.items():
        print(f"{name:15}" + "".join(f"{got[k]:18.3f}" for k in keys))
    if len(results) == 2:
        before, after = results.values()
        print(f"{'ratio':15}" + "".join(f"{before[k] / after[k]:17.1f}x" for k in keys))


if __name__ == "__main__":
    main()
