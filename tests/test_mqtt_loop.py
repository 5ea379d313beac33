"""paho driven from the asyncio loop (gateway/mqtt/aioloop.py): no network thread, writes on the loop."""
from __future__ import annotations

import asyncio
import threading

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.contract import DataMessage, GatewayStatus, Topics
from gateway.mqtt import MqttSink, make_client
from gateway.mqtt.aioloop import LoopClient, LoopDriver
from tests.mqtt_util import MqttCollector
from tests.test_mqtt import make_site, payloads, reading, until


def _paho_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("paho-mqtt-client-")]


async def test_the_sink_publishes_without_a_paho_thread_and_many_messages_arrive_in_order(mosquitto):
    site = make_site(mosquitto)
    topics, (shearer, _) = Topics(site.mqtt.topic_prefix, "pit-7"), site.devices
    live = MqttCollector(mosquitto.host, mosquitto.port, topics.everything())
    sink = MqttSink(site.mqtt, site, health_interval=60)
    before = _paho_threads()  # the test's collector runs one
    await sink.start()
    try:
        await live.until(lambda ms: payloads(ms, topics.gateway_status("gw-a"), GatewayStatus))
        for seq in range(500):  # more than the in-flight window: the rest waits for acknowledgements
            sink.on_reading(shearer, reading("shearer-1", seq))
        data_topic = topics.data("face-1201", "shearer-1")
        got = await live.until(lambda ms: len(payloads(ms, data_topic, DataMessage)) >= 500 and ms, timeout=15)
        assert [d.samples["seq"].value for d in payloads(got, data_topic, DataMessage)] == list(range(500))
        assert len(before) == 1 and _paho_threads() == before  # the sink added none
        await until(lambda: sink.health().delivered == 501 and sink.health().queued == 0)  # birth + 500, all acked
        await sink.stop()
        stopped = await live.until(lambda ms: [s for s in payloads(ms, topics.gateway_status("gw-a"), GatewayStatus)
                                               if s.status == "offline"])
        await asyncio.sleep(0.5)  # a last will would come right after the connection closed
        statuses = payloads(live.messages, topics.gateway_status("gw-a"), GatewayStatus)
        assert [s.reason for s in stopped] == ["stopped"] and statuses[-1].reason == "stopped"  # DISCONNECT sent
    finally:
        live.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_the_loop_client_parses_what_one_recv_brings_and_acknowledges_every_publish(mosquitto, protocol):
    """LoopClient reads each wake-up's bytes at once: many small packets in one read, and packets larger
    than one read (70 kB) split over several, all come out whole and in order; its own QoS 1 publishes
    are all acknowledged through the two-byte PUBACK path (MQTT 5 and 3.1.1)."""
    site = make_site(mosquitto, protocol=protocol)
    topic = f"{site.mqtt.topic_prefix}/loop-client"
    client = make_client(site.mqtt, f"loop-client-{protocol}", client_class=LoopClient)
    subscribed, got, acked = asyncio.Event(), [], []
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda c, u, msg: got.append(bytes(msg.payload))
    client.on_publish = lambda c, u, mid, reason, props: acked.append((mid, reason))
    driver = LoopDriver(client, asyncio.get_running_loop(), lambda: None, 0.1, 0.5)
    client.connect_async(mosquitto.host, mosquitto.port)
    driver.start()
    sender = make_client(site.mqtt, f"loop-sender-{protocol}")
    try:
        await asyncio.wait_for(subscribed.wait(), 5)
        sender.connect(mosquitto.host, mosquitto.port)
        sender.loop_start()
        sent = [bytes([n % 251]) * size for n, size in enumerate([0, 3, 200, 70_000, 1, 5000] * 20)]
        for payload in sent:
            sender.publish(topic, payload, qos=1)
        await until(lambda: len(got) >= len(sent), timeout=15)
        assert got == sent
        mids = [client.publish(topic, b"x", qos=1).mid for _ in range(300)]  # subscribed: a plain success PUBACK
        await until(lambda: len(acked) >= len(mids))
        # every PUBACK took the two-byte path (one shared success reason), not paho's own
        assert acked == [(mid, LoopClient._ACKED) for mid in mids] and all(r is LoopClient._ACKED for _, r in acked)
    finally:
        sender.disconnect()
        sender.loop_stop()
        await asyncio.to_thread(driver.close, 2.0)


class CountingWrites(LoopClient):
    writes = 0

    def _sock_send(self, buf) -> int:
        self.writes += 1
        return super()._sock_send(buf)


async def test_what_one_loop_iteration_publishes_goes_out_joined_and_whole(mosquitto):
    """QoS 0 and QoS 1 messages published in one loop iteration: LoopClient joins them into few writes, yet
    each arrives whole and in order, and every one is reported published (QoS 0 on write, QoS 1 on PUBACK)."""
    site = make_site(mosquitto)
    topic = f"{site.mqtt.topic_prefix}/joined"
    live = MqttCollector(mosquitto.host, mosquitto.port, topic)
    client = make_client(site.mqtt, "loop-joiner", client_class=CountingWrites)
    connected, published = asyncio.Event(), []
    client.on_connect = lambda *_: connected.set()
    client.on_publish = lambda c, u, mid, reason, props: published.append(mid)
    driver = LoopDriver(client, asyncio.get_running_loop(), lambda: None, 0.1, 0.5)
    client.connect_async(mosquitto.host, mosquitto.port)
    driver.start()
    try:
        await asyncio.wait_for(connected.wait(), 5)
        sends = []
        for n in range(200):  # one iteration: nothing is written before the last is handed over
            sends.append(f"{n}".encode() * (1 + n % 7 * 300))
            client.publish(topic, sends[-1], qos=int(n % 10 != 0))
        got = await live.until(lambda ms: len(ms) >= 200 and ms, timeout=10)
        for qos in (0, 1):  # the broker may let QoS 0 overtake QoS 1 held by the subscriber's in-flight window
            assert [m.payload for m in got if m.qos == qos] == [p for n, p in enumerate(sends) if (n % 10 != 0) == qos]
        await until(lambda: len(published) == 200)
        assert client.writes < 60  # joined (a QoS 0 message goes alone): paho alone writes each packet on its own
    finally:
        live.close()
        await asyncio.to_thread(driver.close, 2.0)


class PahoBuilds(LoopClient):
    """Counts the PUBLISH packets paho's own ``_send_publish`` builds (the short path builds its own)."""
    paho_builds = 0

    def _send_publish(self, *args, **kwargs):
        self.paho_builds += 1
        return super()._send_publish(*args, **kwargs)


def _queued(client: paho.Client, publish) -> tuple[list[bytes], object]:
    """The packets ``publish(client)`` queues, as if connected (a socket object no byte is written to)."""
    client._sock = object()
    client.on_socket_register_write = lambda *_: None  # paho then queues, and writes nothing itself
    client.max_inflight_messages_set(0)  # as the MQTT sink sets it: its own window limits what is in flight
    try:
        info = publish(client)
    finally:
        client._sock = None
    return [bytes(p["packet"]) for p in client._out_packet], info


@pytest.mark.parametrize("protocol", [paho.MQTTv5, paho.MQTTv311])
def test_a_qos1_publish_is_built_byte_for_byte_as_paho_builds_it(protocol):
    """The loop client's short QoS 1 path queues the very packet paho queues: remaining lengths of one to four
    bytes, retain, MQTT 5 properties (dropped in 3.1.1), a non-ASCII topic. QoS 0 and 2 and a str payload take
    paho's path; a wildcard topic raises, as paho does."""
    props = Properties(PacketTypes.PUBLISH)
    props.CorrelationData = b"req-7"
    props.UserProperty = ("signer", "li.na")
    topic = "minegw/pit-7/工作面/shearer-1/data"
    head = 2 + len(topic.encode()) + 2  # topic length, topic, packet id: a payload of 127 - head fills one byte
    for size in (0, 1, 127 - head - 1, 127 - head + 1, 16_383 - head + 1, 2_097_151 - head + 1):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        for retain in (False, True):
            for properties in (None, props):
                ours, info = _queued(PahoBuilds(CallbackAPIVersion.VERSION2, protocol=protocol),
                                     lambda c: c.publish(topic, payload, 1, retain, properties))
                theirs, _ = _queued(paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol),
                                    lambda c: c.publish(topic, payload, 1, retain, properties))
                assert ours == theirs and len(ours) == 1, (size, retain, properties)
                assert info.mid == 1 and info.rc == paho.MQTT_ERR_SUCCESS and not info.is_published()
    for qos, payload in ((0, b"x"), (2, b"x"), (1, "text")):
        client = PahoBuilds(CallbackAPIVersion.VERSION2, protocol=protocol)
        _queued(client, lambda c: c.publish(topic, payload, qos))
        assert client.paho_builds == 1
    with pytest.raises(ValueError):
        _queued(PahoBuilds(CallbackAPIVersion.VERSION2, protocol=protocol), lambda c: c.publish("a/+/b", b"x", 1))


class CountingAcks(PahoBuilds):
    """Counts the PUBACKs handled before paho's packet reader (those leading what one recv brought)."""
    leading_acks, _leading = 0, False

    def _take_pubacks(self, data: bytes) -> bytes:
        self._leading = True
        try:
            return super()._take_pubacks(data)
        finally:
            self._leading = False

    def _acked(self, mid: int, *reason):
        self.leading_acks += self._leading
        return super()._acked(mid, *reason)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_short_path_publishes_arrive_and_their_acks_release_wait_for_publish(mosquitto, protocol):
    """Through a real broker: short-path QoS 1 messages arrive whole, retained and with their properties; every
    publish's info is released by its PUBACK (``wait_for_publish`` on another thread too); the PUBACKs are
    handled before paho's reader; the paho-path publishes in between (QoS 0 and 2) still complete."""
    site = make_site(mosquitto, protocol=protocol)
    topic = f"{site.mqtt.topic_prefix}/short"
    got, subscribed = [], threading.Event()
    sub = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    sub.on_connect = lambda c, *_: c.subscribe(topic, qos=2)
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = lambda c, u, m: got.append((m.payload, m.qos, getattr(m.properties, "CorrelationData", None)))
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    client = make_client(site.mqtt, f"short-{protocol}", client_class=CountingAcks)
    client.max_inflight_messages_set(0)
    connected, acked = asyncio.Event(), []
    client.on_connect = lambda *_: connected.set()
    client.on_publish = lambda c, u, mid, reason, props: acked.append((mid, reason.value))
    driver = LoopDriver(client, asyncio.get_running_loop(), lambda: None, 0.1, 0.5)
    client.connect_async(mosquitto.host, mosquitto.port)
    driver.start()
    try:
        assert await asyncio.to_thread(subscribed.wait, 5)
        await asyncio.wait_for(connected.wait(), 5)
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = b"req-7"
        sent = [(n.to_bytes(2, "big") * (1 + n * 97), 1) for n in range(120)]
        infos = [client.publish(topic, payload, qos, properties=props if n == 7 else None)
                 for n, (payload, qos) in enumerate(sent)]
        assert client.paho_builds == 0
        await asyncio.to_thread(infos[-1].wait_for_publish, 10)
        await until(lambda: len(acked) == len(sent))
        assert all(info.is_published() for info in infos) and client.leading_acks == len(sent)
        await until(lambda: len(got) == len(sent))
        assert [(p, q) for p, q, _ in got] == sent
        assert [c for _, _, c in got][7] == (b"req-7" if protocol == "5" else None)
        mixed = [(b"qos0", 0), (b"qos2", 2), (b"qos1", 1)]
        infos += [client.publish(topic, payload, qos) for payload, qos in mixed]
        await until(lambda: len(got) == len(sent) + len(mixed) and len(acked) == len(sent) + len(mixed))
        assert client.paho_builds == 2 and all(info.is_published() for info in infos)
        assert sorted((p, q) for p, q, _ in got[len(sent):]) == sorted(mixed)  # QoS 0 may overtake
        assert {reason for _, reason in acked} == {0}
        leading, nobody = client.leading_acks, [client.publish(f"{topic}/nobody", b"x", 1) for _ in range(50)]
        await until(lambda: len(acked) == len(sent) + len(mixed) + len(nobody))
        # MQTT 5: "no matching subscribers" (0x10), a success with a reason code, skips paho's reader too
        assert [reason for _, reason in acked[-len(nobody):]] == [0x10 if protocol == "5" else 0] * len(nobody)
        assert client.leading_acks == leading + len(nobody) and all(info.is_published() for info in nobody)
        kept = client.publish(topic, b"kept", 1, retain=True)
        await asyncio.to_thread(kept.wait_for_publish, 10)
        late = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        retained = []
        late.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        late.on_message = lambda c, u, m: retained.append((m.payload, m.retain))
        late.connect(mosquitto.host, mosquitto.port)
        late.loop_start()
        try:
            await until(lambda: retained)
            assert retained == [(b"kept", True)]
        finally:
            late.loop_stop()
            late.disconnect()
    finally:
        sub.loop_stop()
        sub.disconnect()
        await asyncio.to_thread(driver.close, 2.0)
