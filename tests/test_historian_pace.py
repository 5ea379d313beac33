"""The historian sink's pace under load (issue 16, surface ingest): when the drain writes, when the buffer compacts."""
from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter

from gateway.blockcodec import COLUMNS
from gateway.config import HistorianBufferConfig
from gateway.historian.sink import HistorianSink
from tests.test_historian_sink import (
    SITE,
    RecordingWriter,
    counts,
    device,
    historian,
    reading,
    until,
)


def columnar_blocks(cfg) -> int:
    with sqlite3.connect(cfg.buffer.path) as db:  # WAL: read beside the sink's connection
        return db.execute("SELECT count(*) FROM blocks WHERE codec = ?", (COLUMNS,)).fetchone()[0]


async def test_a_tenth_of_a_batch_goes_at_once_a_few_lines_wait_for_flush_interval(influxdb, tmp_path):
    cfg = historian(influxdb, "pace", tmp_path, batch_lines=100, flush_interval=60)
    sink = HistorianSink(cfg, SITE, health_interval=600)
    shearer = device("shearer-1")
    await sink.start()
    try:
        for i in range(3):  # a gateway's few lines: one write per flush_interval
            sink.on_reading(shearer, reading(shearer.id, i))
        await until(lambda: sink.health()["buffered"] == 4)  # and the gateway's "started" gateway_status line
        await asyncio.sleep(1.0)
        assert sink.written == 0
        for i in range(3, 13):  # a tenth of a batch committed: written without waiting the minute
            sink.on_reading(shearer, reading(shearer.id, i))
        await until(lambda: sink.written == 14, timeout=20)
        assert counts(influxdb, "pace", "shearer", "speed") == {shearer.id: 13}
    finally:
        await sink.stop()


class SlowWriter(RecordingWriter):
    """The real writer, behind a slow link: each write waits a while first."""

    async def write(self, lines: list[str]) -> None:
        await asyncio.sleep(0.2)
        await super().write(lines)


async def test_a_backlog_draining_is_not_compacted_one_waiting_for_influxdb_is(make_influx, tmp_path, monkeypatch):
    monkeypatch.setattr(HistorianSink, "COMPACT_INTERVAL_S", 0.05)
    monkeypatch.setattr(HistorianSink, "BACKOFF_S", (0.05, 0.3))
    influx = make_influx()
    cfg = historian(influx, "compaction", tmp_path, batch_lines=250, flush_interval=0.1)
    writer = SlowWriter(cfg)
    sink = HistorianSink(cfg, SITE, writer, health_interval=600)
    shearers = [device(f"shearer-{n}") for n in range(5)]
    await sink.start()
    try:
        sink.on_reading(shearers[0], reading(shearers[0].id, 0))
        await until(lambda: sink.health()["connected"])
        for i in range(1, 1001):  # 5000 lines: a backlog InfluxDB takes (slowly) while it comes
            for d in shearers:
                sink.on_reading(d, reading(d.id, i))
        while sink.written < 5001:
            assert columnar_blocks(cfg) == 0, "a backlog that drains was compacted"
            await asyncio.sleep(0.05)

        influx.stop()  # an outage: what waits is compacted
        for i in range(1001, 2001):
            for d in shearers:
                sink.on_reading(d, reading(d.id, i))
        await until(lambda: columnar_blocks(cfg) > 0)

        influx.start()
        await until(lambda: sink.health()["depth"] == 0, timeout=60)
        assert counts(influx, "compaction", "shearer", "speed") == {d.id: 2001 if d is shearers[0] else 2000
                                                                    for d in shearers}
        assert set(Counter(line for line in writer.landed if line.startswith("shearer,")).values()) == {1}
    finally:
        await sink.stop()


async def test_a_commit_takes_a_poll_slots_answers_together_and_a_stream_without_pause_still_commits(
        influxdb, tmp_path):
    """A poll slot's answers come over a few loop iterations: one commit takes them all, not the first alone
    (the rest would wait a whole commit_interval for the next one, and the live sinks with them); lines that
    never pause are still committed within about commit_interval of the first."""
    cfg = historian(influxdb, "settle", tmp_path, flush_interval=60)
    cfg = cfg.model_copy(update={"buffer": HistorianBufferConfig(path=cfg.buffer.path, commit_interval=0.5)})
    sink = HistorianSink(cfg, SITE, health_interval=600)
    devices = [device(f"shearer-{n}") for n in range(10)]
    await sink.start()
    try:
        await until(lambda: sink.health()["buffered"] == 1)  # the "started" gateway_status line
        for slot in range(3):
            await asyncio.sleep(0.45)  # past the spacing after the previous commit: the next may begin at once
            before = sink.commits
            for d in devices:  # the answers, one a loop iteration
                sink.on_reading(d, reading(d.id, slot))
                await asyncio.sleep(0)
            await sink.when_committed()  # the commit that took the last one
            assert sink.commits - before == 1, f"slot {slot}: its answers took {sink.commits - before} commits"
            assert sink.health()["buffered"] == 1 + 10 * (slot + 1)

        loop = asyncio.get_running_loop()
        first = None
        end = loop.time() + 2.0  # four commit intervals of lines without a pause
        i = 3
        while loop.time() < end:
            sink.on_reading(devices[0], reading(devices[0].id, i))
            first = first or sink.when_committed()
            i += 1
            await asyncio.sleep(0)
        assert first.done(), "lines coming without a pause were not committed within four commit intervals"
    finally:
        await sink.stop()
