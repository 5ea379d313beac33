"""The durable store-and-forward buffer (SQLite in WAL mode): in front of the historian, and the MQTT spool.

Rows are line-protocol lines with their sample time and the time they were put, stored
in blocks: a commit's rows of one kind in one zstd-compressed SQLite row, merged later by
:meth:`DurableBuffer.compact` into columnar blocks (gateway/buffer_blocks.py, gateway/blockcodec.py).
A row leaves the queue only by ``ack`` (written), ``dead_letter`` (refused by the
server, kept aside) or the disk budget (whole blocks dropped oldest first, counted; event
rows, such as alarms and the command audit, only once no other row is left). See
docs/historian.md, "Durable buffer and back-fill", for durability and ordering.

Durability: ``synchronous=FULL`` in WAL mode fsyncs the WAL at every commit, so a
committed ``put`` survives a kill -9 and a power cut. Callers batch their puts
(the historian sink commits once per poll slot, at least ¾ of ``historian.buffer.commit_interval``
apart), so that is about twenty fsyncs a second, at most 27.

Threads: every method takes one lock around the one connection, so a writer thread
and the event loop thread may share an instance; the sink keeps all calls on one
thread of its own, so the event loop never waits on a lock or an fsync. Other
processes (the CLI) may open the same file at the same time: WAL lets them read
while the gateway writes, and their writes wait on SQLite's lock (busy timeout).
"""
from __future__ import annotations

import heapq
import itertools
import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway import buffer_blocks as blocks
from gateway.core.logutil import ThrottledWarning

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS blocks (first_id INTEGER PRIMARY KEY, last_id INTEGER NOT NULL, rows INTEGER NOT NULL,
                                   lines INTEGER NOT NULL, added REAL NOT NULL, event INTEGER NOT NULL,
                                   codec INTEGER NOT NULL, bytes INTEGER NOT NULL, gone BLOB, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS dead (id INTEGER PRIMARY KEY, ts REAL NOT NULL, added REAL NOT NULL, line BLOB NOT NULL,
                                 error TEXT NOT NULL, failed_at REAL NOT NULL, event INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS corrupt (first_id INTEGER PRIMARY KEY, last_id INTEGER NOT NULL, lines INTEGER NOT NULL,
                                    event INTEGER NOT NULL, error TEXT NOT NULL, failed_at REAL NOT NULL,
                                    data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO counters VALUES ('next_id', 1), ('depth', 0), ('dead', 0), ('dropped', 0);
CREATE TABLE IF NOT EXISTS rates (second INTEGER PRIMARY KEY, put INTEGER NOT NULL DEFAULT 0,
                                  acked INTEGER NOT NULL DEFAULT 0);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""
# Schema 1 had no ``event`` column: its rows are readings (0).
_FROM_VERSION_1 = """
BEGIN IMMEDIATE;
ALTER TABLE queue ADD COLUMN event INTEGER NOT NULL DEFAULT 0;
ALTER TABLE dead ADD COLUMN event INTEGER NOT NULL DEFAULT 0;
PRAGMA user_version = 2;
COMMIT;
"""
# Schemas 1 and 2 kept one row per line in ``queue``: opening converts them into blocks
# (gateway/buffer_blocks.py, ``convert_rows``), a chunk a transaction, then drops the table.
#
# Ids (one per line) come from the ``next_id`` counter and are never reused: they give commit
# order, the live lane's mark stays valid when the queue empties, and a replayed dead letter
# can take its old id back (and so its old place in the back-fill order). A block holds its
# lines' ids; ``first_id`` orders blocks by age (``added`` grows with it), so no other index
# is needed. ``gone``: a bitmap of the block's lines already acknowledged, dead-lettered or
# compacted away; ``lines``: how many are left (the block is deleted at 0). Every commit writes
# each page it touches to the WAL: hence no index and no AUTOINCREMENT.

RATE_WINDOW_S = 60
AGE_CHECK_S = 1.0  # the age limit is applied this often at most (each check is two statements)
DROP_MARGIN = 0.02  # over budget, drop down to 98 % of it, so the next commits do not drop again


@dataclass(frozen=True)
class Batch:
    """Rows taken for one write, in commit order. ``remaining``: rows left in the queue."""

    ids: list[int]
    lines: list[str]
    lane: str  # "live" or "backfill"
    remaining: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def split(self) -> tuple[Batch, Batch]:
        half = len(self.ids) // 2
        return (Batch(self.ids[:half], self.lines[:half], self.lane),
                Batch(self.ids[half:], self.lines[half:], self.lane))


@dataclass(frozen=True)
class DeadLetter:
    id: int
    sample_time: float  # Unix seconds
    added: float  # when it was put in the buffer (or replayed)
    failed_at: float  # when the server refused it
    error: str  # the server's message
    line: str


@dataclass(frozen=True)
class BufferStats:
    depth: int  # rows waiting (in flight included)
    bytes: int  # database pages in use (rows, dead letters, SQLite's own), what the byte budget limits
    oldest_age_s: float | None  # how long the oldest waiting row has waited: how far behind the historian is
    in_per_s: float  # rows put per second over the last minute
    out_per_s: float  # rows acknowledged per second over the last minute
    dropped: int  # rows dropped by the disk budget, ever (persisted)
    dead_letters: int


class DurableBuffer:
    """A persistent queue of line-protocol lines, taken in batches from two lanes in turn.

    - live lane: the rows committed after the newest row of the previous live batch
      (after opening, for the first): the newest ``max_lines`` of them, in commit order;
    - back-fill lane: every other row: the oldest ``max_lines``, in commit order.

    An empty lane is skipped. A row of a live batch that is not acked (nack, or
    left out because newer rows filled the batch) belongs to the back-fill from then on.

    Rows are stored in blocks (gateway/buffer_blocks.py): each commit's rows of one kind in one
    zstd block; :meth:`compact` merges waiting blocks into columnar ones (~1.5 bytes a tag).

    ``max_bytes`` and ``max_age_s`` are the disk budget, enforced on every ``put``;
    ``None`` means no limit (tools that only inspect or replay). ``create=False``
    refuses to create a missing file; ``label`` names the buffer in its warnings.
    ``max_in_flight``: how many batches may be taken before the first is settled (a drain
    that prepares the next batch while one is written takes 2).
    """

    def __init__(self, path: str | Path, max_bytes: int | None = None, max_age_s: float | None = None,
                 *, create: bool = True, label: str = "Historian buffer", max_in_flight: int = 1):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise FileNotFoundError(f"no historian buffer at {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_age_s, self.max_in_flight = max_bytes, max_age_s, max_in_flight
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._configure()
        self._page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        self._next_age_check = 0.0  # when the age limit is applied next (_enforce_budget)
        self._rates_pruned = 0  # the second whose rows out of the rate window were last deleted
        self._live_mark = _get(self._db, "next_id") - 1  # all that is in the file already is back-fill
        self._next_lane = "live"
        self._in_flight: dict[int, tuple[int, int, int]] = {}  # row id -> (block first_id, position, batch)
        self._block_in_flight: Counter[int] = Counter()  # block first_id -> its rows in flight
        self._batches: Counter[int] = Counter()  # batch number -> its rows in flight
        self._batch_numbers = itertools.count()
        self._decoded = blocks.Decoded()
        self._drops = ThrottledWarning(log, label + ": dropped {count} line(s), oldest first, since the last "
                                       "warning ({detail}); see `dropped` in its health")

    def _configure(self) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 10000")
        if db.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise sqlite3.OperationalError(f"{self.path}: cannot use WAL mode")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA journal_size_limit = 67108864")  # truncate the WAL back to 64 MB after a burst
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, 2, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"{self.path}: buffer schema {version}, this gateway knows {SCHEMA_VERSION}")
        if version == 1:
            db.executescript(_FROM_VERSION_1)
        db.executescript(_SCHEMA)
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'queue'").fetchone():  # schema 1/2 rows
            while True:
                with self._transaction():
                    if not blocks.convert_rows(db):
                        break

    def close(self) -> None:
        with self._lock:
            self._drops.flush(force=True)
            self._db.close()

    # ---- the queue ----

    def put(self, rows: Iterable[tuple[float, str]], events: Iterable[tuple[float, str]] = ()) -> None:
        """Append ``(sample time, line)`` rows in one transaction, then apply the disk budget.

        ``events`` (alarms, the command audit, device states) are rows the byte budget drops
        only once no other row is left: the record of what happened outlives the readings.
        """
        now = time.time()
        with self._write() as db:
            first_id = _get(db, "next_id")
            added = self._insert(db, now, first_id, list(rows), 0)
            added += self._insert(db, now, first_id + added, list(events), 1)
            if added:  # both counters in one statement: each statement is a GIL hand-off (see _PUT_COUNTERS)
                db.execute(_PUT_COUNTERS, (added, added))
            self._count_rate(db, now, "put", added)
            self._enforce_budget(db, now)

    @staticmethod
    def _insert(db: sqlite3.Connection, now: float, first_id: int, rows: list[tuple[float, str]], event: int) -> int:
        for start in range(0, len(rows), blocks.PUT_BLOCK_LINES):
            chunk = rows[start:start + blocks.PUT_BLOCK_LINES]
            blocks.insert(db, list(range(first_id + start, first_id + start + len(chunk))),
                          [ts for ts, _ in chunk], [line for _, line in chunk], added=now, event=event)
        return len(rows)

    def take_batch(self, max_lines: int, lane: str | None = None) -> Batch | None:
        """The next batch to write, from the live and back-fill lanes in turn (or from ``lane`` only).

        Settle each batch (``ack``, ``nack``, ``dead_letter``, in parts if split); at most
        ``max_in_flight`` may be unsettled. ``None`` when the queue is empty (or all in flight).
        """
        with self._lock:
            if len(self._batches) >= self.max_in_flight:
                raise RuntimeError("the previous batch is not settled (ack, nack or dead_letter it)")
            lane, rows = self._pick(max_lines, lane)
            if not rows:
                return None
            if lane == "live":
                self._live_mark = rows[-1][1]
            self._next_lane = "backfill" if lane == "live" else "live"
            number = next(self._batch_numbers)
            for first_id, row_id, position, _ in rows:
                self._in_flight[row_id] = (first_id, position, number)
                self._block_in_flight[first_id] += 1
            self._batches[number] = len(rows)
            depth = _get(self._db, "depth")
            return Batch([r[1] for r in rows], [r[3] for r in rows], lane, remaining=max(0, depth - len(rows)))

    def _pick(self, max_lines: int, only: str | None) -> tuple[str, list[tuple[int, int, int, str]]]:
        """The lane and rows of the next batch; a block that does not decode is set aside on the way."""
        lanes = ("live", "backfill") if self._next_lane == "live" else ("backfill", "live")
        lanes = lanes if only is None else (only,)
        while True:
            try:
                for lane in lanes:
                    rows = self._live(max_lines) if lane == "live" else self._backfill(max_lines)
                    if rows:
                        return lane, rows
                return lane, []
            except blocks.BlockError as exc:
                self._set_aside(exc)

    def _set_aside(self, exc: blocks.BlockError) -> None:
        """Its lines are lost: counted in ``dropped``, logged with the block's ids; the rest goes on."""
        with self._transaction():
            lost = blocks.set_aside(self._db, exc.first_id, str(exc))
            _add(self._db, "depth", -lost)
            _add(self._db, "dropped", lost)
        log.error("%s: %d line(s) lost; the block's bytes are kept in the table `corrupt` of %s",
                  exc, lost, self.path)

    def _eligible(self, block: blocks.Block, keep) -> list[tuple[int, int, int, str]]:
        """(block, id, position, line) of the block's waiting rows not in flight that ``keep(id)``."""
        if self._block_in_flight[block.first_id] >= block.lines:
            return []
        return [(block.first_id, row_id, position, line) for position, row_id, _, line in
                blocks.waiting(block, self._decoded) if keep(row_id) and row_id not in self._in_flight]

    def _live(self, max_lines: int) -> list[tuple[int, int, int, str]]:
        """The newest rows committed since the last live batch. They are all in blocks of one commit
        (consecutive ids, at most PUT_BLOCK_LINES): compacted and replayed blocks hold older rows only."""
        mark, picked = self._live_mark, []
        for block in blocks.select(self._db, "first_id > ?", (mark - blocks.PUT_BLOCK_LINES,), "first_id DESC"):
            if block.last_id > mark:
                picked[:0] = self._eligible(block, lambda row_id: row_id > mark)
                if len(picked) >= max_lines:
                    break
        return picked[-max_lines:]

    def _backfill(self, max_lines: int) -> list[tuple[int, int, int, str]]:
        """The oldest rows up to the live mark, in id order: blocks may overlap (compacted, replayed),
        so a row is taken once no block starting before it is left to read."""
        mark, heap, picked = self._live_mark, [], []
        for block in blocks.select(self._db, "first_id <= ?", (mark,)):
            while heap and heap[0][0] < block.first_id:
                picked.append(heapq.heappop(heap)[1])
                if len(picked) == max_lines:
                    return picked
            for row in self._eligible(block, lambda row_id: row_id <= mark):
                heapq.heappush(heap, (row[1], row))
        while heap and len(picked) < max_lines:
            picked.append(heapq.heappop(heap)[1])
        return picked

    def ack(self, batch: Batch) -> None:
        """The rows were written: remove them."""
        with self._write() as db:
            self._count_rate(db, time.time(), "acked", self._remove(db, batch.ids))
        self._settle(batch)

    def _remove(self, db: sqlite3.Connection, ids: Sequence[int]) -> int:
        """Mark rows in flight gone from their blocks; returns how many were still there."""
        by_block: dict[int, list[int]] = {}
        for row_id in ids:
            if row_id in self._in_flight:
                first_id, position, _ = self._in_flight[row_id]
                by_block.setdefault(first_id, []).append(position)
        gone = 0
        for first_id, positions in by_block.items():
            block = blocks.get(db, first_id)
            if block is not None:  # else dropped by the budget meanwhile
                gone += blocks.mark_gone(db, block, positions)
        _add(db, "depth", -gone)
        return gone

    def nack(self, batch: Batch) -> None:
        """The write failed and may succeed later: the rows stay, in the back-fill lane."""
        self._settle(batch)

    def _settle(self, batch: Batch) -> None:
        with self._lock:
            for row_id in batch.ids:
                taken = self._in_flight.pop(row_id, None)
                if taken is None:
                    continue
                first_id, _, number = taken
                _uncount(self._block_in_flight, first_id)
                _uncount(self._batches, number)

    def compact(self) -> int:
        """Merge waiting text blocks (up to the live mark, none in flight) into one columnar block of up
        to ``COMPACT_MAX_LINES`` rows; returns how many rows it took (0: fewer than ``COMPACT_MIN_LINES``).

        The encoding (~0.1 ms a line) runs without the lock: puts and takes go on meanwhile; the
        swap checks that the blocks did not change and gives up otherwise (the next call tries again)."""
        with self._lock:
            chosen = self._compactable()
        if sum(b.lines for b in chosen) < blocks.COMPACT_MIN_LINES:
            return 0
        ids, stamps, lines = blocks.compacted(chosen, blocks.Decoded())  # its own: this runs on another thread
        data = blocks.encode_compacted(ids, stamps, lines)
        with self._write() as db:
            now = [blocks.get(db, b.first_id) for b in chosen]
            if now != chosen or any(self._block_in_flight[b.first_id] for b in chosen):
                return 0
            db.execute(f"DELETE FROM blocks WHERE first_id IN {_IDS}", (json.dumps([b.first_id for b in chosen]),))
            blocks.insert_packed(db, ids, data, added=min(b.added for b in chosen), event=0, codec=blocks.COLUMNS)
            self._decoded.clear()
        return len(ids)

    def _compactable(self) -> list[blocks.Block]:
        chosen, total = [], 0
        for block in blocks.select(self._db, "first_id <= ? AND codec = ? AND event = 0",
                                   (self._live_mark, blocks.TEXT)):
            if block.last_id > self._live_mark or self._block_in_flight[block.first_id]:
                if chosen:
                    break
                continue
            chosen.append(block)
            total += block.lines
            if total >= blocks.COMPACT_MAX_LINES:
                break
        return chosen

    # ---- dead letters ----

    def dead_letter(self, batch: Batch, error: str) -> None:
        """The server refused these rows: move them to the dead-letter table with its message."""
        with self._write() as db:
            moved = [(row_id, ts, added, blocks.pack_row(line), event)
                     for row_id, ts, added, line, event in self._rows_in_flight(db, batch.ids)]
            db.executemany("INSERT INTO dead (id, ts, added, line, error, failed_at, event) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(i, ts, added, blob, error, time.time(), event) for i, ts, added, blob, event in moved])
            self._remove(db, [row[0] for row in moved])
            _add(db, "dead", len(moved))
        self._settle(batch)

    def _rows_in_flight(self, db: sqlite3.Connection, ids: Sequence[int]):
        """(id, sample time, added, line, event) of these rows in flight, read back from their blocks."""
        wanted: dict[int, set[int]] = {}
        for row_id in ids:
            if row_id in self._in_flight:
                wanted.setdefault(self._in_flight[row_id][0], set()).add(row_id)
        for first_id, row_ids in wanted.items():
            block = blocks.get(db, first_id)
            if block is None:
                continue
            for _, row_id, stamp, line in blocks.waiting(block, self._decoded):
                if row_id in row_ids:
                    yield row_id, stamp, block.added, line, block.event

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        with self._lock:
            rows = self._db.execute("SELECT id, ts, added, failed_at, error, line FROM dead ORDER BY id LIMIT ?",
                                    (-1 if limit is None else limit,)).fetchall()
        return [DeadLetter(*row[:-1], line=blocks.unpack_row(row[-1])) for row in rows]

    def replay(self, ids: Sequence[int] | None = None) -> int:
        """Put dead letters (all, or those ids) back in the queue; returns how many.

        They keep their id, so the back-fill lane sends them first, and restart their wait (``added``)
        so the age limit does not drop them at once.
        """
        where, params = _where_ids(ids)
        now = time.time()
        with self._write() as db:
            rows = db.execute(f"SELECT id, ts, line, event FROM dead WHERE {where} ORDER BY id", params).fetchall()
            blocks.insert_rows(db, [(i, ts, now, blocks.unpack_row(line), event) for i, ts, line, event in rows])
            moved = _delete_dead(db, where, params)
            _add(db, "depth", moved)
            return moved

    def purge(self, ids: Sequence[int] | None = None) -> int:
        """Delete dead letters (all, or those ids); returns how many."""
        where, params = _where_ids(ids)
        with self._write() as db:
            return _delete_dead(db, where, params)

    # ---- disk budget ----

    def _enforce_budget(self, db: sqlite3.Connection, now: float) -> None:
        """The age limit at most every ``AGE_CHECK_S`` (a tenth of the limit when shorter); the byte budget every put."""
        if self.max_age_s is not None and now >= self._next_age_check:
            self._next_age_check = now + min(AGE_CHECK_S, self.max_age_s / 10)
            cutoff = now - self.max_age_s
            self._drop(db, _AGED.format(table="blocks", id="first_id"), _AGED.format(table="dead", id="id"),
                       (cutoff,), f"waited more than {self.max_age_s / 86400:g} days")
        if self.max_bytes is not None:
            self._enforce_bytes(db)

    def _enforce_bytes(self, db: sqlite3.Connection) -> None:
        used = self._used_bytes(db)
        if used <= self.max_bytes:
            return
        target = self.max_bytes * (1 - DROP_MARGIN)
        detail = f"disk budget of {self.max_bytes / 1e6:g} MB reached"
        for event in (0, 1):  # readings first; events only once no reading is left
            while used > target:
                cutoff = _oldest_worth(db, used - target, event)
                if cutoff is None:  # none of this kind left
                    break
                self._drop(db, "first_id <= ? AND event = ?", "id <= ? AND event = ?", (cutoff, event), detail)
                used = self._used_bytes(db)

    def _drop(self, db: sqlite3.Connection, blocks_where: str, dead_where: str, params: tuple, detail: str) -> None:
        """Drop the whole blocks and the dead letters that meet the conditions: counted and logged."""
        queued = sum(n for (n,) in db.execute(f"DELETE FROM blocks WHERE {blocks_where} RETURNING lines", params))
        _add(db, "depth", -queued)
        gone = queued + _delete_dead(db, dead_where, params)
        if gone:
            self._decoded.clear()
            _add(db, "dropped", gone)
            self._drops.add(gone, detail)

    def _count_rate(self, db: sqlite3.Connection, now: float, column: str, n: int) -> None:
        """Count ``n`` rows in this second's rate; seconds out of the window are deleted once a second."""
        if n:
            db.execute(f"INSERT INTO rates (second, {column}) VALUES (?, ?) "
                       f"ON CONFLICT (second) DO UPDATE SET {column} = {column} + excluded.{column}", (int(now), n))
            if int(now) != self._rates_pruned:
                self._rates_pruned = int(now)
                db.execute("DELETE FROM rates WHERE second <= ?", (int(now) - RATE_WINDOW_S,))

    def _used_bytes(self, db: sqlite3.Connection) -> int:
        """Pages holding data (free pages excluded: SQLite reuses them, the file does not shrink)."""
        return db.execute(_USED_PAGES).fetchone()[0] * self._page_size

    # ---- figures ----

    def stats(self) -> BufferStats:
        now = time.time()
        with self._lock:
            db = self._db
            self._drops.flush()
            oldest = db.execute("SELECT added FROM blocks ORDER BY first_id LIMIT 1").fetchone()
            oldest = None if oldest is None else oldest[0]
            put, acked = db.execute("SELECT coalesce(sum(put), 0), coalesce(sum(acked), 0) FROM rates "
                                    "WHERE second > ?", (int(now) - RATE_WINDOW_S,)).fetchone()
            return BufferStats(
                depth=_get(db, "depth"), bytes=self._used_bytes(db),
                oldest_age_s=None if oldest is None else max(0.0, now - oldest),
                in_per_s=put / RATE_WINDOW_S, out_per_s=acked / RATE_WINDOW_S,
                dropped=_get(db, "dropped"), dead_letters=_get(db, "dead"))

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._transaction():
            yield self._db

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")  # take the write lock now: no deadlock with another process
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite rolls back itself after some errors (disk full): keep their cause
                self._db.execute("ROLLBACK")
            raise


# A put's counters in one statement; page_count and freelist_count in one. Each statement releases and takes
# back the GIL, and with the event loop busy each take waits up to the switch interval: fewer is faster.
_PUT_COUNTERS = ("UPDATE counters SET value = value + CASE name WHEN 'next_id' THEN ? ELSE ? END "
                 "WHERE name IN ('next_id', 'depth')")
_USED_PAGES = "SELECT p.page_count - f.freelist_count FROM pragma_page_count() AS p, pragma_freelist_count() AS f"
# The rows before the first one put after the cutoff: reads only the rows it drops (no index on ``added``).
_AGED = "{id} < coalesce((SELECT {id} FROM {table} WHERE added >= ? ORDER BY {id} LIMIT 1), 1 << 62)"
_IDS = "(SELECT value FROM json_each(?))"  # a list of ids as one JSON parameter, whatever its length


def _uncount(counter: Counter, key: int) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


def _where_ids(ids: Sequence[int] | None) -> tuple[str, tuple]:
    return ("1", ()) if ids is None else (f"id IN {_IDS}", (json.dumps(list(ids)),))


def _delete_dead(db: sqlite3.Connection, where: str, params: tuple) -> int:
    gone = db.execute(f"DELETE FROM dead WHERE {where}", params).rowcount
    _add(db, "dead", -gone)
    return gone


def _get(db: sqlite3.Connection, counter: str) -> int:
    return db.execute("SELECT value FROM counters WHERE name = ?", (counter,)).fetchone()[0]


def _add(db: sqlite3.Connection, counter: str, delta: int) -> None:
    if delta:
        db.execute("UPDATE counters SET value = value + ? WHERE name = ?", (delta, counter))






def _oldest_worth(db: sqlite3.Connection, need: float, event: int) -> int | None:
    """The id up to which the oldest blocks and dead letters of a kind hold about ``need`` bytes (their
    stored size, oldest first, a merge of both primary keys); None when there is none of that kind."""
    total, last = 0, None
    for row_id, size in db.execute("SELECT first_id, bytes FROM blocks WHERE event = ? UNION ALL "
                                   "SELECT id, length(line) + 64 FROM dead WHERE event = ? ORDER BY 1",
                                   (event, event)):
        total, last = total + size, row_id
        if total >= need:
            break
    return last
