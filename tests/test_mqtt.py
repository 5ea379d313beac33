"""The MQTT sink and contract against real Mosquitto brokers (no mocks)."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.config import MqttConfig, SiteConfig, parse_site
from gateway.contract import DataMessage, GatewayHealth, GatewayStatus, StateMessage, Topics, data_payload
from gateway.core.model import DeviceState, DeviceStatus, Quality, Reading, Sample, utcnow
from gateway.mqtt import MqttError, MqttSink, tail
from tests.mqtt_util import MqttCollector, Received, TcpProxy
from tests.util import free_port

REPO = Path(__file__).resolve().parent.parent
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def make_site(broker, **mqtt) -> SiteConfig:
    """Two devices in two areas; a topic prefix of its own so tests sharing a broker never meet."""
    mqtt = {"host": broker.host, "port": broker.port, "topic_prefix": f"t{secrets.token_hex(3)}", **mqtt}
    return parse_site({
        "site": {"id": "pit-7", "gateway_id": "gw-a"},
        "areas": [{"id": "face-1201", "kind": "longwall_face"}, {"id": "belt-main", "kind": "belt_line"}],
        "devices": [
            {"id": "shearer-1", "adapter": "modbus", "area": "face-1201", "zone": "tailgate",
             "profile": "shearer", "host": "127.0.0.1", "port": 15020},
            {"id": "belt-1", "adapter": "modbus", "area": "belt-main", "profile": "belt_conveyor",
             "host": "127.0.0.1", "port": 15021},
        ],
        "mqtt": mqtt,
    })


def reading(device: str, seq: int = 0) -> Reading:
    t0 = utcnow()
    t1 = t0 + timedelta(milliseconds=7)
    return Reading(device=device, ts=t0, poll_ms=12.5, samples=[
        Sample(signal="seq", value=seq, ts=t0),
        Sample(signal="motor_current", value=182.4, unit="A", ts=t0),
        Sample(signal="running", value=True, ts=t0),
        Sample(signal="mode", value="auto", ts=t0),
        Sample(signal="methane", value=None, unit="%CH4", quality=Quality.BAD, ts=t1),
        Sample(signal="pressure", value=None, unit="bar", quality=Quality.COMM_FAIL, ts=t1),
        Sample(signal="temperature", value=412.0, unit="°C", quality=Quality.OUT_OF_RANGE, ts=t1),
        Sample(signal="speed", value=1.5, unit="m/s", quality=Quality.STALE, ts=t1),
        Sample(signal="voltage", value=float("nan"), unit="V", quality=Quality.BAD, ts=t1),
    ])


def state(device: str, status=DeviceStatus.ONLINE, reason: str = "polling") -> DeviceState:
    return DeviceState(device=device, status=status, reason=reason, polls=3, last_good_poll=utcnow(),
                       last_poll_ms=4.2)


def payloads(messages: list[Received], topic: str, model):
    return [model.model_validate_json(m.payload) for m in messages if m.topic == topic]


def seqs(messages: list[Received], topic: str) -> list[int]:
    return [d.samples["seq"].value for d in payloads(messages, topic, DataMessage)]


async def until(predicate, timeout: float = 5.0, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(step)
    return result


def retained(cfg: MqttConfig, topic: str, expect: int) -> list:
    """What a subscriber arriving now receives at once: the retained messages."""
    got: list = []
    tail(cfg, topic, count=expect, timeout=2, on_message=got.append)
    return got


# ---- the contract, without a broker ----

def test_topics():
    t = Topics("minegw", "pit-7")
    assert t.data("face-1201", "shearer-1") == "minegw/pit-7/face-1201/shearer-1/data"
    assert t.state("face-1201", "shearer-1") == "minegw/pit-7/face-1201/shearer-1/state"
    assert t.gateway_status("gw-a") == "minegw/pit-7/gateway/gw-a/status"
    assert t.gateway_health("gw-a") == "minegw/pit-7/gateway/gw-a/health"


def test_fast_data_payload_is_what_the_model_would_write():
    r = reading("shearer-1", 5)
    payload = data_payload("pit-7", "face-1201", "tailgate", "shearer", r)
    msg = DataMessage.model_validate_json(payload)
    assert json.loads(payload) == json.loads(msg.model_dump_json())
    assert msg.samples["voltage"].value is None  # NaN is not JSON: null, as the models write it
    assert msg.samples["methane"].quality is Quality.BAD and msg.samples["motor_current"].value == 182.4
    assert msg.samples["running"].value is True and msg.samples["seq"].value == 5
    for text in (json.loads(payload)["ts"], json.loads(payload)["samples"]["speed"]["ts"]):
        assert ISO_MS_Z.match(text), text


def test_state_message_carries_every_device_state_field():
    assert set(StateMessage.model_fields) == {"site", "area"} | set(DeviceState.model_fields)


# ---- against Mosquitto ----

async def test_topics_payloads_retained_flags_and_clean_stop(mosquitto, caplog):
    site = make_site(mosquitto)
    topics, (shearer, belt) = Topics(site.mqtt.topic_prefix, "pit-7"), site.devices
    status_topic, health_topic = topics.gateway_status("gw-a"), topics.gateway_health("gw-a")
    live = MqttCollector(mosquitto.host, mosquitto.port, topics.everything())
    sink = MqttSink(site.mqtt, site, health_interval=0.3)
    await sink.start()
    try:
        [birth] = await live.until(lambda ms: payloads(ms, status_topic, GatewayStatus))
        assert (birth.status, birth.reason, birth.site, birth.gateway) == ("online", "connected", "pit-7", "gw-a")
        assert birth.devices == ["shearer-1", "belt-1"] and birth.version

        sink.on_state(shearer, state("shearer-1"))
        sink.on_reading(shearer, reading("shearer-1", 1))
        sink.on_reading(belt, reading("belt-1", 2))
        data_topic = topics.data("face-1201", "shearer-1")
        [data] = await live.until(lambda ms: payloads(ms, data_topic, DataMessage))
        assert (data.site, data.area, data.zone, data.device, data.kind) == (
            "pit-7", "face-1201", "tailgate", "shearer-1", "shearer")
        assert data.samples["pressure"].quality is Quality.COMM_FAIL and data.samples["pressure"].value is None
        assert data.samples["temperature"].quality is Quality.OUT_OF_RANGE and data.samples["temperature"].value == 412
        assert data.samples["motor_current"].unit == "A"
        belt_data = (await live.until(lambda ms: payloads(ms, topics.data("belt-main", "belt-1"), DataMessage)))[0]
        assert belt_data.zone is None and belt_data.kind == "belt_conveyor"
        [st] = payloads(live.messages, topics.state("face-1201", "shearer-1"), StateMessage)
        assert (st.site, st.area, st.device, st.status, st.polls) == ("pit-7", "face-1201", "shearer-1",
                                                                       DeviceStatus.ONLINE, 3)
        raw_state = json.loads(live.on(topics.state("face-1201", "shearer-1"))[0].payload)
        assert ISO_MS_Z.match(raw_state["since"]) and ISO_MS_Z.match(raw_state["last_good_poll"])

        health = await live.until(lambda ms: [h for h in payloads(ms, health_topic, GatewayHealth) if h.delivered >= 4])
        assert health[-1].connected and health[-1].dropped == 0

        # A subscriber arriving late gets the birth, the device state and the health at once, never data.
        late = retained(site.mqtt, topics.everything(), expect=3)
        assert sorted(m.topic for m in late) == sorted([status_topic, health_topic,
                                                        topics.state("face-1201", "shearer-1")])
        assert all(m.retain and m.qos == 1 for m in late)
    finally:
        await sink.stop()
        live.close()
    [offline] = [GatewayStatus.model_validate_json(m.payload) for m in retained(site.mqtt, status_topic, 1)]
    assert (offline.status, offline.reason) == ("offline", "stopped")
    [final] = [GatewayHealth.model_validate_json(m.payload) for m in retained(site.mqtt, health_topic, 1)]
    assert final.published >= 5 and final.dropped == 0 and final.rejected == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_mqtt_311(mosquitto):
    site = make_site(mosquitto, protocol="3.1.1")
    topics, (shearer, _) = Topics(site.mqtt.topic_prefix, "pit-7"), site.devices
    with MqttCollector(mosquitto.host, mosquitto.port, topics.everything()) as live:
        sink = MqttSink(site.mqtt, site)
        await sink.start()
        try:
            sink.on_state(shearer, state("shearer-1"))
            sink.on_reading(shearer, reading("shearer-1", 9))
            assert await live.until(lambda ms: seqs(ms, topics.data("face-1201", "shearer-1")) == [9])
            late = retained(site.mqtt, topics.everything(), expect=2)
            assert {m.topic for m in late} == {topics.gateway_status("gw-a"), topics.state("face-1201", "shearer-1")}
        finally:
            await sink.stop()


GATEWAY_PROCESS = """
import asyncio, sys
from gateway.config import parse_site
from gateway.mqtt import MqttSink
async def main():
    site = parse_site(__import__("json").loads(sys.argv[1]))
    await MqttSink(site.mqtt, site).start()
    await asyncio.sleep(60)
asyncio.run(main())
"""


def test_last_will_when_the_gateway_dies(mosquitto):
    site = make_site(mosquitto)
    status_topic = Topics(site.mqtt.topic_prefix, "pit-7").gateway_status("gw-a")
    with MqttCollector(mosquitto.host, mosquitto.port, status_topic) as live:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        gateway = subprocess.Popen([sys.executable, "-c", GATEWAY_PROCESS, site.model_dump_json()], env=env)
        try:
            live.wait_for(lambda ms: payloads(ms, status_topic, GatewayStatus), timeout=10)
            gateway.kill()  # no DISCONNECT: the broker must publish the will
            gateway.wait()
            statuses = live.wait_for(lambda ms: (s := payloads(ms, status_topic, GatewayStatus)) and
                                     s[-1].status == "offline" and s)
        finally:
            gateway.kill()
            gateway.wait()
    assert [(s.status, s.reason) for s in statuses] == [("online", "connected"), ("offline", "connection lost")]
    assert statuses[-1].devices == ["shearer-1", "belt-1"]
    [kept] = retained(site.mqtt, status_topic, 1)
    assert GatewayStatus.model_validate_json(kept.payload).reason == "connection lost"


async def test_broker_restart_delivers_what_was_published_meanwhile(fresh_mosquitto):
    broker = fresh_mosquitto
    site = make_site(broker)
    topics, (shearer, _) = Topics(site.mqtt.topic_prefix, "pit-7"), site.devices
    data_topic, state_topic = topics.data("face-1201", "shearer-1"), topics.state("face-1201", "shearer-1")
    status_topic = topics.gateway_status("gw-a")
    # A kept session: the broker queues for this subscriber even while it reconnects after the restart.
    live = MqttCollector(broker.host, broker.port, topics.everything(), persistent=True, client_id="restart-test")
    sink = MqttSink(site.mqtt, site)
    await sink.start()
    try:
        sink.on_state(shearer, state("shearer-1"))
        sink.on_reading(shearer, reading("shearer-1", 0))
        await live.until(lambda ms: seqs(ms, data_topic) == [0])

        broker.stop()
        await until(lambda: not sink.health().connected)
        for seq in range(1, 6):
            sink.on_reading(shearer, reading("shearer-1", seq))
        sink.on_state(shearer, state("shearer-1", DeviceStatus.OFFLINE, "timeout"))
        assert sink.health().queued == 5  # data waits; the state is re-published on connect
        restarted = utcnow()
        broker.start()

        def after_restart(messages: list[Received]) -> list[Received]:
            """From the new birth on (before it: the broker's redeliveries and retained replays)."""
            for i, m in enumerate(messages):
                if m.topic == status_topic and not m.retain:
                    birth = GatewayStatus.model_validate_json(m.payload)
                    if birth.status == "online" and birth.ts >= restarted:
                        return messages[i:]
            return []

        after = await live.until(lambda ms: (a := after_restart(ms)) and seqs(a, data_topic) == [1, 2, 3, 4, 5] and a,
                                 timeout=10)
        assert [m.topic for m in after[:2]] == [status_topic, state_topic]  # birth, latest states, then data
        assert StateMessage.model_validate_json(after[1].payload).reason == "timeout"
        health = await until(lambda: (h := sink.health()).queued == 0 and h)  # the last PUBACK may lag
        assert (health.reconnects, health.dropped) == (1, 0)
    finally:
        await sink.stop()
        live.close()


async def test_messages_lost_in_flight_are_sent_again_after_a_network_cut(mosquitto, caplog):
    proxy = TcpProxy(mosquitto.host, mosquitto.port)
    site = make_site(mosquitto, port=proxy.port)
    topics, (shearer, _) = Topics(site.mqtt.topic_prefix, "pit-7"), site.devices
    data_topic = topics.data("face-1201", "shearer-1")
    live = MqttCollector(mosquitto.host, mosquitto.port, topics.everything())  # not through the proxy
    sink = MqttSink(site.mqtt, site)
    await sink.start()
    try:
        sink.on_reading(shearer, reading("shearer-1", 0))
        await live.until(lambda ms: seqs(ms, data_topic) == [0])
        proxy.blackhole = True  # the network swallows what the gateway sends: no PUBACK comes back
        for seq in (1, 2, 3):
            sink.on_reading(shearer, reading("shearer-1", seq))
        await asyncio.sleep(0.3)
        assert sink.health().queued == 3 and seqs(live.messages, data_topic) == [0]
        proxy.blackhole = False
        proxy.cut()
        assert await live.until(lambda ms: seqs(ms, data_topic) == [0, 1, 2, 3], timeout=5)
        health = await until(lambda: (h := sink.health()).queued == 0 and h)
        assert (health.reconnects, health.dropped) == (1, 0)
        assert any("3 of them unacknowledged before" in r.getMessage() for r in caplog.records)
    finally:
        await sink.stop()
        live.close()
        proxy.close()


async def test_queue_overflow_drops_oldest_counts_and_reports(fresh_mosquitto, caplog):
    broker = fresh_mosquitto
    site = make_site(broker, queue_limit=10)
    topics, (shearer, _) = Topics(site.mqtt.topic_prefix, "pit-7"), site.devices
    data_topic, health_topic = topics.data("face-1201", "shearer-1"), topics.gateway_health("gw-a")
    live = MqttCollector(broker.host, broker.port, topics.everything(), persistent=True, client_id="overflow-test")
    broker.stop()
    caplog.set_level(logging.WARNING, logger="gateway.mqtt")
    sink = MqttSink(site.mqtt, site, health_interval=0.2)
    started = time.monotonic()
    await sink.start()  # the broker is down: start must not wait for it
    assert time.monotonic() - started < 0.5
    try:
        for seq in range(25):
            sink.on_reading(shearer, reading("shearer-1", seq))
        health = sink.health()
        assert (health.dropped, health.queued, health.published, health.connected) == (15, 10, 25, False)
        broker.start()
        assert await live.until(lambda ms: seqs(ms, data_topic) == list(range(15, 25)), timeout=10)
        reported = await live.until(lambda ms: payloads(ms, health_topic, GatewayHealth))
        assert reported[-1].dropped == 15 and reported[-1].connected
        warnings = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
        assert warnings and "dropped 1 message(s)" in warnings[0]  # the first drop is reported at once
    finally:
        await sink.stop()
        live.close()
    # The rest is reported when the 10 s throttle allows or, at the latest, on stop: never silent.
    counts = [int(re.search(r"dropped (\d+)", r.getMessage())[1]) for r in caplog.records
              if "queue full" in r.getMessage()]
    assert sum(counts) == 15 and len(counts) == 2


def test_tail_reports_an_unreachable_broker():
    cfg = MqttConfig(host="127.0.0.1", port=free_port())
    with pytest.raises(MqttError, match=r"^cannot connect to MQTT broker 127\.0\.0\.1:\d+: Connection refused$"):
        tail(cfg, "#", count=1, timeout=1, on_message=print)


@pytest.fixture
def secured_mosquitto(make_mosquitto, tmp_path):
    password_file = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(password_file), "gateway", "s3cret-Pa55"], check=True)
    password_file.chmod(0o600)
    acl_file = tmp_path / "acl"  # the gateway may write its own and state topics, not data
    acl_file.write_text("user gateway\ntopic read #\ntopic write +/pit-7/gateway/#\ntopic write +/pit-7/+/+/state\n")
    return make_mosquitto(extra=("allow_anonymous false", f"password_file {password_file}", f"acl_file {acl_file}"))


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_password_auth(secured_mosquitto, protocol, caplog):
    caplog.set_level(logging.DEBUG)
    site = make_site(secured_mosquitto, protocol=protocol, username="gateway", password="s3cret-Pa55")
    status_topic = Topics(site.mqtt.topic_prefix, "pit-7").gateway_status("gw-a")
    sink = MqttSink(site.mqtt, site)
    await sink.start()
    try:
        await until(lambda: sink.health().delivered >= 1)
        [birth] = await asyncio.to_thread(retained, site.mqtt, status_topic, 1)
        assert GatewayStatus.model_validate_json(birth.payload).status == "online"
        sink.on_reading(site.devices[0], reading("shearer-1"))  # the ACL forbids data topics
        health = await until(lambda: (h := sink.health()).queued == 0 and h)
        # MQTT 5 tells the publisher in PUBACK; 3.1.1 brokers acknowledge and discard.
        assert (health.rejected, health.delivered) == ((1, 1) if protocol == "5" else (0, 2))
    finally:
        await sink.stop()

    wrong = site.mqtt.model_copy(update={"password": SecretStr("guess")})
    with pytest.raises(MqttError, match=r"refused the connection: (Not authorized|Bad user name or password)$"):
        tail(wrong, status_topic, count=1, timeout=2, on_message=print)
    with pytest.raises(MqttError, match="refused the connection"):
        tail(site.mqtt.model_copy(update={"username": None}), status_topic, count=1, timeout=2, on_message=print)

    refused = MqttSink(wrong, site)
    await refused.start()
    await until(lambda: any("refused the connection" in r.getMessage() for r in caplog.records))
    await refused.stop()
    assert not any("s3cret-Pa55" in r.getMessage() or "guess" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_two_gateways_with_one_client_id_are_told_so(mosquitto, caplog, protocol):
    site = make_site(mosquitto, client_id=f"dup-{secrets.token_hex(3)}", protocol=protocol)
    first, second = MqttSink(site.mqtt, site), MqttSink(site.mqtt, site)
    await first.start()
    await second.start()  # the broker closes the first one's connection: the two now evict each other
    try:
        taken = f"client id {site.mqtt.client_id!r} is taken by another connection"
        lost = await until(lambda: [r.getMessage() for r in caplog.records if "lost" in r.getMessage()], timeout=10)
        assert taken in lost[0], lost
    finally:
        await second.stop()
        await first.stop()


async def test_state_republished_on_reconnect_carries_the_counters_of_now(fresh_mosquitto):
    from gateway.runtime import Gateway
    from simulators.site import SiteSimulator

    broker = fresh_mosquitto
    site = parse_site({
        "site": {"id": "pit-7", "gateway_id": "gw-a"},
        "areas": [{"id": "face-1201", "kind": "longwall_face"}],
        "devices": [{"id": "shearer-1", "adapter": "modbus", "area": "face-1201", "profile": "shearer",
                     "host": "127.0.0.1", "port": free_port(), "poll_interval": 0.05}],
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": f"t{secrets.token_hex(3)}"},
    })
    state_topic = Topics(site.mqtt.topic_prefix, "pit-7").state("face-1201", "shearer-1")
    async with SiteSimulator(site, seed=1):
        sink = MqttSink(site.mqtt, site)
        gateway = Gateway(site, [sink])
        await gateway.start()
        try:
            with MqttCollector(broker.host, broker.port, state_topic) as first:
                [online] = [StateMessage.model_validate_json(m.payload) for m in await first.until(
                    lambda ms: [m for m in ms if b'"online"' in m.payload][:1])]
            assert online.polls <= 2  # published when the link came up
            await until(lambda: gateway.states()["shearer-1"].polls >= 20, timeout=10)
            broker.stop()
            broker.start()
            await until(lambda: sink.health().reconnects == 1 and sink.health().queued == 0, timeout=10)
            with MqttCollector(broker.host, broker.port, state_topic) as again:  # the retained one, re-published
                [republished] = [StateMessage.model_validate_json(m.payload) for m in await again.until(
                    lambda ms: ms[:1], timeout=10)]
        finally:
            await gateway.stop()
    assert republished.status == "online" and republished.since == online.since
    assert republished.polls >= 20 and republished.last_good_poll > online.last_good_poll
