"""The one interface every protocol adapter implements.

An adapter owns the link to one device. The gateway starts it, consumes its
event stream (readings and device-state changes), asks it to write, and stops it;
it never knows which protocol is behind it.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
import weakref
import zlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Union

from gateway.core.device import DeviceConfig
from gateway.core.model import (DeviceState, DeviceStatus, Inventory, Quality, Reading, Schema, Value, WriteResult,
                                 utcnow)

Event = Union[Reading, DeviceState, Inventory]


# -- one poll timer for every device of an event loop -------------------------------------
# seconds: polls due within one slot are resumed together, up to this much after their time. 100 ms: at 200
# devices twenty polls share a slot, and their answers, publishes, PUBACKs and the historian's commit then share
# loop iterations and system calls (20 -> 50 ms: −30 to −40 % CPU per tag; 50 -> 100 ms: −8 to −20 %, and half
# the commits; bench/README.md); 100 ms late on a 1 s poll is nothing beside the 10-30 s cycles monitoring asks for.
SLOT_S = 0.1
FIRE_EARLY_S = 0.001  # asyncio may run a timer up to its clock resolution early: this much is "due"
MIN_INTERVAL_SLOTS = 8  # shorter intervals than this many slots (0.8 s) keep a timer of their own


class PollTicker:
    """One poll timer for every device of an event loop, instead of one each.

    With a timer per device, 200 devices polled every second arm and fire 200 timers a second, each in
    a loop iteration of its own (a selector wake-up, a pass over the ready queue) to resume one task.
    The ticker rounds each due time up to a slot of ``SLOT_S`` on the loop's clock and keeps one timer
    armed, for the earliest slot waited for; when it fires, everything due in that slot runs in the same
    iteration. Phases stay spread over the interval (a slot is a twentieth of a second) and each device
    keeps its own schedule (``next_due += interval``), so the rounding never drifts. Request time-outs
    use it too (:func:`expire_later`): nothing to cancel when the answer comes first, the common case."""

    def __init__(self, loop: asyncio.AbstractEventLoop, slot: float = SLOT_S):
        self.loop, self._slot = loop, slot
        self._due: dict[int, list[tuple[Callable[[asyncio.Future], None], asyncio.Future]]] = {}  # slot -> calls
        self._slots: list[int] = []  # heap of the slot numbers with calls due
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot = 0  # the slot the armed timer fires for

    def wait_until(self, when: float) -> asyncio.Future:
        """A future resolved at the first slot boundary at or after ``when`` (``time.monotonic()``)."""
        waiter = self.loop.create_future()
        self.call_at(when, _wake, waiter)
        return waiter

    def call_at(self, when: float, callback: Callable[[asyncio.Future], None], waiter: asyncio.Future) -> None:
        """``callback(waiter)`` at the first slot boundary at or after ``when`` (``time.monotonic()``), unless
        ``waiter`` is done by then."""
        at = self.loop.time() + (when - time.monotonic())  # the loop's clock may count from elsewhere (uvloop)
        slot = math.ceil(at / self._slot)
        due = self._due.get(slot)
        if due is None:
            self._due[slot] = [(callback, waiter)]
            heapq.heappush(self._slots, slot)
            self._arm()
        else:
            due.append((callback, waiter))

    def _arm(self) -> None:
        first = self._slots[0]
        if self._timer is not None:
            if self._timer_slot <= first:
                return
            self._timer.cancel()
        self._timer_slot = first
        self._timer = self.loop.call_at(first * self._slot, self._fire)

    def _fire(self) -> None:
        self._timer = None
        horizon = self.loop.time() + FIRE_EARLY_S  # a late timer must not take a later slot early
        try:
            while self._slots and self._slots[0] * self._slot <= horizon:
                for callback, waiter in self._due.pop(heapq.heappop(self._slots)):
                    if not waiter.done():  # answered in time, or a cancelled poll loop (adapter stopped)
                        callback(waiter)
        finally:  # a raising callback leaves the other slots their timer
            if self._slots:
                self._arm()


def _wake(waiter: asyncio.Future) -> None:
    waiter.set_result(None)


# id(loop) -> its ticker. Held weakly: a ticker lives while its armed timer (in the loop) holds it, and one
# with nothing due is made again when needed, so a closed loop with polls still waiting leaks nothing.
_TICKERS: weakref.WeakValueDictionary[int, PollTicker] = weakref.WeakValueDictionary()


def _ticker(loop: asyncio.AbstractEventLoop) -> PollTicker:
    ticker = _TICKERS.get(id(loop))
    if ticker is None or ticker.loop is not loop:
        ticker = _TICKERS[id(loop)] = PollTicker(loop)
    return ticker


async def sleep_until(when: float, interval: float) -> None:
    """Sleep until ``when`` (``time.monotonic()``) on the loop's shared ticker, or on a timer of its own when
    ``interval`` (the poll interval) is shorter than :data:`MIN_INTERVAL_SLOTS` slots."""
    if interval < MIN_INTERVAL_SLOTS * SLOT_S:
        await asyncio.sleep(when - time.monotonic())
        return
    await _ticker(asyncio.get_running_loop()).wait_until(when)


def next_poll_due(due: float, interval: float) -> float:
    """When the poll after the one due at ``due`` is due: an interval on, or, if this poll overran into the
    next, the first tick of the device's schedule still ahead (missed ticks are skipped, never bunched up)."""
    due += interval
    now = time.monotonic()
    if due < now:
        due = now + interval - (now - due) % interval
    return due


def expire_later(delay: float, expire: Callable[[asyncio.Future], None], waiter: asyncio.Future) -> None:
    """``expire(waiter)`` after ``delay`` seconds unless ``waiter`` is done by then: a request's time-out, on
    the shared ticker (up to a slot late) when ``delay`` spans :data:`MIN_INTERVAL_SLOTS` slots, else on a
    timer of its own. Never cancelled: an answer in time makes it a no-op."""
    loop = waiter.get_loop()  # not asyncio.get_running_loop(): a getpid() system call each on Python 3.11
    if delay < MIN_INTERVAL_SLOTS * SLOT_S:
        loop.call_later(delay, _unless_done, expire, waiter)
        return
    _ticker(loop).call_at(time.monotonic() + delay, expire, waiter)


def _unless_done(expire: Callable[[asyncio.Future], None], waiter: asyncio.Future) -> None:
    if not waiter.done():
        expire(waiter)


class Adapter(ABC):
    """Base class: subclasses implement ``_run`` (their poll or subscription loop) and ``write``."""

    kind: ClassVar[str]

    def __init__(self, config: DeviceConfig, queue_size: int = 1000):
        self.config = config
        self.state = DeviceState(device=config.id)
        self._events: asyncio.Queue[Event | None] = asyncio.Queue(queue_size)
        self._task: asyncio.Task | None = None
        self.stopping = False  # loops check it: see stop()

    @property
    def id(self) -> str:
        return self.config.id

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run_guarded(), name=f"adapter:{self.id}")

    async def stop(self) -> None:
        self.stopping = True
        # Cancel until done: a cancel that lands as a response arrives can be swallowed
        # by asyncio.wait_for inside client libraries (Python 3.11), so one is not enough.
        while self._task and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=0.5)
        await self._close()
        self._emit(None)  # end of stream

    async def stream(self) -> AsyncIterator[Event]:
        """Readings, state changes and inventories, in order, until the adapter stops."""
        while (event := await self._events.get()) is not None:
            yield event

    def mark_stopped(self, reason: str) -> DeviceState:
        """Record that the device is no longer followed (a clean stop: not a link failure, so
        not an event of the stream); the state to announce."""
        self.state.status, self.state.reason, self.state.since = DeviceStatus.OFFLINE, reason, utcnow()
        return self.state.model_copy()

    @abstractmethod
    async def write(self, signal: str, value: Value) -> WriteResult: ...

    @abstractmethod
    async def _run(self) -> None: ...

    async def _close(self) -> None:
        """Release the link; called once on stop."""

    def first_poll_delay(self) -> float:
        """Where in its poll interval this device is polled: spread by its id, so a
        hundred devices are not all asked at the same instant (smoother load on the
        gateway, the network and serial gateways; lower latency)."""
        return (zlib.crc32(self.id.encode()) % 1000) / 1000 * self.config.poll_interval

    async def _run_guarded(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in one adapter must not take the gateway down
            self._set_status(DeviceStatus.OFFLINE, f"adapter crashed: {exc!r}")
            raise

    def _emit(self, event: Event | None) -> None:
        # A consumer that cannot keep up loses the oldest reading, never blocks the poll loop.
        if self._events.full():
            self._events.get_nowait()
        self._events.put_nowait(event)

    def _set_status(self, status: DeviceStatus, reason: str) -> None:
        """Record a status change and announce it; repeated same status+reason is quiet."""
        if self.state.status == status and self.state.reason == reason:
            return
        self.state.status, self.state.reason, self.state.since = status, reason, utcnow()
        self._emit(self.state.model_copy())


class PollColumns:
    """The columns one poll fills: values, the non-good (slot, quality) and when each answer arrived."""

    __slots__ = ("values", "marks", "stamps")

    def __init__(self, size: int):
        self.values: list[Value] = [None] * size
        self.marks: list[tuple[int, Quality]] = []
        self.stamps: list[tuple[datetime, tuple[int, ...]]] = []

    def bad(self, slots: tuple[int, ...]) -> None:
        """These slots have no value this poll (the device answered, but not with one)."""
        for slot in slots:
            self.values[slot] = None
        self.marks += [(slot, Quality.BAD) for slot in slots]

    def mark_stale(self) -> None:
        """The answers came too late: every sample still good becomes stale."""
        marked = {slot for slot, _ in self.marks}
        self.marks += [(slot, Quality.STALE) for slot in range(len(self.values)) if slot not in marked]

    def reading(self, device: str, ts: datetime, poll_ms: float, schema: Schema) -> Reading:
        qualities = times = None
        if self.marks:
            qualities = [Quality.GOOD] * len(self.values)
            for slot, quality in self.marks:
                qualities[slot] = quality
        if len(self.stamps) == 1 and len(self.stamps[0][1]) == len(self.values):  # one answer carried all
            times = [self.stamps[0][0]] * len(self.values)
        elif self.stamps:  # a sample's time is when the answer carrying it arrived (docs/mqtt.md)
            times = [ts] * len(self.values)
            for at, slots in self.stamps:
                for slot in slots:
                    times[slot] = at
        return Reading(device, ts, poll_ms, schema=schema, values=self.values, qualities=qualities, times=times)


class PolledAdapter(Adapter):
    """An adapter that polls its device into readings of one ``schema``: the device state kept from
    each poll's outcome (one log line per change of status, not per failed poll), and the reading
    that says a poll got no answer."""

    schema: Schema
    _logged_status: DeviceStatus | None = None

    def _set_status(self, status: DeviceStatus, reason: str) -> None:
        if status is not self._logged_status:
            self._logged_status = status
            level = logging.INFO if status is DeviceStatus.ONLINE else logging.WARNING
            logging.getLogger(type(self).__module__).log(level, "%s: %s: %s", self.id, status.value, reason)
        super()._set_status(status, reason)

    def _poll_succeeded(self, poll_ms: float) -> None:
        s = self.state
        s.polls += 1
        s.consecutive_errors = 0
        s.last_good_poll = utcnow()
        s.last_poll_ms = round(poll_ms, 2)
        self._set_status(DeviceStatus.ONLINE, "polling")

    def _poll_failed(self, reason: str, timeout: bool) -> None:
        s = self.state
        s.polls += 1
        s.errors += 1
        s.consecutive_errors += 1
        s.timeouts += timeout
        self._set_status(DeviceStatus.OFFLINE, reason)

    def _comm_fail_reading(self, started_at: datetime, started: float) -> Reading:
        n = len(self.schema)
        return Reading(self.id, started_at, (time.monotonic() - started) * 1000, schema=self.schema,
                       values=[None] * n, qualities=[Quality.COMM_FAIL] * n)


class LinkedAdapter(Adapter):
    """An adapter that holds one connection object, ``link`` (with ``async close()``), opened
    by its ``_run`` loop and dropped when the device goes away or the adapter stops."""

    link = None

    async def _drop_link(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            await link.close()

    async def _close(self) -> None:
        await self._drop_link()


@dataclass(frozen=True)
class AdapterKind:
    """One protocol as the site file and the gateway know it, declared in its own package
    (``adapters/<protocol>/plugin.py``) and listed once in ``adapters/registry.py``.

    ``kind`` is the ``adapter:`` name in the site file, ``config`` the device settings (a
    :class:`DeviceConfig` with ``adapter: Literal[kind]``), ``adapter`` a function returning the
    :class:`Adapter` class: imported on first use, since client libraries are slow to import and
    reading a site file needs none of them.
    """

    kind: str
    config: type[DeviceConfig]
    adapter: Callable[[], type[Adapter]]

    def __post_init__(self) -> None:
        declared = self.config.model_fields["adapter"].default
        if declared != self.kind:
            raise TypeError(f"{self.config.__name__} says adapter: {declared!r}, its entry says {self.kind!r}")

    def build(self, config: DeviceConfig) -> Adapter:
        return self.adapter()(config)
