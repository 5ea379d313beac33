"""Surface ingest: an MQTT message (topic, payload) → the historian's rows, or a located refusal.

Data messages take a fast path: one ``orjson`` parse, then the checks the historian needs done in
bulk (the types of the values, the quality words, the units, the timestamps, the names) and the
point built with the signals' keys escaped once (:class:`gateway.historian.lineprotocol.SchemaFields`).
A full payload the fast path is not sure of (anything unusual: a missing key, a number where a
string belongs) goes to the contract's model (:class:`gateway.contract.DataMessage`), which gives
the located error or takes what it accepts; so both ways store the same lines. Compact data
messages (a ``schema`` key) go to :class:`gateway.surface.compact.CompactSchemas`; the rare
messages (states, gateway alarms) go through their models.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from gateway.contract import DataMessage, GatewayAlarmMessage, GatewayStatus, StateMessage
from gateway.core.model import DeviceState, GatewayAlarm, Reading, Schema
from gateway.historian.lineprotocol import (SchemaFields, alarm_line, check_name, gateway_status_line, point_head,
                                            reading_lines, state_line, timestamp_ns, uplink_status_line)
from gateway.surface.compact import (INT64, QUALITIES, VALUE_TYPES, CompactSchemas, Inexact, Refused, Row,
                                     check_kind, check_signals, check_values, loads)

RESERVED_AREAS = frozenset({"gateway", "command", "network"})  # gateway topics; commands; rings (docs/deploy.md)
_SITE_OR_AREA = re.compile(r"^[A-Za-z0-9_-]+$")
_DEVICE = re.compile(r"^[A-Za-z0-9_.-]+$")
_ALL_GOOD = ({"good"}, set())


def _check_int(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
        raise Refused("invalid", f"{what}: integer out of InfluxDB's 64-bit range")


def _check_time(ts, what: str) -> None:
    if not INT64[0] < timestamp_ns(ts) < INT64[1]:
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


def _iso(text: Any) -> datetime | None:
    """An ISO 8601 timestamp with its offset (``2025-03-14T06:00:00.118Z``), or None when unsure."""
    if type(text) is not str or len(text) < 20 or text[10] != "T":
        return None
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else None


class Converter:
    """Topic + payload → buffer rows, or :class:`Refused` (or :class:`~gateway.surface.compact.UnknownSchema`
    for compact data of a schema version not learnt yet). No I/O; it keeps the schema messages it was
    given (:meth:`learn`) and, to save work, the compiled field keys of the signal lists it met."""

    MAX_COMPILED = 4096  # signal lists of full payloads whose keys are kept

    def __init__(self, prefix: str, max_payload: int = 1_048_576):
        self.prefix, self.max_payload = prefix + "/", max_payload
        self.schemas = CompactSchemas()
        self._topics: dict[str, tuple[str, str, str, str]] = {}  # topic -> (site, area, device, what), checked
        self._fields: dict[tuple[str, ...], SchemaFields] = {}  # full payloads: signal names -> their keys
        self._heads: dict[tuple, str] = {}  # (kind, site, area, device) -> the point's head

    def convert(self, topic: str, payload: bytes) -> list[Row]:
        if len(payload) > self.max_payload:
            raise Refused("too-large", f"{len(payload)} bytes > {self.max_payload}")
        parsed = self._topics.get(topic) or self._topic(topic)
        if parsed[3] == "data":
            return self._data(parsed[:3], payload)
        if parsed[3] == "state":
            return self._state(*parsed[:3], payload)
        if parsed[3] == "alarm":
            return self._alarm(*parsed[:3], payload)
        if parsed[3] == "status":
            return self._gateway_status(parsed[0], parsed[1], payload)
        if parsed[3] == "bridge":
            return self._bridge(parsed[0], parsed[1], payload)
        raise Refused("topic", f"{topic!r}: a schema message is learnt (learn), not converted")

    def learn(self, topic: str, payload: bytes) -> tuple[tuple[str, str, str], list[str]]:
        """A schema message: (site, area, device) and the versions it adds."""
        if len(payload) > self.max_payload:
            raise Refused("too-large", f"{len(payload)} bytes > {self.max_payload}")
        parsed = self._topics.get(topic) or self._topic(topic)
        if parsed[3] != "schema":
            raise Refused("topic", f"{topic!r}: not a schema topic")
        return parsed[:3], self.schemas.learn(parsed[:3], payload)

    def _topic(self, topic: str) -> tuple[str, str, str, str]:
        if not topic.startswith(self.prefix):
            raise Refused("topic", f"{topic!r} is not under {self.prefix!r}")
        parts = topic[len(self.prefix):].split("/")
        if len(parts) == 4 and parts[3] in ("data", "state", "schema"):
            site, area, device, what = parts
            if area in RESERVED_AREAS or not (_SITE_OR_AREA.match(site) and _SITE_OR_AREA.match(area)
                                              and _DEVICE.match(device)):
                raise Refused("topic", f"{topic!r}: not a site/area/device topic")
        elif len(parts) == 5 and parts[1] == "gateway" and parts[3] == "alarm":
            site, _, gateway, _, alarm = parts
            if not (_SITE_OR_AREA.match(site) and _SITE_OR_AREA.match(gateway) and _DEVICE.match(alarm)):
                raise Refused("topic", f"{topic!r}: not a gateway alarm topic")
            area, device, what = gateway, alarm, "alarm"  # kept as (site, gateway, alarm id)
        elif len(parts) == 4 and parts[1] == "gateway" and parts[3] == "status":
            site, _, gateway, what = parts
            if not (_SITE_OR_AREA.match(site) and _SITE_OR_AREA.match(gateway)):
                raise Refused("topic", f"{topic!r}: not a gateway status topic")
            area, device = gateway, ""  # kept as (site, gateway)
        elif len(parts) == 3 and parts[1] == "bridge":
            site, what, area = parts[0], "bridge", parts[2]  # (site, district)
            device = ""
            if not (_SITE_OR_AREA.match(site) and _SITE_OR_AREA.match(area)):
                raise Refused("topic", f"{topic!r}: not a bridge topic")
        else:
            raise Refused("topic", f"{topic!r}: not a data, state, schema, alarm, gateway status or bridge topic")
        if len(self._topics) >= 100_000:  # bounded; topics come back
            self._topics.clear()
        parsed = self._topics[topic] = (site, area, device, what)
        return parsed

    @staticmethod
    def _same(topic: tuple, payload: tuple, names: str) -> None:
        if topic != payload:
            raise Refused("mismatch", f"payload {names} {'/'.join(map(str, payload))} under topic "
                                      f"{'/'.join(topic)}")

    # ---- data ----

    def _data(self, device: tuple[str, str, str], payload: bytes) -> list[Row]:
        try:
            msg = loads(payload, "data")
        except Refused:  # the model names what is wrong (or takes what orjson does not: NaN)
            return self._full_by_model(*device, payload)
        if "schema" in msg:
            try:
                return self.schemas.rows(device, msg)
            except Inexact:  # a huge number: read it exactly, so an integer beyond 64 bits is refused
                return self.schemas.rows(device, json.loads(payload), exact=True)
        rows = self._full(device, msg)
        return rows if rows is not None else self._full_by_model(*device, payload)

    def _full(self, device: tuple[str, str, str], msg: dict) -> list[Row] | None:
        """The full payload's rows, or None when the model must decide (refuse, or coerce)."""
        try:
            samples, kind, ts_text, poll_ms = msg["samples"], msg["kind"], msg["ts"], msg["poll_ms"]
            if (msg["site"], msg["area"], msg["device"]) != device or not samples or "zone" not in msg:
                return None
            listed = samples.values()
            values = [s["value"] for s in listed]
            qualities = [s["quality"] for s in listed]
            units = {type(s["unit"]) for s in listed}
            stamps = {s["ts"] for s in listed}
        except (KeyError, TypeError, AttributeError):  # not the shapes expected
            return None
        words = set(qualities)
        if (units != {str} or not words <= QUALITIES.keys() or not set(map(type, values)) <= VALUE_TYPES
                or type(msg["zone"]) not in (str, type(None)) or type(poll_ms) not in (int, float)):
            return None
        ts = _iso(ts_text)
        if ts is None or any(t != ts_text and _iso(t) is None for t in stamps):
            return None
        try:
            check_values(values, list(samples), "data: samples")
            fields = self._compiled(kind, tuple(samples))
            ns = timestamp_ns(ts)
        except (Refused, Inexact):
            return None  # the model's refusal names it the way it always has
        if not INT64[0] < ns < INT64[1]:
            return None
        head = self._heads.get((kind, *device))
        if head is None:
            if len(self._heads) >= 100_000:
                self._heads.clear()
            head = self._heads[(kind, *device)] = point_head(kind, dict(zip(("site", "area", "device"), device)))
        marks = None if words in _ALL_GOOD else [QUALITIES[w] for w in qualities]
        return [(ts.timestamp(), f"{head}{fields.text(values, marks)} {ns}")]

    def _compiled(self, kind: Any, signals: tuple[str, ...]) -> SchemaFields:
        fields = self._fields.get(signals)
        if fields is None:
            check_kind(kind, "data")
            check_signals(signals, "data")
            if len(self._fields) >= self.MAX_COMPILED:
                self._fields.clear()
            fields = self._fields[signals] = SchemaFields(signals)
        else:
            check_kind(kind, "data")
        return fields

    def _full_by_model(self, site: str, area: str, device: str, payload: bytes) -> list[Row]:
        msg = _parse(DataMessage, payload, "data")
        self._same((site, area, device), (msg.site, msg.area, msg.device), "site/area/device")
        check_kind(msg.kind, "data")
        _check_time(msg.ts, "ts")
        check_signals(msg.samples, "data")
        for name, s in msg.samples.items():
            _check_int(s.value, f"signal {name!r}")
        samples = msg.samples.values()
        reading = Reading(device=device, ts=msg.ts, poll_ms=msg.poll_ms,
                          schema=Schema(msg.samples, [s.unit for s in samples]), values=[s.value for s in samples],
                          qualities=[s.quality for s in samples], times=[s.ts for s in samples])
        lines = reading_lines(site, area, msg.kind, reading)
        ts = msg.ts.timestamp()
        return [(ts, line) for line in lines]

    # ---- the rare ones: states, gateway alarms ----

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

    # ---- up and down: gateways (birth and last will) and district uplinks (bridge notifications) ----

    def _gateway_status(self, site: str, gateway: str, payload: bytes) -> list[Row]:
        msg = _parse(GatewayStatus, payload, "gateway status")
        self._same((site, gateway), (msg.site, msg.gateway), "site/gateway")
        _check_time(msg.ts, "ts")
        return [(msg.ts.timestamp(), gateway_status_line(site, gateway, msg.status == "online", msg.reason, msg.ts))]

    @staticmethod
    def _bridge(site: str, district: str, payload: bytes) -> list[Row]:
        """Mosquitto's bridge notification: ``1`` up, ``0`` down, stamped when it arrives (it has no time)."""
        if payload.strip() not in (b"0", b"1"):
            raise Refused("invalid", f"bridge {district}: payload {payload[:20]!r} is not 0 or 1")
        now = datetime.now(timezone.utc)
        return [(now.timestamp(), uplink_status_line(site, district, payload.strip() == b"1", now))]
