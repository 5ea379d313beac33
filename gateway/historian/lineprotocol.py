"""The historian schema as code: readings, device states, device and gateway health as InfluxDB line protocol.

One point per reading in measurement ``<kind>`` (shearer, belt_conveyor, …) with tags
``site``, ``area``, ``device`` and one field per sample:

- good sample: ``<signal>=<value>``;
- any other quality: ``<signal>__quality="<quality>"``, plus ``<signal>__value=<value>``
  when the sample still has a value (out-of-range, stale). So ``<signal>`` only ever
  holds good values, and a dashboard's ``mean("speed")`` needs no quality filter.

The point's timestamp is the reading's ``ts`` in nanoseconds, never the time of the
write: a batch written twice lands on the same points (InfluxDB overwrites them).
docs/historian.md describes the schema for people.
"""
from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from itertools import repeat
from typing import Mapping, Sequence

import orjson

from gateway.core.model import DeviceState, GatewayAlarm, Inventory, Quality, Reading, Schema, Value

QUALITY_SUFFIX = "__quality"
VALUE_SUFFIX = "__value"

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\="})  # tag keys, tag values, field keys
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})


def check_name(name: str) -> None:
    """Raise ValueError if ``name`` cannot be written as a measurement, tag or field name.

    Line protocol has no escape for control characters (newline ends the point) and
    treats backslashes differently in 1.x (kept literally) and 2.x (escape character),
    so names holding either are refused rather than stored differently per server.
    """
    if not name:
        raise ValueError("empty name: InfluxDB needs a non-empty measurement, tag and field name")
    if "\\" in name or any(ord(c) < 32 or c == "\x7f" for c in name):
        raise ValueError(f"name {name!r} cannot be written to InfluxDB: no backslashes or control characters")


@lru_cache(maxsize=4096)
def _measurement(name: str) -> str:
    check_name(name)
    return name.translate(_MEASUREMENT_ESCAPES)


@lru_cache(maxsize=4096)
def _key(name: str) -> str:
    check_name(name)
    return name.translate(_KEY_ESCAPES)


def _string(text: str) -> str:
    # Newlines stay as they are: inside a quoted string the parser does not end the point on them.
    return '"' + text.translate(_STRING_ESCAPES) + '"'


def field_value(value: Value) -> str | None:
    """``value`` in line protocol, or None when it cannot be written (None, NaN, ±inf)."""
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        # repr is the shortest exact form and always marks a float ("4.0", "1e+16"), so the type never changes
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return _string(value)
    return None


def timestamp_ns(ts: datetime) -> int:
    """Nanoseconds since the epoch, exact (integer arithmetic); naive datetimes are taken as UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return (ts - _EPOCH) // timedelta(microseconds=1) * 1000


def _tags(tags: Mapping[str, str]) -> str:
    return "".join(f",{_key(k)}={_key(v)}" for k, v in tags.items())


def _fields(fields: Mapping[str, Value]) -> str:
    """``k=v,...`` for the fields that have a writable value."""
    parts = []
    for name, value in fields.items():
        text = field_value(value)
        if text is not None:
            parts.append(f"{_key(name)}={text}")
    return ",".join(parts)


def point(measurement: str, tags: Mapping[str, str], fields: Mapping[str, Value], ts: datetime) -> str | None:
    """One line of line protocol, or None when no field has a writable value (InfluxDB needs one)."""
    field_text = _fields(fields)
    if not field_text:
        return None
    return f"{_measurement(measurement)}{_tags(tags)} {field_text} {timestamp_ns(ts)}"


def sample_fields(signal: str, quality: Quality, value: Value) -> dict[str, Value]:
    """The fields one sample contributes to its reading's point."""
    if quality is Quality.GOOD:
        if field_value(value) is not None:
            return {signal: value}
        quality = Quality.BAD  # a "good" sample without a usable value (None, NaN) is stored as what it is
    fields: dict[str, Value] = {signal + QUALITY_SUFFIX: quality.value}
    if field_value(value) is not None:
        fields[signal + VALUE_SUFFIX] = value  # out-of-range and stale keep their value, apart from good ones
    return fields


def reading_lines(site: str, area: str, kind: str, reading: Reading) -> list[str]:
    """The reading as one point in measurement ``kind`` (no line when it has no samples).

    A sink writing many keeps a :class:`ReadingLines` per device instead: same lines, a fraction of the cost."""
    return ReadingLines(site, area, kind).lines(reading)


_FAST_TYPES = (float, int, bool)  # exact types a reading of only good samples may hold for the fast path
_FAST_SET = frozenset(_FAST_TYPES)
_BELOW_1E_4 = re.compile(r"(?:^|,)-?0\.0000")  # a text of orjson's that repr writes with an exponent
_QUALITY_FIELDS = {q: f'{QUALITY_SUFFIX}="{q.value}"' for q in Quality}  # after the escaped signal key


def escaped_key(name: str) -> str:
    """``name`` as a field or tag key of line protocol; ValueError when it cannot be written (:func:`check_name`)."""
    return _key(name)


def point_head(measurement: str, tags: Mapping[str, str]) -> str:
    """``measurement,tag=value,... `` : what comes before the fields of a point (escaped)."""
    return f"{_measurement(measurement)}{_tags(tags)} "


def _texts(values: Sequence[Value]) -> list[str]:
    """Finite floats, ints and bools as field_value writes them (ints without their i), in one call:
    orjson writes a float as repr does (shortest round trip), and bools as true/false, but below 1e-4,
    where repr has an exponent ("1e-05", "1e-06") and orjson none or a shorter one ("0.00001", "1e-6"):
    those go the per-value way."""
    try:
        body = orjson.dumps(values)[1:-1].decode()
    except TypeError:  # an int beyond 64 bits (InfluxDB refuses its line; the sink dead-letters it)
        body = "e-"
    if "e-" not in body and not ("0.0000" in body and _BELOW_1E_4.search(body)):  # 10.00001 is written alike
        return body.split(",")
    return [("true" if v else "false") if type(v) is bool else repr(v) for v in values]


def fields_text(keys: Sequence[str], values: Sequence[Value], qualities: Sequence[Quality | None] | None = None) -> str:
    """``k=v,...`` of samples, byte for byte what :func:`sample_fields` and :func:`point` give; ``keys`` are
    the signals' escaped keys (:func:`escaped_key`), ``qualities`` one per value (None: good), or None."""
    if qualities is None and set(map(type, values)) <= _FAST_SET and _finite(values):
        return ",".join([f"{k}={t}i" if type(v) is int else f"{k}={t}" for k, t, v in zip(keys, _texts(values),
                                                                                          values)])
    parts = []
    for key, value, quality in zip(keys, values, qualities or repeat(None)):
        text = field_value(value)
        if quality is None or quality is Quality.GOOD:
            if text is not None:
                parts.append(f"{key}={text}")
                continue
            quality = Quality.BAD  # a "good" sample without a usable value (None, NaN) is stored as what it is
        parts.append(key + _QUALITY_FIELDS[quality])
        if text is not None:
            parts.append(f"{key}{VALUE_SUFFIX}={text}")
    return ",".join(parts)


class SchemaFields:
    """The fields of points whose values follow one list of signals, keys escaped once; per value-type
    signature the text between the values (``key=``, and the ``i`` after an integer), so a reading whose
    samples are all good with finite floats, ints and bools costs a few calls. ``keys`` is None when only
    the per-sample way (:func:`sample_fields`) gives the exact bytes (duplicate signals, unwritable names)."""

    __slots__ = ("keys", "signals", "template", "types")

    def __init__(self, signals: Sequence[str]):
        self.signals = tuple(signals)
        self.keys: list[str] | None = None
        if len(set(self.signals)) == len(self.signals):
            try:
                self.keys = [_key(s) for s in self.signals]
            except ValueError:  # raised again by the per-sample way, for the fields it writes
                pass
        self.types: tuple | None = None
        self.template: str | None = None  # "key=%s,key=%si,...": % the values' texts, for the types of .types

    def text(self, values: Sequence[Value], qualities: Sequence[Quality | None] | None = None) -> str:
        """``k=v,...`` for one value per signal (needs ``keys``); ``qualities`` None when all are good."""
        if qualities is None:
            types = tuple(map(type, values))
            if types != self.types:
                self._retype(types)
            if self.template is not None and _finite(values):
                return self.template % tuple(_texts(values))
        return fields_text(self.keys, values, qualities)

    def _retype(self, types: tuple) -> None:
        self.types, self.template = types, None
        if self.keys is None or not types or not all(t in _FAST_TYPES for t in types):
            return
        after = ["i" if t is int else "" for t in types]  # int fields end in i: 7i
        pieces = [self.keys[0] + "="] + [f"{a},{k}=" for a, k in zip(after, self.keys[1:])] + [after[-1]]
        self.template = "%s".join(p.replace("%", "%%") for p in pieces)


class ReadingLines:
    """Builds the points of readings in measurement ``kind`` with the tags of their site and area:
    byte for byte what :func:`sample_fields` and :func:`point` give per sample, in a few calls per
    reading (:class:`SchemaFields`)."""

    MAX_SCHEMAS = 64

    def __init__(self, site: str, area: str, kind: str):
        self.site, self.area, self.kind = site, area, kind
        self._heads: dict[str, str] = {}  # device -> "kind,site=..,area=..,device=.. "
        self._schemas: dict[int, tuple[Schema, SchemaFields]] = {}  # id(schema) -> (the entry keeps it alive)

    def lines(self, reading: Reading) -> list[str]:
        values = reading.values
        if not values:
            return []
        entry = self._schemas.get(id(reading.schema))
        if entry is None or entry[0] is not reading.schema:
            if len(self._schemas) >= self.MAX_SCHEMAS:
                self._schemas.clear()
            entry = self._schemas[id(reading.schema)] = (reading.schema, SchemaFields(reading.schema.signals))
        compiled = entry[1]
        if compiled.keys is None:
            return self._per_sample(reading)
        return [f"{self._head(reading.device)}{compiled.text(values, reading.qualities)} {timestamp_ns(reading.ts)}"]

    def _head(self, device: str) -> str:
        head = self._heads.get(device)
        if head is None:
            head = self._heads[device] = point_head(self.kind, {"site": self.site, "area": self.area,
                                                                "device": device})
        return head

    def _per_sample(self, reading: Reading) -> list[str]:
        fields: dict[str, Value] = {}
        qualities = reading.qualities or repeat(Quality.GOOD)
        for signal, quality, value in zip(reading.schema.signals, qualities, reading.values):
            fields.update(sample_fields(signal, quality, value))
        line = point(self.kind, {"site": self.site, "area": self.area, "device": reading.device}, fields,
                     reading.ts)
        return [line] if line else []


def _finite(values: list) -> bool:
    """No NaN or infinity among ``values`` (floats, ints, bools); False also when unsure (overflow)."""
    try:
        total = sum(values)
    except (OverflowError, TypeError):
        return False
    return total - total == 0


_STATE_COUNTERS = ("polls", "errors", "consecutive_errors", "timeouts", "exception_responses", "reconnects")


def state_line(site: str, area: str, state: DeviceState) -> str:
    """The device link state in measurement ``device_state``, stamped with ``since``.

    A state re-published with the same ``since`` (same status and reason) overwrites its point
    with the newer counters.
    """
    fields: dict[str, Value] = {"status": state.status.value, "reason": state.reason}
    fields.update({name: getattr(state, name) for name in _STATE_COUNTERS})
    if state.last_poll_ms is not None:
        fields["last_poll_ms"] = float(state.last_poll_ms)
    return point("device_state", {"site": site, "area": area, "device": state.device}, fields, state.since)


def inventory_line(site: str, area: str, inventory: Inventory) -> str:
    """What a device is and offers, in measurement ``device_inventory``, stamped with its ``ts``.

    ``profiles`` holds the media profiles as JSON text (stream URIs carry no credentials).
    """
    fields: dict[str, Value] = {"online": inventory.online, "reason": inventory.reason, "ptz": inventory.ptz,
                                "profiles": json.dumps([p.model_dump() for p in inventory.profiles])}
    for name in ("manufacturer", "model", "firmware", "serial"):
        if getattr(inventory, name) is not None:
            fields[name] = getattr(inventory, name)
    return point("device_inventory", {"site": site, "area": area, "device": inventory.device}, fields, inventory.ts)


def health_line(site: str, gateway: str, counters: Mapping[str, int | float | bool], ts: datetime) -> str:
    """The gateway's counters in measurement ``gateway_health``; NaN and ±inf counters are left out.

    Keep each counter's type stable (an int stays an int): InfluxDB refuses a field whose type changes.
    """
    line = point("gateway_health", {"site": site, "gateway": gateway}, counters, ts)
    if line is None:
        raise ValueError("health_line needs at least one counter with a finite value")
    return line


def device_health_line(site: str, area: str, device: str, fields: Mapping[str, Value], ts: datetime) -> str:
    """One device's poll health over a health interval in measurement ``device_health``, stamped with the tick.

    Fields (:class:`gateway.historian.device_health.DeviceHealth`): ``polls``, ``failed_polls``,
    ``samples_not_good`` (integers); ``poll_ms_mean``, ``poll_ms_max`` (floats, absent when no reading
    of the interval had a poll time).
    """
    return point("device_health", {"site": site, "area": area, "device": device}, fields, ts)


def alarm_line(site: str, gateway: str, alarm: GatewayAlarm) -> str:
    """A gateway alarm's raise or clear, in measurement ``gateway_alarm``."""
    return point("gateway_alarm", {"site": site, "gateway": gateway, "alarm": alarm.id},
                 {"active": alarm.active, "message": alarm.message, "count": alarm.count}, alarm.ts)


def gateway_status_line(site: str, gateway: str, online: bool, reason: str, ts: datetime) -> str:
    """A gateway came up or went down (its MQTT birth / last will), in measurement ``gateway_status``.

    ``up`` is 1 or 0 (an integer: dashboards add it up), ``status`` ``online``/``offline``, ``reason`` why.
    """
    return point("gateway_status", {"site": site, "gateway": gateway},
                 {"up": int(online), "status": "online" if online else "offline", "reason": reason}, ts)


def gateway_heartbeat_line(site: str, gateway: str, ts: datetime) -> str:
    """The gateway's own historian sink is alive: ``gateway_status`` ``up=1i,heartbeat=1i`` at every health tick
    (a crashed gateway's heartbeats stop: the dashboards show it down after two health intervals)."""
    return point("gateway_status", {"site": site, "gateway": gateway}, {"up": 1, "heartbeat": 1}, ts)


def uplink_status_line(site: str, district: str, up: bool, ts: datetime) -> str:
    """A district's MQTT bridge (its uplink to the surface) went up (``up`` 1) or down (0): ``uplink_status``."""
    return point("uplink_status", {"site": site, "district": district}, {"up": int(up)}, ts)


def alarm_event_line(site: str, event) -> str:
    """One transition of a device alarm (:class:`gateway.alarms.AlarmEvent`) in measurement ``alarm_event``.

    Stamped with the transition's ``ts``. ``value`` is always a float (a status bit as 1.0/0.0), so
    alarms of every kind share the field's type; it is left out when there is none (comm_loss).
    """
    value = event.value
    fields: dict[str, Value] = {"state": event.state.value, "priority": int(event.priority),
                                "kind": event.kind.value, "message": event.message}
    if isinstance(value, (bool, int, float)) and field_value(float(value)) is not None:
        fields["value"] = float(value)
    if event.signal:
        fields["signal"] = event.signal
    if event.acked_by:
        fields["acked_by"] = event.acked_by
    fields["suppressed"] = event.suppressed
    if event.suppressed_by:
        fields["suppressed_by"] = event.suppressed_by
    return point("alarm_event", {"site": site, "area": event.area, "device": event.device, "alarm": event.alarm},
                 fields, event.ts)


RING_STATE_CODES = {"closed": 0, "open": 1, "segmented": 2, "unknown": 3}  # for colours and "worst of"


def ring_line(site: str, status) -> str:
    """A ring's diagnosis (:class:`gateway.network.watch.RingStatus`) in measurement ``network_ring``.

    Tags ``site``, ``ring``; lists are text (``open_links``: ``"sw3 port 2 — sw4 port 1; …"``, switch and
    device lists comma-separated), counts integers; see docs/historian.md.
    """
    d = status.diagnosis
    fields: dict[str, Value] = {
        "state": d.state, "state_code": RING_STATE_CODES[d.state], "open_links": "; ".join(map(str, d.open_links)),
        "open_link_count": len(d.open_links), "islands": len(d.islands),
        "cut_off_switches": ",".join(d.cut_off_switches), "cut_off_devices": ",".join(d.cut_off_devices),
        "unreachable_switches": ",".join(d.unreachable_switches), "degraded_links": len(d.degraded_links),
        "restarted_switches": ",".join(d.restarted_switches), "miswired": len(d.miswired)}
    return point("network_ring", {"site": site, "ring": d.ring}, fields, status.ts)


def linkage_line(site: str, event) -> str:
    """One alarm linkage (:class:`gateway.linkage.LinkageEvent`) in measurement ``linkage_event``.

    Stamped with the triggering sample's ``trigger_ts``. Tags ``site``, ``area``, ``alarm``; the
    times are left out when not every node confirmed (``ok`` false, ``failed_nodes`` names them).
    """
    failed = sorted(n for n, r in event.nodes.items() if not r.confirmed)
    fields: dict[str, Value] = {"ok": event.ok, "device": event.device, "message": event.message,
                                "priority": event.priority, "zones": ",".join(event.zones),
                                "nodes": len(event.nodes), "snapshots": len(event.snapshots),
                                "clips": len(event.clips)}
    if event.trigger_to_confirmed_ms is not None:
        fields["trigger_to_confirmed_ms"] = float(event.trigger_to_confirmed_ms)
    if event.broadcast_elapsed_ms is not None:
        fields["broadcast_elapsed_ms"] = float(event.broadcast_elapsed_ms)
    if failed:
        fields["failed_nodes"] = ",".join(failed)
    if event.error:
        fields["error"] = event.error
    return point("linkage_event", {"site": site, "area": event.area, "alarm": event.alarm}, fields,
                 event.trigger_ts)


def command_audit_line(site: str, gateway: str, entry) -> str:
    """One write command (:class:`gateway.commands.AuditEntry`), accepted or refused, in ``command_audit``.

    Tags ``site``, ``gateway``, ``result`` (accepted/refused); ``value`` is kept as JSON text so commands
    of every signal share the field's type. Fields left empty (no device in a malformed command) are omitted.
    """
    fields: dict[str, Value] = {"ok": entry.ok, "source": entry.source}
    if entry.value is not None:
        fields["value"] = json.dumps(entry.value)
    for name in ("request_id", "device", "signal", "by", "reason", "error"):
        if getattr(entry, name):
            fields[name] = getattr(entry, name)
    return point("command_audit", {"site": site, "gateway": gateway, "result": "accepted" if entry.ok else "refused"},
                 fields, entry.ts)
