"""Blocks of the durable buffer (gateway/buffer.py): one SQLite row per chunk of lines.

A block is the lines of one commit (of one kind: readings or events), up to ``PUT_BLOCK_LINES``,
zstd-compressed as text (gateway/blockcodec.py); compaction later merges waiting blocks into
``COLUMNS`` blocks of up to ``COMPACT_MAX_LINES``. The functions here work on a connection inside
the caller's transaction; the caller holds the buffer's lock.
"""
from __future__ import annotations

import sqlite3
import time
import zlib
from dataclasses import dataclass

from gateway.blockcodec import COLUMNS, TEXT, CorruptBlock, pack, unpack

PUT_BLOCK_LINES = 2000  # a commit's lines of one kind, split in blocks of at most this many
CONVERT_CHUNK = 5000  # rows of a schema 1/2 file converted per transaction when it is opened
COMPACT_MIN_LINES = 2000  # compaction is worth it from this many lines (series need several samples each)
COMPACT_MAX_LINES = 10_000  # lines per compacted block: a back-fill batch reads one or two
_COLUMNS = "first_id, last_id, rows, lines, added, event, codec, gone, data"


class BlockError(sqlite3.DatabaseError):
    """A block whose bytes do not decode: named by its ids; the other blocks are unaffected."""

    def __init__(self, message: str, first_id: int):
        super().__init__(message)
        self.first_id = first_id


@dataclass(frozen=True)
class Block:
    first_id: int
    last_id: int
    rows: int  # lines stored
    lines: int  # lines not gone yet
    added: float  # when its oldest line was put (or replayed)
    event: int  # 1: event lines, dropped last by the budget
    codec: int
    gone: bytes | None
    data: bytes

    def is_gone(self, position: int) -> bool:
        return self.gone is not None and bool(self.gone[position >> 3] >> (position & 7) & 1)


def select(db: sqlite3.Connection, where: str, params: tuple, order: str = "first_id"):
    """Blocks meeting ``where``, lazily, in ``order``."""
    for row in db.execute(f"SELECT {_COLUMNS} FROM blocks WHERE {where} ORDER BY {order}", params):
        yield Block(*row)


def get(db: sqlite3.Connection, first_id: int) -> Block | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM blocks WHERE first_id = ?", (first_id,)).fetchone()
    return None if row is None else Block(*row)


def insert(db: sqlite3.Connection, ids: list[int], stamps: list[float], lines: list[str], *, added: float,
           event: int, codec: int = TEXT) -> None:
    insert_packed(db, ids, pack(codec, ids, stamps, lines), added=added, event=event, codec=codec)


def insert_packed(db: sqlite3.Connection, ids: list[int], data: bytes, *, added: float, event: int,
                  codec: int) -> None:
    db.execute("INSERT INTO blocks (first_id, last_id, rows, lines, added, event, codec, bytes, gone, data) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
               (ids[0], ids[-1], len(ids), len(ids), added, event, codec, len(data), data))


class Decoded:
    """Decodes blocks, keeping the last few: a back-fill batch often ends inside a block the next one reads."""

    KEEP = 4

    def __init__(self):
        self._kept: dict[tuple, tuple[list[int], list[float], list[str]]] = {}

    def __call__(self, block: Block) -> tuple[list[int], list[float], list[str]]:
        key = (block.first_id, block.last_id, block.rows, block.codec, len(block.data))
        got = self._kept.get(key)
        if got is None:
            try:
                got = unpack(block.codec, block.data)
            except CorruptBlock as exc:
                raise BlockError(f"buffer block of lines {block.first_id}..{block.last_id} ({block.rows} lines) "
                                 f"is corrupt: {exc}", block.first_id) from None
            if len(self._kept) >= self.KEEP:
                self._kept.pop(next(iter(self._kept)))
            self._kept[key] = got
        return got

    def clear(self) -> None:
        self._kept.clear()


def set_aside(db: sqlite3.Connection, first_id: int, error: str) -> int:
    """Move a block that does not decode to ``corrupt`` (its bytes kept for a post-mortem); returns
    how many lines it held."""
    moved = db.execute("INSERT OR REPLACE INTO corrupt (first_id, last_id, lines, event, error, failed_at, data) "
                       "SELECT first_id, last_id, lines, event, ?, ?, data FROM blocks "
                       "WHERE first_id = ? RETURNING lines", (error, time.time(), first_id)).fetchone()
    db.execute("DELETE FROM blocks WHERE first_id = ?", (first_id,))
    return 0 if moved is None else moved[0]


def mark_gone(db: sqlite3.Connection, block: Block, positions: list[int]) -> int:
    """Mark lines of ``block`` gone (acknowledged, dead-lettered); deletes the block once none is left.
    Returns how many were not gone before."""
    gone = bytearray(block.gone or bytes((block.rows + 7) // 8))
    newly = 0
    for p in positions:
        bit = 1 << (p & 7)
        if not gone[p >> 3] & bit:
            gone[p >> 3] |= bit
            newly += 1
    left = block.lines - newly
    if left <= 0:
        db.execute("DELETE FROM blocks WHERE first_id = ?", (block.first_id,))
    elif newly:
        db.execute("UPDATE blocks SET lines = ?, gone = ? WHERE first_id = ?", (left, bytes(gone), block.first_id))
    return newly


def waiting(block: Block, decoded: Decoded):
    """(position, id, sample time, line) of the block's lines not gone."""
    ids, stamps, lines = decoded(block)
    for position, (line_id, stamp, line) in enumerate(zip(ids, stamps, lines)):
        if not block.is_gone(position):
            yield position, line_id, stamp, line


def insert_rows(db: sqlite3.Connection, rows: list[tuple[int, float, float, str, int]]) -> None:
    """Blocks for single rows (id, sample time, added, line, event), ids ascending: readings and events
    apart, ``PUT_BLOCK_LINES`` at most a block, each block as old as its oldest row."""
    for event in (0, 1):
        kind = [row for row in rows if row[4] == event]
        for start in range(0, len(kind), PUT_BLOCK_LINES):
            chunk = kind[start:start + PUT_BLOCK_LINES]
            insert(db, [r[0] for r in chunk], [r[1] for r in chunk], [r[3] for r in chunk],
                   added=min(r[2] for r in chunk), event=event)


def convert_rows(db: sqlite3.Connection) -> bool:
    """Move up to ``CONVERT_CHUNK`` rows of a schema 1/2 ``queue`` table into blocks (oldest first);
    drops the table once empty. False when there was nothing left to convert."""
    rows = db.execute("SELECT id, ts, added, line, event FROM queue ORDER BY id LIMIT ?", (CONVERT_CHUNK,)).fetchall()
    if not rows:
        db.execute("DROP TABLE queue")
        return False
    insert_rows(db, [(i, ts, added, unpack_row(line), event) for i, ts, added, line, event in rows])
    db.execute("DELETE FROM queue WHERE id <= ?", (rows[-1][0],))
    return True


def pack_row(line: str) -> bytes:
    """A dead letter is stored alone, deflated (as every line was before blocks)."""
    return zlib.compress(line.encode(), 1)


def unpack_row(blob: bytes) -> str:
    return zlib.decompress(blob).decode()


def compacted(blocks: list[Block], decoded: Decoded) -> tuple[list[int], list[float], list[str]]:
    """The waiting lines of ``blocks`` in id order, for one COLUMNS block."""
    rows = sorted((line_id, stamp, line) for block in blocks for _, line_id, stamp, line in waiting(block, decoded))
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def encode_compacted(ids: list[int], stamps: list[float], lines: list[str]) -> bytes:
    return pack(COLUMNS, ids, stamps, lines)
