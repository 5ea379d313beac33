"""The durable buffer alone, on real SQLite files: queue, kill -9, disk budget, lanes, dead letters."""
from __future__ import annotations

import base64
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from gateway.buffer import DurableBuffer
from gateway.historian.sink import buffer_status, list_dead, purge_dead, replay_dead

REPO = Path(__file__).resolve().parent.parent


def rows(tag: str, n: int, start: int = 0) -> list[tuple[float, str]]:
    now = time.time()
    return [(now, f"m,tag={tag} seq={i}i {i}") for i in range(start, start + n)]


def seq(line: str) -> int:
    return int(line.rsplit(" ", 1)[1])


def drain(buffer: DurableBuffer, max_lines: int = 100_000) -> list[str]:
    lines = []
    while batch := buffer.take_batch(max_lines):
        buffer.ack(batch)
        lines += batch.lines
    return lines


def test_put_take_ack_and_nack(tmp_path):
    buffer = DurableBuffer(tmp_path / "b.sqlite3")
    assert buffer.take_batch(10) is None
    buffer.put(rows("a", 10))
    batch = buffer.take_batch(100)
    assert [seq(line) for line in batch.lines] == list(range(10)) and batch.remaining == 0
    with pytest.raises(RuntimeError, match="not settled"):
        buffer.take_batch(100)
    buffer.nack(batch)  # the write failed: the same rows come again
    again = buffer.take_batch(100)
    assert again.lines == batch.lines
    buffer.ack(again)
    stats = buffer.stats()
    assert (stats.depth, stats.dropped, stats.dead_letters) == (0, 0, 0)
    assert stats.in_per_s == stats.out_per_s == 10 / 60
    assert buffer.take_batch(100) is None


def test_rows_survive_reopen_and_keep_commit_order(tmp_path):
    path = tmp_path / "b.sqlite3"
    buffer = DurableBuffer(path)
    for k in range(5):
        buffer.put(rows("a", 100, start=k * 100))
    buffer.close()
    buffer = DurableBuffer(path)
    assert buffer.stats().depth == 500
    assert [seq(line) for line in drain(buffer, 64)] == list(range(500))


_PUTTER = """
import sys, time
from gateway.buffer import DurableBuffer
buffer, n = DurableBuffer(sys.argv[1]), 0
while True:
    buffer.put([(time.time(), f"m v={n + i}i {n + i}") for i in range(100)])
    n += 100
    print(n, flush=True)
"""


def test_kill_9_loses_nothing_committed(tmp_path):
    path = tmp_path / "b.sqlite3"
    child = subprocess.Popen([sys.executable, "-c", _PUTTER, str(path)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    committed = 0
    while committed < 30_000:  # kill it mid-stream: it is committing as fast as it can
        committed = int(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()

    buffer = DurableBuffer(path)  # recovers the WAL
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        depth = db.execute("SELECT sum(lines) FROM blocks").fetchone()[0]
    assert depth == buffer.stats().depth >= committed and depth % 100 == 0  # whole transactions only
    assert [seq(line) for line in drain(buffer)] == list(range(depth))


def test_byte_budget_drops_oldest_counted_and_persisted(tmp_path, caplog):
    path = tmp_path / "b.sqlite3"
    buffer = DurableBuffer(path, max_bytes=1_000_000)
    with caplog.at_level(logging.WARNING):
        for k in range(100):  # 5000 rows of ~400 bytes that do not compress
            buffer.put([(time.time(), f'm pad="{base64.b64encode(os.urandom(300)).decode()}" {k * 50 + i}')
                        for i in range(50)])
            assert buffer.stats().bytes <= 1_000_000
    stats = buffer.stats()
    assert stats.dropped > 0 and stats.depth + stats.dropped == 5000
    assert "dropped" in caplog.text and "disk budget" in caplog.text
    buffer.close()

    buffer = DurableBuffer(path, max_bytes=1_000_000)
    assert buffer.stats().dropped == stats.dropped  # the counter survives a restart
    assert [seq(line) for line in drain(buffer)] == list(range(stats.dropped, 5000))  # the newest are kept


def test_byte_budget_drops_readings_before_events(tmp_path):
    buffer = DurableBuffer(tmp_path / "b.sqlite3", max_bytes=1_000_000)
    pad = lambda: base64.b64encode(os.urandom(300)).decode()  # noqa: E731 - does not compress
    for k in range(100):
        events = [(time.time(), f'alarm pad="{pad()}" {k}')] if k % 10 == 0 else []
        buffer.put([(time.time(), f'm pad="{pad()}" {k * 50 + i}') for i in range(50)], events)
    stats = buffer.stats()
    assert stats.dropped > 2000 and stats.bytes <= 1_000_000
    lines = drain(buffer)
    assert [seq(line) for line in lines if line.startswith("alarm")] == list(range(0, 100, 10))  # all kept
    readings = [seq(line) for line in lines if line.startswith("m ")]
    assert readings == list(range(5000 - len(readings), 5000))  # the oldest readings went

    buffer.put([], [(time.time(), f'alarm pad="{pad()}" {k}') for k in range(100, 4600)])  # events alone overflow
    assert buffer.stats().bytes <= 1_000_000 and buffer.stats().dropped > stats.dropped


def test_dead_letters_keep_their_kind_and_schema_1_files_open(tmp_path):
    path = tmp_path / "b.sqlite3"
    with closing(sqlite3.connect(path)) as db:  # a buffer file of the previous schema, with a row
        db.executescript("""
            CREATE TABLE queue (id INTEGER PRIMARY KEY, ts REAL NOT NULL, added REAL NOT NULL, line BLOB NOT NULL);
            CREATE TABLE dead (id INTEGER PRIMARY KEY, ts REAL NOT NULL, added REAL NOT NULL, line BLOB NOT NULL,
                               error TEXT NOT NULL, failed_at REAL NOT NULL);
            CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
            INSERT INTO counters VALUES ('next_id', 2), ('depth', 1), ('dead', 0), ('dropped', 0);
            PRAGMA user_version = 1;""")
        db.execute("INSERT INTO queue VALUES (1, 0, ?, ?)", (time.time(), zlib.compress(b"m v=1i 1")))
        db.commit()
    buffer = DurableBuffer(path, max_bytes=1_000_000)
    buffer.put([], [(time.time(), "alarm v=1i 2")])
    batch = buffer.take_batch(10)  # the live lane: the event
    buffer.dead_letter(batch, "refused")
    assert batch.lines == ["alarm v=1i 2"] and buffer.replay() == 1
    buffer.put([(time.time(), f'm pad="{base64.b64encode(os.urandom(300)).decode()}" {k}') for k in range(3, 4000)])
    lines = drain(buffer)
    assert "alarm v=1i 2" in lines and "m v=1i 1" not in lines  # replayed, still an event; the old row a reading


def test_age_limit_drops_old_rows_and_dead_letters(tmp_path):
    buffer = DurableBuffer(tmp_path / "b.sqlite3", max_age_s=0.3)
    buffer.put(rows("old", 10))
    refused, rest = buffer.take_batch(100).split()
    buffer.dead_letter(refused, "bad")
    buffer.nack(rest)
    time.sleep(0.4)
    buffer.put(rows("new", 3))
    stats = buffer.stats()
    assert (stats.depth, stats.dead_letters, stats.dropped) == (3, 0, 10)
    assert all("tag=new" in line for line in drain(buffer))


def test_failed_live_batch_joins_the_backfill(tmp_path):
    """During an outage each failed live batch becomes history; the next live batch has only newer rows."""
    buffer = DurableBuffer(tmp_path / "b.sqlite3")
    buffer.put(rows("history", 300))
    live = buffer.take_batch(100)
    assert live.lane == "live" and [seq(line) for line in live.lines] == list(range(200, 300))
    buffer.nack(live)
    backfill = buffer.take_batch(100)
    assert backfill.lane == "backfill" and [seq(line) for line in backfill.lines] == list(range(100))
    buffer.nack(backfill)
    buffer.put(rows("fresh", 5))
    live = buffer.take_batch(100)
    assert live.lane == "live" and all("tag=fresh" in line for line in live.lines)
    buffer.ack(live)
    assert [seq(line) for line in drain(buffer, 100)] == list(range(300))


def test_live_rows_overtake_the_backlog_while_it_drains_oldest_first(tmp_path):
    path = tmp_path / "b.sqlite3"
    buffer = DurableBuffer(path)
    for k in range(20):  # the backlog of an outage, then a restart
        buffer.put(rows("history", 1000, start=k * 1000))
    buffer.close()
    buffer = DurableBuffer(path)

    batches: list[list[str]] = []
    lanes: list[str] = []
    put_before: dict[str, int] = {}  # live line -> how many batches were taken before it was put
    for step in range(60):
        live = rows(f"live{step}", 20)
        buffer.put(live)
        put_before.update({line: len(batches) for _, line in live})
        batch = buffer.take_batch(1000)
        buffer.ack(batch)
        batches.append(batch.lines)
        lanes.append(batch.lane)

    taken_in = {line: i for i, lines in enumerate(batches) for line in lines}
    assert all(taken_in[line] - put_before[line] <= 1 for line in put_before)  # in the next batch or the one after
    assert lanes[:40] == ["live", "backfill"] * 20 and set(lanes[40:]) == {"live"}
    history = [seq(line) for lines in batches for line in lines if "history" in line]
    assert history == list(range(20_000))  # oldest first, all of it, while live data kept flowing
    everything = Counter(line for lines in batches for line in lines)
    assert set(everything.values()) == {1} and len(everything) == 20_000 + len(put_before)
    assert buffer.take_batch(1000) is None


def test_dead_letters_move_list_replay_purge(tmp_path):
    path = tmp_path / "b.sqlite3"
    buffer = DurableBuffer(path)
    buffer.put(rows("a", 10))
    refused, good = buffer.take_batch(100).split()
    buffer.dead_letter(refused, 'field type conflict: input field "seq" on measurement "m" is type integer')
    buffer.ack(good)
    dead = buffer.dead_letters()
    assert [seq(d.line) for d in dead] == list(range(5)) and "field type conflict" in dead[0].error
    assert buffer.stats().dead_letters == 5 and buffer.stats().depth == 0

    # the CLI works on the file while the gateway holds it open
    assert buffer_status(path)["dead_letters"] == 5
    assert [d["id"] for d in list_dead(path)] == [d.id for d in dead]
    assert replay_dead(path, [dead[0].id]) == 1
    assert purge_dead(path, [dead[1].id]) == 1
    assert replay_dead(path, None) == 3
    assert list_dead(path) == [] and buffer_status(path)["depth"] == 4
    assert [seq(line) for line in drain(buffer)] == [0, 2, 3, 4]  # back at their old place in the order

    buffer.put(rows("b", 2))
    batch = buffer.take_batch(100)
    buffer.dead_letter(batch, "bad")
    assert purge_dead(path, None) == 2 and buffer.stats().dead_letters == 0


def test_tools_refuse_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        buffer_status(tmp_path / "nothing.sqlite3")
    assert not (tmp_path / "nothing.sqlite3").exists()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "b.sqlite3"
    DurableBuffer(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(sqlite3.DatabaseError, match="schema 99"):
        DurableBuffer(path)
