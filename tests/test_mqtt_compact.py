"""The compact data payload, its retained schema message and report by exception, against real Mosquitto."""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import secrets
import threading
from datetime import timedelta

from rich.console import Console

from gateway.config import parse_site
from gateway.contract import (CompactDataMessage, CompactPayloads, DataMessage, SchemaMessage, Topics, data_payload,
                              schema_version)
from gateway.core.model import Quality, Reading, Sample, Schema, utcnow
from gateway.mqtt import MqttSink
from gateway.mqtt.payloads import moved
from gateway.probes import mqtt_tail
from tests.mqtt_util import MqttCollector, Received
from tests.test_config import problems
from tests.test_mqtt import make_site, reading, until
from tests.util import free_port


def schema_of(messages: list[Received], topic: str) -> SchemaMessage | None:
    found = [SchemaMessage.model_validate_json(m.payload) for m in messages if m.topic == topic]
    return found[-1] if found else None


def expanded(messages: list[Received], data_topic: str, schema_topic: str) -> list[DataMessage]:
    """The compact data messages on ``data_topic``, expanded with the schema that came before each."""
    schema, out = None, []
    for m in messages:
        if m.topic == schema_topic:
            schema = SchemaMessage.model_validate_json(m.payload)
        elif m.topic == data_topic:
            out.append(CompactDataMessage.model_validate_json(m.payload).expand(schema))
    return out


# ---- the format, without a broker ----

def test_schema_version_is_the_first_8_hex_digits_of_sha256_of_signals_and_units():
    signals, units = ["left_cutting_current", "haulage_speed", "running", "temperature"], ["A", "m/min", "", "°C"]
    text = '[["left_cutting_current","haulage_speed","running","temperature"],["A","m/min","","°C"]]'
    assert schema_version(signals, units) == hashlib.sha256(text.encode()).hexdigest()[:8]
    assert schema_version(tuple(signals), tuple(units)) == schema_version(signals, units)
    assert schema_version(signals[::-1], units[::-1]) != schema_version(signals, units)


def test_compact_message_carries_exactly_the_samples_of_the_full_one():
    r = reading("shearer-1", 5)
    r.times[2] = r.ts - timedelta(milliseconds=40)  # an OPC UA source time before the poll started
    full = DataMessage.model_validate_json(data_payload("pit-7", "face-1201", "tailgate", "shearer", r))
    builder = CompactPayloads()
    version = builder.version(r.schema)
    schema = SchemaMessage(site="pit-7", area="face-1201", zone="tailgate", device="shearer-1", kind="shearer",
                           schemas={version: {"signals": r.schema.signals, "units": r.schema.units}})
    payload = builder.build(r)
    raw = json.loads(payload)
    assert raw["schema"] == version and isinstance(raw["ts"], int) and raw["values"][:4] == [5, 182.4, True, "auto"]
    assert raw["quality"] == {"4": "bad", "5": "comm-fail", "6": "out-of-range", "7": "stale", "8": "bad"}
    # most samples 7 ms after ts (one block's answer): that is ``time``; ``times`` lists the others
    assert raw["time"] == 7 and raw["times"] == {"0": 0, "1": 0, "2": -40, "3": 0} and raw["values"][8] is None
    assert CompactDataMessage.model_validate_json(payload).expand(schema) == full
    assert len(payload) < len(data_payload("pit-7", "face-1201", "tailgate", "shearer", r)) / 3

    only = json.loads(builder.build(r, [1, 4]))  # report by exception: an object, index -> value
    assert (only["values"], only["quality"], only["times"]) == ({"1": 182.4, "4": None}, {"4": "bad"}, {"4": 7})
    partial = CompactDataMessage.model_validate(only).expand(schema)
    assert partial.samples == {k: full.samples[k] for k in ("motor_current", "methane")}


def test_what_counts_as_a_change():
    nan = float("nan")
    assert not moved(10.0, 9.6, 0.5) and moved(10.0, 9.4, 0.5) and moved(1.0, 1.5, 0.0)
    assert not moved(nan, nan, 0.0) and moved(nan, 1.0, 5.0) and moved(1.0, nan, 5.0)
    assert not moved(5, 5.0, 0.0) and moved(True, 1, 0.0) and moved("on", "off", 100.0)
    assert not moved(None, None, 0.0) and moved(None, 0.0, 1.0) and moved(False, True, 1.0)


def test_report_by_exception_settings_are_checked_with_their_location():
    site = {"site": {"id": "pit-7"}, "areas": [{"id": "face-1201", "kind": "longwall_face"}],
            "devices": [{"id": "shearer-1", "adapter": "modbus", "area": "face-1201", "profile": "shearer",
                         "host": "127.0.0.1"}],
            "mqtt": {"report_by_exception": {"enabled": True, "max_silence": 30, "deadbands": {"x": -1}}}}
    assert problems(site) == [
        ("mqtt.report_by_exception.max_silence: 30 s is above 25 s: the mine's polling rule wants every signal "
         "at the surface at least every 25 s"),
        "mqtt.report_by_exception.deadbands.x: Input should be greater than or equal to 0"]
    site["mqtt"] = {"payload": "tiny"}
    [problem] = problems(site)
    assert problem.startswith("mqtt.payload:") and "compact" in problem
    ok = parse_site(site | {"mqtt": {"payload": "compact", "report_by_exception": {"enabled": True}}})
    assert ok.mqtt.report_by_exception.max_silence == 25 and ok.mqtt.payload == "compact"


# ---- against Mosquitto ----

def simulated_site(broker, prefix: str, **mqtt):
    return parse_site({
        "site": {"id": "pit-7", "gateway_id": "gw-a"},
        "areas": [{"id": "face-1201", "kind": "longwall_face"}],
        "devices": [{"id": "shearer-1", "adapter": "modbus", "area": "face-1201", "zone": "tailgate",
                     "profile": "shearer", "host": "127.0.0.1", "port": free_port(), "poll_interval": 0.1}],
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix, **mqtt},
    })


async def test_a_subscriber_rebuilds_the_full_samples_from_retained_schema_and_compact_data(mosquitto):
    """One gateway polling a simulated shearer, publishing both payloads: the compact messages, expanded with
    the retained schema, carry the same samples (values, qualities, times) as the full ones, derived included."""
    from gateway.runtime import Gateway
    from simulators.site import SiteSimulator

    prefix = f"t{secrets.token_hex(3)}"
    full_site = simulated_site(mosquitto, prefix + "f")
    compact_site = simulated_site(mosquitto, prefix + "c", payload="compact", client_id=f"{prefix}-compact")
    compact_site.devices[0].port = full_site.devices[0].port
    full_topics, compact_topics = Topics(prefix + "f", "pit-7"), Topics(prefix + "c", "pit-7")
    data, schema = compact_topics.data("face-1201", "shearer-1"), compact_topics.schema("face-1201", "shearer-1")
    full_live = MqttCollector(mosquitto.host, mosquitto.port, full_topics.everything())
    live = MqttCollector(mosquitto.host, mosquitto.port, compact_topics.everything())
    async with SiteSimulator(full_site, seed=3):
        gateway = Gateway(full_site, [MqttSink(full_site.mqtt, full_site), MqttSink(compact_site.mqtt, compact_site)])
        await gateway.start()
        try:
            await live.until(lambda ms: len(expanded(ms, data, schema)) >= 20, timeout=15)
        finally:
            await gateway.stop()
    first_data = next(i for i, m in enumerate(live.messages) if m.topic == data)
    assert any(m.topic == schema for m in live.messages[:first_data])  # the schema came first
    with MqttCollector(mosquitto.host, mosquitto.port, schema) as late:  # a subscriber arriving now
        [retained] = late.wait_for(lambda ms: ms)
    kept = SchemaMessage.model_validate_json(retained.payload)
    assert retained.retain and (kept.site, kept.area, kept.zone, kept.kind) == ("pit-7", "face-1201", "tailgate",
                                                                               "shearer")
    derived = [v for v in kept.schemas.values() if v.derived]
    assert [v.signals for v in derived] == [["status", "status_code"]]

    full = [DataMessage.model_validate_json(m.payload) for m in full_live.messages
            if m.topic == full_topics.data("face-1201", "shearer-1")]
    compact = expanded(live.messages, data, schema)
    by_poll = {(m.ts, tuple(m.samples)): m for m in full}
    assert len(compact) >= 20
    for message in compact:
        twin = by_poll[(message.ts, tuple(message.samples))]
        assert message.samples == twin.samples and abs(message.poll_ms - twin.poll_ms) <= 0.005  # 0.01 ms
        assert message.model_copy(update={"poll_ms": twin.poll_ms}) == twin
    assert any(m.poll_ms == 0 and "status" in m.samples for m in compact)  # the derived readings too
    for c in (full_live, live):
        c.close()


async def test_schema_is_republished_on_every_reconnection(fresh_mosquitto):
    broker = fresh_mosquitto  # no persistence: a restart forgets the retained messages
    site = make_site(broker, payload="compact")
    topics, (shearer, _) = Topics(site.mqtt.topic_prefix, "pit-7"), site.devices
    schema_topic = topics.schema("face-1201", "shearer-1")
    sink = MqttSink(site.mqtt, site)
    await sink.start()
    try:
        sink.on_reading(shearer, reading("shearer-1", 0))
        await until(lambda: sink.health().delivered >= 3)  # birth, schema, data
        with MqttCollector(broker.host, broker.port, schema_topic) as first:
            [before] = await first.until(lambda ms: ms)
        broker.stop()
        broker.start()
        await until(lambda: sink.health().reconnects == 1 and sink.health().queued == 0, timeout=10)
        with MqttCollector(broker.host, broker.port, schema_topic) as again:
            [after] = await again.until(lambda ms: ms, timeout=5)
    finally:
        await sink.stop()
    assert before.retain and after.retain and after.payload == before.payload
    version = CompactPayloads().version(reading("shearer-1").schema)
    assert list(SchemaMessage.model_validate_json(after.payload).schemas) == [version]


def poll(ts, **values) -> Reading:
    """A reading of signals a, b (numbers), on (bool), mode (text); ``q_<name>`` sets a quality."""
    names = ("a", "b", "on", "mode")
    qualities = [values.get(f"q_{n}", Quality.GOOD) for n in names]
    return Reading("shearer-1", ts, 5.0, schema=Schema(names, ("A", "bar", "", "")),
                   values=[values.get(n) for n in names],
                   qualities=None if all(q is Quality.GOOD for q in qualities) else qualities)


async def report_by_exception(broker, payload: str) -> list[dict]:
    """What a subscriber receives of a poll every second through the cases of report by exception."""
    site = make_site(broker, payload=payload, report_by_exception={
        "enabled": True, "max_silence": 10, "deadband": 0.5, "deadbands": {"shearer-1/b": 2.0, "b": 100}})
    topics, (shearer, _) = Topics(site.mqtt.topic_prefix, "pit-7"), site.devices
    t0 = utcnow()
    polls = [{"a": 10.0, "b": 100.0, "on": False, "mode": "auto"},  # 0: first: everything
             {"a": 10.4, "b": 101.9, "on": False, "mode": "auto"},  # 1: within the deadbands: nothing sent
             {"a": 10.6, "b": 101.0, "on": False, "mode": "auto"},  # 2: a moved 0.6 from 10.0, the last value sent
             {"a": 10.6, "b": 102.1, "on": True, "mode": "auto"},  # 3: b moved 2.1 (its device/signal deadband), on
             {"a": 10.6, "b": 102.1, "on": True, "mode": "manual", "q_a": Quality.STALE},  # 4: a's quality, mode
             {"a": 10.6, "b": 102.1, "on": True, "mode": "manual", "q_a": Quality.STALE}]  # 5: nothing
    polls += [polls[-1]] * 8  # 6-13: unchanged; re-sent at the poll after which the next could be > 10 s late
    with MqttCollector(broker.host, broker.port, topics.data("face-1201", "shearer-1")) as live:
        sink = MqttSink(site.mqtt, site)
        await sink.start()
        try:
            for i, values in enumerate(polls):
                sink.on_reading(shearer, poll(t0 + timedelta(seconds=i), **values))
            sink.on_reading(shearer, Reading("shearer-1", t0 + timedelta(seconds=13.5), 0.0, derived=True,
                                             samples=[Sample(signal="status", value="running", ts=t0)]))
            messages = await live.until(lambda ms: len(ms) == 7 and ms)
            await asyncio.sleep(0.3)  # nothing more comes
            assert len(live.messages) == 7
        finally:
            await sink.stop()
    return [json.loads(m.payload) for m in messages]


def seconds(message: dict, t0_ms: int) -> int:
    return round((message["ts"] - t0_ms) / 1000)


async def test_report_by_exception_compact(mosquitto):
    got = await report_by_exception(mosquitto, "compact")
    t0 = got[0]["ts"]
    assert got[0]["values"] == [10.0, 100.0, False, "auto"]  # all: an array
    sent = {seconds(m, t0): (m["values"], m.get("quality", {})) for m in got[1:-1]}
    assert sent == {
        2: ({"0": 10.6}, {}),  # a moved 0.6 from 10.0, the last value sent (10.4 at 1 s was within 0.5)
        3: ({"1": 102.1, "2": True}, {}),  # b moved 2.1 (> its device/signal deadband of 2), on changed
        4: ({"0": 10.6, "3": "manual"}, {"0": "stale"}),  # a's quality changed (sent with its value), mode
        12: ({"1": 102.1, "2": True}, {}),  # unchanged since 3 s: re-sent 9 s later, the next poll being at 10 s
        13: ({"0": 10.6, "3": "manual"}, {"0": "stale"}),
    }
    assert got[-1]["derived"] is True and got[-1]["values"] == ["running"]  # derived readings: unaffected


async def test_report_by_exception_full(mosquitto):
    got = await report_by_exception(mosquitto, "full")
    assert [len(m["samples"]) for m in got[:1]] == [4]
    assert set(got[1]["samples"]) == {"a"} and got[1]["samples"]["a"]["value"] == 10.6
    assert got[-1]["samples"]["status"]["value"] == "running"


async def test_mqtt_tail_prints_compact_messages_with_signal_names(mosquitto):
    site = make_site(mosquitto, payload="compact")
    topics, (shearer, _) = Topics(site.mqtt.topic_prefix, "pit-7"), site.devices
    sink = MqttSink(site.mqtt, site)
    await sink.start()
    sink.on_reading(shearer, reading("shearer-1", 7))  # its schema is retained before the tail starts
    await until(lambda: sink.health().queued == 0 and sink.health().delivered >= 2)
    screen = io.StringIO()
    tailing = threading.Thread(target=mqtt_tail, args=(Console(file=screen, width=500), site.mqtt,
                                                       topics.data("face-1201", "shearer-1"), 1, 10))
    tailing.start()
    try:
        while tailing.is_alive():
            sink.on_reading(shearer, reading("shearer-1", 8))
            await asyncio.sleep(0.2)
    finally:
        await sink.stop()
    [line] = screen.getvalue().splitlines()
    assert line.endswith(f"(compact, schema {CompactPayloads().version(reading('x').schema)})")
    shown = json.loads(line.split(" ", 1)[1].rsplit("  (", 1)[0])
    assert shown["samples"]["seq"] == 8 and shown["samples"]["motor_current"] == 182.4
    assert shown["samples"]["methane"]["quality"] == "bad" and shown["device"] == "shearer-1"
