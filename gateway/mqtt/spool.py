"""The MQTT spool: data messages kept on disk until the broker acknowledged them (docs/mqtt.md).

One spool line per message (:func:`encode`, :func:`decode`); :class:`Spool` does all the SQLite
work on a thread of its own, "mqtt-spool", with a :class:`gateway.buffer.DurableBuffer`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import NamedTuple

from paho.mqtt.properties import Properties

from gateway.buffer import Batch, BufferStats, DurableBuffer
from gateway.config import BufferConfig
from gateway.core.errors import UserError
from gateway.core.logutil import ThrottledWarning

log = logging.getLogger(__name__)


class Message(NamedTuple):
    topic: str
    payload: bytes
    retain: bool
    spool_id: int | None = None  # its row in the spool, when it was taken from there
    properties: Properties | None = None  # a command reply's correlation data (MQTT 5)


def encode(msg: Message) -> str:
    """One spool line: ``["topic", retain]``, a newline, the payload (UTF-8 JSON, kept as it is).

    The header is JSON because a topic may hold any character, a newline included.
    """
    return f"{json.dumps([msg.topic, msg.retain])}\n{msg.payload.decode()}"


def decode(line: str, spool_id: int) -> Message:
    header, _, payload = line.partition("\n")
    topic, retain = json.loads(header)
    return Message(topic, payload.encode(), retain, spool_id)


class Spool:
    """Data messages kept on disk (a :class:`DurableBuffer`) until the broker acknowledges them; see docs/mqtt.md.

    The sink calls the public methods with its lock held; they never touch SQLite. The spool's
    thread does all the SQLite work: every ``COMMIT_INTERVAL_S`` it commits what was stashed and,
    while connected, takes one batch at a time from the buffer's lanes (live first, back-fill
    oldest first) for the publisher. A batch is deleted once the broker acknowledged all of it;
    if the connection drops under it, what was acknowledged is deleted and the rest goes back
    (to the back-fill lane).
    """

    COMMIT_INTERVAL_S = 0.1  # stashed messages not committed yet are what a kill -9 loses
    BATCH = 500  # messages taken from the file at a time
    RETRY_S = 1.0  # pause after the file failed

    def __init__(self, cfg: BufferConfig, lock: threading.RLock, publisher: threading.Condition, stash_limit: int):
        self.cfg = cfg
        self._publisher = publisher  # notified when a batch is ready to send
        self._wake = threading.Condition(lock)  # the spool thread waits on it
        self._stash_limit = stash_limit
        self._buffer: DurableBuffer | None = None
        self._opened: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, name="mqtt-spool", daemon=True)
        # Guarded by the lock:
        self._stashed: list[Message] = []  # not committed yet
        self._behind = 0  # rows in the file, the current batch not included
        self._batch: Batch | None = None  # taken from the file and not settled
        self._unsent: deque[Message] = deque()  # of the batch, not handed to paho yet
        self._mids: dict[int, int] = {}  # paho message id -> row id, for the batch's messages in flight
        self._early_acks: set[int] = set()  # acknowledgements that came before publish() returned their mid
        self._acked: list[int] = []  # rows of the batch the broker acknowledged
        self._broken = False  # the connection dropped under the batch: settle it as it is
        self._connected = self._closing = self._closed = False
        self._dropped_on_disk = 0  # the buffer's count (budget, age), ever: it is kept in the file
        self._unstored = 0  # lost because the file could not be written
        # The spool thread's own:
        self._failures = ThrottledWarning(log, "MQTT spool: the file failed {count} time(s) since the last warning "
                                          "({detail}); retrying")

    # ---- for the sink, its lock held ----

    @property
    def backlog(self) -> bool:
        return bool(self._stashed or self._batch or self._behind)

    @property
    def waiting(self) -> int:
        """For ``health.queued``: stashed, in the file or not sent yet (the sink counts those in flight)."""
        return len(self._stashed) + self._behind + len(self._unsent)

    @property
    def dropped(self) -> int:
        return self._dropped_on_disk + self._unstored

    @property
    def has_unsent(self) -> bool:
        return bool(self._unsent) and not self._closing

    def stash(self, msg: Message) -> None:
        self._stashed.append(msg)

    def next_unsent(self) -> Message:
        return self._unsent.popleft()

    def sent(self, sent: Iterable[tuple[int, Message]]) -> None:
        """The publisher handed these to paho; it reports every batch, so early acks never pile up."""
        for mid, msg in sent:
            if msg.spool_id is None:
                continue
            if mid in self._early_acks:
                self._acked.append(msg.spool_id)
            else:
                self._mids[mid] = msg.spool_id
        self._early_acks.clear()
        self._wake_if_done()

    def acknowledged(self, mid: int) -> None:
        row = self._mids.pop(mid, None)
        if row is None:  # from memory, or from the spool and its publish() has not returned yet
            self._early_acks.add(mid)
            return
        self._acked.append(row)
        self._wake_if_done()

    def owns(self, mid: int) -> bool:
        return mid in self._mids

    def connection_up(self) -> None:
        self._connected = True
        self._wake.notify()

    def connection_lost(self, unacknowledged: list[Message]) -> None:
        """Data that was in memory or in flight: stashed ahead of the newer data stashed meanwhile."""
        self._connected = False
        self._stashed[:0] = unacknowledged
        self._unsent.clear()
        self._mids.clear()
        self._broken = self._batch is not None
        self._wake.notify()

    def stop_sending(self) -> None:
        self._closing = True

    def _wake_if_done(self) -> None:
        if self._batch is not None and len(self._acked) == len(self._batch):
            self._wake.notify()

    # ---- start and close (the asyncio loop and the sink's stopping thread) ----

    async def start(self) -> int:
        """Opens the file on the spool's thread; returns how many messages it holds from before."""
        self._thread.start()
        try:
            await asyncio.wrap_future(self._opened)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open the MQTT spool {self.cfg.path}: {exc}") from None
        return self._behind

    def close(self) -> int:
        """Settles the batch, commits what is stashed and closes the file; returns how many messages it keeps."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()
        return self._behind + len(self._stashed)

    # ---- the spool thread ----

    def _run(self) -> None:
        try:
            self._buffer = DurableBuffer(self.cfg.path, self.cfg.max_bytes, self.cfg.max_age_days * 86400,
                                         label="MQTT spool")
            stats = self._buffer.stats()
        except BaseException as exc:  # noqa: BLE001 - start() raises it
            self._opened.set_exception(exc)
            return
        self._behind, self._dropped_on_disk = stats.depth, stats.dropped
        self._opened.set_result(None)
        while self._step():
            pass
        self._buffer.close()
        self._failures.flush(force=True)
        if self._stashed:
            log.error("MQTT spool: stopped with %d messages the file did not take", len(self._stashed))

    def _step(self) -> bool:
        """Settle the batch, commit what was stashed, take the next batch; False once closed."""
        with self._wake:
            self._wake.wait_for(self._due, timeout=self.COMMIT_INTERVAL_S)
            settled = self._settled()
            stashed, self._stashed = self._stashed, []
            closed = self._closed
        try:
            if settled:
                self._settle(*settled)
            if stashed:
                self._commit(stashed)
            self._count(self._buffer.stats())  # also after a failure, or rows added by the CLI (a replay)
            if not closed:
                self._take()
        except Exception as exc:  # noqa: BLE001 - disk full, I/O error: what is not settled stays, retried
            self._failures.add(detail=f"{type(exc).__name__}: {exc}")
            if not closed:
                time.sleep(self.RETRY_S)
        return not closed

    def _due(self) -> bool:
        if self._closed or self._broken:
            return True
        if self._batch is not None:
            return len(self._acked) == len(self._batch)
        return self._may_take()

    def _may_take(self) -> bool:
        return self._batch is None and self._connected and not self._closing and self._behind > 0

    def _settled(self) -> tuple[Batch, Batch] | None:
        """The batch split into acknowledged and not, once all is acknowledged or no more can be."""
        batch = self._batch
        if batch is None or not (self._broken or self._closed or len(self._acked) == len(batch)):
            return None
        acked = set(self._acked)
        self._batch, self._acked, self._broken = None, [], False
        self._unsent.clear()
        self._mids.clear()
        return (Batch([row for row in batch.ids if row in acked], [], batch.lane),
                Batch([row for row in batch.ids if row not in acked], [], batch.lane))

    def _settle(self, acked: Batch, rest: Batch) -> None:
        self._buffer.nack(rest)  # back-fill from now on
        if acked.ids:
            self._settle_or_nack(self._buffer.ack, acked)

    def _settle_or_nack(self, settle: Callable, batch: Batch, *args) -> None:
        """If the file refuses to settle the rows, they stay in it (and are sent again)."""
        try:
            settle(batch, *args)
        except Exception:
            self._buffer.nack(batch)
            raise

    def _commit(self, messages: list[Message]) -> None:
        now = time.time()
        try:
            self._buffer.put([(now, encode(msg)) for msg in messages])
        except Exception:
            with self._wake:
                self._stashed[:0] = messages
                self._trim_stash()
            raise

    def _trim_stash(self) -> None:
        excess = len(self._stashed) - self._stash_limit
        if excess > 0:
            del self._stashed[:excess]
            self._unstored += excess
            log.error("MQTT spool: dropped the %d oldest messages held in memory: the file cannot be written", excess)

    def _count(self, stats: BufferStats) -> None:
        with self._wake:
            self._behind = stats.depth - (len(self._batch) if self._batch else 0)
            self._dropped_on_disk = stats.dropped  # the buffer logs its own drops

    def _take(self) -> None:
        with self._wake:
            if not self._may_take():
                return
        batch = self._buffer.take_batch(self.BATCH)
        messages = self._decode(batch) if batch else []
        with self._wake:
            self._behind = batch.remaining if batch else 0
            if messages:
                self._batch, self._unsent = batch, deque(messages)
                self._broken = not self._connected  # lost meanwhile: it goes back at once
                self._publisher.notify()

    def _decode(self, batch: Batch) -> list[Message]:
        try:
            return [decode(line, row) for row, line in zip(batch.ids, batch.lines)]
        except (ValueError, TypeError, AttributeError) as exc:  # not written by us: kept aside, not retried forever
            error = f"not a spooled MQTT message: {exc}"
        self._settle_or_nack(self._buffer.dead_letter, batch, error)
        log.error("MQTT spool: %d rows moved to the dead letters (%s)", len(batch), error)
        return []
