"""Historian ingest on the surface: MQTT (shared subscription) → historian schema → durable buffer → InfluxDB.

``minegw ingest CONFIG`` runs one worker. Workers of one ``ingest.group`` share an MQTT 5
shared subscription, so the broker hands each message to exactly one of them:

    $share/{group}/{prefix}/{site}/+/+/data            readings        → measurement <kind>
    $share/{group}/{prefix}/{site}/+/+/state           device states   → device_state
    $share/{group}/{prefix}/{site}/gateway/+/alarm/+   gateway alarms  → gateway_alarm
    $share/{group}/{prefix}/{site}/gateway/+/status    gateway up/down → gateway_status
    $share/{group}/{prefix}/{site}/bridge/+            uplink up/down  → uplink_status
    $share/{group}/{prefix}/{site}/gateway/+/historian the gateways' own lines, checked (:mod:`.lines`)

(``site`` is ``+`` unless ``ingest.sites`` names some; the historian topics are those of the sites in
``writers:``, none without it.) A new gateway needs no change
here; more throughput needs one more worker (its own ``ingest.id`` and buffer file).

Each message is validated with the MQTT contract's models (:mod:`gateway.contract`),
checked against its topic (the broker's ACL vouches for the topic, nothing vouches for
the payload), turned into the historian's lines by :mod:`gateway.historian.lineprotocol`
(the same lines the gateway's own historian sink writes, so both paths may run at once:
InfluxDB keeps one point), and handed to the gateway's :class:`HistorianSink` (durable
SQLite buffer, live and back-fill lanes, retries, dead letters; docs/historian.md).

Delivery: messages are acknowledged (PUBACK) only once their lines are committed to the
buffer file, and the worker keeps its MQTT session for ``ingest.session_expiry`` seconds,
so a worker killed at any moment loses nothing: the broker re-sends what was not
acknowledged when it comes back (a re-sent message overwrites its own point). A clean stop
unsubscribes, takes what the broker had already sent, lets the buffer drain for up to
``ingest.stop_timeout`` seconds and ends the session, so the broker stops keeping
messages for a worker that is gone for good.

A malformed or hostile message is refused: counted (``refused`` in the health), logged
(throttled, with the reason), acknowledged (never re-sent), and never stops the worker.

Threads: paho's network thread validates and converts (``on_message``) and appends to the
sink's inbox; the asyncio loop commits (:class:`_IngestSink`), acknowledges and drains.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import re
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import Field, ValidationError, model_validator

from gateway.config import (ID_PATTERN, Area, ConfigError, HistorianConfig, MqttConfig, Site, SiteConfig, Strict,
                            error_location, error_message, expand_env, read_config_file)
from gateway.core.errors import UserError
from gateway.historian.sink import HistorianSink, Row
from gateway.core.logutil import ThrottledWarning
from gateway.surface.convert import Converter
from gateway.surface.compact import Refused, UnknownSchema
from gateway.surface.lines import Scopes, Writers
from gateway.mqtt.client import make_client  # the gateway's client factory: credentials, TLS, logging

log = logging.getLogger(__name__)



# ---- configuration ----------------------------------------------------------------------------

class IngestSettings(Strict):
    id: str = Field("ingest-1", pattern=ID_PATTERN,
                    description="this worker: MQTT client id minegw-ingest-<id>, health tag")
    group: str = Field("minegw-ingest", pattern=ID_PATTERN, description="shared-subscription group: workers of one "
                                                                   "group share the messages")
    sites: list[str] = Field(["+"], min_length=1, description="site ids to ingest; '+' means every site")
    site: str = Field("surface", pattern=ID_PATTERN, description="site tag of this worker's own gateway_health points")
    session_expiry: int = Field(3600, ge=0, le=7 * 86400, description="seconds the broker keeps a crashed "
                                                                      "worker's session and queues its share")
    receive_maximum: int = Field(1000, ge=1, le=65535, description="messages in flight to this worker (not yet "
                                                                   "acknowledged); the broker's "
                                                                   "max_inflight_messages caps it")
    max_payload: int = Field(1_048_576, ge=1024, description="bytes; larger messages are refused")
    schema_wait: float = Field(10.0, ge=0, le=300, description="seconds a compact data message of an unknown "
                                                               "schema version is held (unacknowledged) for its "
                                                               "schema message, then refused")
    schema_wait_messages: int = Field(10_000, ge=0, le=1_000_000, description="messages held so at most; the "
                                                                              "oldest are refused beyond")
    stop_timeout: float = Field(10.0, ge=0, le=300, description="seconds a clean stop waits for the buffer to "
                                                                "reach InfluxDB")
    lines_only: bool = Field(False, description="store the areas and gateways of writers from their historian "
                                                "lines only, not also from their data, state and gateway alarm "
                                                "messages: half the writes, but nothing of a gateway is stored "
                                                "while it cannot publish its lines")

    @model_validator(mode="after")
    def _sites(self) -> "IngestSettings":
        bad = [s for s in self.sites if s != "+" and not re.match(ID_PATTERN, s)]
        if bad:
            raise ValueError(f"sites: {', '.join(map(repr, bad))} is neither a site id nor '+'")
        return self


class IngestConfig(Strict):
    """The file behind ``minegw ingest``: ``ingest:``, ``mqtt:`` (the surface broker), ``historian:``."""

    ingest: IngestSettings = IngestSettings()
    mqtt: MqttConfig
    historian: HistorianConfig
    writers: Writers = Field({}, description="site -> gateway id -> {areas, rings}: the gateways whose historian "
                                             "lines are taken, and what each may write (minegw deploy writers)")

    @model_validator(mode="after")
    def _mqtt5(self) -> "IngestConfig":
        if self.mqtt.protocol != "5":
            raise ValueError('mqtt.protocol: ingest needs MQTT 5 ("5"): shared subscriptions and session expiry')
        return self

    @model_validator(mode="after")
    def _writers(self) -> IngestConfig:
        ids = [("site", site) for site in self.writers] + [
            ("gateway", gw) for gateways in self.writers.values() for gw in gateways] + [
            (what, name) for gateways in self.writers.values() for scope in gateways.values()
            for what, names in (("area", scope.areas), ("ring", scope.rings)) for name in names]
        bad = [f"{what} {name!r}" for what, name in ids if not re.match(ID_PATTERN, name)]
        if bad:
            raise ValueError(f"writers: {', '.join(bad)}: not an id (letters, digits, - and _)")
        if self.ingest.site in self.writers:
            raise ValueError(f"writers: {self.ingest.site!r} is ingest.site, the site of the workers' own health")
        if "+" not in self.ingest.sites and (others := sorted(set(self.writers) - set(self.ingest.sites))):
            raise ValueError(f"writers: {', '.join(others)} not in ingest.sites")
        return self


def parse_ingest(data: Any, path: str | Path = "<ingest>") -> IngestConfig:
    """Validate an ingest file's content (``${ENV}`` expanded, as in site files); ConfigError lists every problem."""
    if not isinstance(data, dict):
        raise ConfigError(path, ["the file must hold a mapping (ingest:, mqtt:, historian:)"])
    problems: list[str] = []
    data = expand_env(data, "", problems)
    if not problems:
        try:
            return IngestConfig.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = error_location(err["loc"])
                problems += [f"{loc}: {line}" if loc else line for line in error_message(err).splitlines()]
    raise ConfigError(path, problems)


def load_ingest(path: str | Path) -> IngestConfig:
    return parse_ingest(read_config_file(path), path)


# ---- the sink: the gateway's historian sink, acknowledging after each commit -----------------

@dataclass(frozen=True)
class _Ack:
    connection: int  # which MQTT connection delivered it: a packet id means nothing on another one
    mid: int
    qos: int


class _IngestSink(HistorianSink):
    """:class:`HistorianSink` fed from MQTT: rows come with the acknowledgement of their message, which is
    sent once they are committed to the buffer file (not before: a kill -9 then loses nothing).

    Extends the sink's commit step (``commit``, fed with ``put_lines``); everything after the buffer
    (drain, retries, dead letters, disk budget, health line) is the sink's own.
    """

    def __init__(self, cfg: HistorianConfig, site: SiteConfig, acknowledge: Callable[[list[_Ack]], None],
                 counters: Callable[[], dict[str, int]], writer=None):
        super().__init__(cfg, site, writer=writer)
        self._inbox: deque[tuple[list[Row], _Ack]] = deque()  # appended by paho's thread, taken by the loop
        self._to_ack: list[_Ack] = []  # messages whose rows are queued for the next commit
        self._acknowledge = acknowledge
        self._counters = counters

    writes_heartbeat = False  # not a gateway: the gateways' own status comes through MQTT (gateway_status)
    SETTLE_S, COMMIT_SPACING = 0, 1.0  # messages of many gateways never pause: a commit every commit_interval

    def put_gateway_status(self, online: bool, reason: str) -> None:
        """Not a gateway (see ``writes_heartbeat``)."""

    def put(self, rows: list[Row], ack: _Ack, events: list[Row] = ()) -> None:
        """Any thread. An empty ``rows`` (a refused message) is acknowledged with the next commit, in order;
        ``events`` are dropped last when the buffer is full (states, alarms, audits: see ``put_lines``)."""
        self._inbox.append((rows, events, ack))

    async def commit(self) -> bool:
        while self._inbox:
            rows, events, ack = self._inbox.popleft()
            self.put_lines(rows, events)
            self._to_ack.append(ack)
        acks, self._to_ack = self._to_ack, []
        if not await super().commit():  # the buffer file refused the commit: the rows wait in memory
            self._to_ack[:0] = acks
            return False
        if acks:
            self._acknowledge(acks)
        return True

    @property
    def unacknowledged(self) -> int:
        return len(self._inbox) + len(self._to_ack)

    def health(self) -> dict[str, int | float | bool]:
        return {**super().health(), **self._counters()}


# ---- compact data waiting for its schema ------------------------------------------------------

@dataclass(frozen=True)
class _Waiting:
    arrived: float  # time.monotonic()
    topic: str
    payload: bytes
    ack: _Ack
    unknown: UnknownSchema


class _Held:
    """Compact data messages of a schema version not seen yet, unacknowledged (the broker keeps them
    for us) until their device's schema message comes, for at most ``seconds`` and ``limit`` messages."""

    def __init__(self, seconds: float, limit: int):
        self.seconds, self.limit = seconds, limit
        self._lock = threading.Lock()  # paho's thread holds and releases, the loop expires
        self._items: deque[_Waiting] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: _Waiting) -> None:
        with self._lock:
            self._items.append(item)

    def take(self, device: tuple[str, str, str]) -> list[_Waiting]:
        """Those of ``device``, in arrival order, to try again."""
        with self._lock:
            taken = [w for w in self._items if w.unknown.device == device]
            if taken:
                self._items = deque(w for w in self._items if w.unknown.device != device)
            return taken

    def expired(self, now: float) -> list[_Waiting]:
        with self._lock:
            out = []
            while self._items and (len(self._items) > self.limit or now - self._items[0].arrived >= self.seconds):
                out.append(self._items.popleft())
            return out

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


# ---- the worker -------------------------------------------------------------------------------

class IngestWorker:
    """One ingest worker: ``await start()``, ``await stop()``; ``health()`` for its counters."""

    QUIET_S = 0.3  # on stop: no message for this long after UNSUBACK means the broker has sent us everything
    QUIET_MAX_S = 5.0

    def __init__(self, cfg: IngestConfig, writer=None):
        self.cfg = cfg
        s = cfg.ingest
        self.client_id = cfg.mqtt.client_id or f"minegw-ingest-{s.id}"
        # Schemas first, not shared (the broker gives retained messages to plain subscriptions only) and at
        # QoS 0 (retained, so sent again at every subscription; never stuck behind held data in the window).
        self.topics = [f"{cfg.mqtt.topic_prefix}/{site}/+/+/schema" for site in s.sites] + [
            f"$share/{s.group}/{cfg.mqtt.topic_prefix}/{site}/{tail}"
            for site in s.sites
            for tail in ("+/+/data", "+/+/state", "gateway/+/alarm/+", "gateway/+/status", "bridge/+")]
        self.scopes = Scopes(cfg.mqtt.topic_prefix, cfg.writers)
        self.topics += [f"$share/{s.group}/{topic}" for topic in self.scopes.topics(list(cfg.writers))]
        self.converter = Converter(cfg.mqtt.topic_prefix, s.max_payload)
        self.received = 0
        self.refusals: Counter[str] = Counter()
        self.historian_lines = self.refused_lines = self.covered = 0  # the gateways' lines; data they cover
        self._held = _Held(s.schema_wait, s.schema_wait_messages)
        self._refusing = threading.Lock()  # refusals come from paho's thread and from the loop (expired)
        site = SiteConfig(site=Site(id=s.site, gateway_id=s.id), areas=[Area(id="ingest", kind="surface")])
        self.sink = _IngestSink(cfg.historian, site, self._acknowledge, self._counters, writer=writer)
        self._client = make_client(cfg.mqtt, self.client_id)
        self._client.manual_ack_set(True)
        self._client.suppress_exceptions = True  # a bug in a callback is logged; the network thread lives on
        self._client.reconnect_delay_set(1, 30)
        for name in ("on_connect", "on_connect_fail", "on_disconnect", "on_message", "on_subscribe",
                     "on_unsubscribe"):
            setattr(self._client, name, getattr(self, f"_{name}"))
        self._connection = 0  # bumped on every CONNACK
        self._connected = False
        self._leaving = False  # stop() has unsubscribed: do not subscribe again on a reconnection
        self._last_message = 0.0
        self.subscribed = threading.Event()  # set at each SUBACK: the broker routes our share to us
        self._unsubscribed = threading.Event()
        self._refused_log = ThrottledWarning(log, "Ingest: refused {count} message(s) since the last warning, "
                                                  "e.g. {detail}")
        self._refused_lines_log = ThrottledWarning(log, "Ingest: refused {count} historian line(s) since the last "
                                                        "warning, e.g. {detail}")
        self._last_problem: str | None = None
        self._lockfile = None
        self._started = False

    # ---- lifecycle ----

    async def start(self) -> None:
        self._lock_buffer()
        try:
            await self.sink.start()
        except (OSError, sqlite3.Error) as exc:
            self._unlock_buffer()
            raise UserError(f"cannot open the buffer {self.cfg.historian.buffer.path}: {exc}") from None
        self._started = True
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.ingest.session_expiry
        props.ReceiveMaximum = self.cfg.ingest.receive_maximum
        self._client.connect_async(self.cfg.mqtt.host, self.cfg.mqtt.port, self.cfg.mqtt.keepalive,
                                   clean_start=False, properties=props)
        self._client.loop_start()
        self._expiry = asyncio.create_task(self._expire_loop(), name="ingest-expire")
        log.info("Ingest %s: %s at %s:%d, group %s, sites %s", self.cfg.ingest.id, self.client_id,
                 self.cfg.mqtt.host, self.cfg.mqtt.port, self.cfg.ingest.group, ", ".join(self.cfg.ingest.sites))

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._leaving = True
        self._expiry.cancel()
        if self._connected:
            self._unsubscribed.clear()
            self._client.unsubscribe(self.topics)
            await asyncio.to_thread(self._unsubscribed.wait, 3.0)
            await self._until_quiet()
        # Let the buffer reach InfluxDB (bounded), with the final counters: a worker stopped for good leaves
        # nothing behind. What is left stays in the buffer file for the next start.
        committed = self.sink.buffered
        self.sink.put_health()
        deadline = time.monotonic() + self.cfg.ingest.stop_timeout
        while time.monotonic() < deadline and not self._drained(committed):
            await asyncio.sleep(0.05)
        depth = self.sink.health()["depth"]
        await self.sink.stop()  # the last commit acknowledges what it committed
        if depth:
            log.warning("Ingest %s: stopped with about %d lines not yet in InfluxDB; they stay in %s and go out at "
                        "the next start", self.cfg.ingest.id, depth, self.cfg.historian.buffer.path)
        self._refused_log.flush(force=True)
        self._refused_lines_log.flush(force=True)
        props = None
        if self.sink.unacknowledged == 0 and not self._held:  # everything received is on disk: end the session, nothing is kept for us
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)
        await asyncio.to_thread(self._client.loop_stop)
        self._unlock_buffer()
        log.info("Ingest %s stopped: %s", self.cfg.ingest.id, self._counters())

    def _drained(self, committed_before: int) -> bool:
        sink = self.sink
        return (sink.buffered > committed_before and not sink.unacknowledged and sink.health()["depth"] == 0
                and sink.written + sink.dead_lettered >= sink.buffered)

    async def _until_quiet(self) -> None:
        start = time.monotonic()
        while time.monotonic() - start < self.QUIET_MAX_S:
            if time.monotonic() - self._last_message >= self.QUIET_S:
                return
            await asyncio.sleep(0.05)

    def _lock_buffer(self) -> None:
        """One worker per buffer file: two would send each other's batches and acknowledge each other's rows."""
        path = Path(f"{self.cfg.historian.buffer.path}.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lockfile = open(path, "w")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise UserError(f"another ingest worker uses {self.cfg.historian.buffer.path}: give each worker its own "
                            "historian.buffer.path (e.g. with ${MINEGW_INGESTID_PATTERN} in it)") from None

    def _unlock_buffer(self) -> None:
        if self._lockfile is not None:
            self._lockfile.close()  # closing releases the lock
            self._lockfile = None

    # ---- counters ----

    def _counters(self) -> dict[str, int]:
        return {"received": self.received, "refused": sum(self.refusals.values()), "held": len(self._held),
                "schemas": len(self.converter.schemas), "historian_lines": self.historian_lines,
                "refused_lines": self.refused_lines, "covered": self.covered}

    def health(self) -> dict[str, int | float | bool]:
        return {**self.sink.health(), "mqtt_connected": self._connected}

    # ---- paho callbacks (network thread) ----

    def _on_connect(self, client, userdata, flags, reason: ReasonCode, properties) -> None:
        if reason.is_failure:
            self._problem(f"MQTT broker {self.cfg.mqtt.host}:{self.cfg.mqtt.port} refused the connection: {reason}")
            return
        self._connection += 1  # only this thread writes it
        self._connected = True
        self._held.clear()  # unacknowledged: the broker sends them again on this connection
        self._last_problem = None
        log.info("Ingest %s: connected (session %s)", self.cfg.ingest.id,
                 "resumed" if flags.session_present else "new")
        if not self._leaving:
            client.subscribe([(topic, 0 if topic.endswith("/schema") else self.cfg.mqtt.qos)
                              for topic in self.topics])

    def _on_connect_fail(self, client, userdata) -> None:
        self._problem(f"cannot reach the MQTT broker at {self.cfg.mqtt.host}:{self.cfg.mqtt.port}; retrying")

    def _on_disconnect(self, client, userdata, flags, reason: ReasonCode, properties) -> None:
        was, self._connected = self._connected, False
        if was and not self._leaving:
            log.warning("Ingest %s: lost the MQTT connection (%s); reconnecting, the broker keeps our messages",
                        self.cfg.ingest.id, reason)

    def _problem(self, text: str) -> None:
        if text != self._last_problem:  # each distinct problem once, until it changes or we connect
            self._last_problem = text
            log.error("Ingest %s: %s", self.cfg.ingest.id, text)

    def _on_subscribe(self, client, userdata, mid, reasons: list[ReasonCode], properties) -> None:
        refused = [f"{topic} ({r})" for topic, r in zip(self.topics, reasons) if r.is_failure]
        if refused:
            log.error("Ingest %s: the broker refused the subscription to %s", self.cfg.ingest.id, ", ".join(refused))
        self.subscribed.set()

    def _on_unsubscribe(self, client, userdata, mid, reasons, properties) -> None:
        self._unsubscribed.set()

    def _on_message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        self._last_message = now = time.monotonic()
        if topic.endswith("/schema"):
            self._learn(topic, msg.payload)
            return
        self.received += 1
        ack = _Ack(self._connection, msg.mid, msg.qos)
        if topic.endswith("/historian"):
            self._lines(topic, msg.payload, ack)
        elif self.cfg.ingest.lines_only and self.scopes.covers(topic):
            self.covered += 1  # its writer's lines carry the same points
            self.sink.put([], ack)
        else:
            self._ingest(topic, msg.payload, ack, now)

    def _lines(self, topic: str, payload: bytes, ack: _Ack) -> None:
        """A gateway's historian lines: each checked against its scope; the good ones kept, the others named."""
        site, gateway, checker = self.scopes.of(topic)
        readings: list[Row] = []
        events: list[Row] = []
        if checker is None:
            self._refuse("writer", f"{topic}: gateway {gateway!r} of site {site!r} is not in writers (ingest.yaml, "
                                   "minegw deploy writers): every line refused")
        elif len(payload) > self.cfg.ingest.max_payload:
            self._refuse("too-large", f"{topic}: {len(payload)} bytes > {self.cfg.ingest.max_payload}")
        else:
            checked = checker.check(payload)
            readings, events = checked.readings, checked.events
            self.historian_lines += len(readings) + len(events)
            if checked.refused:
                number, why = checked.refused[0]
                with self._refusing:
                    self.refused_lines += len(checked.refused)
                    self._refused_lines_log.add(len(checked.refused), f"gateway {gateway} {why[:200]}: line "
                                                                      f"{number} of a message on {topic}")
        self.sink.put(readings, ack, events)

    def _ingest(self, topic: str, payload: bytes, ack: _Ack, arrived: float) -> None:
        try:
            rows = self.converter.convert(topic, payload)
        except UnknownSchema as exc:  # unacknowledged until its schema comes, or refused (_expire_loop)
            self._held.add(_Waiting(arrived, topic, payload, ack, exc))
            return
        except Refused as exc:
            self._refuse(exc.reason, f"{topic}: {exc}")
            rows = []
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the worker; the message is counted
            log.exception("Ingest %s: cannot convert a message on %s", self.cfg.ingest.id, topic)
            self._refuse("error", f"{topic}: {type(exc).__name__}: {exc}")
            rows = []
        self.sink.put(rows, ack)  # acknowledged after the commit that takes its rows (refused: the next one)

    def _learn(self, topic: str, payload: bytes) -> None:
        """A schema message: learn its versions, then ingest what waited for them."""
        try:
            device, added = self.converter.learn(topic, payload)
        except Refused as exc:
            self._refuse(exc.reason, f"{topic}: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - as in _ingest
            log.exception("Ingest %s: cannot read the schema message on %s", self.cfg.ingest.id, topic)
            self._refuse("error", f"{topic}: {type(exc).__name__}: {exc}")
            return
        if added:
            for waiting in self._held.take(device):
                self._ingest(waiting.topic, waiting.payload, waiting.ack, waiting.arrived)

    def _refuse(self, reason: str, detail: str) -> None:
        with self._refusing:
            self.refusals[reason] += 1
            self._refused_log.add(detail=detail[:300])

    # ---- asyncio loop ----

    async def _expire_loop(self) -> None:
        """Refuse (and so acknowledge) compact data whose schema did not come in time."""
        while True:
            await asyncio.sleep(min(0.5, max(self.cfg.ingest.schema_wait / 4, 0.05)))
            for waiting in self._held.expired(time.monotonic()):
                self._refuse("unknown-schema", f"{waiting.topic}: data: {waiting.unknown}: no schema message "
                                               f"for it within {self.cfg.ingest.schema_wait:g} s (or "
                                               f"{self.cfg.ingest.schema_wait_messages} messages held)")
                self.sink.put([], waiting.ack)

    def _acknowledge(self, acks: list[_Ack]) -> None:
        current = self._connection
        for ack in acks:
            # A message of an earlier connection is re-sent by the broker (its session holds it): that copy is
            # acknowledged when it comes again; a packet id of another connection could name another message.
            if ack.qos and ack.connection == current:
                self._client.ack(ack.mid, ack.qos)


async def run_ingest(cfg: IngestConfig) -> None:
    """``minegw ingest``: run one worker until SIGTERM/SIGINT (systemd, docker stop), then stop cleanly."""
    from gateway.service import until_signalled
    from gateway.systemd import notify_systemd

    worker = IngestWorker(cfg)
    await worker.start()
    try:
        async with notify_systemd(f"ingest {cfg.ingest.id}: group {cfg.ingest.group}"):
            await until_signalled()
    finally:
        await worker.stop()


if __name__ == "__main__":  # python -m gateway.surface.ingest CONFIG (the same as `minegw ingest CONFIG`)
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        config = load_ingest(sys.argv[1])
    except (ConfigError, IndexError) as exc:
        sys.exit(f"usage: python -m gateway.surface.ingest CONFIG\n{exc}")
    try:
        asyncio.run(run_ingest(config))
    except UserError as exc:
        sys.exit(f"error: {exc}")
