"""MQTT: the client factory, the topic namespace, the publishing sink and a small subscriber.

The contract (topics, payloads, retained flags, QoS, birth/will, queueing) is
described in docs/mqtt.md and modelled in gateway/messages.py.

Threads in :class:`MqttSink`: the asyncio loop only builds payloads and appends
them to a bounded queue; one publisher thread hands them to paho; paho's own
network thread (``loop_start``) reads acknowledgements and reconnects.
``client.publish`` is never called while holding ``_cond``, because paho calls
our ``on_publish`` while holding its own lock and that callback takes ``_cond``.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from adapters.base import DeviceConfig
from gateway.config import MqttConfig, SiteConfig
from gateway.logutil import ThrottledWarning
from gateway.messages import GatewayAlarmMessage, GatewayHealth, GatewayStatus, StateMessage, data_payload
from gateway.model import DeviceState, GatewayAlarm, Reading, utcnow

log = logging.getLogger(__name__)


class _NoDisconnectNoise(logging.Filter):
    """paho 2.2 logs "Client is not connected" at ERROR after every clean disconnect() in
    threaded mode (its loop runs once more on the closed socket); that is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


_paho_log = logging.getLogger("gateway.mqtt.paho")
_paho_log.addFilter(_NoDisconnectNoise())


class MqttError(Exception):
    """The broker could not be reached or refused us; the message is one line for the CLI."""


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def make_client(cfg: MqttConfig, client_id: str, will: Will | None = None) -> paho.Client:
    """A paho client set up from the site's ``mqtt:`` section (not connected yet)."""
    protocol = paho.MQTTv5 if cfg.protocol == "5" else paho.MQTTv311
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    client.enable_logger(_paho_log)  # paho logs packet flags, never the password
    if cfg.username:  # an empty name (``${MINEGW_MQTT_USER:-}``) means anonymous
        password = cfg.password.get_secret_value() if cfg.password else ""
        client.username_pw_set(cfg.username, password or None)
    if cfg.tls:
        client.tls_set(ca_certs=_path(cfg.tls.ca_file), certfile=_path(cfg.tls.cert_file),
                       keyfile=_path(cfg.tls.key_file))
        client.tls_insecure_set(cfg.tls.insecure)
    if will:
        client.will_set(will.topic, will.payload, will.qos, will.retain)
    return client


def _path(p) -> str | None:
    return str(p) if p else None


@dataclass(frozen=True)
class Topics:
    """The topic namespace: ``{prefix}/{site}/{area}/{device}/...`` and ``.../gateway/{id}/...``."""

    prefix: str
    site: str

    def data(self, area: str, device: str) -> str:
        return f"{self.prefix}/{self.site}/{area}/{device}/data"

    def state(self, area: str, device: str) -> str:
        return f"{self.prefix}/{self.site}/{area}/{device}/state"

    def gateway_status(self, gateway: str) -> str:
        return f"{self.prefix}/{self.site}/gateway/{gateway}/status"

    def gateway_health(self, gateway: str) -> str:
        return f"{self.prefix}/{self.site}/gateway/{gateway}/health"

    def gateway_alarm(self, gateway: str, alarm_id: str) -> str:
        return f"{self.prefix}/{self.site}/gateway/{gateway}/alarm/{alarm_id}"

    def everything(self) -> str:
        return f"{self.prefix}/{self.site}/#"


class _Message(NamedTuple):
    topic: str
    payload: bytes
    retain: bool


def _version() -> str:
    try:
        return metadata.version("minegw")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


class MqttSink:
    """Publishes readings and device states to an MQTT broker; see docs/mqtt.md.

    While the broker is away, messages wait in a queue of ``cfg.queue_limit``;
    when it is full the oldest message is dropped (live data matters more than
    old data, and the historian keeps the record). Retained messages are not
    queued while disconnected: every retained topic is re-published on connect.
    """

    name = "mqtt"
    WINDOW = 100  # messages handed to paho and not yet acknowledged; lowered to the broker's Receive Maximum
    STOP_DRAIN_S = 3.0  # how long stop() waits for queued and in-flight messages

    def __init__(self, cfg: MqttConfig, site: SiteConfig, health_interval: float = 10.0):
        self.cfg = cfg
        self.site_id, self.gateway_id = site.site.id, site.site.gateway_id
        self.topics = Topics(cfg.topic_prefix, self.site_id)
        self.health_interval = health_interval
        self._device_ids = [d.id for d in site.devices if d.enabled]
        self._started = utcnow()
        self._where = f"{cfg.host}:{cfg.port}"
        self._status_topic = self.topics.gateway_status(self.gateway_id)
        self._data_args: dict[str, tuple] = {}  # device id -> (topic, site, area, zone, kind)
        self.client_id = cfg.client_id or f"minegw-{self.site_id}-{self.gateway_id}"
        self._client = make_client(cfg, self.client_id,
                                   Will(self._status_topic, self._status("offline", "connection lost"), cfg.qos))
        self._client.suppress_exceptions = True  # a bug in a callback is logged, the network thread lives on
        self._client.max_inflight_messages_set(0)  # our window limits it; paho must never hold messages back
        self._client.reconnect_delay_set(1, 30)
        for name in ("on_pre_connect", "on_connect", "on_connect_fail", "on_disconnect", "on_publish"):
            setattr(self._client, name, getattr(self, f"_{name}"))

        self._cond = threading.Condition()  # guards everything below
        self._pending: deque[_Message] = deque()  # in publish order, bounded by cfg.queue_limit
        self._urgent: deque[_Message] = deque()  # birth and retained re-publication: sent before _pending
        self._latest_states: dict[str, bytes] = {}  # state topic -> last payload, re-published on connect
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

        self._send_lock = threading.Lock()  # a publish batch and a reconnect's re-queueing never interleave
        self._publisher = threading.Thread(target=self._publish_loop, name="mqtt-publisher", daemon=True)
        self._health_task: asyncio.Task | None = None

    # ---- Sink interface (asyncio loop; never blocks) ----

    async def start(self) -> None:
        log.info("MQTT: publishing to %s as %s (MQTT %s, QoS %d)", self._where,
                 self.client_id, self.cfg.protocol, self.cfg.qos)
        self._publisher.start()
        # connect_async: the gateway polls and queues even while the broker is down.
        self._client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive)
        self._client.loop_start()
        self._health_task = asyncio.create_task(self._health_loop(), name="mqtt-health")

    async def stop(self) -> None:
        if self._health_task:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
        self._closing = True
        if self._connected:
            self._queue(self.topics.gateway_health(self.gateway_id), self._health_payload(), retain=True)
            self._queue(self._status_topic, self._status("offline", "stopped"), retain=True)
            await self._drain(self.STOP_DRAIN_S)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            left = len(self._pending) + len(self._urgent) + self._unacked
        await asyncio.to_thread(self._shut_down_threads)
        with self._cond:
            self._drops.flush(force=True)
            self._rejects.flush(force=True)
        if left:
            log.warning("MQTT: stopped with %d messages not delivered", left)

    def on_reading(self, device: DeviceConfig, reading: Reading) -> None:
        args = self._data_args.get(device.id)
        if args is None:
            args = self._data_args[device.id] = (
                self.topics.data(device.area, device.id), self.site_id, device.area, device.zone,
                device.equipment_kind)
        topic, *where = args
        self._queue(topic, data_payload(*where, reading), retain=False)

    def on_state(self, device: DeviceConfig, state: DeviceState) -> None:
        topic = self.topics.state(device.area, device.id)
        payload = StateMessage(site=self.site_id, area=device.area, **state.model_dump()).model_dump_json().encode()
        self._publish_latest(topic, payload)

    def on_alarm(self, alarm: GatewayAlarm) -> None:
        topic = self.topics.gateway_alarm(self.gateway_id, alarm.id)
        payload = GatewayAlarmMessage(site=self.site_id, gateway=self.gateway_id, **alarm.model_dump())
        self._publish_latest(topic, payload.model_dump_json().encode())

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
            return GatewayHealth(
                site=self.site_id, gateway=self.gateway_id, connected=self._connected,
                published=self.published, delivered=self.delivered, rejected=self.rejected,
                dropped=self.dropped, queued=len(self._pending) + len(self._urgent) + self._unacked,
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
        with self._cond:
            self.published += 1
            self._append(_Message(topic, payload, retain))
            self._cond.notify()

    def _append(self, msg: _Message) -> None:
        if len(self._pending) >= self.cfg.queue_limit:
            self._pending.popleft()
            self.dropped += 1
            self._drops.add(detail="broker unreachable" if not self._connected else "broker too slow")
        self._pending.append(msg)

    def _sendable(self) -> bool:
        return self._connected and bool(self._urgent or self._pending) and self._unacked < self._window

    def _take_batch(self) -> list[_Message]:
        batch = []
        while self._sendable():
            batch.append((self._urgent or self._pending).popleft())
            self._unacked += 1
        return batch

    def _publish_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._sendable())
                if self._stopping:
                    return
            with self._send_lock:
                with self._cond:
                    batch = self._take_batch()
                for msg in batch:
                    self._client.publish(msg.topic, msg.payload, self.cfg.qos, msg.retain)

    async def _drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                if not self._connected or not (self._pending or self._urgent or self._unacked):
                    return
            await asyncio.sleep(0.02)

    def _shut_down_threads(self) -> None:
        self._publisher.join(timeout=2)
        self._client.disconnect()  # a clean DISCONNECT: the broker discards the will
        self._client.loop_stop()

    # ---- paho callbacks (paho's network thread) ----

    def _on_pre_connect(self, client, userdata) -> None:
        # The will is fixed at CONNECT: refresh it so its ts says when this connection was opened.
        client.will_set(self._status_topic, self._status("offline", "connection lost"), self.cfg.qos, True)

    def _on_connect(self, client, userdata, flags, reason: ReasonCode, properties) -> None:
        if reason.is_failure:
            self._log_refusal(str(reason))
            return
        with self._send_lock:
            returned = client.drop_out_messages()  # unacknowledged: we re-send them, after the birth
            with self._cond:
                self._requeue([_Message(m.topic, m.payload, m.retain) for m in returned])
                self._window = min(self.WINDOW, getattr(properties, "ReceiveMaximum", self.WINDOW))
                self._unacked, self._connected, self._refused = 0, True, None
                if self._ever_connected:
                    self.reconnects += 1
                self._ever_connected = True
                self._cond.notify()
        self._log_connected(len(returned))

    def _requeue(self, unacked: list[_Message]) -> None:
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
        self._urgent = deque([_Message(self._status_topic, status, True)]
                             + [_Message(t, p, True) for t, p in self._latest_states.items()])
        self.published += len(self._urgent)

    def _log_connected(self, resent: int) -> None:
        down = "" if self._down_since is None else f" after {time.monotonic() - self._down_since:.1f} s"
        log.log(logging.WARNING if down else logging.INFO,
                "MQTT: connected to %s%s; %d queued messages to send (%d of them unacknowledged before)",
                self._where, down, len(self._pending), resent)
        self._down_since = None

    def _log_refusal(self, reason: str) -> None:
        if reason != self._refused:
            log.error("MQTT: broker %s refused the connection: %s (retrying)", self._where, reason)
            self._refused = reason

    def _on_connect_fail(self, client, userdata) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("MQTT: cannot reach broker %s; queueing up to %d messages and retrying",
                        self._where, self.cfg.queue_limit)

    def _on_disconnect(self, client, userdata, flags, reason: ReasonCode, properties) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
        if was_connected and not self._stopping:
            self._down_since = time.monotonic()
            log.warning("MQTT: connection to %s lost (%s); queueing up to %d messages",
                        self._where, reason, self.cfg.queue_limit)

    def _on_publish(self, client, userdata, mid, reason: ReasonCode, properties) -> None:
        with self._cond:
            self._unacked -= 1
            if reason.is_failure:
                self.rejected += 1
                self._rejects.add(detail=str(reason))
            else:
                self.delivered += 1
            self._cond.notify()


def tail(cfg: MqttConfig, topic: str, count: int | None, timeout: float | None,
         on_message: Callable[[paho.MQTTMessage], None]) -> int:
    """Subscribe to ``topic`` and pass messages to ``on_message`` until ``count`` arrived or ``timeout`` passed.

    Returns how many arrived. Raises :class:`MqttError` if the broker cannot be
    reached, refuses the connection or the subscription, or drops the connection.
    """
    session = _TailSession(cfg, topic, on_message)
    session.connect()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while count is None or session.received < count:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            session.step(0.1 if remaining is None else min(0.1, remaining))
    finally:
        session.client.disconnect()
    return session.received


class _TailSession:
    def __init__(self, cfg: MqttConfig, topic: str, on_message: Callable[[paho.MQTTMessage], None]):
        self.cfg, self.topic, self.deliver = cfg, topic, on_message
        self.where = f"{cfg.host}:{cfg.port}"
        self.client = make_client(cfg, f"minegw-tail-{secrets.token_hex(4)}")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.received = 0
        self.problem: str | None = None

    def connect(self) -> None:
        try:
            self.client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive)
        except OSError as exc:  # refused, unreachable, DNS, TLS handshake
            raise MqttError(f"cannot connect to MQTT broker {self.where}: {exc.strerror or exc}") from None

    def step(self, timeout: float) -> None:
        rc = self.client.loop(timeout)
        if self.problem:
            raise MqttError(self.problem)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(f"connection to MQTT broker {self.where} lost: {paho.error_string(rc)}")

    def _on_connect(self, client, userdata, flags, reason: ReasonCode, properties) -> None:
        if reason.is_failure:
            self.problem = f"MQTT broker {self.where} refused the connection: {reason}"
        else:
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, reasons: list[ReasonCode], properties) -> None:
        if reasons and reasons[0].is_failure:
            self.problem = f"MQTT broker {self.where} refused the subscription to {self.topic!r}: {reasons[0]}"

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        self.received += 1
        self.deliver(message)
