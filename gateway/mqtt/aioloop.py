"""Drives a paho client from the asyncio loop instead of paho's network thread (as aiomqtt does).

Every socket read and write happens on the loop thread, in reader and writer callbacks; paho's
callbacks (``on_connect``, ``on_publish``, ``on_message``, ``on_disconnect``) run there too, so a
message handed to paho on the loop costs no wake-up of another thread, and an acknowledgement
comes back without one. What the loop publishes is written once the loop iteration is done, so the
messages of one iteration share a ``send`` (:class:`LoopClient` joins them). ``publish`` may still be
called from other threads: paho then asks for the socket to be watched for writing, and that request
is carried to the loop.

Opening the connection (DNS, TCP and TLS handshakes) blocks, so it runs in a worker thread;
the driver reconnects after a lost connection or a failed attempt, waiting ``min_delay`` seconds,
doubled after each failure up to ``max_delay`` (paho's own ``reconnect_delay_set`` rule).
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)
MISC_INTERVAL_S = 1.0  # keep-alive pings and their time-outs: paho's own loop checks this often
RECV_SIZE = 65536  # bytes taken from the socket per wake-up
PUBACK_HEADER = 0x40  # fixed header byte of a PUBACK
PUBLISH, DISCONNECT = 0x30, 0xE0  # packet types (high nibble of the fixed header)
JOIN_MAX = 65536  # bytes joined into one write
TOPIC_CACHE_MAX = 4096  # checked topics kept as bytes (a gateway's data topics; beyond this the cache restarts)


class LoopClient(paho.Client):
    """paho's client with three shortcuts for the loop driver, each paid per message by paho alone.

    - ``read_available()`` takes what the socket holds with one ``recv`` and lets paho parse it from memory:
      paho itself asks the socket for one byte (the packet type), then each remaining-length byte, then the
      rest, so an acknowledgement cost three system calls and a fourth to learn the socket was empty.
    - A PUBACK without properties (two bytes in MQTT 3.1.1 and MQTT 5's success; MQTT 5 with a reason code)
      is handed to ``on_publish`` with one shared reason per code and empty properties, not two new objects
      each; those leading what one ``recv`` brought skip paho's packet reader too.
    - Packets waiting to be written go out joined, in one ``send`` (paho sends each on its own), but for
      those paho must see written one by one: a QoS 0 PUBLISH (its ``on_publish``) and DISCONNECT.
    - A QoS 1 ``publish`` while connected, with neither paho limit set (the MQTT sink keeps its own window),
      builds its PUBLISH in one go, with the topic checked once per topic and a message whose info shares
      one condition (paho makes a lock and a condition per message, and formats a debug line nobody reads).
    Anything else takes paho's own path, and so does a PUBACK in the middle of other packets."""

    _ACKED = ReasonCode(PacketTypes.PUBACK)  # success; never changed by its readers
    _NO_PROPERTIES = Properties(PacketTypes.PUBACK)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._inbox = b""  # bytes read by read_available and not yet parsed
        self._inbox_at = 0
        self._feeding = False  # inside read_available: an empty inbox means "no more for now"
        self._topics: dict[str, bytes] = {}  # topic -> its UTF-8 bytes, once paho's check passed

    def read_available(self) -> MQTTErrorCode:
        """One ``recv`` of what the socket holds, every whole packet in it handled (the loop's reader)."""
        try:
            data = super()._sock_recv(RECV_SIZE)
        except BlockingIOError:  # nothing yet (a spurious wake-up, or TLS wants more of a record)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except (OSError, ConnectionError):
            data = b""  # a failure: paho's own read below finds and reports it
        if not data:
            return self.loop_read()
        if data[0] == PUBACK_HEADER and self._in_packet["command"] == 0:  # between packets: PUBACKs lead
            data = self._take_pubacks(data)
            if not data:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        self._inbox, self._inbox_at, self._feeding = data, 0, True
        try:
            rc = MQTTErrorCode.MQTT_ERR_SUCCESS
            while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._inbox:  # loop_read stops after a few packets
                rc = self.loop_read()
            return rc
        finally:
            self._feeding = False
            self._inbox = b""

    def _sock_recv(self, bufsize: int) -> bytes:
        inbox = self._inbox
        if not inbox:
            if self._feeding:  # all of this wake-up's bytes parsed; a packet's rest comes with the next
                raise BlockingIOError()
            return super()._sock_recv(bufsize)
        start = self._inbox_at
        chunk = inbox[start:start + bufsize]
        self._inbox_at = start + len(chunk)
        if self._inbox_at >= len(inbox):
            self._inbox, self._inbox_at = b"", 0
        return chunk

    def _packet_write(self) -> MQTTErrorCode:
        self._join_waiting()
        return super()._packet_write()

    def _join_waiting(self) -> None:
        out = self._out_packet
        count = len(out)  # publish() may append from another thread meanwhile: only these are taken
        if count < 2:
            return
        joined: list[dict] = []
        for packet in [out.popleft() for _ in range(count)]:
            last = joined[-1] if joined else None
            if last is not None and _joinable(last) and _joinable(packet) and \
                    last["to_process"] + packet["to_process"] <= JOIN_MAX:
                if not last.get("joined"):  # a copy to extend, paho's own packet left as it was
                    last = joined[-1] = dict(last, packet=bytearray(last["packet"]), joined=True)
                last["packet"] += packet["packet"]
                last["to_process"] += packet["to_process"]
            else:
                joined.append(packet)
        out.extendleft(reversed(joined))

    def _take_pubacks(self, data: bytes) -> bytes:
        """Handle the PUBACKs ``data`` starts with, without paho's packet reader; what follows them. Those
        without properties: two bytes, or in MQTT 5 a reason code too (0x10 "no matching subscribers": a
        success Mosquitto sends for a topic nobody subscribed), with an empty property length or none."""
        at, size, v5 = 0, len(data), self._protocol == paho.MQTTv5
        while at + 4 <= size and data[at] == PUBACK_HEADER:
            length = data[at + 1]
            if length == 2:
                reason = self._ACKED
            elif v5 and at + 2 + length <= size and (length == 3 or (length == 4 and data[at + 5] == 0)):
                reason = _puback_reason(data[at + 4])
                if reason is None:  # not a PUBACK reason: paho's reader reports it
                    break
            else:
                break
            rc = self._acked(data[at + 2] << 8 | data[at + 3], reason)
            at += 2 + length
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        if at:
            with self._msgtime_mutex:  # the keep-alive's view: the broker spoke
                self._last_bytes_received = time.monotonic()
        return data[at:]

    def _handle_pubackcomp(self, cmd) -> MQTTErrorCode:
        packet = self._in_packet
        if cmd != "PUBACK" or packet["command"] != PUBACK_HEADER or len(packet["packet"]) != 2:
            return super()._handle_pubackcomp(cmd)
        data = packet["packet"]
        return self._acked(data[0] << 8 | data[1])

    def _acked(self, mid: int, reason: ReasonCode = _ACKED) -> MQTTErrorCode:
        """A PUBACK without properties for ``mid``."""
        self._easy_log(paho.MQTT_LOG_DEBUG, "Received PUBACK (Mid: %d)", mid)
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, reason, self._NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def publish(self, topic: str, payload=None, qos: int = 0, retain: bool = False,
                properties: Properties | None = None) -> paho.MQTTMessageInfo:
        if (qos != 1 or type(payload) is not bytes or self._sock is None or self._max_inflight_messages
                or self._max_queued_messages or len(payload) > MAX_FAST_PAYLOAD):
            return super().publish(topic, payload, qos, retain, properties)
        topic_bytes = self._topics.get(topic)
        if topic_bytes is None:
            if self._protocol != paho.MQTTv5 and not topic:
                raise ValueError("Invalid topic.")
            topic_bytes = topic.encode("utf-8")
            self._raise_for_invalid_topic(topic_bytes)
            if len(self._topics) >= TOPIC_CACHE_MAX:
                self._topics.clear()
            self._topics[topic] = topic_bytes
        mid = self._mid_generate()
        message = _Message(mid, topic_bytes, payload, retain, properties)
        with self._out_message_mutex:
            if mid in self._out_messages:  # 65 535 messages unacknowledged: paho's answer
                message.info.rc = MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
                return message.info
            self._out_messages[mid] = message
            self._inflight_messages += 1
            self._queue_publish(message)
        return message.info

    def _queue_publish(self, message: paho.MQTTMessage) -> None:
        """``message``'s PUBLISH, as paho's ``_send_publish`` builds it, queued for the writer."""
        topic, payload, mid = message._topic, message.payload, message.mid
        if self._protocol == paho.MQTTv5:
            props = b"\x00" if message.properties is None else message.properties.pack()
        else:
            props = b""
        packet = bytearray((PUBLISH | 2 | (1 if message.retain else 0),))  # QoS 1
        _remaining_length(packet, 2 + len(topic) + 2 + len(props) + len(payload))
        packet += len(topic).to_bytes(2, "big")
        packet += topic
        packet += mid.to_bytes(2, "big")
        packet += props
        packet += payload
        self._out_packet.append({"command": PUBLISH, "mid": mid, "qos": 1, "pos": 0, "to_process": len(packet),
                                 "packet": packet, "info": message.info})
        self._call_socket_register_write()

    def _easy_log(self, level, fmt: str, *args) -> None:
        """paho formats a debug line per packet: not unless someone reads them."""
        if level == paho.MQTT_LOG_DEBUG and self.on_log is None and (
                self._logger is None or not self._logger.isEnabledFor(logging.DEBUG)):
            return
        super()._easy_log(level, fmt, *args)


MAX_FAST_PAYLOAD = 1 << 20  # larger payloads take paho's path (its size check included)
_PUBACK_REASONS: dict[int, ReasonCode] = {0: LoopClient._ACKED}  # one shared object per code; never changed


def _puback_reason(code: int) -> ReasonCode | None:
    """The shared reason ``code`` of a PUBACK, or None when a PUBACK cannot carry it."""
    reason = _PUBACK_REASONS.get(code)
    if reason is None:
        try:
            reason = ReasonCode(PacketTypes.PUBACK, identifier=code)
        except (KeyError, ValueError):
            return None
        _PUBACK_REASONS[code] = reason
    return reason


class _Info(paho.MQTTMessageInfo):
    """paho's message info with one condition shared by all: ``wait_for_publish`` still works (everyone is
    woken, each checks its own flag), without a lock and a condition made per message."""

    __slots__ = ()
    _SHARED = threading.Condition()

    def __init__(self, mid: int):  # noqa: D107 - paho's fields, the condition shared
        self.mid, self._published, self._condition = mid, False, self._SHARED
        self.rc, self._iterpos = MQTTErrorCode.MQTT_ERR_SUCCESS, 0

    def _set_as_published(self) -> None:
        with self._condition:
            self._published = True
            self._condition.notify_all()


class _Message(paho.MQTTMessage):
    """A QoS 1 message in flight, as paho's ``publish`` leaves it (state: waiting for its PUBACK)."""

    __slots__ = ()

    def __init__(self, mid: int, topic: bytes, payload: bytes, retain: bool, properties: Properties | None):
        self.timestamp, self.state, self.dup, self.mid, self._topic = time.monotonic(), paho.mqtt_ms_wait_for_puback, \
            False, mid, topic
        self.payload, self.qos, self.retain, self.info, self.properties = payload, 1, retain, _Info(mid), properties


def _remaining_length(packet: bytearray, length: int) -> None:
    """MQTT's variable-length integer (at most 268 435 455: the payload limit keeps below it)."""
    while True:
        byte, length = length & 0x7F, length >> 7
        packet.append(byte | 0x80 if length else byte)
        if not length:
            return


def _joinable(packet: dict) -> bool:
    """Written whole yet (``pos`` 0), and nothing paho does once it is written (QoS 0 PUBLISH, DISCONNECT)."""
    kind = packet["command"] & 0xF0
    return packet["pos"] == 0 and kind != DISCONNECT and not (kind == PUBLISH and packet["qos"] == 0)


class LoopDriver:
    """Runs ``client``'s network I/O on ``loop``. ``on_connect_fail()`` is called after each failed attempt."""

    def __init__(self, client: paho.Client, loop: asyncio.AbstractEventLoop, on_connect_fail: Callable[[], None],
                 min_delay: float = 1.0, max_delay: float = 30.0):
        self.client, self.loop = client, loop
        self._on_connect_fail = on_connect_fail
        self.min_delay, self.max_delay = min_delay, max_delay
        self._delay = min_delay
        self._sock: socket.socket | None = None  # registered with the loop (loop thread only)
        self._stopping = False
        self._closed = threading.Event()  # no socket open
        self._closed.set()
        self._tasks: set[asyncio.Task] = set()
        self._connecting: asyncio.Task | None = None
        self.last_error: str | None = None  # why the last attempt failed (refused, TLS verification, DNS)
        self._loop_thread = threading.get_ident()  # built on the loop (the sink's start)
        self._flush_due = False  # a write of what this loop iteration published is scheduled
        self._write_watched = False  # the socket is watched for writability (loop thread only)
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write

    def start(self) -> None:
        """Connect in the background (the client was set up with ``connect_async``), and keep connected."""
        self._connect_after(0.0)
        self._spawn(self._misc_loop())

    def connected(self) -> None:
        """The broker accepted the connection: the next failure waits the shortest delay again."""
        self._delay = self.min_delay

    def close(self, timeout: float) -> bool:
        """A clean DISCONNECT (the broker discards the will), then no more reconnecting. Blocks up to
        ``timeout`` for the loop to send it: call from a worker thread (``asyncio.to_thread``)."""
        self._stopping = True
        self.client.disconnect()
        sent = self._closed.wait(timeout)
        self._call_on_loop(self._stop_tasks)
        return sent

    def _stop_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._unwatch()

    # ---- connecting ----

    def _spawn(self, coro) -> asyncio.Task:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _connect_after(self, wait: float) -> None:
        if self._connecting is None or self._connecting.done():
            self._connecting = self._spawn(self._connect_loop(wait))

    async def _connect_loop(self, wait: float) -> None:
        await asyncio.sleep(wait)
        while not self._stopping:
            try:
                await asyncio.to_thread(self.client.reconnect)
                return
            except (OSError, ssl.SSLError, ValueError) as exc:  # refused, unreachable, DNS, TLS handshake
                log.debug("MQTT: connecting failed: %s", exc)
                self.last_error = str(exc) or type(exc).__name__
            if self._stopping:
                return
            self._on_connect_fail()
            await asyncio.sleep(self._next_delay())

    def _next_delay(self) -> float:
        delay, self._delay = self._delay, min(self._delay * 2, self.max_delay)
        return delay

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(MISC_INTERVAL_S)
            if self._sock is not None:
                self.client.loop_misc()

    # ---- paho's socket callbacks (any thread) ----

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _call_on_loop(self, fn: Callable, *args) -> None:
        if self._on_loop_thread():
            fn(*args)
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def _socket_open(self, client, userdata, sock) -> None:
        self._closed.clear()
        self._call_on_loop(self._watch, sock)

    def _socket_close(self, client, userdata, sock) -> None:
        self._call_on_loop(self._lost, sock)

    def _register_write(self, client, userdata, sock) -> None:
        """paho has bytes to send. On the loop thread they are written once this loop iteration is done, so
        what the iteration published goes out together (LoopClient joins it into one send); only what the
        socket does not take waits for writability."""
        if self._on_loop_thread():
            if not self._flush_due:
                self._flush_due = True
                self.loop.call_soon(self._flush)
            return
        self._call_on_loop(self._watch_write, sock)

    def _flush(self) -> None:
        self._flush_due = False
        sock = self._sock
        if sock is None:
            return
        self.client.loop_write()
        if self.client.want_write():
            self._watch_write(sock)

    def _unregister_write(self, client, userdata, sock) -> None:
        self._call_on_loop(self._unwatch_write, sock)

    # ---- the loop thread ----

    def _watch(self, sock) -> None:
        if sock.fileno() == -1:  # closed before the loop got to it: _lost saw to it
            return
        self._unwatch()
        self._sock = sock
        self.loop.add_reader(sock, self._readable)
        if self.client.want_write():
            self._watch_write(sock)

    def _readable(self) -> None:
        read = getattr(self.client, "read_available", self.client.loop_read)  # LoopClient: one recv per wake-up
        rc = read()
        # TLS: bytes already decrypted in the SSL object do not wake the selector; read them now.
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and isinstance(self._sock, ssl.SSLSocket) and self._sock.pending():
            rc = read()

    def _watch_write(self, sock) -> None:
        if sock is self._sock:
            self.loop.add_writer(sock, self.client.loop_write)
            self._write_watched = True

    def _unwatch_write(self, sock) -> None:
        if sock is self._sock and self._write_watched:  # paho says so after every write: mostly nothing to undo
            self.loop.remove_writer(sock)
            self._write_watched = False

    def _unwatch(self) -> None:
        if self._sock is not None:
            self.loop.remove_reader(self._sock)
            self.loop.remove_writer(self._sock)
            self._sock, self._write_watched = None, False

    def _lost(self, sock) -> None:
        if sock is not self._sock and self._sock is not None:
            return  # an older socket, already replaced
        self._unwatch()
        self._closed.set()
        if not self._stopping:
            self._connect_after(self._next_delay())
