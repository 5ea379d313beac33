"""paho driven from the asyncio loop (gateway/mqtt/aioloop.py): no network thread, writes on the loop."""
from __future__ import annotations

import asyncio
import threading

import pytest

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
