"""The columnar builders of the hot path give byte for byte what the per-sample way gives.

The MQTT data payload (:class:`gateway.contract.DataPayloads`) against ``pydantic_core.to_json`` of the
message dict built sample by sample; the historian lines (:class:`gateway.historian.lineprotocol.ReadingLines`)
against :func:`sample_fields` and :func:`point` sample by sample; over random readings of every value
type and quality, shared and separate timestamps, odd names, one builder reused across schemas.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pydantic_core
import pytest

from gateway.contract import DataMessage, DataPayloads, data_payload
from gateway.core.model import Quality, Reading, Schema, iso
from gateway.historian.lineprotocol import ReadingLines, point, reading_lines, sample_fields

T0 = datetime(2024, 5, 1, 8, 30, 0, 123456, tzinfo=timezone.utc)
ODD_VALUES = [0.0, -0.0, 1e16, 1.5e-7, 1e-5, 1e300, 123456789.125, float("nan"), float("inf"), float("-inf"),
              0, -32768, 2**70, True, False, None, "auto", 'he said "ok", 1\\2', "é 矿\n", ""]


def payload_per_sample(site, area, zone, kind, reading: Reading) -> bytes:
    return pydantic_core.to_json({
        "site": site, "area": area, "zone": zone, "device": reading.device, "kind": kind,
        "ts": iso(reading.ts), "poll_ms": reading.poll_ms,
        "samples": {s.signal: {"value": s.value, "unit": s.unit, "quality": s.quality.value, "ts": iso(s.ts)}
                    for s in reading.samples}}, inf_nan_mode="null")


def lines_per_sample(site, area, kind, reading: Reading) -> list[str]:
    fields = {}
    for s in reading.samples:
        fields.update(sample_fields(s.signal, s.quality, s.value))
    line = point(kind, {"site": site, "area": area, "device": reading.device}, fields, reading.ts)
    return [line] if line else []


def random_reading(rng: random.Random, schema: Schema, mode: str) -> Reading:
    n = len(schema)
    if mode == "floats":
        values = [rng.uniform(-1e4, 1e4) for _ in range(n)]
    elif mode == "numbers":
        values = [rng.choice([rng.uniform(-10, 10), rng.randint(-1000, 1000), rng.random() < 0.5]) for _ in range(n)]
    else:
        values = [rng.choice(ODD_VALUES + [rng.uniform(-1, 1)]) for _ in range(n)]
    qualities = None
    if mode == "odd" and rng.random() < 0.7:
        qualities = [rng.choice(list(Quality)) for _ in range(n)]
    times = None
    if rng.random() < 0.5:
        blocks = [T0, T0 + timedelta(milliseconds=7), T0 + timedelta(seconds=1, microseconds=999)]
        times = [rng.choice(blocks) for _ in range(n)]
    return Reading(f"dev-{rng.randint(1, 3)}", T0, rng.choice([12.5, 0.0, 3, float("nan")]), schema=schema,
                   values=values, qualities=qualities, times=times)


SCHEMAS = [
    Schema([f"sig_{i}" for i in range(100)], ["A", "°C", "MPa", ""] * 25),
    Schema(["speed", "a b", "c,d", "e=f", 'q"uote', "é矿"], ["m/s", 'u"nit', "", "x,y", "%", "\\"]),
    Schema(["x"], ["V"]),
    Schema(["dup", "dup", "dup__quality"], ["", "", ""]),
]


@pytest.mark.parametrize("mode", ["floats", "numbers", "odd"])
def test_payloads_and_lines_match_the_per_sample_way(mode):
    rng = random.Random(mode)
    payloads = DataPayloads("pit-7", "face 1", None, "shearer")
    lines = ReadingLines("pit-7", "face 1", "shearer")
    for _ in range(300):
        r = random_reading(rng, rng.choice(SCHEMAS), mode)
        expected = payload_per_sample("pit-7", "face 1", None, "shearer", r)
        assert payloads.build(r) == expected
        assert data_payload("pit-7", "face 1", None, "shearer", r) == expected
        assert lines.lines(r) == lines_per_sample("pit-7", "face 1", "shearer", r)
        assert reading_lines("pit-7", "face 1", "shearer", r) == lines.lines(r)
    DataMessage.model_validate_json(expected)


def test_lines_write_floats_as_repr_does_about_its_exponents():
    """repr writes 1e-05 where orjson writes 0.00001, 1e-06 where it writes 1e-6: the lines stay byte for byte
    (a % in a key stays one too)."""
    lines, schema = ReadingLines("s", "a", "k"), Schema(["a", "b", "c", "load%", "n", "on"], [""] * 6)
    for x in (1e-5, 9.9e-5, 1e-4, 1.5e-7, 1e16, 2.5, 10.00001):
        r = Reading("d", T0, 1.0, schema=schema, values=[x, -x, 0.5, 1e300, 7, True])
        assert lines.lines(r) == lines_per_sample("s", "a", "k", r)
        assert "=0.0000" not in lines.lines(r)[0] and "=-0.0000" not in lines.lines(r)[0]


def test_empty_readings_and_names_line_protocol_refuses():
    empty = Reading("d", T0, 1.0, schema=Schema([], []), values=[])
    assert DataPayloads("s", "a", "z", "k").build(empty) == payload_per_sample("s", "a", "z", "k", empty)
    assert ReadingLines("s", "a", "k").lines(empty) == []
    bad = Reading("d", T0, 1.0, schema=Schema(["ok", "bad\nname"], ["", ""]), values=[1.0, 2.0])
    with pytest.raises(ValueError):
        ReadingLines("s", "a", "k").lines(bad)
