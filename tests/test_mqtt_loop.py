"""paho driven from the asyncio loop (gateway/mqtt/aioloop.py): no network thread, writes on the loop."""
from __future__ import annotations

import asyncio
import threading

from gateway.contract import DataMessage, GatewayStatus, Topics
from gateway.mqtt import MqttSink
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
