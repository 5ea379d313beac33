"""Surface ingest of the compact data payload (docs/mqtt.md): same points as the full payload, schemas
learnt from retained messages, unknown versions held then ingested or refused, hostile messages refused.

Real Mosquitto (the session broker) and InfluxDB 1.x; each test has its own topic prefix and database."""
from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.contract import data_payload, schema_version
from gateway.core.model import Quality, Reading, Sample
from gateway.surface.convert import Converter
from gateway.surface.ingest import IngestWorker, Refused, parse_ingest
from tests.util import until

T0 = datetime(2025, 3, 14, 6, 0, tzinfo=timezone.utc)
MS0 = int(T0.timestamp() * 1000)
SIGNALS = ["seq", "current", "running", "methane", "pressure", "mode"]
UNITS = ["", "A", "", "%CH4", "MPa", ""]
VERSION = schema_version(SIGNALS, UNITS)


def schema_message(prefix: str, device: str, kind: str = "shearer", versions: dict | None = None) -> tuple[str, bytes]:
    body = {"site": "pit", "area": "face", "zone": "face", "device": device, "kind": kind,
            "schemas": versions or {VERSION: {"signals": SIGNALS, "units": UNITS}}}
    return f"{prefix}/pit/face/{device}/schema", json.dumps(body).encode()


def reading(device: str, seq: int) -> Reading:
    """Every kind of sample: int, float, bool, comm-fail (no value), stale (with value), text."""
    ts = T0 + timedelta(milliseconds=seq)
    values = [seq, 182.4 + seq, True, None, 12.5, "auto"]
    qualities = [Quality.GOOD, Quality.GOOD, Quality.GOOD, Quality.COMM_FAIL, Quality.STALE, Quality.GOOD]
    return Reading(device=device, ts=ts, poll_ms=12.5, samples=[
        Sample(signal=s, value=v, unit=u, quality=q, ts=ts) for s, v, u, q in zip(SIGNALS, values, UNITS, qualities)])


def full(prefix: str, device: str, seq: int) -> tuple[str, bytes]:
    return f"{prefix}/pit/face/{device}/data", data_payload("pit", "face", "face", "shearer", reading(device, seq))


def compact(prefix: str, device: str, seq: int, version: str = VERSION, **fields) -> tuple[str, bytes]:
    r = reading(device, seq)
    body = {"schema": version, "ts": MS0 + seq, "poll_ms": 12.5, "values": r.values,
            "quality": {"3": "comm-fail", "4": "stale"}, **fields}
    return f"{prefix}/pit/face/{device}/data", json.dumps(body).encode()


def test_compact_gives_the_lines_of_the_full_payload():
    convert = Converter("mg")
    convert.learn(*schema_message("mg", "sh-1"))
    assert convert.convert(*compact("mg", "sh-1", 7)) == convert.convert(*full("mg", "sh-1", 7))
    # report by exception: only the values sent, as the full payload of those samples alone
    r = reading("sh-1", 9)
    sent = [1, 4]
    partial = Reading(device="sh-1", ts=r.ts, poll_ms=0.0, samples=[r.get(SIGNALS[i]) for i in sent])
    rbe = {"schema": VERSION, "ts": MS0 + 9, "values": {"1": r.values[1], "4": 12.5}, "quality": {"4": "stale"},
           "times": {"1": -3}}
    assert convert.convert("mg/pit/face/sh-1/data", json.dumps(rbe).encode()) == convert.convert(
        "mg/pit/face/sh-1/data", data_payload("pit", "face", "face", "shearer", partial))


HOSTILE = [  # (fields replacing those of a good compact message, what the refusal names)
    ({"values": [1, 2.0]}, "values: 2 values for the 6 signals"),
    ({"values": list(range(100_000))}, "values: 100000 values"),
    ({"values": [1, 2.0, True, None, 1.5, {"x": 1}]}, r"values\.5: a dict is not a value"),
    ({"values": [2 ** 64 * 64, 2.0, True, None, 1.5, "a"]}, r"values\.0: integer out of InfluxDB's 64-bit range"),
    ({"values": {"07": 1.0}}, "values: key '07' is not an index"),
    ({"values": {"6": 1.0}}, "values: key '6' is not an index"),
    ({"values": {"-1": 1.0}}, "values: key '-1' is not an index"),
    ({"values": "1,2,3"}, "values: neither an array nor an object"),
    ({"quality": {"9": "bad"}}, "quality: key '9' is not the index of a value sent"),
    ({"quality": {"3": "awful"}}, r"quality\['3'\]: 'awful' is not a quality"),
    ({"quality": ["bad"]}, "quality: not an object"),
    ({"times": {"1": 1.5}}, r"times\['1'\]: 1.5 is not an offset"),
    ({"times": {"1": 10 ** 12}}, r"times\['1'\]"),
    ({"time": "7"}, r"data: time: '7' is not an offset"),
    ({"ts": "2025-03-14T06:00:00Z"}, "ts: '2025-03-14T06:00:00Z' is not integer milliseconds"),
    ({"ts": 10 ** 17}, "ts: 100000000000000000 is not integer milliseconds"),
    ({"schema": 7}, "schema: not a string"),
    ({"poll_ms": "fast"}, "poll_ms: 'fast' is not a number"),
]


def test_hostile_compact_messages_are_refused_where_they_are_wrong():
    convert = Converter("mg", max_payload=4_000_000)
    convert.learn(*schema_message("mg", "sh-1"))
    for fields, where in HOSTILE:
        with pytest.raises(Refused, match=where):
            convert.convert(*compact("mg", "sh-1", 1, **fields))
    assert convert.convert(*compact("mg", "sh-1", 1))  # the converter goes on
    bad_schemas = [
        ({"abc": {"signals": SIGNALS, "units": UNITS}}, "the version is not that of its signals"),
        ({VERSION: {"signals": SIGNALS, "units": UNITS[:2]}}, "6 signals and 2 units"),
        ({VERSION: {"signals": ["a", "a"], "units": ["", ""]}}, "a signal appears twice"),
        ({VERSION: {"signals": [1, 2], "units": ["", ""]}}, "signals: not a list of strings"),
        ({VERSION: {"signals": ["x__quality"], "units": [""]}}, "'x__quality': names ending in __quality"),
        ({VERSION: {"signals": ["a\nb"], "units": [""]}}, "cannot be written to InfluxDB"),
    ]
    for versions, where in bad_schemas:
        with pytest.raises(Refused, match=where):
            convert.learn(*schema_message("mg", "sh-2", versions=versions))
    with pytest.raises(Refused, match="kind 'gateway_health' cannot name a measurement"):
        convert.learn(*schema_message("mg", "sh-2", kind="gateway_health"))
    topic, payload = schema_message("mg", "sh-2")
    with pytest.raises(Refused, match="mismatch: schema: payload device 'sh-2' under topic pit/face/sh-3"):
        convert.learn(topic.replace("sh-2", "sh-3"), payload)


# ---- through Mosquitto and InfluxDB ---------------------------------------------------------------

def worker(mosquitto, influxdb, tmp_path, prefix: str, **ingest) -> IngestWorker:
    cfg = parse_ingest({
        "ingest": {"id": prefix, "group": prefix, "session_expiry": 60, **ingest},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "protocol": "5", "topic_prefix": prefix, "qos": 1},
        "historian": {"url": influxdb.url, "database": influxdb.create_database(prefix), "flush_interval": 0.1,
                      "buffer": {"path": str(tmp_path / f"{prefix}.sqlite3")}}})
    return IngestWorker(cfg)


def publish(port: int, messages: list[tuple[str, bytes]], retain: bool = False) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def points(influxdb, prefix: str, device: str) -> list[dict]:
    return influxdb.query(f"SELECT * FROM \"shearer\" WHERE device = '{device}'", prefix)


async def test_compact_and_full_land_as_the_same_points(mosquitto, influxdb, tmp_path):
    prefix = "cmp1"
    w = worker(mosquitto, influxdb, tmp_path, prefix)
    publish(mosquitto.port, [schema_message(prefix, "compact-1")], retain=True)
    await w.start()
    try:
        await until(w.subscribed.is_set, what="SUBACK")
        await until(lambda: w.health()["schemas"] == 1, what="the retained schema learnt")
        publish(mosquitto.port, [full(prefix, "full-1", i) for i in range(20)]
                + [compact(prefix, "compact-1", i) for i in range(20)])
        await until(lambda: len(points(influxdb, prefix, "compact-1")) == 20
                    and len(points(influxdb, prefix, "full-1")) == 20, what="every point")
    finally:
        await w.stop()
    as_full = [{k: v for k, v in p.items() if k != "device"} for p in points(influxdb, prefix, "full-1")]
    as_compact = [{k: v for k, v in p.items() if k != "device"} for p in points(influxdb, prefix, "compact-1")]
    assert as_compact == as_full
    first = as_compact[0]
    assert first["seq"] == 0 and first["current"] == 182.4 and first["running"] is True and first["mode"] == "auto"
    assert first["methane__quality"] == "comm-fail" and "methane__value" not in first
    assert first["pressure__quality"] == "stale" and first["pressure__value"] == 12.5 and "pressure" not in first
    assert w.health()["refused"] == 0
    publish(mosquitto.port, [(schema_message(prefix, "compact-1")[0], b"")], retain=True)  # clear the retained


async def test_unknown_schema_is_held_then_ingested_when_the_schema_comes(mosquitto, influxdb, tmp_path):
    prefix = "cmp2"
    w = worker(mosquitto, influxdb, tmp_path, prefix, schema_wait=60)
    await w.start()
    try:
        await until(w.subscribed.is_set, what="SUBACK")
        publish(mosquitto.port, [compact(prefix, "late-1", i) for i in range(30)])
        await until(lambda: w.health()["held"] == 30, what="held, unacknowledged")
        await asyncio.sleep(0.3)
        assert points(influxdb, prefix, "late-1") == [] and w.sink.buffered == 0
        publish(mosquitto.port, [schema_message(prefix, "late-1")], retain=True)
        await until(lambda: len(points(influxdb, prefix, "late-1")) == 30, what="held messages ingested")
        assert w.health()["held"] == 0 and w.health()["refused"] == 0
    finally:
        await w.stop()
    publish(mosquitto.port, [(schema_message(prefix, "late-1")[0], b"")], retain=True)


async def test_unknown_schema_is_refused_after_the_bound_and_nothing_else_is_lost(mosquitto, influxdb, tmp_path,
                                                                                 caplog):
    prefix = "cmp3"
    w = worker(mosquitto, influxdb, tmp_path, prefix, schema_wait=0.5)
    publish(mosquitto.port, [schema_message(prefix, "known-1")], retain=True)
    caplog.set_level(logging.WARNING, "gateway.surface.ingest")
    await w.start()
    try:
        await until(w.subscribed.is_set, what="SUBACK")
        await until(lambda: w.health()["schemas"] == 1, what="the retained schema learnt")
        hostile = [compact(prefix, "known-1", 100, **fields) for fields, _ in HOSTILE[:12]]
        publish(mosquitto.port, [compact(prefix, "known-1", 1, version="0badc0de")] + hostile
                + [compact(prefix, "known-1", i) for i in range(2, 12)])
        await until(lambda: w.refusals["unknown-schema"] == 1, what="refused after schema_wait")
        await until(lambda: len(points(influxdb, prefix, "known-1")) == 10, what="the good ones")
        assert w.health()["held"] == 0 and w.refusals["invalid"] == len(hostile)
        await until(lambda: w.sink.unacknowledged == 0, what="refused messages acknowledged: never sent again")
    finally:
        await w.stop()
    assert "schema '0badc0de' of pit/face/known-1 is unknown: no schema message for it within 0.5 s" in caplog.text
    publish(mosquitto.port, [(schema_message(prefix, "known-1")[0], b"")], retain=True)
