"""Where the gateway's CPU goes: a py-spy record of a running process, summed per function group.

    python bench/hotspots.py FILE.txt          # summarise a py-spy raw (collapsed stacks) file

``bench_gateway.py --profile FILE`` records the gateway over the measured window with
``py-spy record --format raw --nonblocking --subprocesses`` (py-spy from PyPI: ``pip install
py-spy``) and prints this table. Each stack counts for one group: walking from the leaf to the
root, the first frame whose file matches a group's pattern decides (so ``json.dumps`` called by
the MQTT sink counts as the sink's, pymodbus called by the adapter as pymodbus's; asyncio and
threading count only when no other group is in the stack). Only threads
holding the GIL are sampled (``--gil``: py-spy's idle detection counts a thread blocked in
``select`` or ``Condition.wait`` as busy here), so the shares are of the Python work; time in C
with the GIL released (socket writes, SQLite) is missing from them.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# (group, regex on a frame's file path), tried in this order for every frame from the leaf up
GROUPS: list[tuple[str, str]] = [
    ("pydantic models (Sample, validation, dumps)", r"(^|/)pydantic(_core)?/|gateway/core/model\.py"),
    ("Modbus decode (codec, points, scale, range)", r"adapters/modbus/(codec|decode|point|points|profile|plan|"
                                                    r"schema|blocks?)\w*\.py"),
    ("pymodbus client transactions", r"(^|/)pymodbus/"),
    ("Modbus adapter + read transport", r"adapters/"),
    ("historian sink + durable buffer", r"gateway/(historian/|buffer)|(^|/)(sqlite3|influxdb_client)/"),
    ("alarms + derived metrics", r"gateway/(alarms|derived/)"),
    ("router + MQTT sink (payload, JSON, queue)", r"gateway/(runtime|sinks|contract|mqtt/)|(^|/)(json|orjson)/"),
    ("paho network + publish threads", r"(^|/)paho/"),
    ("benchmark probe (not the gateway's)", r"bench/"),
    ("event loop (asyncio, selectors, threads)", r"(^|/)(asyncio|uvloop)/|(^|/)(selectors|threading|queue)\.py"),
]
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def py_spy() -> str | None:
    return shutil.which("py-spy") or next((str(p) for p in [Path(sys.executable).with_name("py-spy")]
                                           if p.exists()), None)


def record(pid: int, seconds: float, out: Path, rate: int = 100) -> subprocess.Popen:
    """Start recording ``pid`` (and its subprocesses) for ``seconds``; the caller waits on the process."""
    spy = py_spy()
    if spy is None:
        raise RuntimeError("py-spy not found: pip install py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                             "--rate", str(rate), "--format", "raw", "--gil", "--nonblocking", "--subprocesses",
                             "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def parse(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    """(frames root first as (function, file), count) per line of a py-spy raw file."""
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for part in stack.split(";"):
            m = _FRAME.match(part.strip())
            if m:
                frames.append((m["func"], m["file"]))
        stacks.append((frames, int(count)))
    return stacks


def group_of(frames: list[tuple[str, str]]) -> str:
    """The group of the frame nearest the leaf that matches one; the event loop and thread plumbing
    (the last group) only when nothing else in the stack does (``Condition.notify`` called by the
    MQTT sink is the sink's)."""
    for groups in (GROUPS[:-1], GROUPS[-1:]):
        for _func, file in reversed(frames):
            for name, pattern in groups:
                if re.search(pattern, file):
                    return name
    return "other"


def summarise(path: Path, top: int = 12) -> dict:
    stacks = parse(path)
    total = sum(n for _, n in stacks) or 1
    groups: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, n in stacks:
        groups[group_of(frames)] += n
        if frames:
            func, file = frames[-1]
            leaves[f"{func} ({_short(file)})"] += n
    return {"samples": sum(n for _, n in stacks),
            "groups": {g: round(100 * n / total, 1) for g, n in groups.most_common()},
            "top_self": {f: round(100 * n / total, 1) for f, n in leaves.most_common(top)}}


def _short(file: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "/wt-", "/work/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return file


def table(summary: dict) -> str:
    lines = ["| function group | share of samples |", "|---|---:|"]
    lines += [f"| {g} | {pct:.1f} % |" for g, pct in summary["groups"].items()]
    lines += ["", "| top functions (self) | share |", "|---|---:|"]
    lines += [f"| `{f}` | {pct:.1f} % |" for f, pct in summary["top_self"].items()]
    return "\n".join(lines) + f"\n\n({summary['samples']} samples)"


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"{arg}:\n{table(summarise(Path(arg)))}\n")
