"""The durable store-and-forward buffer (SQLite in WAL mode): in front of the historian, and the MQTT spool.

Rows are line-protocol lines with their sample time and the time they were put.
A row leaves the queue only by ``ack`` (written), ``dead_letter`` (refused by the
server, kept aside) or the disk budget (dropped oldest first, counted; event rows,
such as alarms and the command audit, only once no other row is left). See
docs/historian.md, "Durable buffer and back-fill", for durability and ordering.

Durability: ``synchronous=FULL`` in WAL mode fsyncs the WAL at every commit, so a
committed ``put`` survives a kill -9 and a power cut. Callers batch their puts
(the historian sink commits at most every ``historian.buffer.commit_interval``, 50 ms),
so that is at most about twenty fsyncs a second.

Threads: every method takes one lock around the one connection, so a writer thread
and the event loop thread may share an instance; the sink keeps all calls on one
thread of its own, so the event loop never waits on a lock or an fsync. Other
processes (the CLI) may open the same file at the same time: WAL lets them read
while the gateway writes, and their writes wait on SQLite's lock (busy timeout).
"""
from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.core.logutil import ThrottledWarning

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY, ts REAL NOT NULL, added REAL NOT NULL, line BLOB NOT NULL,
                                  event INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS dead (id INTEGER PRIMARY KEY, ts REAL NOT NULL, added REAL NOT NULL, line BLOB NOT NULL,
                                 error TEXT NOT NULL, failed_at REAL NOT NULL, event INTEGER NOT NULL DEFAULT 0);
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
# Ids come from the ``next_id`` counter and are never reused: they give commit order,
# the live lane's mark stays valid when the queue empties, and a replayed dead letter
# can take its old id back (and so its old place in the back-fill order). Ids also
# order rows by age (``added`` grows with them), so no other index is needed. Every
# commit writes each page it touches to the WAL: hence no index on ``added`` and no
# AUTOINCREMENT (its sqlite_sequence would be one more page per commit).

RATE_WINDOW_S = 60
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

    def split(self) -> tuple["Batch", "Batch"]:
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

    ``max_bytes`` and ``max_age_s`` are the disk budget, enforced on every ``put``;
    ``None`` means no limit (tools that only inspect or replay). ``create=False``
    refuses to create a missing file; ``label`` names the buffer in its warnings.
    """

    def __init__(self, path: str | Path, max_bytes: int | None = None, max_age_s: float | None = None,
                 *, create: bool = True, label: str = "Historian buffer"):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise FileNotFoundError(f"no historian buffer at {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_age_s = max_bytes, max_age_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._configure()
        self._live_mark = _get(self._db, "next_id") - 1  # all that is in the file already is back-fill
        self._next_lane = "live"
        self._in_flight: set[int] = set()
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
        if version not in (0, 1, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"{self.path}: buffer schema {version}, this gateway knows {SCHEMA_VERSION}")
        if version == 1:
            db.executescript(_FROM_VERSION_1)
        db.executescript(_SCHEMA)

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
            added = self._insert(db, now, rows, 0) + self._insert(db, now, events, 1)
            _add(db, "depth", added)
            _count_rate(db, now, "put", added)
            self._enforce_budget(db, now)

    @staticmethod
    def _insert(db: sqlite3.Connection, now: float, rows: Iterable[tuple[float, str]], event: int) -> int:
        first_id = _get(db, "next_id")
        added = db.executemany("INSERT INTO queue (id, ts, added, line, event) VALUES (?, ?, ?, ?, ?)",
                               ((i, ts, now, _pack(line), event)
                                for i, (ts, line) in enumerate(rows, first_id))).rowcount
        _add(db, "next_id", added)
        return added

    def take_batch(self, max_lines: int) -> Batch | None:
        """The next batch to write, from the live and back-fill lanes in turn.

        One batch at a time: settle it (``ack``, ``nack``, ``dead_letter``, in parts if
        split) before taking the next one. ``None`` when the queue is empty.
        """
        with self._lock:
            if self._in_flight:
                raise RuntimeError("the previous batch is not settled (ack, nack or dead_letter it)")
            lanes = ("live", "backfill") if self._next_lane == "live" else ("backfill", "live")
            for lane in lanes:
                rows = self._select(lane, max_lines)
                if rows:
                    break
            else:
                return None
            ids = [row[0] for row in rows]
            if lane == "live":
                self._live_mark = ids[-1]
            self._next_lane = "backfill" if lane == "live" else "live"
            self._in_flight = set(ids)
            depth = _get(self._db, "depth")
            return Batch(ids, [_unpack(row[1]) for row in rows], lane, remaining=max(0, depth - len(ids)))

    def _select(self, lane: str, max_lines: int) -> list[tuple[int, bytes]]:
        if lane == "live":  # the newest rows committed since the last live batch, sent oldest first
            rows = self._db.execute("SELECT id, line FROM queue WHERE id > ? ORDER BY id DESC LIMIT ?",
                                    (self._live_mark, max_lines)).fetchall()
            return rows[::-1]
        return self._db.execute("SELECT id, line FROM queue WHERE id <= ? ORDER BY id LIMIT ?",
                                (self._live_mark, max_lines)).fetchall()

    def ack(self, batch: Batch) -> None:
        """The rows were written: remove them."""
        with self._write() as db:
            gone = _delete_counted(db, "queue", f"id IN {_IDS}", (json.dumps(batch.ids),))
            _count_rate(db, time.time(), "acked", gone)
        self._settle(batch)

    def nack(self, batch: Batch) -> None:
        """The write failed and may succeed later: the rows stay, in the back-fill lane."""
        self._settle(batch)

    def _settle(self, batch: Batch) -> None:
        with self._lock:
            self._in_flight.difference_update(batch.ids)

    # ---- dead letters ----

    def dead_letter(self, batch: Batch, error: str) -> None:
        """The server refused these rows: move them to the dead-letter table with its message."""
        with self._write() as db:
            db.execute(f"INSERT INTO dead (id, ts, added, line, error, failed_at, event) "
                       f"SELECT id, ts, added, line, ?, ?, event FROM queue WHERE id IN {_IDS}",
                       (error, time.time(), json.dumps(batch.ids)))
            _add(db, "dead", _delete_counted(db, "queue", f"id IN {_IDS}", (json.dumps(batch.ids),)))
        self._settle(batch)

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        with self._lock:
            rows = self._db.execute("SELECT id, ts, added, failed_at, error, line FROM dead ORDER BY id LIMIT ?",
                                    (-1 if limit is None else limit,)).fetchall()
        return [DeadLetter(*row[:-1], line=_unpack(row[-1])) for row in rows]

    def replay(self, ids: Sequence[int] | None = None) -> int:
        """Put dead letters (all, or those ids) back in the queue; returns how many.

        They keep their id, so the back-fill lane sends them first, and restart their wait (``added``)
        so the age limit does not drop them at once.
        """
        where, params = _where_ids(ids)
        with self._write() as db:
            db.execute(f"INSERT INTO queue (id, ts, added, line, event) SELECT id, ts, ?, line, event FROM dead "
                       f"WHERE {where}",
                       (time.time(), *params))
            moved = _delete_counted(db, "dead", where, params)
            _add(db, "depth", moved)
            return moved

    def purge(self, ids: Sequence[int] | None = None) -> int:
        """Delete dead letters (all, or those ids); returns how many."""
        where, params = _where_ids(ids)
        with self._write() as db:
            return _delete_counted(db, "dead", where, params)

    # ---- disk budget ----

    def _enforce_budget(self, db: sqlite3.Connection, now: float) -> None:
        if self.max_age_s is not None:
            self._drop(db, _AGED, (now - self.max_age_s,), f"waited more than {self.max_age_s / 86400:g} days")
        if self.max_bytes is not None:
            self._enforce_bytes(db)

    def _enforce_bytes(self, db: sqlite3.Connection) -> None:
        used = _used_bytes(db)
        if used <= self.max_bytes:
            return
        target = self.max_bytes * (1 - DROP_MARGIN)
        detail = f"disk budget of {self.max_bytes / 1e6:g} MB reached"
        for event in (0, 1):  # readings first; events only once no reading is left
            while used > target:
                rows = _get(db, "depth") + _get(db, "dead")  # an estimate of the rows of this kind, from above
                cutoff = _nth_oldest(db, math.ceil(rows * (used - target) / used), event)
                if cutoff is None:  # none of this kind left
                    break
                self._drop(db, "id <= ? AND event = ?", (cutoff, event), detail)
                used = _used_bytes(db)

    def _drop(self, db: sqlite3.Connection, condition: str, params: tuple, detail: str) -> None:
        """Drop the queued rows and dead letters that meet ``condition``: counted and logged."""
        gone = sum(_delete_counted(db, table, condition.format(table=table), params) for table in _COUNTERS)
        if gone:
            _add(db, "dropped", gone)
            self._drops.add(gone, detail)

    # ---- figures ----

    def stats(self) -> BufferStats:
        now = time.time()
        with self._lock:
            db = self._db
            self._drops.flush()
            oldest = db.execute("SELECT added FROM queue ORDER BY id LIMIT 1").fetchone()
            put, acked = db.execute("SELECT coalesce(sum(put), 0), coalesce(sum(acked), 0) FROM rates "
                                    "WHERE second > ?", (int(now) - RATE_WINDOW_S,)).fetchone()
            return BufferStats(
                depth=_get(db, "depth"), bytes=_used_bytes(db),
                oldest_age_s=None if oldest is None else max(0.0, now - oldest[0]),
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


# The rows before the first one put after the cutoff: reads only the rows it drops (no index on ``added``).
_AGED = "id < coalesce((SELECT id FROM {table} WHERE added >= ? ORDER BY id LIMIT 1), 1 << 62)"
_IDS = "(SELECT value FROM json_each(?))"  # a list of ids as one JSON parameter, whatever its length


def _pack(line: str) -> bytes:
    """Lines are stored deflated: about 1.7 times as many fit in the disk budget, for ~10 µs a line."""
    return zlib.compress(line.encode(), 1)


def _unpack(blob: bytes) -> str:
    return zlib.decompress(blob).decode()


def _where_ids(ids: Sequence[int] | None) -> tuple[str, tuple]:
    return ("1", ()) if ids is None else (f"id IN {_IDS}", (json.dumps(list(ids)),))


_COUNTERS = {"queue": "depth", "dead": "dead"}  # the counter holding each table's row count: count(*) is O(n)


def _delete_counted(db: sqlite3.Connection, table: str, where: str, params: tuple) -> int:
    gone = db.execute(f"DELETE FROM {table} WHERE {where}", params).rowcount
    _add(db, _COUNTERS[table], -gone)
    return gone


def _get(db: sqlite3.Connection, counter: str) -> int:
    return db.execute("SELECT value FROM counters WHERE name = ?", (counter,)).fetchone()[0]


def _add(db: sqlite3.Connection, counter: str, delta: int) -> None:
    if delta:
        db.execute("UPDATE counters SET value = value + ? WHERE name = ?", (delta, counter))


def _count_rate(db: sqlite3.Connection, now: float, column: str, n: int) -> None:
    if n:
        db.execute(f"INSERT INTO rates (second, {column}) VALUES (?, ?) "
                   f"ON CONFLICT (second) DO UPDATE SET {column} = {column} + excluded.{column}", (int(now), n))
        db.execute("DELETE FROM rates WHERE second <= ?", (int(now) - RATE_WINDOW_S,))


def _used_bytes(db: sqlite3.Connection) -> int:
    """Pages holding data (free pages excluded: SQLite reuses them, the file does not shrink)."""
    pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
    return pages * db.execute("PRAGMA page_size").fetchone()[0]


def _nth_oldest(db: sqlite3.Connection, n: int, event: int) -> int | None:
    """Id of the n-th oldest row of a kind (or of its newest, when fewer), queue and dead letters together
    (a merge of both primary keys); None when there is none of that kind."""
    return db.execute("SELECT max(id) FROM (SELECT id FROM queue WHERE event = ? UNION ALL "
                      "SELECT id FROM dead WHERE event = ? ORDER BY id LIMIT ?)", (event, event, n)).fetchone()[0]
