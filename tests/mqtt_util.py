"""MQTT test helpers: a subscriber that collects what a broker delivers."""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int


class MqttCollector:
    """Subscribes to ``topic`` and records every message, for ``wait_for`` to inspect.

    ``persistent=True`` uses a fixed client id and a kept session (MQTT 3.1.1,
    clean_session false), so a broker with persistence keeps queueing messages
    for it while it is disconnected, including across a broker restart.
    """

    def __init__(self, host: str, port: int, topic: str = "#", *, persistent: bool = False,
                 client_id: str = ""):
        self.topic = topic
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        if persistent:
            self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "collector",
                                      protocol=paho.MQTTv311, clean_session=False)
        else:
            self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.reconnect_delay_set(0.1, 0.5)  # reconnect faster than the gateway under test
        self.client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            self.close()
            raise TimeoutError(f"collector: no SUBACK for {topic!r} from {host}:{port}")

    def _on_message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, msg.payload, bool(msg.retain), msg.qos))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[list[Received]], Any], timeout: float = 5.0) -> Any:
        """Wait until ``predicate(messages)`` is truthy and return its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (result := predicate(list(self.messages))):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    topics = [m.topic for m in self.messages[-10:]]
                    raise AssertionError(f"timed out after {timeout} s; {len(self.messages)} messages, "
                                         f"last topics: {topics}")
                self._cond.wait(remaining)
            return result

    async def until(self, predicate: Callable[[list[Received]], Any], timeout: float = 5.0) -> Any:
        """``wait_for`` without blocking the event loop (the sink's health timer runs on it)."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> "MqttCollector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TcpProxy:
    """Forwards a local port to ``target``, and plays a failing network for the client side:
    ``blackhole = True`` silently discards what clients send; ``cut()`` drops every connection."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._listener.getsockname()
        self.blackhole = False
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(self.target)
            self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if not (from_client and self.blackhole):
                    dst.sendall(data)
        except OSError:
            pass
        self._close(src, dst)

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def cut(self) -> None:
        for pair in self._pairs:
            self._close(*pair)
        self._pairs.clear()

    def close(self) -> None:
        self.cut()
        self._listener.close()
