"""The console's subscription: one paho client (the site file's broker settings: TLS, credentials,
MQTT 5 or 3.1.1, through :func:`gateway.mqtt.make_client`) on ``{prefix}/{site}/#``.

paho's network thread only appends to an inbox (a deque, safe across threads); the app drains it on
its event loop (:meth:`Feed.drain`), so no widget and no model is ever touched from that thread.
The client reconnects by itself (1 s, doubling to 30 s) while the broker is away.
"""
from __future__ import annotations

import secrets
from collections import deque

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import MqttConfig
from gateway.mqtt import make_client

LINK = ""  # the topic of the inbox's link events: (LINK, b"up") / (LINK, b"down:<why>")


class Feed:
    """Subscribes to ``topic`` on the broker of ``cfg``; messages and link changes wait in ``inbox``."""

    def __init__(self, cfg: MqttConfig, topic: str, client_id: str | None = None, max_delay: int = 30):
        self.cfg, self.topic = cfg, topic
        self.where = f"{cfg.host}:{cfg.port}"
        self.inbox: deque[tuple[str, bytes]] = deque()
        self.client = make_client(cfg, client_id or f"minegw-console-{secrets.token_hex(4)}")
        self.client.reconnect_delay_set(1, max_delay)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.started = False

    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive)
        self.client.loop_start()  # connects, and keeps reconnecting, on paho's thread
        self.started = True

    def stop(self) -> None:
        if self.started:
            self.client.disconnect()
            self.client.loop_stop()
            self.started = False

    def drain(self, limit: int = 100_000) -> list[tuple[str, bytes]]:
        """What arrived since the last call (at most ``limit``), oldest first."""
        inbox, out = self.inbox, []
        while inbox and len(out) < limit:
            out.append(inbox.popleft())
        return out

    # -- paho's thread -----------------------------------------------------------------------
    def _down(self, why: str) -> None:
        self.inbox.append((LINK, b"down:" + why.encode()))

    def _on_connect(self, client, userdata, flags, reason: ReasonCode, properties) -> None:
        if reason.is_failure:
            self._down(f"broker {self.where} refused the connection: {reason}")
        else:
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, reasons: list[ReasonCode], properties) -> None:
        if any(r.is_failure for r in reasons):
            self._down(f"broker {self.where} refused the subscription to {self.topic}: {reasons[0]}")
        else:
            self.inbox.append((LINK, b"up"))

    def _on_connect_fail(self, client, userdata) -> None:
        self._down(f"broker {self.where} unreachable")

    def _on_disconnect(self, client, userdata, flags, reason: ReasonCode, properties) -> None:
        self._down(f"connection to broker {self.where} lost: {reason}")

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        self.inbox.append((message.topic, message.payload))
