"""Summarises a trace written by bench/historian_trace/sitecustomize.py (``MINEGW_TRACE=FILE``).

    python bench/historian_trace.py FILE [FILE ...]

Per file: event-loop lags, garbage collections per generation (count, wall and CPU per collection,
CPU in all), commits (duration from start to the loop resuming, split into waiting for the DB
thread, the put there, and waiting for the loop afterwards; lines per commit), the CommitGate's
releases (readings per release, ms the loop spent in one), the buffer's take/ack, and the
historian's ``on_reading``. All times in ms.
"""
from __future__ import annotations

import bisect
import json
import sys


def q(values: list[float], p: float, scale: float = 1e3) -> str:
    if not values:
        return "-"
    values = sorted(values)
    return f"{values[min(len(values) - 1, int(p / 100 * len(values)))] * scale:.1f}"


def spread(values: list[float], scale: float = 1e3) -> str:
    return " / ".join(q(values, p, scale) for p in (50, 90, 99, 100))


def commit_parts(trace: dict) -> tuple[list[float], list[float], list[float]]:
    """Per commit: time until its put began on the DB thread, the put, and the loop's delay after it."""
    puts = sorted(trace["put"])
    starts = [p[0] for p in puts]
    before, put, after = [], [], []
    for t, duration, _ in trace["commit"]:
        i = bisect.bisect_left(starts, t)
        if i < len(puts) and puts[i][0] <= t + duration:
            before.append(puts[i][0] - t)
            put.append(puts[i][1])
            after.append(t + duration - puts[i][0] - puts[i][1])
    return before, put, after


def summary(path: str) -> str:
    with open(path) as f:
        trace = json.load(f)
    out = [(f"{path}: {trace.get('objects')} objects tracked, {trace.get('frozen')} frozen; "
            f"{', '.join(trace.get('status', []))}"),
           "(p50 / p90 / p99 / max)",
           f"loop lag > 4 ms: {len(trace['lag'])} times, ms {spread([late for _, late in trace['lag']])}"]
    for gen in (0, 1, 2):
        runs = [g for g in trace["gc"] if g[2] == gen]
        out.append(f"gc gen {gen}: {len(runs)} collections, wall ms {spread([g[1] for g in runs])}, "
                   f"CPU ms {spread([g[3] for g in runs])}, CPU {sum(g[3] for g in runs):.2f} s in all")
    commits = trace["commit"]
    out.append(f"commits: {len(commits)}, ms {spread([c[1] for c in commits])}, "
               f"lines {spread([c[2] for c in commits], 1)}")
    before, put, after = commit_parts(trace)
    out.append(f"  waiting for the DB thread ms {spread(before)}; put ms {spread(put)} "
               f"(CPU {spread([p[2] for p in trace['put']])}); loop resumed after ms {spread(after)}")
    releases = trace["release"]
    out.append(f"releases: readings {spread([r[2] for r in releases], 1)}; loop ms per release "
               f"{spread([r[1] for r in releases])}")
    out.append(f"MQTT on_readings ms {spread([m[1] for m in trace['mqtt']])}")
    for name in ("take", "ack"):
        out.append(f"buffer {name}: {len(trace[name])}, wall ms {spread([x[1] for x in trace[name]])}, "
                   f"CPU ms {spread([x[2] for x in trace[name]])}")
    out.append(f"historian on_reading µs {spread(trace['onreading'], 1e6)}")
    return "\n".join(out)


if __name__ == "__main__":
    print("\n\n".join(summary(path) for path in sys.argv[1:]))
