"""Historian ingest on the surface: MQTT (shared subscription) → historian schema → durable buffer → InfluxDB.

``minegw ingest CONFIG`` runs one worker. Workers of one ``ingest.group`` share an MQTT 5
shared subscription, so the broker hands each message to exactly one of them:

    $share/{group}/{prefix}/{site}/+/+/data            readings        → measurement <kind>
    $share/{group}/{prefix}/{site}/+/+/state           device states   → device_state
    $share/{group}/{prefix}/{site}/gateway/+/alarm/+   gateway alarms  → gateway_alarm

(``site`` is ``+`` unless ``ingest.sites`` names some.) A new gateway needs no change
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

from gateway.config import (Area, ConfigError, HistorianConfig, MqttConfig, Site, SiteConfig, Strict, error_location,
                            error_message, expand_env, read_config_file)
from gateway.core.errors import UserError
from gateway.historian.lineprotocol import (QUALITY_SUFFIX, VALUE_SUFFIX, alarm_line, check_name, reading_lines,
                                            state_line, timestamp_ns)
from gateway.historian.sink import HistorianSink, Row
from gateway.core.logutil import ThrottledWarning
from gateway.contract import DataMessage, GatewayAlarmMessage, StateMessage
from gateway.core.model import DeviceState, GatewayAlarm, Reading, Schema
from gateway.mqtt.client import make_client  # the gateway's client factory: credentials, TLS, logging

log = logging.getLogger(__name__)

_ID = r"^[A-Za-z0-9_-]+$"


# ---- configuration ----------------------------------------------------------------------------

class IngestSettings(Strict):
    id: str = Field("ingest-1", pattern=_ID, description="this worker: MQTT client id minegw-ingest-<id>, health tag")
    group: str = Field("minegw-ingest", pattern=_ID, description="shared-subscription group: workers of one "
                                                                   "group share the messages")
    sites: list[str] = Field(["+"], min_length=1, description="site ids to ingest; '+' means every site")
    site: str = Field("surface", pattern=_ID, description="site tag of this worker's own gateway_health points")
    session_expiry: int = Field(3600, ge=0, le=7 * 86400, description="seconds the broker keeps a crashed "
                                                                      "worker's session and queues its share")
    receive_maximum: int = Field(1000, ge=1, le=65535, description="messages in flight to this worker (not yet "
                                                                   "acknowledged); the broker's "
                                                                   "max_inflight_messages caps it")
    max_payload: int = Field(1_048_576, ge=1024, description="bytes; larger messages are refused")
    stop_timeout: float = Field(10.0, ge=0, le=300, description="seconds a clean stop waits for the buffer to "
                                                                "reach InfluxDB")

    @model_validator(mode="after")
    def _sites(self) -> "IngestSettings":
        bad = [s for s in self.sites if s != "+" and not re.match(_ID, s)]
        if bad:
            raise ValueError(f"sites: {', '.join(map(repr, bad))} is neither a site id nor '+'")
        return self


class IngestConfig(Strict):
    """The file behind ``minegw ingest``: ``ingest:``, ``mqtt:`` (the surface broker), ``historian:``."""

    ingest: IngestSettings = IngestSettings()
    mqtt: MqttConfig
    historian: HistorianConfig

    @model_validator(mode="after")
    def _mqtt5(self) -> "IngestConfig":
        if self.mqtt.protocol != "5":
            raise ValueError('mqtt.protocol: ingest needs MQTT 5 ("5"): shared subscriptions and session expiry')
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


# ---- payload → lines --------------------------------------------------------------------------

class Refused(Exception):
    """A message the historian will not take; ``reason`` is a short key for the counters."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


RESERVED_MEASUREMENTS = frozenset({"device_state", "device_health", "gateway_health", "gateway_alarm",
                                   "minegw_probe"})
RESERVED_AREAS = frozenset({"gateway", "command", "network"})  # gateway topics; commands; rings (docs/deploy.md)
_SITE_OR_AREA = re.compile(_ID)
_DEVICE = re.compile(r"^[A-Za-z0-9_.-]+$")
_KIND = re.compile(r"^[A-Za-z0-9_.-]+$")
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


def _check_int(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        raise Refused("invalid", f"{what}: integer out of InfluxDB's 64-bit range")


def _check_time(ts, what: str) -> None:
    if not _INT64[0] < timestamp_ns(ts) < _INT64[1]:
        raise Refused("invalid", f"{what}: {ts.isoformat()} is outside InfluxDB's time range (1677-2262)")


def _parse(model, payload: bytes, what: str):
    """The payload as ``model``, or Refused naming the first problem."""
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        raise Refused("invalid", f"{what}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


class Converter:
    """Topic + payload → buffer rows, or :class:`Refused`. Pure: no I/O, no state."""

    def __init__(self, prefix: str, max_payload: int = 1_048_576):
        self.prefix, self.max_payload = prefix + "/", max_payload

    def convert(self, topic: str, payload: bytes) -> list[Row]:
        if len(payload) > self.max_payload:
            raise Refused("too-large", f"{len(payload)} bytes > {self.max_payload}")
        if not topic.startswith(self.prefix):
            raise Refused("topic", f"{topic!r} is not under {self.prefix!r}")
        parts = topic[len(self.prefix):].split("/")
        if len(parts) == 4 and parts[3] in ("data", "state"):
            site, area, device, what = parts
            if area in RESERVED_AREAS or not (_SITE_OR_AREA.match(site) and _SITE_OR_AREA.match(area)
                                         and _DEVICE.match(device)):
                raise Refused("topic", f"{topic!r}: not a site/area/device topic")
            return self._data(site, area, device, payload) if what == "data" else self._state(site, area, device,
                                                                                               payload)
        if len(parts) == 5 and parts[1] == "gateway" and parts[3] == "alarm":
            site, _, gateway, _, alarm = parts
            if not (_SITE_OR_AREA.match(site) and _SITE_OR_AREA.match(gateway) and _DEVICE.match(alarm)):
                raise Refused("topic", f"{topic!r}: not a gateway alarm topic")
            return self._alarm(site, gateway, alarm, payload)
        raise Refused("topic", f"{topic!r}: not a data, state or alarm topic")

    @staticmethod
    def _same(topic: tuple, payload: tuple, names: str) -> None:
        if topic != payload:
            raise Refused("mismatch", f"payload {names} {'/'.join(map(str, payload))} under topic "
                                      f"{'/'.join(topic)}")

    def _data(self, site: str, area: str, device: str, payload: bytes) -> list[Row]:
        msg = _parse(DataMessage, payload, "data")
        self._same((site, area, device), (msg.site, msg.area, msg.device), "site/area/device")
        if not _KIND.match(msg.kind) or msg.kind in RESERVED_MEASUREMENTS:
            raise Refused("invalid", f"kind {msg.kind!r} cannot name a measurement")
        _check_time(msg.ts, "ts")
        for name, s in msg.samples.items():
            if name.endswith((QUALITY_SUFFIX, VALUE_SUFFIX)):
                raise Refused("invalid", f"signal {name!r}: names ending in {QUALITY_SUFFIX} or {VALUE_SUFFIX} "
                                         "are reserved")
            _check_int(s.value, f"signal {name!r}")
        samples = msg.samples.values()
        reading = Reading(device=device, ts=msg.ts, poll_ms=msg.poll_ms,
                          schema=Schema(msg.samples, [s.unit for s in samples]), values=[s.value for s in samples],
                          qualities=[s.quality for s in samples], times=[s.ts for s in samples])
        try:
            lines = reading_lines(site, area, msg.kind, reading)
        except ValueError as exc:  # a name line protocol cannot carry (backslash, control character)
            raise Refused("invalid", str(exc)) from None
        ts = msg.ts.timestamp()
        return [(ts, line) for line in lines]

    def _state(self, site: str, area: str, device: str, payload: bytes) -> list[Row]:
        msg = _parse(StateMessage, payload, "state")
        self._same((site, area, device), (msg.site, msg.area, msg.device), "site/area/device")
        _check_time(msg.since, "since")
        fields = msg.model_dump(exclude={"site", "area"})
        for name, value in fields.items():
            _check_int(value, name)
        state = DeviceState(**fields)
        return [(msg.since.timestamp(), state_line(site, area, state))]

    def _alarm(self, site: str, gateway: str, alarm: str, payload: bytes) -> list[Row]:
        msg = _parse(GatewayAlarmMessage, payload, "alarm")
        self._same((site, gateway, alarm), (msg.site, msg.gateway, msg.id), "site/gateway/id")
        _check_time(msg.ts, "ts")
        _check_int(msg.count, "count")
        try:
            check_name(alarm)
        except ValueError as exc:
            raise Refused("invalid", str(exc)) from None
        event = GatewayAlarm(id=msg.id, active=msg.active, message=msg.message, count=msg.count, ts=msg.ts)
        return [(msg.ts.timestamp(), alarm_line(site, gateway, event))]


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

    def put(self, rows: list[Row], ack: _Ack) -> None:
        """Any thread. An empty ``rows`` (a refused message) is acknowledged with the next commit, in order."""
        self._inbox.append((rows, ack))

    async def commit(self) -> bool:
        while self._inbox:
            rows, ack = self._inbox.popleft()
            self.put_lines(rows)
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


# ---- the worker -------------------------------------------------------------------------------

class IngestWorker:
    """One ingest worker: ``await start()``, ``await stop()``; ``health()`` for its counters."""

    QUIET_S = 0.3  # on stop: no message for this long after UNSUBACK means the broker has sent us everything
    QUIET_MAX_S = 5.0

    def __init__(self, cfg: IngestConfig, writer=None):
        self.cfg = cfg
        s = cfg.ingest
        self.client_id = cfg.mqtt.client_id or f"minegw-ingest-{s.id}"
        self.topics = [f"$share/{s.group}/{cfg.mqtt.topic_prefix}/{site}/{tail}"
                       for site in s.sites for tail in ("+/+/data", "+/+/state", "gateway/+/alarm/+")]
        self.converter = Converter(cfg.mqtt.topic_prefix, s.max_payload)
        self.received = 0
        self.refusals: Counter[str] = Counter()
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
        log.info("Ingest %s: %s at %s:%d, group %s, sites %s", self.cfg.ingest.id, self.client_id,
                 self.cfg.mqtt.host, self.cfg.mqtt.port, self.cfg.ingest.group, ", ".join(self.cfg.ingest.sites))

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._leaving = True
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
        props = None
        if self.sink.unacknowledged == 0:  # everything received is on disk: end the session, nothing is kept for us
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
                            "historian.buffer.path (e.g. with ${MINEGW_INGEST_ID} in it)") from None

    def _unlock_buffer(self) -> None:
        if self._lockfile is not None:
            self._lockfile.close()  # closing releases the lock
            self._lockfile = None

    # ---- counters ----

    def _counters(self) -> dict[str, int]:
        return {"received": self.received, "refused": sum(self.refusals.values())}

    def health(self) -> dict[str, int | float | bool]:
        return {**self.sink.health(), "mqtt_connected": self._connected}

    # ---- paho callbacks (network thread) ----

    def _on_connect(self, client, userdata, flags, reason: ReasonCode, properties) -> None:
        if reason.is_failure:
            self._problem(f"MQTT broker {self.cfg.mqtt.host}:{self.cfg.mqtt.port} refused the connection: {reason}")
            return
        self._connection += 1  # only this thread writes it
        self._connected = True
        self._last_problem = None
        log.info("Ingest %s: connected (session %s)", self.cfg.ingest.id,
                 "resumed" if flags.session_present else "new")
        if not self._leaving:
            client.subscribe([(topic, self.cfg.mqtt.qos) for topic in self.topics])

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
        self._last_message = time.monotonic()
        self.received += 1
        ack = _Ack(self._connection, msg.mid, msg.qos)
        try:
            rows = self.converter.convert(msg.topic, msg.payload)
        except Refused as exc:
            self._refuse(exc.reason, f"{msg.topic}: {exc}")
            rows = []
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the worker; the message is counted
            log.exception("Ingest %s: cannot convert a message on %s", self.cfg.ingest.id, msg.topic)
            self._refuse("error", f"{msg.topic}: {type(exc).__name__}: {exc}")
            rows = []
        self.sink.put(rows, ack)  # acknowledged after the commit that takes its rows (refused: the next one)

    def _refuse(self, reason: str, detail: str) -> None:
        self.refusals[reason] += 1
        self._refused_log.add(detail=detail[:300])

    # ---- asyncio loop: after a commit ----

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
