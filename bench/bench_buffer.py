"""The historian's durable buffer: bytes per tag on disk, put CPU, and back-fill against InfluxDB's own pace.

    python bench/bench_buffer.py                        # 200 devices, a 10-minute outage, own influxd
    python bench/bench_buffer.py --outage 60 --skip-influx   # bytes and put CPU only, quick

Lines: the simulators' machines as ``bench/bench_gateway.py`` polls them: N devices × 100 uint16
input registers (scale 0.1, the generic model's slow sine waves), one 100-field line per device a
second, built by the gateway's own ``ReadingLines``.

1. **Outage**: the lines of ``--outage`` seconds are committed as the historian sink commits them
   (every 50 ms, what came meanwhile: ~N/20 lines), into the buffer before blocks (its code at
   commit ``OLD_BUFFER``, from git: one deflated row per line, schema 2) and into the current one (zstd blocks; every second the sink's
   compaction step runs; every 10 s a failed live batch moves the live mark, as retries do).
   Bytes per tag = the file's growth (WAL checkpointed) / tags put; put CPU = the thread's CPU
   time in ``put`` per line.
2. **InfluxDB direct** (own influxd 1.6, as the tests start it): lines written by one
   ``InfluxV1Writer``, serially, at each ``--batches`` size (``--sweep-lines`` of them); at the best
   size, all the outage's lines, before and after each back-fill: their mean is that back-fill's
   reference (the machine's load changes over a run).
3. **Back-fill** (``--rounds``, each on a copy of the file): a real ``HistorianSink`` opens the
   outage's buffer file and drains it into
   InfluxDB while live lines keep coming (N a second, committed every 50 ms): lines/s of the
   backlog, its ratio to the direct best, the drain time, and live latency (put → InfluxDB
   answered) p50/p99 during the drain.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import types
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_gateway import make_profile

COMMIT_S = 0.05
T0 = datetime(2026, 5, 1, tzinfo=UTC)


class Machines:
    """N simulated machines (bench_gateway's profile, the simulators' generic model), as line protocol."""

    def __init__(self, devices: int):
        from adapters.modbus.profile import Profile
        from gateway.core.model import Schema
        from gateway.historian.lineprotocol import ReadingLines
        from simulators.modbus.machines import make_model
        from simulators.physics import derive_seed
        self.profile = Profile.model_validate(make_profile(100))
        self.ids = [f"bench-{i + 1:04d}" for i in range(devices)]
        self.models = [make_model(self.profile, derive_seed(0, d)) for d in self.ids]
        self.schema = Schema([p.name for p in self.profile.points], [p.unit or "" for p in self.profile.points])
        self.builder = ReadingLines("bench-mine", "bench", "bench_machine")

    def second(self, s: int) -> list[tuple[float, str]]:
        """Every device's line of second ``s``, each at its own phase in the second."""
        from gateway.core.model import Reading
        out = []
        for i, (device, model) in enumerate(zip(self.ids, self.models)):
            t = s + i / len(self.ids)
            values = model.values(1000.0 + t)
            raws = [round(values[p.name] / p.scale) * p.scale for p in self.profile.points]
            ts = T0 + timedelta(seconds=t)
            reading = Reading(device, ts, 4.2, schema=self.schema, values=raws, times=[ts] * len(raws))
            out += [(ts.timestamp(), line) for line in self.builder.lines(reading)]
        return out


def commits(lines: list[tuple[float, str]], per_second: int):
    """The lines as the sink commits them: every 50 ms, what came meanwhile."""
    step = max(1, round(per_second * COMMIT_S))
    for start in range(0, len(lines), step):
        yield lines[start:start + step]


OLD_BUFFER = "bd5924d"  # the last commit with one deflated row per line (buffer schema 2)


def old_buffer_class():
    """``DurableBuffer`` as it was at ``OLD_BUFFER``, loaded from git: the format before blocks, side by side."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{OLD_BUFFER}:gateway/buffer.py"], check=True,
                            capture_output=True, text=True).stdout
    module = sys.modules["old_buffer"] = types.ModuleType("old_buffer")  # dataclasses look their module up
    exec(compile(source, "old_buffer.py", "exec"), module.__dict__)  # noqa: S102 - our own file, from our own history
    return module.DurableBuffer


def file_bytes(path: Path) -> int:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


def fill(kind: str, path: Path, machines: Machines, seconds: int) -> dict:
    """Commit an outage's lines into a buffer file of ``kind`` ("old", "blocks"); bytes and CPU."""
    from gateway.buffer import DurableBuffer
    store = old_buffer_class()(path) if kind == "old" else DurableBuffer(path, max_in_flight=2)
    base = file_bytes(path)
    put_cpu = compact_cpu = 0.0
    lines = puts = 0
    for s in range(seconds):
        rows = machines.second(s)
        for chunk in commits(rows, len(machines.ids)):
            t = time.thread_time()
            store.put(chunk)
            put_cpu += time.thread_time() - t
            puts += 1
        lines += len(rows)
        if kind == "blocks":
            if s % 10 == 9:  # a retry during the outage: a live batch that fails moves the live mark
                store.nack(store.take_batch(5000))
            t = time.thread_time()
            while store.compact():
                pass
            compact_cpu += time.thread_time() - t
    store.close()
    size = file_bytes(path) - base
    return {"format": kind, "lines": lines, "tags": lines * 100, "bytes": size,
            "bytes_per_tag": size / (lines * 100), "put_us_per_line": put_cpu / lines * 1e6,
            "put_us_per_commit": put_cpu / puts * 1e6,
            "compact_us_per_line": compact_cpu / lines * 1e6}


# ---- InfluxDB ----

def writer_cfg(url: str, database: str, **extra):
    from gateway.config import HistorianConfig
    return HistorianConfig(url=url, database=database, timeout=60, **extra)


async def direct(url: str, lines: list[str], batch: int, database: str) -> float:
    """Lines/s of one writer sending ``lines`` serially in batches of ``batch``."""
    from gateway.historian.influx import InfluxV1Writer
    writer = InfluxV1Writer(writer_cfg(url, database))
    try:
        await writer.write(lines[:10])  # creates the database outside the clock
        t0 = time.perf_counter()
        for start in range(0, len(lines), batch):
            await writer.write(lines[start:start + batch])
        return len(lines) / (time.perf_counter() - t0)
    finally:
        await writer.close()


class TimedWriter:
    """The sink's writer, noting when each live line was answered."""

    def __init__(self, inner, put_at: dict[str, float]):
        self.inner, self.put_at = inner, put_at
        self.latencies: list[float] = []
        self.backlog_written = 0
        self.backlog_done_at: float | None = None
        self.backlog = 0

    async def write(self, lines: list[str]) -> None:
        await self.inner.write(lines)
        now = time.perf_counter()
        for line in lines:
            put = self.put_at.pop(line, None)
            if put is None:
                self.backlog_written += 1
            else:
                self.latencies.append(now - put)
        if self.backlog_done_at is None and self.backlog_written >= self.backlog:
            self.backlog_done_at = now

    async def ping(self) -> str:
        return await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


async def backfill(url: str, path: Path, machines: Machines, outage: int, database: str, batch: int) -> dict:
    """A HistorianSink drains the outage's file while live lines come; lines/s of the backlog, live latency."""
    from gateway.buffer import DurableBuffer
    from gateway.config import parse_site
    from gateway.historian.influx import InfluxV1Writer
    from gateway.historian.sink import HistorianSink
    with closing(DurableBuffer(path)) as buffer:
        backlog = buffer.stats().depth
    site = parse_site({"site": {"id": "bench-mine", "gateway_id": "bench-gw"},
                       "areas": [{"id": "bench", "kind": "roadway"}], "devices": [],
                       "mqtt": {"host": "127.0.0.1", "port": 1883}})
    cfg = writer_cfg(url, database, batch_lines=batch, flush_interval=0.2, buffer={"path": str(path)})
    put_at: dict[str, float] = {}
    writer = TimedWriter(InfluxV1Writer(cfg), put_at)
    writer.backlog = backlog
    await writer.inner.write(["bench_probe v=1i 1"])  # the database exists before the clock starts
    sink = HistorianSink(cfg, site, writer=writer, health_interval=3600)
    await sink.start()
    t0 = time.perf_counter()
    s = outage
    try:
        while writer.backlog_done_at is None:
            rows = machines.second(s)
            s += 1
            for chunk in commits(rows, len(machines.ids)):
                now = time.perf_counter()
                put_at.update((line, now) for _, line in chunk)
                sink.put_lines(chunk)
                await asyncio.sleep(COMMIT_S)
            if time.perf_counter() - t0 > 600:
                raise RuntimeError("the back-fill did not end within 10 minutes")
        drain_s = writer.backlog_done_at - t0
        while put_at and time.perf_counter() - t0 < drain_s + 10:  # the live lines of the drain land too
            await asyncio.sleep(0.1)
    finally:
        await sink.stop()
    latencies = sorted(writer.latencies)
    return {"backlog": backlog, "drain_s": drain_s, "lines_per_s": backlog / drain_s,
            "live_lines": len(latencies),
            "live_p50_ms": statistics.median(latencies) * 1e3 if latencies else math.nan,
            "live_p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1e3 if latencies else math.nan,
            "live_max_ms": latencies[-1] * 1e3 if latencies else math.nan}


def influx_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--outage", type=int, default=600, help="seconds of outage (lines: devices × seconds)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1000, 2500, 5000, 10000],
                    help="batch sizes for the direct writer")
    ap.add_argument("--sweep-lines", type=int, default=30_000, help="lines written at each --batches size")
    ap.add_argument("--batch-lines", type=int, default=5000, help="the sink's historian.batch_lines")
    ap.add_argument("--rounds", type=int, default=2, help="back-fills, each between two direct runs")
    ap.add_argument("--skip-influx", action="store_true", help="bytes per tag and put CPU only")
    args = ap.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="minegw-bench-buffer-"))
    machines = Machines(args.devices)
    print(f"== {args.devices} devices x 100 registers, 1 s polls, outage {args.outage} s "
          f"({args.devices * args.outage} lines), commits every {COMMIT_S * 1000:g} ms ({workdir})", flush=True)
    results = {}
    for kind in ("old", "blocks"):
        r = results[kind] = fill(kind, workdir / f"{kind}.sqlite3", machines, args.outage)
        print(f"buffer {kind:6s}: {r['bytes'] / 1e6:8.1f} MB for {r['tags']} tags = {r['bytes_per_tag']:.2f} B/tag; "
              f"put {r['put_us_per_line']:.1f} µs CPU/line ({r['put_us_per_commit']:.0f} µs a commit, fsync "
              f"included); compaction {r['compact_us_per_line']:.1f} µs CPU/line",
              flush=True)
    per_day = results["blocks"]["bytes_per_tag"] * args.devices * 100 * 86400
    print(f"24 h of {args.devices} devices x 100 tags at 1 s: {per_day / 1e9:.2f} GB "
          f"(old format {results['old']['bytes_per_tag'] * args.devices * 100 * 86400 / 1e9:.2f} GB)")
    if args.skip_influx:
        return 0

    from tests.conftest import Influx
    influx = Influx(workdir / "influx")
    (workdir / "influx").mkdir()
    influx.start()
    try:
        lines = [line for s in range(args.outage) for _, line in machines.second(s)]
        sweep = lines[:args.sweep_lines]
        rates = {}
        for batch in args.batches:  # the direct writer's best batch size, on part of the lines
            rates[batch] = asyncio.run(direct(influx.url, sweep, batch, f"sweep_{batch}"))
            print(f"influx direct, batch {batch:6d}: {rates[batch]:8.0f} lines/s ({len(sweep)} lines)", flush=True)
        best = max(rates, key=rates.get)
        directs = []

        def run_direct(label: str) -> None:
            cpu0, t0 = influx_cpu_s(influx.process.pid), time.perf_counter()
            rate = asyncio.run(direct(influx.url, lines, best, f"direct_{label}"))
            cpu = (influx_cpu_s(influx.process.pid) - cpu0) / (time.perf_counter() - t0)
            directs.append(rate)
            print(f"influx direct ({label}), batch {best}: {len(lines)} lines at {rate:.0f} lines/s "
                  f"(influxd {cpu * 100:.0f} % CPU)", flush=True)

        filled = workdir / "blocks.sqlite3"
        run_direct("0")
        ratios = []
        for k in range(args.rounds):  # direct, back-fill, direct, ...: the machine's load changes over a run
            copy = workdir / f"backfill-{k}.sqlite3"
            shutil.copy(filled, copy)
            cpu0, t0 = influx_cpu_s(influx.process.pid), time.perf_counter()
            r = asyncio.run(backfill(influx.url, copy, Machines(args.devices), args.outage, f"backfill_{k}",
                                     args.batch_lines))
            cpu = (influx_cpu_s(influx.process.pid) - cpu0) / (time.perf_counter() - t0)
            run_direct(str(k + 1))
            reference = statistics.mean(directs[-2:])
            ratios.append(r["lines_per_s"] / reference)
            print(f"back-fill {k + 1} (batch_lines {args.batch_lines}): {r['backlog']} lines in {r['drain_s']:.1f} s = "
                  f"{r['lines_per_s']:.0f} lines/s = {ratios[-1] * 100:.0f} % of direct ({reference:.0f} lines/s, "
                  f"the mean of the runs before and after); influxd {cpu * 100:.0f} % CPU", flush=True)
            print(f"  live during the drain: {r['live_lines']} lines, put -> InfluxDB answered p50 "
                  f"{r['live_p50_ms']:.0f} ms, p99 {r['live_p99_ms']:.0f} ms, max {r['live_max_ms']:.0f} ms", flush=True)
        print(f"back-fill / direct over {args.rounds} round(s): {', '.join(f'{x * 100:.0f} %' for x in ratios)}")
    finally:
        influx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
