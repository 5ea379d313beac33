"""The runtime's CommitGate: readings reach the live sinks only after their commit, in commit order, and a
large release is handed over in slices, one per turn of the event loop (gateway/runtime.py)."""
from __future__ import annotations

import asyncio
import gc

from gateway.core.heap import settle_delay, settle_heap, settle_heap_later
from gateway.runtime import CommitGate
from gateway.sinks import Sink


class Commits(Sink):
    """A durable sink whose commits the test runs by hand: ``when_committed`` as the historian's."""

    name = "durable"
    durable = True

    def __init__(self):
        self.next: asyncio.Future | None = None

    def when_committed(self) -> asyncio.Future:
        if self.next is None:
            self.next = asyncio.get_running_loop().create_future()
        return self.next

    def commit(self) -> None:
        done, self.next = self.next, None
        done.set_result(None)


def gate_with(released: list[list[int]]) -> tuple[Commits, CommitGate]:
    durable = Commits()
    return durable, CommitGate(durable, lambda held: released.append([reading for _, reading in held]))


async def turns(n: int = 1) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_nothing_is_released_before_its_commit_and_commits_release_in_order():
    released: list[list[int]] = []
    durable, gate = gate_with(released)
    for k in range(3):
        gate.hold("dev", k)
    first = durable.next
    durable.commit()  # readings 0..2 committed; their future's callbacks run on the next turn
    gate.hold("dev", 3)
    assert released == []
    await turns()
    assert released == [[0, 1, 2]]
    await turns(3)
    assert released == [[0, 1, 2]] and first.done()  # 3 waits for the next commit
    durable.commit()
    await turns()
    assert released == [[0, 1, 2], [3]]


async def test_a_large_release_goes_in_slices_in_order_one_per_turn():
    released: list[list[int]] = []
    durable, gate = gate_with(released)
    total = 2 * CommitGate.SLICE + 50
    for k in range(total):
        gate.hold("dev", k)
    durable.commit()
    await turns()
    assert [len(part) for part in released] == [CommitGate.SLICE]  # one slice, the rest on later turns
    for k in range(total, total + 10):  # a reading of the next commit, committed meanwhile, comes after them
        gate.hold("dev", k)
    durable.commit()
    await turns(5)
    assert [n for part in released for n in part] == list(range(total + 10))
    assert max(len(part) for part in released) <= CommitGate.SLICE


async def test_a_backlog_is_handed_over_in_a_few_turns_whatever_its_size():
    released: list[list[int]] = []
    durable, gate = gate_with(released)
    total = 40 * CommitGate.SLICE
    for k in range(total):
        gate.hold("dev", k)
    durable.commit()
    await turns()
    assert len(released[0]) == total // CommitGate.SPREAD  # a share of the backlog: it cannot fall behind
    await turns(30)
    assert [n for part in released for n in part] == list(range(total))


async def test_flush_hands_over_what_is_committed_at_once():
    released: list[list[int]] = []
    durable, gate = gate_with(released)
    for k in range(CommitGate.SLICE * 3):
        gate.hold("dev", k)
    durable.commit()
    await turns()
    gate.flush()
    assert [n for part in released for n in part] == list(range(CommitGate.SLICE * 3))
    await turns(3)  # the slice already scheduled finds nothing left
    assert sum(map(len, released)) == CommitGate.SLICE * 3


async def test_the_heap_of_the_start_is_frozen_out_of_the_collector():
    assert settle_delay([1.0] * 1000) == 2.0 and settle_delay([10.0]) == 20.0 and settle_delay([]) == 2.0
    kept = [[k] for k in range(10_000)]  # objects that live as long as the process
    try:
        frozen = settle_heap()
        assert frozen >= len(kept) and gc.get_freeze_count() == frozen
        assert not any(inner is kept[0] for inner in gc.get_objects())  # the collector no longer walks them
        gc.unfreeze()
        await settle_heap_later(0.01)
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()  # tests build many gateways: their garbage must stay collectable
