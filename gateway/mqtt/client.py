"""The MQTT client side every part of minegw shares: the client factory (credentials, TLS, logging),
and small helpers for the CLI and the operator: publish one message, tail a topic, send a request
and wait for its reply."""
from __future__ import annotations

import logging
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import MqttConfig
from gateway.core.errors import UserError


class _NoDisconnectNoise(logging.Filter):
    """paho 2.2 logs "Client is not connected" at ERROR after every clean disconnect() in
    threaded mode (its loop runs once more on the closed socket); that is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


_paho_log = logging.getLogger("gateway.mqtt.paho")
_paho_log.addFilter(_NoDisconnectNoise())


class MqttError(UserError):
    """The broker could not be reached or refused us; the message is one line for the CLI."""


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def make_client(cfg: MqttConfig, client_id: str, will: Will | None = None,
                client_class: type[paho.Client] = paho.Client) -> paho.Client:
    """A paho client (or ``client_class``) set up from the site's ``mqtt:`` section (not connected yet)."""
    protocol = paho.MQTTv5 if cfg.protocol == "5" else paho.MQTTv311
    client = client_class(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    client.enable_logger(_paho_log)  # paho logs packet flags, never the password
    if cfg.username:  # an empty name (``${MINEGW_MQTT_USER:-}``) means anonymous
        password = cfg.password.get_secret_value() if cfg.password else ""
        client.username_pw_set(cfg.username, password or None)
    if cfg.tls:
        try:
            client.tls_set(ca_certs=_path(cfg.tls.ca_file), certfile=_path(cfg.tls.cert_file),
                           keyfile=_path(cfg.tls.key_file))
        except (OSError, ssl.SSLError) as exc:  # a missing file, a key that is not the certificate's
            raise MqttError(f"mqtt.tls: cannot load the CA, certificate or key: {exc}") from None
        client.tls_insecure_set(cfg.tls.insecure)
    if will:
        client.will_set(will.topic, will.payload, will.qos, will.retain)
    return client


def _path(p) -> str | None:
    return str(p) if p else None


def publish_once(cfg: MqttConfig, topic: str, payload: bytes, timeout: float = 5.0) -> None:
    """Connect, publish one message at QoS 1, wait for the broker's acknowledgement, disconnect."""
    client = make_client(cfg, f"minegw-cli-{secrets.token_hex(4)}")
    where = f"{cfg.host}:{cfg.port}"
    try:
        client.connect(cfg.host, cfg.port, cfg.keepalive)
    except OSError as exc:
        raise MqttError(f"cannot connect to MQTT broker {where}: {exc.strerror or exc}") from None
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise MqttError(f"MQTT broker {where} did not acknowledge the message within {timeout:g} s")
    finally:
        client.disconnect()
        client.loop_stop()


def tail(cfg: MqttConfig, topic: str | list[str], count: int | None, timeout: float | None,
         on_message: Callable[[paho.MQTTMessage], None]) -> int:
    """Subscribe to ``topic`` (or to each of a list) and pass messages to ``on_message`` until ``count`` arrived or ``timeout`` passed.

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
    def __init__(self, cfg: MqttConfig, topic: str | list[str], on_message: Callable[[paho.MQTTMessage], None]):
        self.cfg, self.deliver = cfg, on_message
        self.topics = [topic] if isinstance(topic, str) else topic
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
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_subscribe(self, client, userdata, mid, reasons: list[ReasonCode], properties) -> None:
        for topic, reason in zip(self.topics, reasons):
            if reason.is_failure:
                self.problem = f"MQTT broker {self.where} refused the subscription to {topic!r}: {reason}"

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        if self.deliver(message) is not False:  # False: the caller did not count it (e.g. a schema kept quietly)
            self.received += 1


def request(cfg: MqttConfig, topic: str, payload: bytes, reply_topic: str, timeout: float = 10.0,
            expiry: float | None = None) -> tuple[str, bytes] | None:
    """Subscribe to ``reply_topic``, publish ``payload`` to ``topic`` (with the MQTT 5 response topic, unless
    ``reply_topic`` has a wildcard, correlation data and, given ``expiry`` seconds, message expiry when the
    client speaks 5), and return the first reply's topic and payload, or None after ``timeout``."""
    got: list[tuple[str, bytes]] = []
    correlation = secrets.token_bytes(8)

    def send(message: paho.MQTTMessage) -> None:
        got.append((message.topic, message.payload))

    session = _TailSession(cfg, reply_topic, send)
    sent = threading.Event()

    def on_subscribe(client, userdata, mid, reasons, properties) -> None:
        session._on_subscribe(client, userdata, mid, reasons, properties)
        if session.problem or sent.is_set():
            return
        props = None
        if cfg.protocol == "5":
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = correlation
            if not {"+", "#"} & set(reply_topic):  # a response topic names one place to answer
                props.ResponseTopic = reply_topic
            if expiry is not None:  # the broker discards it unsent after that (not through a 3.1.1 bridge)
                props.MessageExpiryInterval = max(1, int(expiry))
        client.publish(topic, payload, qos=1, properties=props)
        sent.set()

    session.client.on_subscribe = on_subscribe
    session.connect()
    deadline = time.monotonic() + timeout
    try:
        while not got and time.monotonic() < deadline:
            session.step(0.1)
    finally:
        session.client.disconnect()
    return got[0] if got else None
