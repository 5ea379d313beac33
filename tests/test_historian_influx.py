"""The historian schema (line protocol) and the InfluxDB writers, against a real influxd 1.x.

What a real 1.x server cannot show (v2 API answers, 429/503 with Retry-After, a server that
hangs) is shown against a small scripted HTTP server on loopback, through the same writers.
"""
from __future__ import annotations

import asyncio
import gzip
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from urllib.parse import parse_qsl

import pytest

from gateway.config import HistorianConfig
from gateway.historian.errors import AuthError, DataError, RetryableError
from gateway.historian.influx import (InfluxV1Writer, InfluxV2Writer, check_historian, error_for_status,
                                      make_writer, parse_retry_after)
from gateway.historian.lineprotocol import (check_name, field_value, health_line, reading_lines, state_line,
                                            timestamp_ns)
from gateway.core.model import DeviceState, DeviceStatus, Quality, Reading, Sample
from tests.util import free_port

T0 = datetime(2025, 3, 14, 6, 30, 0, 118123, tzinfo=timezone.utc)
T0_NS = 1741933800118123000


def reading(samples: dict[str, tuple], device: str = "belt-main-1", ts: datetime = T0) -> Reading:
    """A reading from ``{signal: (value, quality)}``."""
    return Reading(device=device, ts=ts, poll_ms=12.5, samples=[
        Sample(signal=name, value=value, quality=quality, ts=ts + timedelta(milliseconds=3))
        for name, (value, quality) in samples.items()])


# --- line protocol, no server ----------------------------------------------------------------

def test_field_values_keep_their_type():
    assert field_value(True) == "true" and field_value(False) == "false"
    assert field_value(7) == "7i" and field_value(-32768) == "-32768i"
    assert field_value(4.0) == "4.0"  # a float stays a float, even when whole
    assert field_value(1e16) == "1e+16" and field_value(-2.5e-7) == "-2.5e-07"
    assert field_value('say "hi" \\o/') == r'"say \"hi\" \\o/"'
    assert [field_value(v) for v in (math.nan, math.inf, -math.inf, None)] == [None] * 4


def test_reading_line_schema():
    r = reading({
        "speed": (4.0, Quality.GOOD),
        "running": (True, Quality.GOOD),
        "motor_current": (812.5, Quality.OUT_OF_RANGE),
        "tension": (37, Quality.STALE),
        "methane": (None, Quality.BAD),
        "belt_slip": (None, Quality.COMM_FAIL),
        "temperature": (math.nan, Quality.GOOD),  # never written as good, nor as a value
    })
    assert reading_lines("demo-mine", "belt-1", "belt_conveyor", r) == [
        'belt_conveyor,site=demo-mine,area=belt-1,device=belt-main-1 '
        'speed=4.0,running=true,motor_current__quality="out-of-range",motor_current__value=812.5,'
        'tension__quality="stale",tension__value=37i,methane__quality="bad",belt_slip__quality="comm-fail",'
        f'temperature__quality="bad" {T0_NS}']
    assert reading_lines("s", "a", "k", reading({})) == []


def test_names_are_escaped_or_refused():
    r = reading({'speed "m/s", x=1': (1.5, Quality.GOOD)}, device="belt.main 1")
    assert reading_lines("s", "a=b", "belt conveyor,main", r) == [
        rf'belt\ conveyor\,main,site=s,area=a\=b,device=belt.main\ 1 speed\ "m/s"\,\ x\=1=1.5 {T0_NS}']
    for bad in ("", "two\nlines", "tab\there", "back\\slash"):
        with pytest.raises(ValueError):
            check_name(bad)
    with pytest.raises(ValueError, match="cannot be written"):
        reading_lines("s", "a", "shearer", reading({"bad\nname": (1, Quality.GOOD)}))


def test_timestamps_are_exact_nanoseconds():
    assert timestamp_ns(T0) == T0_NS
    assert timestamp_ns(T0.replace(tzinfo=None)) == T0_NS  # naive is taken as UTC
    assert timestamp_ns(T0.astimezone(timezone(timedelta(hours=8)))) == T0_NS
    assert timestamp_ns(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)) == -1000


def test_state_and_health_lines():
    state = DeviceState(device="shearer-1201", status=DeviceStatus.OFFLINE, reason='no answer: "timeout"',
                        since=T0, polls=10, errors=2, consecutive_errors=2, timeouts=2, last_poll_ms=None)
    assert state_line("demo-mine", "face-1201", state) == (
        'device_state,site=demo-mine,area=face-1201,device=shearer-1201 status="offline",'
        r'reason="no answer: \"timeout\"",polls=10i,errors=2i,consecutive_errors=2i,timeouts=2i,'
        f'exception_responses=0i,reconnects=0i {T0_NS}')
    assert health_line("demo-mine", "gateway-1", {"connected": True, "buffered": 5, "lag_s": 1.0}, T0) == (
        f"gateway_health,site=demo-mine,gateway=gateway-1 connected=true,buffered=5i,lag_s=1.0 {T0_NS}")
    with pytest.raises(ValueError):
        health_line("s", "g", {"x": math.nan}, T0)


def test_retry_after_parsing():
    now = datetime(2025, 3, 14, 6, 30, tzinfo=timezone.utc)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


@pytest.mark.parametrize("status, kind", [
    (400, DataError), (422, DataError), (401, AuthError), (403, AuthError), (404, RetryableError),
    (413, DataError), (429, RetryableError), (500, RetryableError), (503, RetryableError),
])
def test_error_kinds(status, kind):
    error = error_for_status(status, "the server's words", "http://influx:8086", retry_after="3")
    assert isinstance(error, kind)
    assert "the server's words" in str(error) and f"HTTP {status}" in str(error)
    if status in (429, 500, 503):
        assert error.retry_after == 3.0


# --- against a real influxd 1.x --------------------------------------------------------------

@pytest.fixture
def database(influxdb, request) -> str:
    """A database of this test's own on the session's server."""
    return influxdb.create_database(re.sub(r"\W", "_", request.node.name)[:60])


def v1_config(server, database: str = "minegw", **settings) -> HistorianConfig:
    return HistorianConfig(url=server.url, database=database, timeout=2, **settings)


@pytest.fixture
async def writer(influxdb, database):
    w = InfluxV1Writer(v1_config(influxdb, database))
    yield w
    await w.close()


def field_types(server, db: str, measurement: str) -> dict[str, str]:
    return {row["fieldKey"]: row["fieldType"] for row in server.query(f'SHOW FIELD KEYS FROM "{measurement}"', db)}


async def test_every_value_type_and_quality_round_trips(influxdb, database, writer):
    r = reading({
        "speed": (4.0, Quality.GOOD), "count": (12, Quality.GOOD), "running": (False, Quality.GOOD),
        "fault_text": ('E7 "overload"\\phase 2\nline two', Quality.GOOD),
        "motor_current": (812.5, Quality.OUT_OF_RANGE), "tension": (37, Quality.STALE),
        "methane": (None, Quality.BAD), "belt_slip": (None, Quality.COMM_FAIL),
        "temperature": (math.inf, Quality.GOOD),
    })
    await writer.write(reading_lines("demo-mine", "belt-1", "belt_conveyor", r))

    [row] = influxdb.query("SELECT * FROM belt_conveyor", database)
    assert row == {  # no field "motor_current", "methane", ...: a signal that was never good has no good field
        "time": T0_NS, "site": "demo-mine", "area": "belt-1", "device": "belt-main-1",
        "speed": 4.0, "count": 12, "running": False, "fault_text": 'E7 "overload"\\phase 2\nline two',
        "motor_current__quality": "out-of-range", "motor_current__value": 812.5,
        "tension__quality": "stale", "tension__value": 37,
        "methane__quality": "bad", "belt_slip__quality": "comm-fail", "temperature__quality": "bad",
    }
    assert field_types(influxdb, database, "belt_conveyor") == {
        "speed": "float", "count": "integer", "running": "boolean", "fault_text": "string",
        "motor_current__quality": "string", "motor_current__value": "float",
        "tension__quality": "string", "tension__value": "integer",
        "methane__quality": "string", "belt_slip__quality": "string", "temperature__quality": "string",
    }


async def test_timestamps_kept_and_a_rewritten_batch_does_not_duplicate(influxdb, database, writer):
    batch = [line for i in range(50) for line in reading_lines(
        "demo-mine", "belt-1", "belt_conveyor",
        reading({"speed": (1.0 + i, Quality.GOOD)}, ts=T0 + timedelta(microseconds=1001 * i)))]
    await writer.write(batch)
    await writer.write(batch)  # the drain loop retries a batch whose answer it did not get
    await writer.write(batch[10:20])

    rows = influxdb.query("SELECT speed FROM belt_conveyor", database)
    assert [r["time"] for r in rows] == [T0_NS + 1001_000 * i for i in range(50)]
    assert [r["speed"] for r in rows] == [1.0 + i for i in range(50)]
    assert influxdb.query("SELECT count(speed) FROM belt_conveyor", database)[0]["count"] == 50


async def test_dashboard_query_sees_only_good_values(influxdb, database, writer):
    speeds = [(2.0, Quality.GOOD), (100.0, Quality.OUT_OF_RANGE), (4.0, Quality.GOOD), (3.0, Quality.STALE),
              (None, Quality.COMM_FAIL)]
    await writer.write([line for i, sample in enumerate(speeds) for line in reading_lines(
        "demo-mine", "belt-1", "belt_conveyor", reading({"speed": sample}, ts=T0 + timedelta(seconds=i)))])
    window = "time >= '2025-03-14T06:30:00Z' AND time < '2025-03-14T06:30:10Z'"  # one 10 s bucket
    [mean] = influxdb.query('SELECT mean("speed") FROM "belt_conveyor" '
                            f"WHERE \"device\" = 'belt-main-1' AND {window} GROUP BY time(10s)", database)
    assert mean["mean"] == 3.0
    [bad] = influxdb.query(f'SELECT count("speed__quality") FROM "belt_conveyor" WHERE {window}', database)
    assert bad["count"] == 3


async def test_awkward_names_round_trip(influxdb, database, writer):
    kind, signal, device = "belt conveyor,main=1", 'speed "m/s", x=1', "belt.main 1,a=b"
    await writer.write(reading_lines("mine site", "area=1,2", kind,
                                     reading({signal: (2.5, Quality.GOOD), "état": ("ça va", Quality.GOOD)},
                                             device=device)))
    assert influxdb.query("SHOW MEASUREMENTS", database) == [{"name": kind}]
    [row] = influxdb.query('SELECT * FROM "belt conveyor,main=1"', database)
    assert row == {"time": T0_NS, "site": "mine site", "area": "area=1,2", "device": device,
                   signal: 2.5, "état": "ça va"}


async def test_field_type_conflict_is_a_data_error_with_the_servers_message(influxdb, database, writer):
    await writer.write(reading_lines("s", "a", "belt_conveyor", reading({"speed": (4.0, Quality.GOOD)})))
    later = reading({"speed": (4, Quality.GOOD)}, ts=T0 + timedelta(seconds=1))
    with pytest.raises(DataError, match='field type conflict: input field "speed" on measurement '
                                        '"belt_conveyor" is type integer, already exists as type float'):
        await writer.write(reading_lines("s", "a", "belt_conveyor", later))


async def test_partial_write_is_a_data_error_and_keeps_the_good_points(influxdb, database, writer):
    await writer.write(["belt_conveyor,device=b1 speed=1.0 1"])
    with pytest.raises(DataError, match="partial write: .*dropped=1"):
        await writer.write(["belt_conveyor,device=b1 speed=2.0 2", "belt_conveyor,device=b1 speed=3i 3"])
    assert [r["speed"] for r in influxdb.query("SELECT speed FROM belt_conveyor", database)] == [1.0, 2.0]


async def test_unparsable_line_is_a_data_error(writer):
    with pytest.raises(DataError, match="unable to parse"):
        await writer.write(["belt_conveyor speed=1.0 1 2 3"])


async def test_server_down_is_retryable_and_the_writer_recovers(make_influx):
    server = make_influx()
    server.create_database("minegw")
    w = InfluxV1Writer(v1_config(server))
    try:
        await w.write(["m f=1.0 1"])
        server.stop()
        with pytest.raises(RetryableError, match="cannot reach InfluxDB at .*[Cc]onnect"):
            await w.write(["m f=2.0 2"])
        with pytest.raises(RetryableError):
            await w.ping()
        server.start()
        await w.write(["m f=2.0 2"])
        assert len(server.query("SELECT f FROM m", "minegw")) == 2
    finally:
        await w.close()


async def test_authentication(make_influx):
    server = make_influx(auth=True)
    user, password = server.admin
    server.create_database("minegw")
    for cfg in (v1_config(server, username=user, password="wrong"), v1_config(server)):
        w = InfluxV1Writer(cfg)
        with pytest.raises(AuthError, match="refused the credentials \\(HTTP 401\\)"):
            await w.write(["m f=1.0 1"])
        await w.close()
    w = InfluxV1Writer(v1_config(server, username=user, password=password))
    await w.write(["m f=1.0 1"])
    await w.close()
    assert server.query("SELECT f FROM m", "minegw") == [{"time": 1, "f": 1}]


async def test_missing_database_is_created_when_allowed(influxdb):
    w = InfluxV1Writer(v1_config(influxdb, "created_on_first_write"))
    await w.write(["m f=1.0 1"])
    await w.close()
    assert w.created_database
    assert influxdb.query("SELECT f FROM m", "created_on_first_write") == [{"time": 1, "f": 1}]


async def test_missing_database_stays_retryable_until_someone_creates_it(make_influx):
    server = make_influx(auth=True)
    server.query("CREATE USER writer WITH PASSWORD 'pw'")  # not an admin: cannot create databases
    w = InfluxV1Writer(v1_config(server, username="writer", password="pw"))
    try:
        with pytest.raises(RetryableError, match='database "minegw" does not exist .* could not be created.*'
                                                 'requires admin privilege'):
            await w.write(["m f=1.0 1"])
        server.create_database("minegw")
        server.query('GRANT WRITE ON "minegw" TO writer')
        await w.write(["m f=1.0 1"])  # the batch kept in the buffer lands once the database is there
    finally:
        await w.close()


async def test_missing_retention_policy_is_retryable(influxdb, database):
    w = InfluxV1Writer(v1_config(influxdb, database, retention_policy="one_year"))
    with pytest.raises(RetryableError, match="retention policy not found: one_year"):
        await w.write(["m f=1.0 1"])
    await w.close()


async def test_too_large_batches_are_split(make_influx):
    server = make_influx(max_body_size=2000)
    server.create_database("minegw")
    w = InfluxV1Writer(v1_config(server), gzip=False)
    try:
        await w.write([f"m f={i}.0 {i}" for i in range(1, 501)])  # ~6 kB
        assert server.query("SELECT count(f) FROM m", "minegw")[0]["count"] == 500
        with pytest.raises(DataError, match="too large"):
            await w.write([f'm s="{"x" * 3000}" 1'])
    finally:
        await w.close()


async def test_gzip_bodies(influxdb, database):
    w = InfluxV1Writer(v1_config(influxdb, database), gzip=True)
    await w.write([f"m,device=d{i % 7} f={i}.5 {i}" for i in range(1, 5001)])
    await w.close()
    assert influxdb.query("SELECT count(f) FROM m", database)[0]["count"] == 5000


async def test_device_state_and_gateway_health_land(influxdb, database, writer):
    state = DeviceState(device="shearer-1201", status=DeviceStatus.ONLINE, reason="polling", since=T0,
                        polls=7204, errors=3, timeouts=2, exception_responses=1, reconnects=1, last_poll_ms=21.0)
    await writer.write([state_line("demo-mine", "face-1201", state),
                        health_line("demo-mine", "gateway-1", {"connected": True, "buffered": 12, "lag_s": 0.25}, T0)])
    assert influxdb.query("SELECT * FROM device_state", database) == [{
        "time": T0_NS, "site": "demo-mine", "area": "face-1201", "device": "shearer-1201",
        "status": "online", "reason": "polling", "polls": 7204, "errors": 3, "consecutive_errors": 0,
        "timeouts": 2, "exception_responses": 1, "reconnects": 1, "last_poll_ms": 21}]
    assert field_types(influxdb, database, "device_state")["last_poll_ms"] == "float"
    assert influxdb.query("SELECT * FROM gateway_health", database) == [{
        "time": T0_NS, "site": "demo-mine", "gateway": "gateway-1", "connected": True, "buffered": 12,
        "lag_s": 0.25}]


async def test_ping_gives_the_version(writer):
    assert (await writer.ping()).startswith("1.")


# --- minegw historian check ------------------------------------------------------------------

async def test_check_good_server(influxdb):
    results = await check_historian(v1_config(influxdb, "checked"))
    assert [(r.step, r.ok) for r in results] == [("ping", True), ("auth", True), ("write", True)]
    assert results[0].message.startswith("InfluxDB 1.")
    assert "created the database" in results[2].message
    [row] = influxdb.query("SELECT * FROM minegw_probe", "checked")
    assert row["probe"] == "true" and row["ok"] is True


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_check_bad_urls(api):
    for url, expected in ((f"http://127.0.0.1:{free_port()}", "cannot reach InfluxDB at http://127.0.0.1:"),
                          ("http://no-such-host.invalid:8086", "cannot reach InfluxDB"),
                          ("not a url", "not a usable InfluxDB URL"),
                          ("127.0.0.1:8086", "not a usable InfluxDB URL"),
                          ("ftp://influx", "not a usable InfluxDB URL")):
        results = await check_historian(HistorianConfig(url=url, api=api, org="o", bucket="b", timeout=2))
        assert [(r.step, r.ok) for r in results] == [("ping", False)]
        assert expected in results[0].message and "\n" not in results[0].message
    with pytest.raises(ValueError, match="not a usable InfluxDB URL"):
        make_writer(HistorianConfig(url="influx:8086", api=api, org="o", bucket="b"))


async def test_check_wrong_password(make_influx):
    server = make_influx(auth=True)
    results = await check_historian(v1_config(server, username="admin", password="wrong"))
    assert [(r.step, r.ok) for r in results] == [("ping", True), ("auth", False)]
    assert "authorization failed" in results[1].message
    assert str(results[1]).startswith("FAILED  auth: InfluxDB at http://127.0.0.1:")


async def test_check_not_an_influxdb_server():
    async with ScriptedHttp([(200, {"Content-Type": "text/html"}, b"<html>router</html>")]) as http:
        results = await check_historian(HistorianConfig(url=http.url))
    assert [(r.step, r.ok) for r in results] == [("ping", False)]
    assert "X-Influxdb-Version" in results[0].message


# --- api v2 ----------------------------------------------------------------------------------

def v2_config(url: str, **settings) -> HistorianConfig:
    return HistorianConfig(**{"url": url, "api": "v2", "org": "mine-org", "bucket": "minegw", "token": "t0ken",
                              "timeout": 2, **settings})


async def test_v2_against_influxdb_1_6_names_the_missing_endpoint(influxdb):
    """1.6 has /ping but no /api/v2/write (1.8 added it): a clear, retryable error, not data loss."""
    results = await check_historian(v2_config(influxdb.url))
    assert [(r.step, r.ok) for r in results] == [("ping", True), ("write", False)]
    assert "InfluxDB 1.6" in results[0].message
    assert "no /api/v2/write: InfluxDB before 1.8 speaks only api: v1" in results[1].message
    w = make_writer(v2_config(influxdb.url))
    assert isinstance(w, InfluxV2Writer)
    with pytest.raises(RetryableError, match="HTTP 404"):
        await w.write(["m f=1.0 1"])
    await w.close()


async def test_v2_request_on_the_wire():
    async with ScriptedHttp([(204, {}, b"")] * 2) as http:
        w = InfluxV2Writer(v2_config(http.url))
        await w.write(["m f=1.0 1", "m f=2.0 2"])
        await w.close()
        w = InfluxV2Writer(v2_config(http.url, token=None, username="minegw", password="pw"))
        await w.write([f"m f={i}.0 {i}" for i in range(1, 200)])
        await w.close()
    first, second = http.requests
    assert first.method == "POST" and first.path == "/api/v2/write"
    assert first.query == {"org": "mine-org", "bucket": "minegw", "precision": "ns"}
    assert first.headers["authorization"] == "Token t0ken"
    assert first.body == b"m f=1.0 1\nm f=2.0 2"
    assert second.headers["authorization"] == "Token minegw:pw"  # InfluxDB 1.8's v2 API takes user:password
    assert second.headers["content-encoding"] == "gzip" and second.body.count(b"\n") == 198


V2_ANSWERS = [
    (400, {"code": "invalid", "message": 'partial write error (1 written): field type conflict: input field '
                                         '"speed" on measurement "belt_conveyor" is type integer, already exists '
                                         'as type float'}, DataError, "partial write error"),
    (422, {"code": "unprocessable entity", "message": "failure writing points: points beyond retention policy"},
     DataError, "beyond retention"),
    (401, {"code": "unauthorized", "message": "unauthorized access"}, AuthError, "unauthorized access"),
    (403, {"code": "forbidden", "message": "insufficient permissions for write"}, AuthError, "insufficient"),
    (404, {"code": "not found", "message": 'bucket "minegw" not found'}, RetryableError, "not found"),
    (500, {"code": "internal error", "message": "unexpected error writing points to database"},
     RetryableError, "unexpected error"),
]


@pytest.mark.parametrize("status, body, kind, words", V2_ANSWERS, ids=[str(a[0]) for a in V2_ANSWERS])
@pytest.mark.parametrize("make", [InfluxV2Writer, InfluxV1Writer], ids=["v2", "v1"])
async def test_error_answers(make, status, body, kind, words):
    cfg = v2_config if make is InfluxV2Writer else (lambda url: HistorianConfig(url=url, timeout=2))
    async with ScriptedHttp([(status, {"Content-Type": "application/json"}, json.dumps(body).encode())]) as http:
        w = make(cfg(http.url))
        with pytest.raises(kind, match=words) as caught:
            await w.write(["belt_conveyor speed=4i 1"])
        await w.close()
    assert type(caught.value) is kind
    assert f"HTTP {status}" in str(caught.value)


@pytest.mark.parametrize("make", [InfluxV2Writer, InfluxV1Writer], ids=["v2", "v1"])
async def test_retry_after_is_passed_on(make):
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=120), usegmt=True)
    cfg = v2_config if make is InfluxV2Writer else (lambda url: HistorianConfig(url=url, timeout=2))
    async with ScriptedHttp([(429, {"Retry-After": "7"}, b'{"code":"too many requests","message":"slow down"}'),
                             (503, {"Retry-After": later}, b""), (503, {}, b"")]) as http:
        w = make(cfg(http.url))
        retry_after = []
        for _ in range(3):
            with pytest.raises(RetryableError) as caught:
                await w.write(["m f=1.0 1"])
            retry_after.append(caught.value.retry_after)
        await w.close()
    assert retry_after[0] == 7 and 110 < retry_after[1] <= 120 and retry_after[2] is None


@pytest.mark.parametrize("make", [InfluxV2Writer, InfluxV1Writer], ids=["v2", "v1"])
async def test_a_server_that_does_not_answer_is_retryable(make):
    cfg = v2_config if make is InfluxV2Writer else (lambda url: HistorianConfig(url=url))
    async with ScriptedHttp([None]) as http:
        w = make(cfg(http.url).model_copy(update={"timeout": 0.3}))
        with pytest.raises(RetryableError, match="did not answer within 0.3 s"):
            await w.write(["m f=1.0 1"])
        await w.close()


async def test_v2_too_large_is_split():
    too_large = (413, {}, b'{"code":"request too large","message":"unable to read data: too large"}')
    async with ScriptedHttp([too_large, (204, {}, b""), (204, {}, b"")]) as http:
        w = InfluxV2Writer(v2_config(http.url), gzip=False)
        await w.write(["m f=1.0 1", "m f=2.0 2", "m f=3.0 3"])
        await w.close()
    assert [r.body for r in http.requests] == [b"m f=1.0 1\nm f=2.0 2\nm f=3.0 3", b"m f=1.0 1",
                                               b"m f=2.0 2\nm f=3.0 3"]


async def test_v2_connection_refused_is_retryable():
    w = InfluxV2Writer(v2_config(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(RetryableError, match="cannot reach InfluxDB"):
        await w.write(["m f=1.0 1"])
    with pytest.raises(RetryableError, match="cannot reach InfluxDB"):
        await w.ping()
    await w.close()


# --- a scripted HTTP server ------------------------------------------------------------------

@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes  # gunzipped


class ScriptedHttp:
    """An HTTP/1.1 server on loopback answering each request with the next ``(status, headers, body)``;
    ``None`` never answers. Records the requests."""

    def __init__(self, answers: list[tuple[int, dict, bytes] | None]):
        self.answers = list(answers)
        self.requests: list[Request] = []
        self.port = 0
        self._handlers: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> "ScriptedHttp":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for task in self._handlers:  # e.g. one still not answering
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._handlers.add(asyncio.current_task())
        try:
            while request := await self._read(reader):
                self.requests.append(request)
                answer = self.answers.pop(0) if self.answers else (500, {}, b"no more answers scripted")
                if answer is None:
                    await asyncio.sleep(3600)
                status, headers, body = answer
                head = [f"HTTP/1.1 {status} Scripted", f"Content-Length: {len(body)}",
                        *(f"{k}: {v}" for k, v in headers.items())]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> Request | None:
        head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
        if not head:
            return None
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines if h)}
        body = await reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        path, _, query = target.partition("?")
        return Request(method, path, dict(parse_qsl(query)), headers, body)
