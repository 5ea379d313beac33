"""``historian.api: mqtt``: the historian sink's lines go to the surface broker, ``minegw ingest`` writes them.

The wire (docs/historian.md, "Over MQTT"; shared with gateway/surface/ingest.py):

- topic ``{mqtt.topic_prefix}/{site}/gateway/{gateway}/historian``, QoS 1, not retained, MQTT 5,
  client id ``{gateway}-historian``; the surface ACL lets this gateway's user write that topic only;
- payload: InfluxDB line protocol, exactly the v1 writer's body before gzip (UTF-8 lines joined
  by "\\n"), at most :data:`MAX_PAYLOAD` bytes: a batch is split at line boundaries;
- a batch is written (the durable buffer drops it) only once every message of it got a PUBACK
  with a reason code below 0x80. No connection, a lost one, no PUBACK for ``timeout`` s →
  :class:`RetryableError` (the sink keeps the lines and backs off); PUBACK 0x87 Not authorized,
  or a connection refused for the credentials → :class:`AuthError`, as InfluxDB's 401/403;
  a single line over the limit → :class:`DataError` (the sink dead-letters that line alone).

paho runs on the asyncio loop (:class:`gateway.mqtt.aioloop.LoopDriver`), no thread of its own;
the connection is opened at the first write or ping and kept, reconnecting after a loss.
Messages a lost connection left without a PUBACK are dropped from paho (it would re-send them
on reconnection): the sink retries the whole batch, so nothing is sent twice by both.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from contextlib import suppress
from urllib.parse import urlsplit

from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import HistorianConfig, MqttConfig, SiteConfig, Tls
from gateway.contract import Topics
from gateway.historian.errors import AuthError, DataError, RetryableError
from gateway.mqtt.aioloop import LoopDriver
from gateway.mqtt.client import make_client

CREDENTIALS_REFUSED = {0x86, 0x87}  # CONNACK: bad user name or password, not authorized (3.1.1: 4, 5)

log = logging.getLogger(__name__)

# The wire's limit per message, less room for the PUBLISH packet's own header (topic, packet id,
# properties): every packet then fits the surface broker's max_packet_size 262144.
MAX_PAYLOAD = 256 * 1024 - 1024
NOT_AUTHORIZED = 0x87
RECONNECT_S = (1.0, 10.0)  # the driver's delays between attempts: back within 10 s of the broker


def historian_topic(site: SiteConfig) -> str:
    """Where this gateway publishes its historian lines."""
    prefix = (site.mqtt or MqttConfig()).topic_prefix
    return Topics(prefix, site.site.id).historian(site.site.gateway_id)


def split_payloads(lines: list[str], limit: int = MAX_PAYLOAD) -> list[bytes]:
    """``lines`` joined by "\\n" in messages of at most ``limit`` bytes, split at line boundaries.
    DataError for a single line longer than ``limit``, before anything is sent."""
    payloads: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        data = line.encode()
        if len(data) > limit:
            raise DataError(f"a line of {len(data)} bytes is over the {limit} bytes of a historian message: "
                            f"{line[:120]}…")
        if chunk and size + 1 + len(data) > limit:
            payloads.append(b"\n".join(chunk))
            chunk, size = [], 0
        size += len(data) + (1 if chunk else 0)
        chunk.append(data)
    if chunk:
        payloads.append(b"\n".join(chunk))
    return payloads


def broker_config(cfg: HistorianConfig) -> MqttConfig:
    """The MQTT settings for ``historian.url`` (mqtts: certificate and host name always verified)."""
    parts = urlsplit(cfg.url)
    tls = parts.scheme == "mqtts"
    return MqttConfig(host=parts.hostname, port=parts.port or (8883 if tls else 1883), protocol="5",
                      username=cfg.username, password=cfg.password,
                      tls=Tls(ca_file=cfg.ca_file) if tls else None)


class MqttHistorianWriter:
    """A :class:`gateway.historian.influx.HistorianWriter` publishing to the gateway's historian topic."""

    def __init__(self, cfg: HistorianConfig, site: SiteConfig, client_id: str | None = None):
        self.cfg = cfg
        self.topic = historian_topic(site)
        self.client_id = client_id or f"{site.site.gateway_id}-historian"
        self._mqtt = broker_config(cfg)
        self._who = f"user {cfg.username!r}" if cfg.username else "no user"
        self._client = make_client(self._mqtt, self.client_id)
        self._client.suppress_exceptions = True  # a bug in a callback is logged, the connection lives on
        for name in ("on_connect", "on_disconnect", "on_publish"):
            setattr(self._client, name, getattr(self, f"_{name}"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._driver: LoopDriver | None = None
        self._changed: asyncio.Event | None = None  # set on every connect, refusal, failed attempt or loss
        self._acks: dict[int, asyncio.Future] = {}  # mid -> its PUBACK's reason code
        self._connected = False
        self._refused: str | None = None  # the broker's reason for refusing the last connection
        self._down = "not connected yet"
        self._max_payload = MAX_PAYLOAD

    # ---- HistorianWriter ----

    async def write(self, lines: list[str]) -> None:
        if not lines:
            return
        payloads = split_payloads(lines, self._max_payload)
        await self._connection()
        await self._publish(payloads)

    async def ping(self) -> str:
        """Connected to the broker (waiting up to ``timeout``), or RetryableError/AuthError."""
        await self._connection()
        return f"MQTT 5 broker {self._mqtt.host}:{self._mqtt.port}"

    async def probe(self) -> None:
        """An empty message (no line: nothing for the ingest to write) on the historian topic, acknowledged:
        the broker lets this user publish there (``minegw historian check``)."""
        await self._connection()
        await self._publish([b""])

    async def close(self) -> None:
        if self._driver is not None:
            await asyncio.to_thread(self._driver.close, 2.0)
            self._driver = None
        self._fail_waiting(RetryableError(f"{self._where()}: the writer was closed"))

    # ---- connecting ----

    def _where(self) -> str:
        return f"MQTT broker {self.cfg.url}"

    def _start(self) -> None:
        if self._driver is not None:
            return
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        self._changed = asyncio.Event()
        self._client.connect_async(self._mqtt.host, self._mqtt.port, self._mqtt.keepalive)
        self._driver = LoopDriver(self._client, self._loop, self._connect_failed, *RECONNECT_S)
        self._driver.start()
        log.info("Historian: publishing to %s, topic %s, as %s (client id %s)", self.cfg.url, self.topic,
                 self._who, self.client_id)

    async def _connection(self) -> None:
        """Return once connected; AuthError while the broker refuses the credentials, RetryableError
        when no connection came within ``timeout``."""
        self._start()
        deadline = self._loop.time() + self.cfg.timeout
        while not self._connected:
            if self._refused:
                raise AuthError(f"{self._where()} refused the connection of {self._who}: {self._refused}")
            left = deadline - self._loop.time()
            if left <= 0:
                raise RetryableError(f"cannot reach {self._where()} ({self._down})")
            self._changed.clear()
            with suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._changed.wait()

    # ---- publishing ----

    async def _publish(self, payloads: list[bytes]) -> None:
        futures: dict[int, asyncio.Future] = {}
        try:
            for payload in payloads:
                info = self._client.publish(self.topic, payload, qos=1, retain=False)
                if info.rc:  # the connection went meanwhile
                    self._client.drop_out_messages()
                    raise RetryableError(f"{self._where()}: connection lost while publishing ({self._down})")
                futures[info.mid] = self._acks[info.mid] = self._loop.create_future()
            await self._until_acknowledged(futures)
        finally:
            for mid, future in futures.items():  # a late PUBACK finds nothing
                future.cancel()
                self._acks.pop(mid, None)
        self._check([future.result() for future in futures.values()])

    async def _until_acknowledged(self, futures: dict[int, asyncio.Future]) -> None:
        """Every PUBACK, or RetryableError once none came for ``timeout`` (progress, not a deadline for the
        whole batch: 10 000 lines are ~17 MB, longer than ``timeout`` on a slow uplink) or the connection went."""
        pending = set(futures.values())
        while pending:
            done, pending = await asyncio.wait(pending, timeout=self.cfg.timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                raise RetryableError(f"{self._where()} acknowledged no message for {self.cfg.timeout:g} s "
                                     f"({len(pending)} of {len(futures)} waiting)")
            for future in done:
                future.result()  # the connection's loss, raised

    def _check(self, reasons: list[ReasonCode]) -> None:
        refused = next((r for r in reasons if r.is_failure), None)
        if refused is None:
            return
        text = f"{self._where()} refused {self._who} publishing {self.topic} (PUBACK 0x{refused.value:02x} {refused})"
        if refused.value == NOT_AUTHORIZED:
            raise AuthError(f"{text}: the surface ACL must grant it (minegw deploy acl surface)")
        raise RetryableError(text)

    def _fail_waiting(self, error: Exception) -> None:
        acks, self._acks = self._acks, {}
        for future in acks.values():
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a future nobody awaits any more logs nothing

    # ---- paho callbacks (the loop thread: LoopDriver; a clean close may call from another) ----

    def _on_loop(self, fn: Callable, *args) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client, userdata, flags, reason: ReasonCode, properties) -> None:
        client.drop_out_messages()  # before paho re-sends them: the sink retries their batch itself
        if reason.is_failure:  # credentials refused: AuthError; busy, unavailable, quota: retried
            refused = reason.value in CREDENTIALS_REFUSED
            self._on_loop(self._set_state, False, None if refused else f"refused: {reason}",
                          str(reason) if refused else None)
            return
        if self._driver is not None:
            self._driver.connected()
        limit = getattr(properties, "MaximumPacketSize", None)
        if limit:
            self._max_payload = min(MAX_PAYLOAD, limit - 1024)
        self._on_loop(self._set_state, True, None, None)

    def _on_disconnect(self, client, userdata, flags, reason: ReasonCode, properties) -> None:
        client.drop_out_messages()
        self._on_loop(self._lost, f"connection lost: {reason}")

    def _connect_failed(self) -> None:
        why = self._driver.last_error if self._driver is not None else None
        self._on_loop(self._set_state, False, why or "connection refused or no answer", None)

    def _on_publish(self, client, userdata, mid, reason: ReasonCode, properties) -> None:
        self._on_loop(self._acked, mid, reason)

    # ---- on the loop ----

    def _set_state(self, connected: bool, down: str | None, refused: str | None) -> None:
        self._connected, self._refused = connected, refused
        if down or refused:
            self._down = down or f"refused: {refused}"
        if self._changed is not None:
            self._changed.set()

    def _lost(self, why: str) -> None:
        """The connection ended (a refused one too: its refusal stays the reason until the next attempt)."""
        self._connected, self._down = False, why
        self._changed.set()
        self._fail_waiting(RetryableError(f"{self._where()}: {why}"))

    def _acked(self, mid: int, reason: ReasonCode) -> None:
        future = self._acks.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(reason)
