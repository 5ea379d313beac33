"""The compact data payload on the surface (docs/mqtt.md, "Compact data payload"): schema cache and decoding.

A device that sends compact data publishes its signals once, in a retained
``{prefix}/{site}/{area}/{device}/schema`` message holding every live version; each data
message names its version and carries one timestamp and the values in the schema's order
(an array) or, with report by exception, only the values sent (an object index → value),
and only the non-good qualities. :class:`CompactSchemas` keeps the versions seen per device
and turns a compact data message into the same historian point the full payload of the same
reading gives (measurement = kind, tags site/area/device, ``__quality``/``__value`` fields,
timestamp = ``ts``). Everything is checked by hand, not with a model per message: the types of
the values, the quality words, the index keys, the lengths, the names; each refusal names the
place (``values.7``, ``quality["12"]``).

Versions are content-addressed (:func:`gateway.contract.schema_version`): a version once seen keeps
its meaning, so versions are kept when a newer schema message no longer lists them (data queued
during an outage may still use them), up to ``MAX_VERSIONS`` per device.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

import orjson

from gateway.contract import schema_version
from gateway.core.model import Quality
from gateway.historian.lineprotocol import (QUALITY_SUFFIX, VALUE_SUFFIX, SchemaFields, escaped_key, fields_text,
                                            point_head)

Row = tuple[float, str]  # (sample time, line): what the buffer takes (gateway.historian.sink.Row)

RESERVED_MEASUREMENTS = frozenset({"device_state", "device_health", "gateway_health", "gateway_alarm",
                                   "minegw_probe"})
KIND = re.compile(r"^[A-Za-z0-9_.-]+$")
INT64 = (-(2 ** 63), 2 ** 63 - 1)
QUALITIES = {q.value: q for q in Quality}  # the quality words of both payloads
VALUE_TYPES = frozenset({float, int, bool, str, type(None)})
_NUMBERS = frozenset({float, int, bool})
_BIG = float(2 ** 63)
_MS_RANGE = (INT64[0] // 1_000_000 + 1, INT64[1] // 1_000_000)  # ts in ms that InfluxDB can store in ns
_MAX_OFFSET_MS = 86_400_000  # a sample's time at most a day from its message's ts


class Refused(Exception):
    """A message the historian will not take; ``reason`` is a short key for the counters."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class UnknownSchema(Exception):
    """A compact data message whose schema version has not been seen (yet) for its device."""

    def __init__(self, device: tuple[str, str, str], version: str):
        super().__init__(f"schema {version!r} of {'/'.join(device)} is unknown")
        self.device, self.version = device, version


class Inexact(Exception):
    """orjson reads an integer beyond 64 bits as a float: a value this large must be read again exactly."""


def loads(payload: bytes, what: str) -> dict:
    """``payload`` as a JSON object, or Refused."""
    try:
        msg = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Refused("invalid", f"{what}: not JSON ({exc})") from None
    if type(msg) is not dict:
        raise Refused("invalid", f"{what}: not a JSON object")
    return msg


def check_kind(kind: Any, what: str) -> None:
    if type(kind) is not str or not KIND.match(kind) or kind in RESERVED_MEASUREMENTS:
        raise Refused("invalid", f"{what}: kind {kind!r} cannot name a measurement")


def check_signals(signals, what: str) -> None:
    """Refused unless every signal can name a field (and its ``__quality``/``__value`` fields)."""
    for name in signals:
        if name.endswith((QUALITY_SUFFIX, VALUE_SUFFIX)):
            raise Refused("invalid", f"{what}: signal {name!r}: names ending in {QUALITY_SUFFIX} or "
                                     f"{VALUE_SUFFIX} are reserved")
        try:
            escaped_key(name)
        except ValueError as exc:  # a name line protocol cannot carry (backslash, control character)
            raise Refused("invalid", f"{what}: {exc}") from None


def check_values(values: list, names, what: str, exact: bool = False) -> None:
    """Refused unless every value is a number, a boolean, a string or null, and integers fit InfluxDB's
    64 bits; ``names[i]`` says where value ``i`` came from. Inexact when a float is as large as an
    integer beyond 64 bits that orjson may have read (unless ``exact``: read by :mod:`json`)."""
    types = set(map(type, values))
    if not types <= VALUE_TYPES:
        i = next(i for i, v in enumerate(values) if type(v) not in VALUE_TYPES)
        raise Refused("invalid", f"{what}.{names[i]}: a {type(values[i]).__name__} is not a value")
    numbers = values if types <= _NUMBERS else [v for v in values if type(v) in _NUMBERS]
    if (float in types or int in types) and (max(numbers) >= _BIG or min(numbers) < -_BIG):
        for i, v in enumerate(values):  # rare: find it
            if type(v) is int and not INT64[0] <= v <= INT64[1]:
                raise Refused("invalid", f"{what}.{names[i]}: integer out of InfluxDB's 64-bit range")
        if float in types and not exact:
            raise Inexact()


class CompactSchema:
    """One version of a device's schema, compiled: the point's head, the field keys, the index keys."""

    __slots__ = ("fields", "head", "index", "signals", "version")

    def __init__(self, version: str, signals: list[str], head: str):
        self.version, self.signals, self.head = version, signals, head
        self.fields = SchemaFields(signals)  # keys exist: the names were checked
        self.index = {str(i): i for i in range(len(signals))}  # the exact index keys: "7", never "07" or " 7"


class CompactSchemas:
    """The schema versions seen per device (site, area, device), and compact data → rows."""

    MAX_VERSIONS = 64  # per device: the oldest learnt is forgotten beyond
    MAX_SIGNALS = 10_000  # per version

    def __init__(self):
        self._devices: dict[tuple[str, str, str], OrderedDict[str, CompactSchema]] = {}

    def __len__(self) -> int:
        return sum(map(len, self._devices.values()))

    def learn(self, device: tuple[str, str, str], payload: bytes) -> list[str]:
        """Take a schema message of ``device``; the versions it adds. An empty payload (a retained message
        cleared) forgets nothing: versions are content-addressed."""
        if not payload:
            return []
        msg = loads(payload, "schema")
        for i, name in enumerate(("site", "area", "device")):
            if msg.get(name) != device[i]:
                raise Refused("mismatch", f"schema: payload {name} {msg.get(name)!r} under topic "
                                          f"{'/'.join(device)}")
        kind, schemas = msg.get("kind"), msg.get("schemas")
        if type(schemas) is not dict or not schemas or len(schemas) > self.MAX_VERSIONS:
            raise Refused("invalid", f"schema: schemas must be an object of 1 to {self.MAX_VERSIONS} versions")
        check_kind(kind, "schema")
        head = point_head(kind, {"site": device[0], "area": device[1], "device": device[2]})
        compiled = [self._compile(version, body, head) for version, body in schemas.items()]
        known = self._devices.setdefault(device, OrderedDict())
        added = [c.version for c in compiled if c.version not in known]
        for c in compiled:
            known[c.version] = c
            known.move_to_end(c.version)
        while len(known) > self.MAX_VERSIONS:
            known.popitem(last=False)
        return added

    def _compile(self, version: str, body: Any, head: str) -> CompactSchema:
        what = f"schema: schemas[{version!r}]"
        if type(body) is not dict:
            raise Refused("invalid", f"{what}: not an object")
        signals, units = body.get("signals"), body.get("units")
        for name, names in (("signals", signals), ("units", units)):
            if type(names) is not list or not all(type(s) is str for s in names):
                raise Refused("invalid", f"{what}.{name}: not a list of strings")
        if len(signals) != len(units) or not signals or len(signals) > self.MAX_SIGNALS:
            raise Refused("invalid", f"{what}: {len(signals)} signals and {len(units)} units (1 to "
                                     f"{self.MAX_SIGNALS}, one unit per signal)")
        if len(set(signals)) != len(signals):
            raise Refused("invalid", f"{what}.signals: a signal appears twice")
        if "derived" in body and type(body["derived"]) is not bool:
            raise Refused("invalid", f"{what}.derived: not a boolean")
        check_signals(signals, what)
        if schema_version(signals, units) != version:
            raise Refused("invalid", f"{what}: the version is not that of its signals and units "
                                     f"({schema_version(signals, units)})")
        return CompactSchema(version, signals, head)

    def rows(self, device: tuple[str, str, str], msg: dict, exact: bool = False) -> list[Row]:
        """A compact data message (``schema`` key present) of ``device`` as rows; Refused, or UnknownSchema
        when its version has not been learnt for the device (Inexact: see :func:`check_values`)."""
        version = msg["schema"]
        if type(version) is not str:
            raise Refused("invalid", "data: schema: not a string")
        schema = self._devices.get(device, {}).get(version)
        if schema is None:
            raise UnknownSchema(device, version)
        ts = msg.get("ts")
        if type(ts) is not int or not _MS_RANGE[0] <= ts <= _MS_RANGE[1]:
            raise Refused("invalid", f"data: ts: {ts!r} is not integer milliseconds InfluxDB can store")
        poll_ms = msg.get("poll_ms", 0.0)
        if type(poll_ms) not in (int, float):
            raise Refused("invalid", f"data: poll_ms: {poll_ms!r} is not a number")
        if "derived" in msg and type(msg["derived"]) is not bool:
            raise Refused("invalid", "data: derived: not a boolean")
        values = msg.get("values")
        if type(values) is list:
            if len(values) != len(schema.signals):
                raise Refused("invalid", f"data: values: {len(values)} values for the {len(schema.signals)} "
                                         f"signals of schema {version}")
            check_values(values, range(len(values)), "data: values", exact)
            keys, where = None, schema.index
        elif type(values) is dict:
            where = {k: i for i, k in enumerate(values)}  # index key -> place among the values sent
            for k in where:
                if k not in schema.index:
                    raise Refused("invalid", f"data: values: key {k!r} is not an index of schema {version} "
                                             f"(0 to {len(schema.signals) - 1})")
            values_sent = list(values.values())
            check_values(values_sent, list(where), "data: values", exact)
            keys = [schema.fields.keys[schema.index[k]] for k in where]
            values = values_sent
        else:
            raise Refused("invalid", "data: values: neither an array nor an object")
        qualities = self._qualities(msg.get("quality"), where, len(values))
        self._check_times(msg.get("time", 0), msg.get("times"), where)
        if not values:
            return []
        fields = schema.fields.text(values, qualities) if keys is None else fields_text(keys, values, qualities)
        return [(ts / 1000, f"{schema.head}{fields} {ts * 1_000_000}")]

    @staticmethod
    def _qualities(qualities: Any, where: dict[str, int], n: int) -> list[Quality | None] | None:
        """One quality per value sent (None: good), from the message's ``quality`` object; None if all good."""
        if qualities is None:
            return None
        if type(qualities) is not dict:
            raise Refused("invalid", "data: quality: not an object")
        out: list[Quality | None] = [None] * n
        for k, word in qualities.items():
            place = where.get(k)
            if place is None:
                raise Refused("invalid", f"data: quality: key {k!r} is not the index of a value sent")
            quality = QUALITIES.get(word) if type(word) is str else None
            if quality is None:
                raise Refused("invalid", f"data: quality[{k!r}]: {word!r} is not a quality "
                                         f"({', '.join(QUALITIES)})")
            out[place] = quality
        return out

    @staticmethod
    def _check_times(common: Any, times: Any, where: dict[str, int]) -> None:
        """Sample times are not stored (a point is stamped with its reading's ts), but they must make sense."""
        if type(common) is not int or abs(common) > _MAX_OFFSET_MS:
            raise Refused("invalid", f"data: time: {common!r} is not an offset in ms (at most a day)")
        if times is None:
            return
        if type(times) is not dict:
            raise Refused("invalid", "data: times: not an object")
        for k, offset in times.items():
            if k not in where:
                raise Refused("invalid", f"data: times: key {k!r} is not the index of a value sent")
            if type(offset) is not int or abs(offset) > _MAX_OFFSET_MS:
                raise Refused("invalid", f"data: times[{k!r}]: {offset!r} is not an offset in ms (at most a day)")
