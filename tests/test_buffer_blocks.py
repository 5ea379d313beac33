"""The durable buffer's blocks, on real SQLite files: partial acks, whole-block drops, the schema 2
upgrade, dead letters inside a block, compaction, a corrupt block, and the codec's round trip."""
from __future__ import annotations

import base64
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from contextlib import closing

import pytest

from gateway import blockcodec
from gateway.buffer import Batch, DurableBuffer
from tests.test_buffer import REPO, drain, rows, seq


def machine_rows(devices: int, seconds: int) -> list[tuple[float, str]]:
    """100-field lines as the gateway writes scaled registers (x × 0.1 has long reprs), one per device a second."""
    out = []
    for s in range(seconds):
        for d in range(devices):
            fields = ",".join(f"u{i:03d}={((s * 37 + d * 101 + i * 13) % 5000 + 700) * 0.1!r}" for i in range(97))
            line = (f"bench_machine,site=m,area=a,device=dev-{d:03d} {fields},running=true,fault=false,"
                    f"count={s * d}i {(1_700_000_000 + s) * 10**9 + d}")
            out.append((1.7e9 + s, line))
    return out


def test_a_block_acked_in_parts_keeps_the_rest(tmp_path):
    path = tmp_path / "b.sqlite3"
    buffer = DurableBuffer(path)
    buffer.put(rows("a", 100))  # one commit: one block
    batch = buffer.take_batch(1000)
    first, second = batch.split()
    buffer.ack(first)
    buffer.nack(second)
    assert buffer.stats().depth == 50
    spool_style = buffer.take_batch(1000)  # the MQTT spool settles by ids only
    acked = Batch([i for i in spool_style.ids if i % 2 == 0], [], spool_style.lane)
    buffer.ack(acked)
    buffer.nack(Batch([i for i in spool_style.ids if i % 2], [], spool_style.lane))
    buffer.close()

    buffer = DurableBuffer(path)  # what was acked stays gone after a restart
    left = drain(buffer)
    assert [seq(line) for line in left] == [s for s, i in zip(range(50, 100), second.ids) if i % 2]
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM blocks").fetchone()[0] == 0  # a block goes once all of it went


def test_two_batches_in_flight_never_share_a_line(tmp_path):
    buffer = DurableBuffer(tmp_path / "b.sqlite3", max_in_flight=2)
    for k in range(10):
        buffer.put(rows("h", 100, start=k * 100))
    buffer.close()
    buffer = DurableBuffer(tmp_path / "b.sqlite3", max_in_flight=2)
    a, b = buffer.take_batch(150), buffer.take_batch(150)
    with pytest.raises(RuntimeError, match="not settled"):
        buffer.take_batch(150)
    assert [seq(line) for line in a.lines + b.lines] == list(range(300))  # oldest first, no line twice
    buffer.nack(a)  # failed: back in front of the back-fill
    buffer.ack(b)
    assert [seq(line) for line in drain(buffer, 150)] == list(range(150)) + list(range(300, 1000))


def test_disk_budget_drops_whole_blocks_oldest_first(tmp_path, caplog):
    buffer = DurableBuffer(tmp_path / "b.sqlite3", max_bytes=1_000_000)
    with caplog.at_level(logging.WARNING):
        for k in range(100):  # commits of 50 lines that do not compress
            buffer.put([(time.time(), f'm pad="{base64.b64encode(os.urandom(400)).decode()}" {k * 50 + i}')
                        for i in range(50)])
    stats = buffer.stats()
    assert stats.dropped > 0 and stats.dropped % 50 == 0 and stats.depth + stats.dropped == 5000
    assert [seq(line) for line in drain(buffer)] == list(range(stats.dropped, 5000))


SCHEMA_2 = """
CREATE TABLE queue (id INTEGER PRIMARY KEY, ts REAL NOT NULL, added REAL NOT NULL, line BLOB NOT NULL,
                    event INTEGER NOT NULL DEFAULT 0);
CREATE TABLE dead (id INTEGER PRIMARY KEY, ts REAL NOT NULL, added REAL NOT NULL, line BLOB NOT NULL,
                   error TEXT NOT NULL, failed_at REAL NOT NULL, event INTEGER NOT NULL DEFAULT 0);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE rates (second INTEGER PRIMARY KEY, put INTEGER NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0);
PRAGMA user_version = 2;
"""


def test_a_schema_2_file_keeps_its_rows_kinds_and_dead_letters(tmp_path, monkeypatch):
    monkeypatch.setattr("gateway.buffer_blocks.CONVERT_CHUNK", 700)  # several transactions
    path = tmp_path / "b.sqlite3"
    with closing(sqlite3.connect(path)) as db:  # what the gateway before blocks left behind
        db.executescript(SCHEMA_2)
        now = time.time()
        db.executemany("INSERT INTO queue VALUES (?, ?, ?, ?, ?)",
                       [(i, 1.7e9 + i, now, zlib.compress(f"{'alarm' if i % 100 == 0 else 'm'} v={i}i {i}".encode()),
                         int(i % 100 == 0)) for i in range(1, 3001)])
        db.execute("INSERT INTO dead VALUES (3001, 1.7e9, ?, ?, 'refused', ?, 0)", (now, zlib.compress(b"m v=0.5 3001"), now))
        db.executemany("INSERT INTO counters VALUES (?, ?)", [("next_id", 3002), ("depth", 3000), ("dead", 1), ("dropped", 7)])
        db.commit()

    buffer = DurableBuffer(path)
    stats = buffer.stats()
    assert (stats.depth, stats.dead_letters, stats.dropped) == (3000, 1, 7)
    assert buffer.dead_letters()[0].line == "m v=0.5 3001" and buffer.replay() == 1
    buffer.put([(time.time(), "m v=1i 3002")])
    lines = drain(buffer, 1000)
    assert [seq(line) for line in lines] == list(range(3002, 3003)) + list(range(1, 3002))  # live first, then history
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
        assert not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'queue'").fetchone()
        assert db.execute("SELECT count(*) FROM blocks WHERE event = 1").fetchone()[0] == 0  # all acked


def test_a_schema_2_event_row_is_still_dropped_last(tmp_path):
    path = tmp_path / "b.sqlite3"
    with closing(sqlite3.connect(path)) as db:
        db.executescript(SCHEMA_2)
        db.execute("INSERT INTO queue VALUES (1, 0, ?, ?, 1)", (time.time(), zlib.compress(b"alarm v=1i 1")))
        db.executemany("INSERT INTO counters VALUES (?, ?)", [("next_id", 2), ("depth", 1), ("dead", 0), ("dropped", 0)])
        db.commit()
    buffer = DurableBuffer(path, max_bytes=1_000_000)
    for k in range(60):
        buffer.put([(time.time(), f'm pad="{base64.b64encode(os.urandom(400)).decode()}" {k * 50 + i + 2}')
                    for i in range(50)])
    assert buffer.stats().dropped > 0
    assert "alarm v=1i 1" in drain(buffer)


def test_a_line_inside_a_block_is_dead_lettered_and_replayed_at_its_place(tmp_path):
    buffer = DurableBuffer(tmp_path / "b.sqlite3")
    buffer.put(rows("a", 10))
    batch = buffer.take_batch(100)
    parts = [Batch([i], [line], batch.lane) for i, line in zip(batch.ids, batch.lines)]  # bisected down to lines
    for part in parts:
        if seq(part.lines[0]) == 4:
            buffer.dead_letter(part, "field type conflict")
        else:
            buffer.ack(part)
    dead = buffer.dead_letters()
    assert [(d.id, seq(d.line), d.error) for d in dead] == [(batch.ids[4], 4, "field type conflict")]
    assert dead[0].sample_time == pytest.approx(time.time(), abs=60)
    assert buffer.stats().depth == 0
    buffer.put(rows("b", 3))
    assert buffer.replay() == 1
    again = buffer.take_batch(100)  # the back-fill's turn: the replayed line, with its old id
    assert again.lane == "backfill" and again.ids == [batch.ids[4]] and seq(again.lines[0]) == 4
    buffer.ack(again)
    live = buffer.take_batch(100)
    assert live.lane == "live" and [seq(line) for line in live.lines] == [0, 1, 2]


def test_compaction_keeps_every_line_in_order_and_shrinks_the_file(tmp_path):
    buffer = DurableBuffer(tmp_path / "b.sqlite3", max_in_flight=2)
    machine = machine_rows(100, 40)
    for start in range(0, len(machine), 50):  # commits of 50 lines
        buffer.put(machine[start:start + 50])
    buffer.nack(buffer.take_batch(100))  # a failed live batch: everything before it is back-fill
    text_bytes = buffer.stats().bytes
    held = buffer.take_batch(100)  # a back-fill batch in flight: its blocks are left alone
    assert buffer.compact() > 0
    while buffer.compact():
        pass
    assert buffer.stats().bytes < text_bytes / 2
    buffer.ack(held)
    buffer.put(rows("live", 5))
    taken = drain(buffer, 3000)
    history = [line for line in taken if not line.startswith("m,")]
    assert history == [line for _, line in machine[100:]]  # all of it, in commit order


def test_a_corrupt_block_is_named_set_aside_and_the_rest_kept(tmp_path, caplog):
    path = tmp_path / "b.sqlite3"
    buffer = DurableBuffer(path)
    for k in range(3):
        buffer.put(rows("a", 10, start=k * 10))
    buffer.close()
    with closing(sqlite3.connect(path)) as db:
        first_id = db.execute("SELECT first_id FROM blocks ORDER BY first_id LIMIT 1 OFFSET 1").fetchone()[0]
        db.execute("UPDATE blocks SET data = x'28b52ffd0000' WHERE first_id = ?", (first_id,))
        db.commit()
    buffer = DurableBuffer(path)
    with caplog.at_level(logging.ERROR):
        lines = drain(buffer)
    assert [seq(line) for line in lines] == list(range(10)) + list(range(20, 30))
    assert f"lines {first_id}..{first_id + 9}" in caplog.text and "corrupt" in caplog.text
    stats = buffer.stats()
    assert (stats.depth, stats.dropped) == (0, 10)
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT first_id, lines FROM corrupt").fetchall() == [(first_id, 10)]


@pytest.mark.parametrize("lines", [
    [line for _, line in machine_rows(5, 3)],
    ['m,a=b x="str, with space" 1', "m x=1i,y=true,z=1.5,w=-0.0,v=1e+16,u=nan 12",
     "m x=1i,y=false,z=2.25,w=0.0,v=3.0,u=1.0 13", "not line protocol at all",
     "m x=99999999999999999999999i,y=true,z=1.5,w=1.0,v=2.0,u=3.0 5", "m,t=a\\ b x=1 7", "m x=0.1 0012",
     "m x=1,y=2 9"],
])
def test_the_columnar_codec_gives_back_every_line(lines):
    ids = list(range(100, 100 + len(lines)))
    stamps = [float(i) for i in range(len(lines))]
    for codec in (blockcodec.TEXT, blockcodec.COLUMNS):
        assert blockcodec.unpack(codec, blockcodec.pack(codec, ids, stamps, lines)) == (ids, stamps, lines)


_COMPACTING_PUTTER = """
import sys, time
from gateway.buffer import DurableBuffer
buffer, n = DurableBuffer(sys.argv[1], max_in_flight=2), 0
while True:
    buffer.put([(time.time(), f"m,dev=d{(n + i) % 10} v={n + i}i,x={(n + i) * 0.1!r} {n + i}") for i in range(50)])
    n += 50
    if n % 1000 == 0:
        buffer.nack(buffer.take_batch(50))  # a failed live batch: what came before is back-fill
        print("compacted", buffer.compact(), flush=True)
    print(n, flush=True)
"""


def test_kill_9_during_puts_and_compactions_loses_nothing_committed(tmp_path):
    path = tmp_path / "b.sqlite3"
    child = subprocess.Popen([sys.executable, "-c", _COMPACTING_PUTTER, str(path)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    committed, compactions = 0, 0
    while committed < 12_000 or not compactions:
        out = child.stdout.readline()
        if out.startswith("compacted"):
            compactions += int(out.split()[1]) > 0
        else:
            committed = int(out)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()

    buffer = DurableBuffer(path)
    depth = buffer.stats().depth
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM blocks WHERE codec = 2").fetchone()[0] > 0
    assert depth >= committed and depth % 50 == 0
    assert [seq(line) for line in drain(buffer)] == list(range(depth))


def test_the_codec_is_safe_on_two_threads_at_once():
    """The compaction thread packs while the buffer's thread unpacks: zstd contexts are per thread."""
    lines = [line for _, line in machine_rows(20, 5)]
    ids, stamps = list(range(len(lines))), [0.0] * len(lines)
    failures = []

    def work(codec: int) -> None:
        for _ in range(100):
            if blockcodec.unpack(codec, blockcodec.pack(codec, ids, stamps, lines))[2] != lines:
                failures.append(codec)

    threads = [threading.Thread(target=work, args=(codec,)) for codec in (blockcodec.TEXT, blockcodec.COLUMNS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
