"""The shared poll timer (adapters/base.py PollTicker): polls due in one slot resume together, none
before its time, in the order of their slots; a cancelled wait leaves the others alone; a poll that overran
skips the ticks it missed."""
from __future__ import annotations

import asyncio
import math
import time

import pytest

from adapters.base import SLOT_S, PollTicker, expire_later, next_poll_due, sleep_until


async def test_polls_due_in_one_slot_resume_together_and_never_before_their_time():
    loop = asyncio.get_running_loop()
    ticker = PollTicker(loop)
    slot_start = (math.floor(time.monotonic() / SLOT_S) + 3) * SLOT_S  # the default loop's clock is monotonic
    dues = [slot_start + (0.1 + k / 6) * SLOT_S for k in range(5)] + [slot_start + 3.5 * SLOT_S]
    woke: list[tuple[int, float, int]] = []  # (which, when, loop iteration stamp)
    iteration = [0]

    def count_iterations():  # a callback per loop iteration, to tell iterations apart
        iteration[0] += 1
        if len(woke) < len(dues):
            loop.call_soon(count_iterations)

    async def poll(which: int, due: float):
        await ticker.wait_until(due)
        woke.append((which, time.monotonic(), iteration[0]))

    loop.call_soon(count_iterations)
    cancelled = asyncio.create_task(poll(99, dues[0]))
    tasks = [asyncio.create_task(poll(k, due)) for k, due in enumerate(dues)]
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(*tasks)
    assert all(at >= dues[k] for k, at, _ in woke)  # never early
    assert [k for k, _, _ in woke] == list(range(len(dues)))
    same_slot = {it for k, _, it in woke if k < 5}
    assert len(same_slot) == 1  # one slot: one timer, all five resumed in one loop iteration
    assert woke[-1][2] > max(same_slot)  # a later slot: a later wake-up


async def test_a_late_timer_does_not_resume_the_next_slot_early():
    ticker = PollTicker(asyncio.get_running_loop())
    slot_start = (math.floor(time.monotonic() / SLOT_S) + 3) * SLOT_S
    first, second = slot_start + 0.1 * SLOT_S, slot_start + 1.9 * SLOT_S  # two slots in a row, late in the second
    woke: dict[str, float] = {}

    async def poll(name: str, due: float):
        await ticker.wait_until(due)
        woke[name] = time.monotonic()

    tasks = [asyncio.create_task(poll("first", first)), asyncio.create_task(poll("second", second))]
    await asyncio.sleep(0)
    time.sleep(max(0.0, second - 0.3 * SLOT_S - time.monotonic()))  # a busy loop: the first slot's timer fires late
    await asyncio.gather(*tasks)
    assert woke["first"] >= first and woke["second"] >= second


async def test_a_poll_interval_too_short_for_the_slots_sleeps_on_its_own_timer(monkeypatch):
    def no_ticker(loop):
        raise AssertionError("the shared ticker was used")

    monkeypatch.setattr("adapters.base._ticker", no_ticker)
    due = time.monotonic() + 0.01
    await sleep_until(due, interval=0.1)
    assert time.monotonic() >= due


async def test_a_request_time_out_expires_what_is_unanswered_and_leaves_the_answered_alone():
    loop = asyncio.get_running_loop()
    expired: list[asyncio.Future] = []

    def expire(waiter: asyncio.Future) -> None:
        expired.append(waiter)
        waiter.set_exception(TimeoutError())

    for delay in (0.5, 0.05):  # on the shared ticker, and on a timer of its own
        unanswered, answered = loop.create_future(), loop.create_future()
        asked = time.monotonic()
        expire_later(delay, expire, unanswered)
        expire_later(delay, expire, answered)
        answered.set_result(b"answer")
        try:
            await unanswered
        except TimeoutError:
            pass
        assert time.monotonic() - asked >= delay
        await asyncio.sleep(SLOT_S)  # the answered one's turn has passed too
        assert expired == [unanswered] and answered.result() == b"answer"
        expired.clear()


def test_the_next_poll_keeps_the_schedule_and_skips_the_ticks_a_slow_poll_missed():
    now = time.monotonic()
    assert next_poll_due(now - 0.2, 1.0) == pytest.approx(now + 0.8, abs=0.05)  # in time: one interval on
    # a poll due 2.7 s ago took 2.7 s: ticks due 1.7 and 0.7 s ago are skipped, the next of the schedule is
    # 0.3 s ahead (never now, never a burst of catch-up polls)
    assert next_poll_due(now - 2.7, 1.0) == pytest.approx(now + 0.3, abs=0.05)
