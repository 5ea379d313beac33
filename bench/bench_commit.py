"""The historian's group commit: how long a reading waits for it, how long a commit takes, how many run.

    python bench/bench_commit.py                               # 1 000 devices, 10 s per variant, 2 rounds
    python bench/bench_commit.py --devices 500 --intervals 0 0.02 0.05 --seconds 10 --rounds 3

One process: a real ``HistorianSink`` (durable buffer file on disk, ``synchronous=FULL``, its drain
writing to a null writer that accepts every batch at once, so the drain competes for the buffer's
thread as in production), fed N devices × 100 signals, each device once a second at its own phase
(as polls are spread); ``--loop-load`` keeps the loop busy with Python that share of the time. Each reading asks ``when_committed()`` like the runtime's ``CommitGate`` and
the wait until its future's callback ran is its *release latency* (the part of poll → subscriber
the historian adds). Variants, alternated in one run: ``fixed`` (the commit task before: sleep
0.1 s, commit, repeat) and ``continuous`` with each ``--intervals`` value (commit as soon as lines
wait, at least that many seconds between commit starts).

Per variant: release latency p50/p99/max, commits per second, lines per commit, ms per commit (the
``DurableBuffer.put`` call on the buffer's thread, fsync included), ms a commit waited for the
buffer's thread (busy with the drain), and the process's CPU seconds per second (load included).
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_sinks import readings  # noqa: E402  (one 100-signal reading, as a Modbus poll gives it)


class NullWriter:
    async def write(self, lines: list[str]) -> None:
        pass

    async def ping(self) -> str:
        return "null"

    async def close(self) -> None:
        pass


def make_sink(interval: float | None, workdir: Path):
    from gateway.config import HistorianConfig, parse_site
    from gateway.historian.sink import HistorianSink

    site = parse_site({"site": {"id": "pit-7", "gateway_id": "gw-a"}, "areas": [{"id": "face", "kind": "longwall_face"}],
                       "devices": [], "mqtt": {"host": "127.0.0.1", "port": 1883}})
    buffer = {"path": str(workdir / f"buffer-{time.monotonic_ns()}.sqlite3")}
    if interval is not None:
        buffer["commit_interval"] = interval
    cfg = HistorianConfig(url="http://127.0.0.1:1", database="bench", flush_interval=0.2, buffer=buffer)

    class Fixed(HistorianSink):  # the commit task of the first round: a fixed 0.1 s sleep
        async def _commit_loop(self) -> None:
            while True:
                await asyncio.sleep(0.1)
                await self.commit()

    return (Fixed if interval is None else HistorianSink)(cfg, site, writer=NullWriter(), health_interval=3600)


async def run_variant(interval: float | None, devices: int, seconds: float, warmup: float, workdir: Path,
                      load: float = 0.0, period: float = 0.01) -> dict:
    loop = asyncio.get_running_loop()
    running = True
    if load:  # keep the loop busy with Python code that share of the time, as the gateway's is: the GIL is contended
        def spin() -> None:
            end = time.perf_counter() + period * load
            while time.perf_counter() < end:
                pass
            if running:
                loop.call_later(period * (1 - load), spin)
        loop.call_soon(spin)
    sink = make_sink(interval, workdir)
    await sink.start()
    puts: list[tuple[float, float]] = []  # (queued on the thread's queue, ran) durations of each put
    put_cpu: list[float] = []  # the buffer thread's CPU seconds of each put
    real_put = sink._buffer.put  # noqa: SLF001 - a benchmark times the put where it runs

    def timed_put(*args):
        began, cpu_began = time.perf_counter(), time.thread_time()
        real_put(*args)
        puts.append((began, time.perf_counter() - began))
        put_cpu.append(time.thread_time() - cpu_began)

    sink._buffer.put = timed_put  # noqa: SLF001
    handed: list[float] = []
    real_in_db = sink._in_db  # noqa: SLF001

    async def in_db(fn, *args):
        if fn is timed_put:
            handed.append(time.perf_counter())
        return await real_in_db(fn, *args)

    sink._in_db = in_db  # noqa: SLF001
    reading = readings(1)[0]
    devs = [SimpleNamespace(id=f"dev-{i}", area="face", equipment_kind="bench_machine") for i in range(devices)]
    latencies: list[float] = []
    measuring = False
    start = loop.time() + 0.05

    def emit(dev, at: float) -> None:
        if not running:
            return
        t0 = time.perf_counter()
        sink.on_reading(dev, reading)
        if measuring:
            sink.when_committed().add_done_callback(lambda _f: latencies.append(time.perf_counter() - t0))
        else:
            sink.when_committed()
        loop.call_at(at + 1.0, emit, dev, at + 1.0)

    for i, dev in enumerate(devs):
        at = start + i / devices
        loop.call_at(at, emit, dev, at)
    await asyncio.sleep(warmup)
    measuring = True
    commits0, cpu0, wall0, n_puts = sink.commits, time.process_time(), time.perf_counter(), len(puts)
    lines0 = sink.buffered
    await asyncio.sleep(seconds)
    measuring = False
    commits, cpu, wall = sink.commits - commits0, time.process_time() - cpu0, time.perf_counter() - wall0
    lines = sink.buffered - lines0
    window = puts[n_puts:]
    waits = [began - h for h, (began, _) in zip(handed[n_puts:], window)]
    running = False
    await sink.stop()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return {"variant": "fixed 0.1 s" if interval is None else f"continuous {interval:g} s",
            "p50": q[49] * 1e3, "p99": q[98] * 1e3, "max": latencies[-1] * 1e3,
            "commits_s": commits / wall, "lines_commit": lines / max(commits, 1),
            "put_ms": statistics.mean(d for _, d in window) * 1e3 if window else 0.0,
            "put_p99_ms": (statistics.quantiles([d for _, d in window], n=100)[98] * 1e3) if len(window) > 2 else 0.0,
            "put_cpu_ms": statistics.mean(put_cpu[n_puts:len(window) + n_puts]) * 1e3 if window else 0.0,
            "wait_ms": statistics.mean(waits) * 1e3 if waits else 0.0,
            "cpu": cpu / wall, "released": len(latencies)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--intervals", type=float, nargs="+", default=[0.0, 0.02, 0.05])
    ap.add_argument("--loop-load", type=float, default=0.0, help="share of the loop's time spent in Python "
                    "(0.45: the gateway's at 1 000 devices), so the buffer's thread competes for the GIL")
    ap.add_argument("--loop-period", type=float, default=0.01,
                    help="seconds per busy + idle cycle of --loop-load (0.04: busy stretches of 18 ms at 0.45)")
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="sys.setswitchinterval (s): how long a thread waiting for the GIL waits (Python's default 0.005)")
    ap.add_argument("--dir", type=Path, default=None, help="where the buffer files go (a disk, not tmpfs)")
    args = ap.parse_args()
    variants = [None, *args.intervals]
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    print(f"{args.devices} devices x 100 signals at 1 s, {args.seconds:g} s per variant, {args.rounds} round(s), "
          f"loop load {args.loop_load:g} in cycles of {args.loop_period * 1e3:g} ms, GIL switch interval {sys.getswitchinterval() * 1e3:g} ms")
    print("| variant | release p50 / p99 / max ms | commits/s | lines/commit | put ms (mean / p99) "
          "| put CPU ms | wait for DB thread ms | CPU s/s |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-commit-") as tmp:
        for _ in range(args.rounds):
            for interval in variants:
                r = asyncio.run(run_variant(interval, args.devices, args.seconds, args.warmup, Path(tmp),
                                            args.loop_load, args.loop_period))
                print(f"| {r['variant']} | {r['p50']:.1f} / {r['p99']:.1f} / {r['max']:.1f} | {r['commits_s']:.1f} "
                      f"| {r['lines_commit']:.1f} | {r['put_ms']:.2f} / {r['put_p99_ms']:.2f} | {r['put_cpu_ms']:.2f} "
                      f"| {r['wait_ms']:.2f} "
                      f"| {r['cpu']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
