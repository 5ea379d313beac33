"""The historian sink's pace under load (issue 16, surface ingest): when the drain writes, when the buffer compacts."""
from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter

from gateway.blockcodec import COLUMNS
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
