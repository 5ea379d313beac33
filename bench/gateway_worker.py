"""Benchmark gateway process: the real ``Gateway`` + ``MqttSink``, measured from inside.

Started by ``bench_gateway.py`` (one fresh process per device count, so its CPU time
and peak RSS are the gateway's own); not meant to be run by hand. It prints JSON
lines on stdout:

    {"event": "ready", ...}     the gateway has started
    {"event": "result", ...}    after WARMUP + SECONDS: CPU, RSS, polls, overruns, health
    {"event": "stopped", ...}   after "stop" on stdin (or stdin closing): final health

Besides the MQTT sink it runs a tiny probe sink that only counts readings (device,
poll start, poll duration), so overruns and missed ticks are seen as the gateway
sees them. Its cost is a few attribute reads per reading.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import sys
import threading
import time

from gateway.config import load_site
from gateway.core.heap import settle_delay, settle_heap_later  # as `minegw run` does
from gateway.core.model import DeviceState, Reading
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from gateway.sinks import Sink


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def proc_status() -> dict[str, int]:
    """VmHWM / VmRSS / Threads of this process (kB, count)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS", "Threads"):
                    out[key] = int(rest.split()[0])
    except OSError:
        pass
    return out


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)  # all threads (paho's network thread too)
    return ru.ru_utime + ru.ru_stime


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


class ProbeSink(Sink):
    """Counts readings as the router dispatches them; does no I/O."""

    name = "probe"

    def __init__(self, interval: float):
        self.interval = interval
        self.rows: list[tuple[str, float, float, int]] = []  # device, ts (epoch), poll_ms, samples
        self.states: list[tuple[float, str, str]] = []

    def on_reading(self, device, reading: Reading) -> None:
        # len(values): the columnar reading's count (reading.samples would build a model per tag)
        self.rows.append((device.id, reading.ts.timestamp(), reading.poll_ms, len(reading.values)))

    def on_state(self, device, state: DeviceState) -> None:
        self.states.append((time.time(), device.id, f"{state.status.value}: {state.reason}"))

    def window(self, t0: float, t1: float) -> dict:
        lo, hi = int(t0 * 1000), int(t1 * 1000)
        # Truncate ts to the millisecond, as the MQTT payload's ISO timestamp does.
        rows = [r for r in self.rows if lo <= int(r[1] * 1000) < hi]
        polls = sorted(r[2] for r in rows)
        overran = sum(1 for r in rows if r[2] >= self.interval * 1000)
        # Missed ticks: a gap between consecutive polls of one device longer than 1.5 intervals.
        last: dict[str, float] = {}
        missed = 0
        max_gap = 0.0
        for dev, ts, _ms, _n in sorted(self.rows, key=lambda r: r[1]):
            prev = last.get(dev)
            last[dev] = ts
            if prev is None or not (t0 <= ts < t1):
                continue
            gap = ts - prev
            max_gap = max(max_gap, gap)
            if gap > 1.5 * self.interval:
                missed += round(gap / self.interval) - 1
        return {
            "readings": len(rows),
            "samples": sum(r[3] for r in rows),
            "poll_ms": {"p50": percentile(polls, 50), "p99": percentile(polls, 99),
                        "max": polls[-1] if polls else None},
            "overran": overran,
            "missed_ticks": missed,
            "max_poll_gap_s": max_gap,
        }


def window_start(rows: list[tuple], interval: float, now: float) -> float:
    """The first instant after ``now`` that lies half an interval from the polls' mean phase."""
    if not rows:
        return now
    angles = [2 * math.pi * ((r[1] % interval) / interval) for r in rows]
    mean = math.atan2(sum(map(math.sin, angles)), sum(map(math.cos, angles)))
    phase = (mean / (2 * math.pi) % 1.0) * interval
    target = phase + interval / 2
    return now + (target - now) % interval


def sink_health(sink) -> dict:
    """Whatever counters the MQTT sink exposes (names vary while it is being written)."""
    for name in ("health", "stats", "counters", "snapshot"):
        attr = getattr(sink, name, None)
        if attr is None:
            continue
        try:
            value = attr() if callable(attr) else attr
        except Exception as exc:  # noqa: BLE001 - report, never fail the benchmark on it
            return {"error": repr(exc)}
        if hasattr(value, "model_dump"):
            value = value.model_dump(mode="json")
        elif hasattr(value, "__dataclass_fields__"):
            from dataclasses import asdict
            value = asdict(value)
        if isinstance(value, dict):
            return value
    out = {}
    for name in ("dropped", "published", "queued", "failed", "pending", "queue_len"):
        v = getattr(sink, name, None)
        if isinstance(v, (int, float)):
            out[name] = v
    return out


def adapter_totals(gateway: Gateway) -> dict:
    states = list(gateway.states().values())
    return {
        "polls": sum(s.polls for s in states),
        "errors": sum(s.errors for s in states),
        "timeouts": sum(s.timeouts for s in states),
        "reconnects": sum(s.reconnects for s in states),
        "exception_responses": sum(s.exception_responses for s in states),
        "online": sum(1 for s in states if s.status.value == "online"),
        "devices": len(states),
        # deepest adapter event queue: readings waiting for the router (1000 = it drops the oldest)
        "adapter_queue_max": max((q.qsize() for a in gateway.adapters.values()
                                  if (q := getattr(a, "_events", None)) is not None), default=0),
    }


def coroutine_chain(task: asyncio.Task) -> list[str]:
    """file:line of every coroutine frame a task is suspended in, outermost first
    (Task.print_stack shows the outermost frame only)."""
    out, coro = [], task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            out.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return out


async def dump_tasks_after(delay: float, gateway: Gateway) -> None:
    """If stopping takes longer than ``delay``, print every task's await chain to stderr (the log),
    and whether the adapters that have not stopped are still polling."""
    await asyncio.sleep(delay)
    me = asyncio.current_task()
    stuck = {a.id: a.state.polls for a in gateway.adapters.values() if a._task and not a._task.done()}
    print(f"--- gateway still stopping after {delay:g} s; adapters not stopped: {stuck} ---", file=sys.stderr)
    for task in asyncio.all_tasks():
        if task is not me:
            print(f"{task!r}", file=sys.stderr)
            for line in coroutine_chain(task):
                print(f"    {line}", file=sys.stderr)
    await asyncio.sleep(3)
    print(f"--- 3 s later, their poll counters: "
          f"{ {i: gateway.adapters[i].state.polls for i in stuck} } ---", file=sys.stderr)
    sys.stderr.flush()


async def loop_lag(samples: list[float], period: float = 0.05) -> None:
    """How late the event loop wakes a sleeper: a direct measure of loop saturation."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(period)
        samples.append((time.perf_counter() - t - period) * 1000)


async def run(args) -> None:
    site = load_site(args.site)
    interval = min(d.poll_interval for d in site.devices)
    probe = ProbeSink(interval)
    sink = MqttSink(site.mqtt, site)
    sinks = [sink, probe]
    if site.historian is not None:
        from gateway.historian.sink import HistorianSink
        sinks.append(HistorianSink(site.historian, site))
    gateway = Gateway(site, sinks)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read_stdin, daemon=True, name="stdin").start()

    profiler = None
    if args.cprofile:
        import cProfile
        profiler = cProfile.Profile(time.thread_time)  # CPU time of the loop thread: a send that yields to the broker is not ours

    lag: list[float] = []
    rss_before = proc_status()
    async with gateway:
        emit({"event": "ready", "t": time.time(), "devices": len(gateway.adapters),
              "rss_kb_after_start": proc_status().get("VmRSS"), "rss_kb_before_start": rss_before.get("VmRSS")})
        settle = asyncio.create_task(settle_heap_later(settle_delay([d.poll_interval for d in site.devices])))
        lag_task = asyncio.create_task(loop_lag(lag))
        await asyncio.sleep(args.warmup)
        # Open the window half an interval away from when most polls start, so that a
        # window of whole intervals holds the same number of polls for every device.
        t0 = window_start(probe.rows[-max(1, len(gateway.adapters)):], interval, time.time())
        await asyncio.sleep(t0 - time.time())
        health0 = sink_health(sink)
        totals0 = adapter_totals(gateway)
        t0, c0, lag0 = time.time(), cpu_seconds(), len(lag)
        emit({"event": "window", "t0": t0})
        if profiler:
            profiler.enable()
        await asyncio.sleep(t0 + args.seconds - time.time())
        if profiler:
            profiler.disable()
        t1, c1 = time.time(), cpu_seconds()
        window_lag = sorted(lag[lag0:])
        totals1 = adapter_totals(gateway)
        status = proc_status()
        health1 = sink_health(sink)
        emit({"event": "window_end", "t1": t1})
        # Polls that started before t1 are dispatched when they finish: wait for them
        # before counting readings by their poll start (the subscriber counts the same way).
        await asyncio.sleep(args.settle)
        result = {
            "event": "result",
            "t0": t0, "t1": t1,
            "cpu_s": c1 - c0,
            "cpu_pct": (c1 - c0) / (t1 - t0) * 100,
            "rss_peak_kb": status.get("VmHWM"),
            "rss_kb": status.get("VmRSS"),
            "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "threads": status.get("Threads"),
            "loop_lag_ms": {"p50": percentile(window_lag, 50), "p99": percentile(window_lag, 99),
                            "max": window_lag[-1] if window_lag else None},
            "probe": probe.window(t0, t1),
            "adapters": {k: totals1[k] - totals0[k] if k in ("polls", "errors", "timeouts", "reconnects",
                                                              "exception_responses") else totals1[k]
                         for k in totals1},
            "sink_health_start": health0,
            "sink_health_end": health1,
            "state_changes": probe.states[-20:],
        }
        emit(result)
        if profiler:
            profiler.dump_stats(args.cprofile)
        try:
            await asyncio.wait_for(stop.wait(), timeout=args.linger)
        except asyncio.TimeoutError:
            pass
        lag_task.cancel()
        settle.cancel()
        t_stop = time.monotonic()
        watchdog = asyncio.create_task(dump_tasks_after(args.stop_watchdog, gateway))
    watchdog.cancel()
    emit({"event": "stopped", "stop_s": time.monotonic() - t_stop, "sink_health": sink_health(sink)})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("site")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds after the window before counting its readings (polls in flight)")
    ap.add_argument("--stop-watchdog", type=float, default=10.0,
                    help="dump the pending asyncio tasks if stopping takes longer than this")
    ap.add_argument("--linger", type=float, default=60.0, help="longest wait for 'stop' after the result")
    ap.add_argument("--cprofile", default=None, help="write cProfile stats (thread CPU time) of the window to this file")
    ap.add_argument("--uvloop", action="store_true", help="run the event loop on uvloop")
    args = ap.parse_args()
    if args.uvloop:
        import uvloop
        uvloop.run(run(args))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
