"""The MQTT sink: readings, device states, inventories, alarms and linkage to the broker; see docs/mqtt.md.

The contract (topics, payloads, retained flags, QoS, birth/will, queueing) is
described in docs/mqtt.md and modelled in gateway/contract.py.

Threads in :class:`MqttSink`: the asyncio loop builds payloads; when nothing is queued before them
and the in-flight window has room (the steady state) it hands them to paho itself, else it appends
them to a bounded queue that one publisher thread hands to paho as the window opens. paho has no
thread of its own: :class:`gateway.mqtt.aioloop.LoopDriver` does its socket reads and writes on the
loop, and reconnects, so paho's callbacks run on the loop thread.
``client.publish`` is never called while holding ``_cond``, because paho calls
our ``on_publish`` while holding its own lock and that callback takes ``_cond``; it is called
holding ``_send_lock``, which the loop takes without waiting when it publishes data, and waits for
only briefly when connecting (a publisher thread's batch never waits on the loop).
With ``mqtt.spool`` set, a third thread ("mqtt-spool", :class:`gateway.mqtt.spool.Spool`)
does all the SQLite work of the spool; the others only hand it messages under ``_cond``.
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from importlib import metadata

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.alarms import AlarmEngine
from gateway.config import BufferConfig, MqttConfig, SiteConfig
from gateway.contract import (AlarmMessage, GatewayAlarmMessage, GatewayHealth, GatewayStatus, InventoryMessage,
                              LinkageMessage, StateMessage, Topics)
from gateway.core.device import DeviceConfig
from gateway.core.logutil import ThrottledWarning
from gateway.core.model import DeviceState, GatewayAlarm, Inventory, Reading, utcnow
from gateway.mqtt.aioloop import LoopClient, LoopDriver
from gateway.mqtt.client import Will, make_client
from gateway.mqtt.payloads import DevicePublisher
from gateway.mqtt.spool import Message
from gateway.mqtt.spool import Spool
from gateway.network.messages import NetworkRingMessage
from gateway.network.watch import network_alarm_ids
from gateway.sinks import CommandHandler, Sink

log = logging.getLogger(__name__)
SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason: another connection took this client id


def _version() -> str:
    try:
        return metadata.version("minegw")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


class MqttSink(Sink):
    """Publishes readings and device states to an MQTT broker; see docs/mqtt.md.

    While the broker is away, messages wait in a queue of ``cfg.queue_limit``;
    when it is full the oldest message is dropped (live data matters more than
    old data, and the historian keeps the record). Retained messages are not
    queued while disconnected: every retained topic is re-published on connect.
    With ``cfg.spool``, data that cannot be sent now goes to a file instead (:class:`Spool`).
    """

    name = "mqtt"
    WINDOW = 100  # messages handed to paho and not yet acknowledged; lowered to the broker's Receive Maximum
    STOP_DRAIN_S = 3.0  # how long stop() waits for queued and in-flight messages
    SPOOL_AFTER = 1000  # with a spool: data queued in memory beyond this goes to disk (a broker too slow)

    def __init__(self, cfg: MqttConfig, site: SiteConfig, health_interval: float = 10.0):
        self.cfg = cfg
        self.site_id, self.gateway_id = site.site.id, site.site.gateway_id
        self.topics = Topics(cfg.topic_prefix, self.site_id)
        self.health_interval = health_interval
        self._device_ids = [d.id for d in site.devices if d.enabled]
        self._started = utcnow()
        self._where = f"{cfg.host}:{cfg.port}"
        self._status_topic = self.topics.gateway_status(self.gateway_id)
        self._data: dict[str, DevicePublisher] = {}  # device id -> its data (and schema) messages
        self.client_id = cfg.client_id or f"minegw-{self.site_id}-{self.gateway_id}"
        self._client = make_client(cfg, self.client_id,
                                   Will(self._status_topic, self._status("offline", "connection lost"), cfg.qos),
                                   client_class=LoopClient)
        self._client.suppress_exceptions = True  # a bug in a callback is logged, the connection lives on
        self._client.max_inflight_messages_set(0)  # our window limits it; paho must never hold messages back
        self._command_handler: CommandHandler | None = None
        self._command_topics = {self.topics.command_write(): "write", self.topics.command_broadcast(): "broadcast",
                                self.topics.alarm_ack(): "ack"}
        self.malformed_commands = 0  # commands without a request id or response topic: nowhere to reply
        for name in ("on_pre_connect", "on_connect", "on_connect_fail", "on_disconnect", "on_publish", "on_message"):
            setattr(self._client, name, getattr(self, f"_{name}"))

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)  # guards everything below, the spool's state included
        self._pending: deque[Message] = deque()  # in publish order, bounded by cfg.queue_limit
        self._urgent: deque[Message] = deque()  # birth and retained re-publication: sent before _pending
        self._latest_states: dict[str, bytes] = {}  # state topic -> last payload, re-published on connect
        # Alarm states live in the gateway's memory: retained alarms of an earlier run are cleared at the
        # first connection, and raised again by the engine if their condition still holds.
        self._areas = areas = {d.id: d.area for d in site.devices}
        for rule in site.alarms:
            for alarm_id in AlarmEngine.alarm_ids(rule):
                self._latest_states[self.topics.alarm(areas.get(rule.device, ""), rule.device, alarm_id)] = b""
        for area, device, alarm_id in network_alarm_ids(site.network, site.devices):
            self._latest_states[self.topics.alarm(area, device, alarm_id)] = b""
        self._state_source: Callable[[], dict[str, DeviceState]] | None = None
        self._unacked = 0
        self._window = self.WINDOW
        self._connected = False
        self._closing = False  # stop() has begun: a reconnection now announces "stopped", not a birth
        self._stopping = False  # the publisher thread ends
        self._ever_connected = False
        self._down_since: float | None = None
        self._refused: str | None = None  # last refusal reason logged, to log each reason once
        self.published = self.delivered = self.rejected = self.dropped = self.reconnects = 0
        self._drops = ThrottledWarning(log, f"MQTT: queue full ({cfg.queue_limit} messages, {{detail}}): "
                                 "dropped {count} message(s), oldest first, since the last warning")
        self._rejects = ThrottledWarning(log, "MQTT: the broker rejected {count} message(s) since the last warning ({detail})")

        self._spool = self._make_spool(cfg.spool, site)
        self._spool_after = min(self.SPOOL_AFTER, cfg.queue_limit)

        self._send_lock = threading.Lock()  # a publish batch and a reconnect's re-queueing never interleave
        self._publisher = threading.Thread(target=self._publish_loop, name="mqtt-publisher", daemon=True)
        self._health_task: asyncio.Task | None = None
        self._driver: LoopDriver | None = None

    def _make_spool(self, cfg: BufferConfig | None, site: SiteConfig) -> Spool | None:
        if cfg is None:
            return None
        return Spool(cfg, self._lock, self._cond, stash_limit=self.cfg.queue_limit)

    # ---- Sink interface (asyncio loop; never blocks) ----

    async def start(self) -> None:
        if self._spool:
            held = await self._spool.start()
            log.info("MQTT: spool %s holds %d messages from before, sent once connected", self.cfg.spool.path, held)
        log.info("MQTT: publishing to %s as %s (MQTT %s, QoS %d)", self._where,
                 self.client_id, self.cfg.protocol, self.cfg.qos)
        self._publisher.start()
        # connect_async: the gateway polls and queues even while the broker is down.
        self._client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive)
        self._driver = LoopDriver(self._client, asyncio.get_running_loop(),
                                  lambda: self._on_connect_fail(self._client, None), 1.0, 30.0)
        self._driver.start()
        self._health_task = asyncio.create_task(self._health_loop(), name="mqtt-health")

    async def stop(self) -> None:
        if self._health_task:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
        self._closing = True
        if self._spool:
            with self._cond:
                self._spool.stop_sending()  # what it holds waits on disk for the next start
        if self._connected:
            self._queue(self.topics.gateway_health(self.gateway_id), self._health_payload(), retain=True)
            self._queue(self._status_topic, self._status("offline", "stopped"), retain=True)
            await self._drain(self.STOP_DRAIN_S)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            left = len(self._pending) + len(self._urgent) + self._unacked
        kept = await asyncio.to_thread(self._shut_down_threads)
        with self._cond:
            self._drops.flush(force=True)
            self._rejects.flush(force=True)
        if kept:
            log.warning("MQTT: stopped; %d messages wait in the spool %s for the next start", kept, self.cfg.spool.path)
        elif left and not self._spool:
            log.warning("MQTT: stopped with %d messages not delivered", left)

    def on_reading(self, device: DeviceConfig, reading: Reading) -> None:
        self.on_readings([(device, reading)])

    def on_readings(self, batch: list[tuple[DeviceConfig, Reading]]) -> None:
        """Every reading's payload built on the loop, then all queued under one lock with one wake-up."""
        messages = []
        for device, reading in batch:
            publisher = self._data.get(device.id)
            if publisher is None:
                publisher = self._data[device.id] = DevicePublisher(self.cfg, self.topics, self.site_id, device)
            try:
                schema, data = publisher.build(reading)
            except Exception:  # one reading a payload cannot carry must not hold back the others
                log.exception("MQTT: building the data message of %s failed", device.id)
                continue
            if schema is not None:  # retained, queued before the data that uses it, re-published on connect
                self._publish_latest(publisher.schema_topic, schema)
            if data is not None:  # None: report by exception found nothing to send
                messages.append(Message(publisher.data_topic, data, False))
        self._queue_data(messages)

    def on_state(self, device: DeviceConfig, state: DeviceState) -> None:
        self._publish_latest(self.topics.state(device.area, device.id), self._state_payload(device.area, state))

    def _state_payload(self, area: str, state: DeviceState) -> bytes:
        return StateMessage(site=self.site_id, area=area, **state.model_dump()).model_dump_json().encode()

    def set_state_source(self, source: Callable[[], dict[str, DeviceState]]) -> None:
        """``source()`` gives every device's current state (device id -> a copy; called on the loop thread).

        On each (re)connection the retained ``state`` topics are re-published from it, so their
        counters are those of now, not of the last status change."""
        self._state_source = source

    def _current_states(self) -> dict[str, bytes]:
        """State topic -> the device's state now, for the devices whose state was published."""
        if self._state_source is None:
            return {}
        try:
            states = self._state_source()
        except Exception:  # noqa: BLE001 - the last published states are re-published instead
            log.exception("MQTT: reading the devices' current states failed")
            return {}
        return {self.topics.state(self._areas[device], device): self._state_payload(self._areas[device], state)
                for device, state in states.items() if device in self._areas}

    def on_inventory(self, device: DeviceConfig, inventory: Inventory) -> None:
        payload = InventoryMessage(site=self.site_id, area=device.area, zone=device.zone, kind=device.equipment_kind,
                                   **inventory.model_dump())
        self._publish_latest(self.topics.inventory(device.area, device.id), payload.model_dump_json().encode())

    def on_alarm(self, alarm: GatewayAlarm) -> None:
        topic = self.topics.gateway_alarm(self.gateway_id, alarm.id)
        payload = GatewayAlarmMessage(site=self.site_id, gateway=self.gateway_id, **alarm.model_dump())
        self._publish_latest(topic, payload.model_dump_json().encode())

    def on_alarm_event(self, event) -> None:
        """An alarm not normal is retained on its topic; back to normal, the retained message is cleared."""
        topic = self.topics.alarm(event.area, event.device, event.alarm)
        if event.state.value == "normal":
            self._publish_latest(topic, b"")  # an empty retained payload deletes the retained message
            return
        payload = AlarmMessage(site=self.site_id, suppressed=event.suppressed, **event.model_dump())
        self._publish_latest(topic, payload.model_dump_json().encode())

    def on_ring_status(self, status) -> None:
        """Retained: the ring's latest diagnosis."""
        payload = NetworkRingMessage(site=self.site_id, ts=status.ts, **status.diagnosis.as_dict())
        self._publish_latest(self.topics.network_ring(status.diagnosis.ring), payload.model_dump_json().encode())

    def on_linkage_event(self, event) -> None:
        """Retained: the last linkage of each alarm (zones, per-node confirmation, trigger-to-confirmed time)."""
        payload = LinkageMessage(site=self.site_id, **event.model_dump())
        self._publish_latest(self.topics.linkage(event.area, event.alarm), payload.model_dump_json().encode())

    def set_command_handler(self, handler: CommandHandler) -> None:
        """:class:`gateway.sinks.CommandSource`: ``handler(kind, payload, retained, reply)`` is called (on the
        loop thread) for every message on the command topics (kind ``write``, ``broadcast`` or ``ack``; ``retained``:
        delivered from the broker's retained store); the handler calls ``reply(answer)`` once it knows the result
        (gateway/commands.py).
        Nothing is parsed here: a hostile payload never costs paho's callback more than a hand-off."""
        self._command_handler = handler

    def _on_command(self, kind: str, message: paho.MQTTMessage) -> None:
        props = getattr(message, "properties", None)  # absent with MQTT 3.1.1
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None

        def reply(answer) -> None:
            topic = response_topic if self._own_reply_topic(response_topic, answer.by) else (
                answer.request_id and self.topics.command_reply(self.gateway_id, answer.request_id, answer.by))
            if not topic:
                self.malformed_commands += 1
                log.warning("MQTT: no reply to a %s command without a valid request id or response topic "
                            "(%d so far): %s", kind, self.malformed_commands, answer.error)
                return
            reply_props = None
            if correlation is not None and self.cfg.protocol == "5":
                reply_props = Properties(PacketTypes.PUBLISH)
                reply_props.CorrelationData = correlation
            with self._cond:
                self.published += 1
                self._append(Message(topic, answer.model_dump_json().encode(), False, None, reply_props))
                self._cond.notify()

        try:
            self._command_handler(kind, message.payload, bool(message.retain), reply)
        except Exception:
            log.exception("MQTT: handing over a command on %s failed", message.topic)

    def _own_reply_topic(self, topic: str | None, signer: str | None) -> bool:
        """An MQTT 5 response topic is answered on only when it is one of this gateway's reply topics for the
        verified signer (one level below :meth:`Topics.gateway_replies`): anywhere else, a command could make the
        gateway publish where the requester may not read or where another gateway's answers belong."""
        if not topic:
            return False
        own = self.topics.gateway_replies(self.gateway_id, signer) + "/"
        return topic.startswith(own) and re.fullmatch(r"[^/+#]+", topic[len(own):]) is not None

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        kind = self._command_topics.get(message.topic)
        if kind is not None and self._command_handler is not None:
            self._on_command(kind, message)

    def _publish_latest(self, topic: str, payload: bytes) -> None:
        """A retained topic: keep its latest payload for re-publication on every connect."""
        with self._cond:
            self._latest_states[topic] = payload
            if not self._connected:  # re-published on connect; queueing it would only add an older copy
                return
        self._queue(topic, payload, retain=True)

    # ---- counters ----

    def health(self) -> GatewayHealth:
        with self._cond:
            spooled, spool_dropped = (self._spool.waiting, self._spool.dropped) if self._spool else (0, 0)
            return GatewayHealth(
                site=self.site_id, gateway=self.gateway_id, connected=self._connected,
                published=self.published, delivered=self.delivered, rejected=self.rejected,
                dropped=self.dropped + spool_dropped,
                queued=len(self._pending) + len(self._urgent) + self._unacked + spooled,
                reconnects=self.reconnects, ts=utcnow())

    def _health_payload(self) -> bytes:
        return self.health().model_dump_json().encode()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            with self._cond:
                self._drops.flush()
            if self._connected:  # while disconnected, the first health after reconnect says enough
                self._queue(self.topics.gateway_health(self.gateway_id), self._health_payload(), retain=True)

    def _status(self, status: str, reason: str) -> bytes:
        return GatewayStatus(
            site=self.site_id, gateway=self.gateway_id, status=status, reason=reason, version=_version(),
            started=self._started, devices=self._device_ids, ts=utcnow()).model_dump_json().encode()

    # ---- the queue ----

    def _queue(self, topic: str, payload: bytes, retain: bool) -> None:
        if not retain:
            self._queue_data([Message(topic, payload, False)])
            return
        with self._cond:
            self.published += 1
            self._append(Message(topic, payload, retain))
            self._cond.notify()

    def _queue_data(self, messages: list[Message]) -> None:
        """Data is handed to paho right here when nothing waits before it and the window has room (the
        steady state: no hand-off to the publisher thread); otherwise queued for the publisher thread."""
        if not messages:
            return
        # Never blocks the loop: the publisher thread's batch or a reconnect's re-queueing holds it briefly.
        locked = self._send_lock.acquire(blocking=False)
        try:
            with self._cond:
                self.published += len(messages)
                direct = locked and self._may_publish_now(len(messages))
                if direct:
                    self._unacked += len(messages)
                else:
                    self._enqueue(messages)
            if direct:
                self._publish_batch(messages)
        finally:
            if locked:
                self._send_lock.release()

    def _may_publish_now(self, count: int) -> bool:
        """Connected, nothing queued, in the spool or going to it before these, and room in the window."""
        return (self._connected and not self._closing and not self._urgent and not self._pending
                and self._unacked + count <= self._window
                and not (self._spool and (self._spool.backlog or self._spool.has_unsent)))

    def _enqueue(self, messages: list[Message]) -> None:
        for msg in messages:
            if self._spool and self._spool_first():
                self._spool.stash(msg)
            else:
                self._append(msg)
        if self._sendable():  # the publisher thread waits for exactly this
            self._cond.notify()

    def _spool_first(self) -> bool:
        """Data goes to disk when it cannot be sent now, and behind older data on disk (the lanes order them)."""
        return not self._connected or self._spool.backlog or len(self._pending) >= self._spool_after

    def _append(self, msg: Message) -> None:
        if len(self._pending) >= self.cfg.queue_limit:
            self._pending.popleft()
            self.dropped += 1
            self._drops.add(detail="broker unreachable" if not self._connected else "broker too slow")
        self._pending.append(msg)

    def _sendable(self) -> bool:
        return self._connected and self._has_next() and self._unacked < self._window

    def _has_next(self) -> bool:
        return bool(self._urgent or self._pending) or bool(self._spool and self._spool.has_unsent)

    def _take_batch(self) -> list[Message]:
        batch = []
        while self._sendable():
            batch.append(self._next_message())
            self._unacked += 1
        return batch

    def _next_message(self) -> Message:
        """Birth and retained states first, then data from memory, then data from the spool."""
        if self._urgent or self._pending:
            return (self._urgent or self._pending).popleft()
        return self._spool.next_unsent()

    def _publish_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._sendable())
                if self._stopping:
                    return
            with self._send_lock:
                with self._cond:
                    batch = self._take_batch()
                self._publish_batch(batch)

    def _publish_batch(self, batch: list[Message]) -> None:
        """Hands ``batch`` (counted in ``_unacked``) to paho; ``_send_lock`` held, ``_cond`` not (see above)."""
        mids = [self._client.publish(msg.topic, msg.payload, self.cfg.qos, msg.retain,
                                     properties=msg.properties).mid for msg in batch]
        if self._spool:
            with self._cond:
                self._spool.sent(zip(mids, batch))

    async def _drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                if not self._connected or not (self._pending or self._urgent or self._unacked):
                    return
            await asyncio.sleep(0.02)

    def _shut_down_threads(self) -> int:
        """Returns how many messages the spool keeps for the next start."""
        self._publisher.join(timeout=2)
        if self._driver:
            self._driver.close(2.0)  # a clean DISCONNECT: the broker discards the will
        if not self._spool:
            return 0
        self._move_to_spool()  # no acknowledgement can come any more
        return self._spool.close()

    def _move_to_spool(self) -> None:
        """The connection is gone: data waiting in memory or in flight goes to disk, so a kill -9 during
        the outage loses none of it; the spool's own batch goes back to it, less what was acknowledged."""
        with self._send_lock:  # a publish batch under way ends first: its messages are in paho's list below
            returned = self._client.drop_out_messages()
            with self._cond:
                data = [Message(m.topic, m.payload, m.retain) for m in returned if not self._spool.owns(m.mid)]
                data += self._pending
                self._pending.clear()
                self._unacked = 0
                self._spool.connection_lost([m for m in data if not m.retain])  # retained: re-published on connect

    # ---- paho callbacks (the loop thread: LoopDriver) ----

    def _on_pre_connect(self, client, userdata) -> None:
        # The will is fixed at CONNECT: refresh it so its ts says when this connection was opened.
        client.will_set(self._status_topic, self._status("offline", "connection lost"), self.cfg.qos, True)

    def _on_connect(self, client, userdata, flags, reason: ReasonCode, properties) -> None:
        if reason.is_failure:
            self._log_refusal(str(reason))
            return
        if self._command_handler is not None:
            client.subscribe([(topic, 1) for topic in self._command_topics])
        current = self._current_states()
        with self._send_lock:
            returned = client.drop_out_messages()  # unacknowledged: we re-send them, after the birth
            with self._cond:
                self._latest_states.update((t, p) for t, p in current.items() if t in self._latest_states)
                self._requeue([Message(m.topic, m.payload, m.retain) for m in returned])
                self._window = min(self.WINDOW, getattr(properties, "ReceiveMaximum", self.WINDOW))
                self._unacked, self._connected, self._refused = 0, True, None
                if self._driver:
                    self._driver.connected()
                if self._ever_connected:
                    self.reconnects += 1
                self._ever_connected = True
                if self._spool:
                    self._spool.connection_up()
                queued = len(self._pending) + (self._spool.waiting if self._spool else 0)
                self._cond.notify()
        self._log_connected(queued, len(returned))

    def _requeue(self, unacked: list[Message]) -> None:
        """Queue order after a (re)connect: birth, latest states, then unacknowledged and queued data.

        Retained messages from before are dropped: each retained topic is re-published fresh.
        """
        data = [m for m in (*unacked, *self._pending) if not m.retain]
        self._pending.clear()
        for msg in data[-self.cfg.queue_limit:]:
            self._pending.append(msg)
        if len(data) > self.cfg.queue_limit:
            self.dropped += len(data) - self.cfg.queue_limit
            self._drops.add(len(data) - self.cfg.queue_limit)
        status = self._status("offline", "stopped") if self._closing else self._status("online", "connected")
        self._urgent = deque([Message(self._status_topic, status, True)]
                             + [Message(t, p, True) for t, p in self._latest_states.items()])
        self.published += len(self._urgent)

    def _log_connected(self, queued: int, resent: int) -> None:
        down = "" if self._down_since is None else f" after {time.monotonic() - self._down_since:.1f} s"
        log.log(logging.WARNING if down else logging.INFO,
                "MQTT: connected to %s%s; %d queued messages to send (%d of them unacknowledged before)",
                self._where, down, queued, resent)
        self._down_since = None

    def _log_refusal(self, reason: str) -> None:
        if reason != self._refused:
            log.error("MQTT: broker %s refused the connection: %s (retrying)", self._where, reason)
            self._refused = reason

    def _on_connect_fail(self, client, userdata) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("MQTT: cannot reach broker %s; %s and retrying", self._where, self._queueing())

    def _on_disconnect(self, client, userdata, flags, reason: ReasonCode, properties) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
        if was_connected and not self._stopping:  # on stop, _shut_down_threads spools what is left
            if self._spool:
                self._move_to_spool()
            self._down_since = time.monotonic()
            log.warning("MQTT: connection to %s lost (%s); %s", self._where, self._why_lost(flags, reason),
                        self._queueing())

    def _why_lost(self, flags: paho.DisconnectFlags, reason: ReasonCode) -> str:
        taken = f"client id {self.client_id!r} is taken by another connection"
        advice = "processes sharing a client id evict each other: give each its own mqtt.client_id"
        if reason.value == SESSION_TAKEN_OVER:
            return f"{taken}: {advice}"
        if not flags.is_disconnect_packet_from_server:
            # Mosquitto 2.0 closes the old connection without a word when a new one takes its client id.
            return f"closed without a reason: {taken}, or the network failed; {advice}"
        return str(reason)

    def _queueing(self) -> str:
        if self._spool:
            return f"keeping data in the spool {self.cfg.spool.path}"
        return f"queueing up to {self.cfg.queue_limit} messages"

    def _on_publish(self, client, userdata, mid, reason: ReasonCode, properties) -> None:
        with self._cond:
            self._unacked -= 1
            if reason.is_failure:
                self.rejected += 1
                self._rejects.add(detail=str(reason))
            else:
                self.delivered += 1
            if self._spool:
                self._spool.acknowledged(mid)
            if self._sendable():  # only then does the publisher thread wait for this acknowledgement
                self._cond.notify()
