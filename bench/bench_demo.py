"""CPU of the whole `minegw demo` at steady state: simulators, gateway, broker and the demo's subscriber.

    python bench/bench_demo.py                        # headless, without and with the story (~2.5 min)
    python bench/bench_demo.py --warmup 20 --seconds 40 --runs quiet

Each run starts ``minegw demo --headless`` in a session of its own (stopped on the way out) and,
after ``--warmup`` seconds, measures over ``--seconds`` the CPU time of the demo process and every
process under it (the embedded Mosquitto included: it runs in a session of its own, so the tree is
walked from /proc, not the process group). Runs:

- **quiet**: ``--no-story``: the mine running, no fault;
- **story**: the story starts when the window opens (methane, evacuation broadcast, belt slip and
  trip, camera off and back, periodic weighting, signed acknowledgements): its busiest minute.

Prints a table and one ``BENCH_JSON {...}`` line. A benchmark, not a test: it asserts nothing
about speed (budget: < 50 % of one core), and exits non-zero only when a run could not be carried out.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_cpu_seconds(root: int) -> dict[str, float]:
    """CPU seconds (user + system, all threads) of ``root`` and its descendants, by command name."""
    tree, todo, cpu = children_of(), [root], {}
    while todo:
        pid = todo.pop()
        todo += tree.get(pid, [])
        try:
            head, tail = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        name = head.split("(", 1)[1]
        cpu[name] = cpu.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return cpu


def run(kind: str, warmup: float, seconds: float) -> dict:
    story = ["--story-at", str(warmup)] if kind == "story" else ["--no-story"]
    argv = [sys.executable, "-m", "gateway.cli", "demo", "--headless", "--seconds", str(warmup + seconds + 30),
            *story]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        broker = proc.stdout.readline().strip()  # the first line: the demo is up
        if proc.poll() is not None or not broker:
            raise SystemExit(f"the demo did not start: {proc.stderr.read()[-2000:]}")
        time.sleep(warmup)
        before, t0 = tree_cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        after, elapsed = tree_cpu_seconds(proc.pid), time.monotonic() - t0
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    per = {name: (after[name] - before.get(name, 0.0)) / elapsed * 100 for name in after}
    return {"run": kind, "seconds": round(elapsed, 1), "cpu_percent": round(sum(per.values()), 1),
            "by_process": {k: round(v, 1) for k, v in sorted(per.items(), key=lambda kv: -kv[1])},
            "broker": broker, "story_over": "the story is over" in out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--runs", default="quiet,story", help="comma-separated: quiet, story")
    args = parser.parse_args()
    results = [run(kind, args.warmup, args.seconds) for kind in args.runs.split(",")]
    print(f"{'run':<7} {'window s':>8} {'CPU % of one core':>18}  by process")
    for r in results:
        print(f"{r['run']:<7} {r['seconds']:>8} {r['cpu_percent']:>18}  "
              + ", ".join(f"{k} {v}" for k, v in r["by_process"].items()))
    print("BENCH_JSON " + json.dumps({"bench": "demo", "cores": os.cpu_count(), "runs": results}))


if __name__ == "__main__":
    main()
