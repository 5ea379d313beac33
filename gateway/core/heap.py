"""The garbage collector of a long-running gateway or simulator process.

At 1 000 devices the objects built at start and by the first polls (the site's models, 100 000
points and their decode plans, the adapters, the sinks) are a few hundred thousand that live as
long as the process. CPython's full collections walk all of them every time they run: 65–85 ms of
CPU each with the event loop stopped (bench/README.md, "1 000 devices with the historian (issue
15, fourth round)"). Once every device has polled they are moved out of the collector's reach
(``gc.freeze``); what the run allocates afterwards is collected as before. ``minegw sim`` does
the same once its devices are built (0.3 s per full collection at 1 000 devices: bench/README.md,
"Simulators: a frozen heap and two processes").
"""
from __future__ import annotations

import asyncio
import gc
import logging

log = logging.getLogger(__name__)


def settle_heap() -> int:
    """Collect the young generations' garbage, then freeze every tracked object (never scanned again);
    returns how many are frozen. Not a full collection: that would stop the loop ~60 ms at 1 000 devices
    while the first polls run, and a built gateway leaves no garbage in the old generation
    (bench/bench_heap.py). For a process that runs until it exits (not tests that build many gateways:
    frozen garbage in reference cycles is never freed)."""
    gc.collect(1)
    gc.freeze()
    return gc.get_freeze_count()


def settle_delay(poll_intervals: list[float]) -> float:
    """When the first polls have built what lives as long as the gateway: two of the slowest poll
    intervals, within 2..30 s (a device polled less often than that keeps its first poll's objects young)."""
    return min(30.0, max(2.0, 2 * max(poll_intervals, default=1.0)))


async def settle_heap_later(delay: float) -> None:
    """``settle_heap`` after ``delay`` seconds (a task of the gateway's run)."""
    await asyncio.sleep(delay)
    log.debug("%d objects frozen out of the garbage collector's scans", settle_heap())
