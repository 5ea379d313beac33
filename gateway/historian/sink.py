"""The historian sink: readings and states → line protocol → durable buffer → InfluxDB.

Tasks and threads: the asyncio loop only builds lines and appends them to a list.
A commit task hands that list to the buffer (one transaction, one fsync) once the lines
stop coming for a moment (a poll slot's answers are in) or the first has waited
``historian.buffer.commit_interval``, the previous commit finished and three quarters of the
interval passed since it began (under load, commits batch by themselves); a drain task takes
batches from the buffer and awaits ``writer.write``. Every buffer call runs on one thread of its
own ("historian-db"), so the loop never waits on SQLite or the disk. See docs/historian.md.

Every health tick writes ``gateway_health`` (this sink's counters, and those of the sources
given to ``add_health_source``, e.g. the MQTT sink's) and ``device_health`` (poll health per
device over the interval, :class:`gateway.historian.device_health.DeviceHealth`).

Subclasses feeding lines of their own (gateway/surface/ingest.py) use ``put_lines`` and may extend
``commit``: the step that hands the lines so far to the buffer file.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from dataclasses import asdict
from functools import partial
from pathlib import Path

from pydantic import BaseModel

from gateway.core.device import DeviceConfig
from gateway.core.backoff import Backoff
from gateway.config import HistorianConfig, SiteConfig
from gateway.buffer import Batch, BufferStats, DurableBuffer
from gateway.historian.device_health import DeviceHealth
from gateway.historian.errors import AuthError, DataError, HistorianError
from gateway.historian.influx import HistorianWriter, make_writer
from gateway.historian.lineprotocol import gateway_heartbeat_line, gateway_status_line, ring_line
from gateway.historian.lineprotocol import (alarm_event_line, alarm_line, check_name, command_audit_line,
                                           device_health_line, health_line, inventory_line, linkage_line,
                                           ReadingLines, state_line)
from gateway.core.logutil import ThrottledWarning
from gateway.core.model import DeviceState, GatewayAlarm, Inventory, Reading, Value, utcnow
from gateway.sinks import HealthSource, Sink

log = logging.getLogger(__name__)

Row = tuple[float, str]  # (sample time, line): what the buffer takes


class HistorianSink(Sink):
    """Buffers every reading and state durably and back-fills InfluxDB; see docs/historian.md."""

    name = "historian"
    durable = True  # the other sinks get a reading once its commit ran (when_committed)
    SETTLE_S = 0.005  # a commit waits until no line came for this long (a poll slot's answers are in) ...
    COMMIT_SPACING = 0.75  # ... and begins at least this fraction of commit_interval after the previous one
    IDLE_COMMIT_S = 0.1  # lines queued without a wake-up (from another thread: the surface ingest) wait at most this
    REFUSED_RETRY_S = 0.1  # while the buffer file refuses commits, a probe of PROBE_LINES this often at most
    PENDING_LIMIT = 200_000  # lines held in memory while the buffer file cannot be written; oldest dropped beyond
    PROBE_LINES = 500  # while the file refuses commits, each retry puts only this many: the cost stays flat
    UNWRITABLE_ALARM = "historian-buffer-unwritable"
    BACKOFF_S = (1.0, 60.0)
    PROBE_INTERVAL_S = 1.0  # backing off from a server that does not answer: /ping it this often
    BISECT_WRITES = 64  # writes spent isolating refused lines in one batch; failing parts left then go whole
    COMPACT_INTERVAL_S = 1.0  # how often the buffer is checked for waiting blocks to compact
    COMPACT_AFTER_S = 30.0  # while InfluxDB takes writes, only a backlog this old is compacted (see _worth_compacting)
    BACKFILL_BATCH_FACTOR = 2  # back-fill batches are this many times batch_lines: fewer, larger writes drain faster
    EARLY_WRITE_FRACTION = 10  # a drain waiting flush_interval goes at once when batch_lines / this were committed

    def __init__(self, cfg: HistorianConfig, site: SiteConfig, writer: HistorianWriter | None = None,
                 health_interval: float = 10.0):
        self.cfg = cfg
        self.site_id, self.gateway_id = site.site.id, site.site.gateway_id
        self.health_interval = health_interval
        self._writer = writer or make_writer(cfg, site)
        self._db = ThreadPoolExecutor(1, thread_name_prefix="historian-db")
        self._compactor = ThreadPoolExecutor(1, thread_name_prefix="historian-compact")  # commits never wait on it
        self._ahead: asyncio.Future | None = None  # the next batch, taken while the current one is written
        self._buffer: DurableBuffer | None = None
        self._stats: BufferStats | None = None  # refreshed off the loop, so health() never touches SQLite
        self._pending: list[Row] = []  # readings and health, not committed yet
        self._pending_events: list[Row] = []  # states, alarms, audit: the buffer drops them last
        self._lines: dict[str, ReadingLines] = {}  # device id -> the builder of its readings' points
        self._device_health = DeviceHealth()  # poll health per device since the last health tick
        self._health_sources: dict[str, HealthSource] = {}  # prefix -> another sink's health()
        self._reach_source: Callable[[], Mapping] | None = None
        self._areas = {d.id: d.area for d in site.devices}
        self._udp = [d.id for d in site.devices if d.adapter == "snmp"]  # reachable when their own polls answer
        self._tasks: list[asyncio.Task] = []
        self._backoff = Backoff(*self.BACKOFF_S, jitter=(0.5, 1.0))
        self._connected = False
        self._last_error: str | None = None  # logged once until it changes or the server is back
        self.buffered = self.written = self.retries = self.dead_lettered = self.unstored = 0
        self._unwritable = False  # the buffer file refuses commits: historian-buffer-unwritable is raised
        self._alarm_handler: Callable[[GatewayAlarm], None] | None = None
        self._next_commit: asyncio.Future | None = None  # resolved by the next commit (when_committed)
        self._wake = asyncio.Event()  # lines wait: the commit task commits once commit_interval allows
        self._batch_waits = asyncio.Event()  # enough lines were committed since the drain's last take: write now
        self._taken_at = 0  # ``buffered`` when the drain last took its live batch
        self.commits = 0  # commits run (their transactions; refused ones included)
        self._store_failures = ThrottledWarning(log, "Historian: cannot write the buffer file, {count} commit(s) failed "
                                                     "since the last warning ({detail}); lines wait in memory",
                                                level=logging.ERROR)
        self._read_failures = ThrottledWarning(log, "Historian: cannot read the buffer file, {count} time(s) since the "
                                         "last warning ({detail}); retrying")
        self._refusals = ThrottledWarning(log, "Historian: InfluxDB refused {count} line(s) since the last warning, "
                                    "kept in the buffer's dead letters for a replay: {detail}")
        self._source_failures = ThrottledWarning(log, "Historian: {count} health source(s) failed since the last "
                                                      "warning, their counters left out of gateway_health: {detail}")

    # ---- Sink interface (asyncio loop; never blocks) ----

    async def start(self) -> None:
        path = self.cfg.buffer.path
        self._buffer = await self._in_db(partial(DurableBuffer, max_in_flight=2), path, self.cfg.buffer.max_bytes,
                                         self.cfg.buffer.max_age_days * 86400)
        await self._refresh_stats()
        self.put_gateway_status(True, "started")
        log.info("Historian: writing to %s; buffer %s holds %d lines", self.cfg.url, path, self._stats.depth)
        self._tasks = [asyncio.create_task(coro, name=f"historian-{name}") for name, coro in (
            ("commit", self._commit_loop()), ("drain", self._drain_loop()), ("health", self._health_loop()),
            ("compact", self._compact_loop()))]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._buffer is not None:  # else start() failed: nothing was buffered
            self.put_health()
            self.put_gateway_status(False, "stopped")
            await self.commit()
            with suppress(sqlite3.Error):  # health() after stop: the drain may have been cancelled mid-refresh
                await self._refresh_stats()
            await asyncio.get_running_loop().run_in_executor(self._compactor, lambda: None)  # its last step ended
            await self._in_db(self._buffer.close)
        self._db.shutdown(wait=False)  # nothing left: close() was its last job
        self._compactor.shutdown(wait=False)
        await self._writer.close()
        for throttled in (self._store_failures, self._read_failures, self._refusals, self._source_failures):
            throttled.flush(force=True)
        if self._pending or self._pending_events:
            log.error("Historian: stopped with %d lines that could not be stored",
                      len(self._pending) + len(self._pending_events))

    def on_reading(self, device: DeviceConfig, reading: Reading) -> None:
        lines = self._lines.get(device.id)
        if lines is None:
            lines = self._lines[device.id] = ReadingLines(self.site_id, device.area, device.equipment_kind)
        ts = reading.ts.timestamp()
        for line in lines.lines(reading):
            self._pending.append((ts, line))
        self._device_health.add(device.area, reading)
        self._wake.set()

    def on_state(self, device: DeviceConfig, state: DeviceState) -> None:
        self._put_event(state.since.timestamp(), state_line(self.site_id, device.area, state))

    def on_inventory(self, device: DeviceConfig, inventory: Inventory) -> None:
        self._put_event(inventory.ts.timestamp(), inventory_line(self.site_id, device.area, inventory))

    def on_alarm(self, alarm: GatewayAlarm) -> None:
        self._put_event(alarm.ts.timestamp(), alarm_line(self.site_id, self.gateway_id, alarm))

    def on_alarm_event(self, event) -> None:
        """Every transition of a device alarm is an event in the historian (docs/alarms.md)."""
        self._put_event(event.ts.timestamp(), alarm_event_line(self.site_id, event))

    def on_linkage_event(self, event) -> None:
        """Every alarm linkage (docs/broadcast.md, "Linkage") in ``linkage_event``."""
        self._put_event(event.trigger_ts.timestamp(), linkage_line(self.site_id, event))

    def on_command_audit(self, entry) -> None:
        """Every write command, accepted or refused, durably (the buffer) and in ``command_audit``."""
        self._put_event(entry.ts.timestamp(), command_audit_line(self.site_id, self.gateway_id, entry))

    def on_ring_status(self, status) -> None:
        """A ring's diagnosis changed: a ``network_ring`` point (docs/historian.md)."""
        self._put_event(status.ts.timestamp(), ring_line(self.site_id, status))

    writes_heartbeat = True  # gateway_status heartbeat with every health tick (not the surface ingest: no gateway)

    def put_gateway_status(self, online: bool, reason: str) -> None:
        """``gateway_status``: this gateway up at start, down at a clean stop (a crash stops its heartbeats,
        written with every health tick: the dashboards show it down; docs/dashboards.md)."""
        now = utcnow()
        self._put_event(now.timestamp(), gateway_status_line(self.site_id, self.gateway_id, online, reason, now))

    def _put_event(self, ts: float, line: str) -> None:
        self._pending_events.append((ts, line))
        self._wake.set()

    # ---- counters ----

    def health(self) -> dict[str, int | float | bool]:
        """Counters since start, and the buffer's state as of the last drain step."""
        stats = self._stats
        return {
            "buffered": self.buffered, "written": self.written, "retries": self.retries,
            "dead_lettered": self.dead_lettered, "dropped": stats.dropped + self.unstored,
            "depth": stats.depth, "oldest_age_s": float(stats.oldest_age_s or 0.0),
            "dead_letters": stats.dead_letters, "connected": self._connected,
        }

    def add_health_source(self, prefix: str, health: HealthSource) -> None:
        """Write another component's counters into ``gateway_health`` too, as ``<prefix>_<counter>``.

        ``health()`` returns a mapping or a pydantic model (the MQTT sink's ``GatewayHealth``); it is
        called on the event loop at every health tick. Only its numbers and booleans are kept (not
        ``site``, ``gateway``, ``ts``). The same prefix again replaces the source.
        """
        check_name(prefix)
        self._health_sources[prefix] = health

    def _source_counters(self) -> dict[str, Value]:
        counters: dict[str, Value] = {}
        for prefix, health in self._health_sources.items():
            try:
                values = health()
                if isinstance(values, BaseModel):
                    values = values.model_dump()
                counters.update({f"{prefix}_{name}": value for name, value in values.items()
                                 if isinstance(value, (bool, int, float))})
            except Exception as exc:  # noqa: BLE001 - another sink's bug must not cost the historian its health
                self._source_failures.add(detail=f"{prefix}: {type(exc).__name__}: {exc}")
        return counters

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            await self._refresh_stats()
            self.put_health()

    def set_reach_source(self, source: Callable[[], Mapping]) -> None:
        self._reach_source = source

    def _reach(self) -> Mapping:
        try:
            return self._reach_source() if self._reach_source else {}
        except Exception:  # noqa: BLE001 - device_health goes on without it
            log.exception("Historian: reading the reachability results failed")
            return {}

    def put_health(self) -> None:
        """Queue ``gateway_health`` and the interval's ``device_health`` points, stamped now.

        They go through the buffer too: the historian keeps them, outages included.
        """
        now = utcnow()
        ts = now.timestamp()
        counters = {**self._source_counters(), **self.health()}
        self._pending.append((ts, health_line(self.site_id, self.gateway_id, counters, now)))
        if self.writes_heartbeat:
            self._pending.append((ts, gateway_heartbeat_line(self.site_id, self.gateway_id, now)))
        for area, device, fields in self._device_health.take_with_reach(self._reach(), self._areas, self._udp):
            self._pending.append((ts, device_health_line(self.site_id, area, device, fields, now)))
        self._wake.set()

    async def _refresh_stats(self) -> None:
        self._stats = await self._in_db(self._buffer.stats)

    # ---- into the buffer ----

    def put_lines(self, rows: Iterable[Row], events: Iterable[Row] = ()) -> None:
        """Queue ready-made lines, as (sample time, line), for the next commit (event loop only); ``events``
        (states, alarms, audits: see ``_put_event``) are the last the buffer drops when it is full."""
        self._pending.extend(rows)
        self._pending_events.extend(events)
        self._wake.set()

    async def _commit_loop(self) -> None:
        """Commit once the lines stop coming for ``SETTLE_S`` (a poll slot's answers are in) or the first
        of them has waited ``commit_interval``, whichever is first; commits begin at least
        ``COMMIT_SPACING`` of the interval apart. Committing on the first line of a slot would leave the
        rest of its answers waiting a whole interval for the next commit (and the live sinks with them,
        see :meth:`when_committed`). While the file refuses commits, retry every ``REFUSED_RETRY_S``."""
        loop = asyncio.get_running_loop()
        interval = self.cfg.buffer.commit_interval
        began = loop.time()
        while True:
            first_line = began  # lines that came during the previous commit or the pause after it
            if not self._wake.is_set():
                try:
                    async with asyncio.timeout(self.IDLE_COMMIT_S):
                        await self._wake.wait()
                    first_line = loop.time()
                except TimeoutError:  # lines put without a wake-up (the surface ingest): no settling
                    first_line = -interval
            await self._settle(loop, first_line + interval)
            self._wake.clear()
            began = loop.time()
            stored = await self.commit()
            if not stored:  # lines left in memory: the next try needs no new line to wake it
                self._wake.set()
            pause = interval * self.COMMIT_SPACING if stored else max(interval, self.REFUSED_RETRY_S)
            if (left := began + pause - loop.time()) > 0:
                await asyncio.sleep(left)

    async def _settle(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Until no line came for ``SETTLE_S``, or ``deadline``."""
        seen = -1
        while self.SETTLE_S and (waiting := len(self._pending) + len(self._pending_events)) != seen:
            if (left := deadline - loop.time()) <= 0:
                return
            seen = waiting
            await asyncio.sleep(min(self.SETTLE_S, left))

    async def commit(self) -> bool:
        """Hand the lines queued so far to the buffer file (one transaction); the commit task calls it
        once they settle, within ``historian.buffer.commit_interval`` of the first (see ``_commit_loop``).

        True when they are all on disk (or there were none); False when the file refused them, or
        took only the first ``PROBE_LINES`` (its first success after refusing): the rest wait in
        memory for the next commit. Either way, :meth:`when_committed` futures of the lines handed
        so far are resolved: nothing more can be done for them now.
        """
        handed, self._next_commit = self._next_commit, None
        try:
            return await self._commit_pending()
        finally:
            if handed is not None and not handed.done():
                handed.set_result(None)

    def when_committed(self) -> asyncio.Future:
        """A future resolved by the next commit: once the lines handed so far are on disk, or once the
        file refused them (``historian-buffer-unwritable`` is raised then). The runtime holds readings
        for the live sinks until it resolves (docs/historian.md, "MQTT agrees with history"); one
        future per commit, whoever asks."""
        if self._next_commit is None:
            self._next_commit = asyncio.get_running_loop().create_future()
        return self._next_commit

    def set_alarm_handler(self, handler: Callable[[GatewayAlarm], None]) -> None:
        """``handler(alarm)`` raises or clears a gateway alarm on every sink (called on the event loop)."""
        self._alarm_handler = handler

    async def _commit_pending(self) -> bool:
        rows, events = self._pending, self._pending_events
        if not (rows or events):
            return True
        self._pending, self._pending_events = [], []
        limit = self.PROBE_LINES if self._unwritable else None  # a refusing file costs a few lines a try
        tried_events = events[:limit]  # at most PROBE_LINES in all, events (few) first
        tried = rows[:None if limit is None else limit - len(tried_events)], tried_events
        self.commits += 1
        try:  # shielded: a stop() arriving meanwhile must not cancel the put before it ran
            await asyncio.shield(self._in_db(self._buffer.put, *tried))
        except sqlite3.Error as exc:  # disk full, I/O error: keep the lines and try again next time
            self._hold(rows, events)
            self._buffer_refused(exc)
            return False
        left = rows[len(tried[0]):], events[len(tried[1]):]
        self._hold(*left)
        self.buffered += len(tried[0]) + len(tried[1])
        if self.buffered - self._taken_at >= max(1, self.cfg.batch_lines // self.EARLY_WRITE_FRACTION):
            self._batch_waits.set()
        self._buffer_writable()
        return not any(left)

    def _hold(self, rows: list[Row], events: list[Row]) -> None:
        """Lines not committed go back in front of those queued meanwhile; the oldest readings beyond
        ``PENDING_LIMIT`` are dropped (counted in ``dropped``), events only when nothing else is left."""
        self._pending[:0], self._pending_events[:0] = rows, events
        excess = len(self._pending) + len(self._pending_events) - self.PENDING_LIMIT
        if excess <= 0:
            return
        log.error("Historian: dropped the %d oldest lines held in memory: the buffer file cannot be written", excess)
        self.unstored += excess
        for lines in (self._pending, self._pending_events):  # readings first
            gone = min(excess, len(lines))
            del lines[:gone]
            excess -= gone

    def _buffer_refused(self, exc: sqlite3.Error) -> None:
        waiting = len(self._pending) + len(self._pending_events)
        self._store_failures.add(detail=f"{type(exc).__name__}: {exc}; {waiting} lines waiting")
        if not self._unwritable:
            self._unwritable = True
            self._raise_alarm(True, f"historian: cannot write the buffer file {self.cfg.buffer.path}: "
                                             f"{exc}; lines wait in memory")

    def _buffer_writable(self) -> None:
        if self._unwritable:
            self._unwritable = False
            self._store_failures.flush(force=True)
            log.warning("Historian: the buffer file %s takes commits again", self.cfg.buffer.path)
            self._raise_alarm(False, "historian: the buffer file takes commits again")

    def _raise_alarm(self, active: bool, message: str) -> None:
        alarm = GatewayAlarm(id=self.UNWRITABLE_ALARM, active=active, count=self.unstored, message=message)
        if self._alarm_handler is not None:
            self._alarm_handler(alarm)  # to every sink, this one included
        else:
            self.on_alarm(alarm)

    # ---- out to InfluxDB ----

    async def _drain_loop(self) -> None:
        while True:
            try:
                busy = await self._drain_step()
            except Exception as exc:  # noqa: BLE001 - the buffer failed (not the write): keep trying
                self._read_failures.add(detail=f"{type(exc).__name__}: {exc}")
                busy = False
            if not busy:
                await self._until_batch_waits()

    async def _until_batch_waits(self) -> None:
        """The buffer was emptied: wait ``flush_interval``, or less once a tenth of a batch was committed
        meanwhile. Under load (an ingest worker) lines do not pile up for a second between writes, while a
        gateway's few lines a second still go in one write per ``flush_interval``."""
        try:
            async with asyncio.timeout(self.cfg.flush_interval):
                await self._batch_waits.wait()
        except TimeoutError:
            pass

    async def _drain_step(self) -> bool:
        """Send the live lane's batch, then the back-fill's; True while rows remain, so the next step goes at once.

        The live batch is taken just before it is sent (its newest lines, so a dashboard is current); the
        next back-fill batch is taken while the current one is written (the buffer's thread decodes it
        meanwhile). Every other batch is back-fill while a backlog drains, as the buffer's lanes do."""
        self._batch_waits.clear()
        self._taken_at = self.buffered
        live = await self._in_db(self._buffer.take_batch, self.cfg.batch_lines, "live")
        backfill = None
        if live is None or await self._deliver(live):
            backfill = await self._take_backfill()
            if backfill is not None:
                await self._deliver(backfill)
        await self._refresh_stats()
        last = backfill or live
        return last is not None and (last.remaining > 0 or self._ahead is not None)

    async def _take_backfill(self) -> Batch | None:
        """The back-fill batch taken ahead (or now), and the next one taken ahead while this one is written."""
        ahead, self._ahead = self._ahead, None
        size = self.cfg.batch_lines * self.BACKFILL_BATCH_FACTOR
        batch = await (ahead or self._in_db(self._buffer.take_batch, size, "backfill"))
        if batch is not None and batch.remaining > 0:
            self._ahead = asyncio.ensure_future(self._in_db(self._buffer.take_batch, size, "backfill"))
        return batch

    async def _deliver(self, batch: Batch) -> bool:
        """Write the batch (or what InfluxDB takes of it); False when it failed and a retry was waited for."""
        try:
            await self._write_isolating(batch)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the rows stay in the buffer for a retry
            await self._in_db(self._buffer.nack, batch)
            await self._give_back_ahead()
            await self._retry_later(exc)
            return False
        if self._last_error is not None:
            log.warning("Historian: %s takes writes again; %d lines waiting", self.cfg.url, batch.remaining)
        self._connected, self._last_error = True, None
        self._backoff.reset()
        return True

    async def _give_back_ahead(self) -> None:
        """The write failed: the batch taken ahead waits in the buffer too (a retry takes the newest live rows)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and (batch := await ahead) is not None:
            await self._in_db(self._buffer.nack, batch)

    async def _compact_loop(self) -> None:
        """While lines wait (an outage), merge their blocks into columnar ones, on a thread of its own."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.COMPACT_INTERVAL_S)
            if not self._worth_compacting():
                continue
            try:
                while await loop.run_in_executor(self._compactor, self._buffer.compact):
                    pass
            except Exception as exc:  # noqa: BLE001 - the lines stay as they are; retried at the next interval
                self._read_failures.add(detail=f"compaction: {type(exc).__name__}: {exc}")

    def _worth_compacting(self) -> bool:
        """Compaction (~0.15 ms of CPU a line, holding the GIL) pays only for lines that wait: not while InfluxDB
        takes writes and the oldest line waited less than ``COMPACT_AFTER_S`` (a busy ingest worker's buffer
        empties within seconds, and the commits that release its MQTT acks would wait on the GIL)."""
        stats = self._stats
        return not self._connected or (stats is not None and (stats.oldest_age_s or 0.0) >= self.COMPACT_AFTER_S)

    async def _write_isolating(self, batch: Batch) -> None:
        """Write the batch; when the server refuses data, bisect it so only the refused lines are dead-lettered.

        Retryable and auth errors propagate: the caller nacks what is left of the batch.
        """
        parts, writes = [batch], 0
        while parts:
            part = parts.pop()
            writes += 1
            try:
                await self._writer.write(part.lines)
            except DataError as exc:
                if len(part) == 1 or writes >= self.BISECT_WRITES:
                    await self._in_db(self._buffer.dead_letter, part, str(exc))
                    self.dead_lettered += len(part)
                    self._refusals.add(len(part), str(exc))
                else:
                    parts.extend(reversed(part.split()))  # first half next
                continue
            await self._in_db(self._buffer.ack, part)
            self.written += len(part)

    async def _retry_later(self, exc: Exception) -> None:
        self.retries += 1
        self._connected = False
        delay = self._backoff.next(getattr(exc, "retry_after", None))
        if str(exc) != self._last_error:
            self._last_error = str(exc)
            if isinstance(exc, HistorianError):
                log.log(logging.ERROR if isinstance(exc, AuthError) else logging.WARNING,
                        "Historian: %s; data stays in the buffer, retrying", exc)
            else:
                log.error("Historian: unexpected write failure; data stays in the buffer, retrying", exc_info=exc)
        await self._wait_to_retry(delay, exc)

    async def _wait_to_retry(self, delay: float, exc: Exception) -> None:
        """Wait ``delay``; but while the server does not answer at all, /ping it every ``PROBE_INTERVAL_S``
        and end the wait once it answers: the backoff spares a server that answers and refuses, it must
        not keep the back-fill waiting a minute after an outage."""
        if getattr(exc, "retry_after", None) is not None or await self._answers_ping():
            await asyncio.sleep(delay)
            return
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(self.PROBE_INTERVAL_S, left))
            if await self._answers_ping():
                return

    async def _answers_ping(self) -> bool:
        try:
            await asyncio.wait_for(self._writer.ping(), self.cfg.timeout)
        except Exception:  # noqa: BLE001 - any failure means: not back yet
            return False
        return True

    async def _in_db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)


# ---- for the CLI: work on the buffer file, also while the gateway runs (WAL) ----

def buffer_status(path: str | Path) -> dict:
    with closing(DurableBuffer(path, create=False)) as buffer:
        return asdict(buffer.stats())


def list_dead(path: str | Path, limit: int | None = None) -> list[dict]:
    with closing(DurableBuffer(path, create=False)) as buffer:
        return [asdict(dead) for dead in buffer.dead_letters(limit)]


def replay_dead(path: str | Path, ids: list[int] | None = None) -> int:
    """Back into the queue (all when ``ids`` is None); returns how many."""
    with closing(DurableBuffer(path, create=False)) as buffer:
        return buffer.replay(ids)


def purge_dead(path: str | Path, ids: list[int] | None = None) -> int:
    """Delete dead letters (all when ``ids`` is None); returns how many."""
    with closing(DurableBuffer(path, create=False)) as buffer:
        return buffer.purge(ids)
