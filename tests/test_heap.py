"""gateway/core/heap.py: the long-lived heap of a running gateway is frozen out of the garbage collector."""
from __future__ import annotations

import gc

from gateway.core.heap import settle_delay, settle_heap, settle_heap_later


async def test_the_heap_of_the_start_is_frozen_out_of_the_collector():
    assert settle_delay([1.0] * 1000) == 2.0 and settle_delay([10.0]) == 20.0 and settle_delay([]) == 2.0
    kept = [[k] for k in range(10_000)]  # objects that live as long as the process
    try:
        frozen = settle_heap()
        # the count it returns is the collector's; a frozen object freed since (by another thread: pytest-xdist's
        # channel) leaves the permanent generation, so the count may only have fallen a little
        assert frozen >= len(kept) and frozen - 100 <= gc.get_freeze_count() <= frozen
        assert not any(inner is kept[0] for inner in gc.get_objects())  # the collector no longer walks them
        gc.unfreeze()
        await settle_heap_later(0.01)
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()  # tests build many gateways: their garbage must stay collectable
