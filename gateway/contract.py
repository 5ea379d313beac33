"""The wire contract: the MQTT topic namespace and one pydantic model per payload on it.

Topics (:class:`Topics`): what the gateway publishes (data, state, inventory, alarms, linkage,
gateway status, health and alarms) and the command topics it listens on. Payloads: the models
below, those the gateway publishes and the commands and replies (docs/mqtt.md). The sink,
the surface ingest, the CLI and the tests all use these.

Consumers validate with these models (``DataMessage.model_validate_json(payload)``);
docs/mqtt.md describes the same contract for people. Timestamps are ISO 8601 UTC
with milliseconds and a ``Z`` suffix. Unknown fields are ignored on validation so
older consumers keep working when fields are added (commands, which the gateway
checks, refuse them).

The gateway builds data payloads with :class:`DataPayloads` (:func:`data_payload`), not
with the models: it runs once per device poll and is many times faster (tests check that
its output validates and is byte for byte the dict ``pydantic_core.to_json`` would write).
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain, repeat
from typing import Annotated, Literal

import pydantic_core
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints

from gateway.core.model import DeviceStatus, MediaProfile, Quality, Reading, Schema, Value, iso, utcnow


# ---- topics ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Topics:
    """The topic namespace: ``{prefix}/{site}/{area}/{device}/...`` and ``.../gateway/{id}/...``."""

    prefix: str
    site: str

    def data(self, area: str, device: str) -> str:
        return f"{self.prefix}/{self.site}/{area}/{device}/data"

    def state(self, area: str, device: str) -> str:
        return f"{self.prefix}/{self.site}/{area}/{device}/state"

    def schema(self, area: str, device: str) -> str:
        """Retained: the signal lists of a device's compact data messages (:class:`SchemaMessage`)."""
        return f"{self.prefix}/{self.site}/{area}/{device}/schema"

    def inventory(self, area: str, device: str) -> str:
        return f"{self.prefix}/{self.site}/{area}/{device}/inventory"

    def gateway_status(self, gateway: str) -> str:
        return f"{self.prefix}/{self.site}/gateway/{gateway}/status"

    def gateway_health(self, gateway: str) -> str:
        return f"{self.prefix}/{self.site}/gateway/{gateway}/health"

    def historian(self, gateway: str) -> str:
        """The gateway's historian lines (line protocol), for ``minegw ingest`` to write (``historian.api: mqtt``)."""
        return f"{self.prefix}/{self.site}/gateway/{gateway}/historian"

    def gateway_alarm(self, gateway: str, alarm_id: str) -> str:
        return f"{self.prefix}/{self.site}/gateway/{gateway}/alarm/{alarm_id}"

    def alarm(self, area: str, device: str, alarm_id: str) -> str:
        return f"{self.prefix}/{self.site}/{area}/{device}/alarm/{alarm_id}"

    def linkage(self, area: str, alarm_id: str) -> str:
        return f"{self.prefix}/{self.site}/{area}/linkage/{alarm_id}"

    def network_ring(self, ring: str) -> str:
        """A ring network's diagnosis (retained): closed, open at which link, segmented into islands."""
        return f"{self.prefix}/{self.site}/network/ring/{ring}"

    def alarms(self) -> str:
        """Every device alarm of the site (gateway alarms have area ``gateway``: filter them out)."""
        return f"{self.prefix}/{self.site}/+/+/alarm/+"

    def alarm_ack(self) -> str:
        return f"{self.prefix}/{self.site}/command/alarm/ack"

    def command_write(self) -> str:
        return f"{self.prefix}/{self.site}/command/write"

    def command_broadcast(self) -> str:
        return f"{self.prefix}/{self.site}/command/broadcast"

    def command_reply(self, gateway: str, request_id: str, requester: str | None = None) -> str:
        """Where ``gateway`` answers a command (MQTT 5 response topic or not): under its own ``gateway/{id}``
        topics, which the ACL lets no other gateway write, then under the verified signer's name, which is its
        MQTT user, so the ACL lets only the requester read it. ``gateway`` "+": a subscription to any gateway's."""
        return f"{self.gateway_replies(gateway, requester)}/{request_id}"

    def gateway_replies(self, gateway: str, requester: str | None = None) -> str:
        """The level above :meth:`command_reply`'s request ids (an unsigned command's reply has no signer level)."""
        base = f"{self.prefix}/{self.site}/gateway/{gateway}/reply"
        return f"{base}/{requester}" if requester else base

    def everything(self) -> str:
        return f"{self.prefix}/{self.site}/#"


# ---- what the gateway publishes ---------------------------------------------------------------

Timestamp = Annotated[AwareDatetime, PlainSerializer(iso, return_type=str, when_used="json")]


class SampleValue(BaseModel):
    """One signal in a data message; the signal name is its key in ``samples``."""

    value: Value  # null when quality is bad or comm-fail
    unit: str
    quality: Quality
    ts: Timestamp


class DataMessage(BaseModel):
    """``{prefix}/{site}/{area}/{device}/data``: everything one device poll produced."""

    site: str
    area: str
    zone: str | None
    device: str
    kind: str  # equipment kind: shearer, belt_conveyor, ...
    ts: Timestamp  # when the poll started
    poll_ms: float  # how long the poll took
    samples: dict[str, SampleValue]


class StateMessage(BaseModel):
    """``{prefix}/{site}/{area}/{device}/state`` (retained): the device link's state and counters.

    The fields after ``area`` are those of :class:`gateway.core.model.DeviceState`.
    """

    site: str
    area: str
    device: str
    status: DeviceStatus
    reason: str
    since: Timestamp
    last_good_poll: Timestamp | None
    polls: int
    errors: int
    consecutive_errors: int
    exception_responses: int
    timeouts: int
    reconnects: int
    last_poll_ms: float | None


class InventoryMessage(BaseModel):
    """``{prefix}/{site}/{area}/{device}/inventory`` (retained): what a device is and offers.

    For cameras: model, firmware, media profiles with their stream and snapshot URIs
    (never with credentials) and whether the camera is online. The fields after ``kind``
    are those of :class:`gateway.core.model.Inventory`.
    """

    site: str
    area: str
    zone: str | None
    device: str
    kind: str  # equipment kind: camera, ...
    ts: Timestamp  # when read, or when the online state changed
    online: bool
    reason: str  # why offline; empty when online
    manufacturer: str | None
    model: str | None
    firmware: str | None
    serial: str | None
    hardware_id: str | None
    services: list[str]
    ptz: bool
    event_topics: list[str]
    profiles: list[MediaProfile]
    clock_offset_s: float | None  # the device's clock minus the gateway's


class GatewayStatus(BaseModel):
    """``{prefix}/{site}/gateway/{gateway}/status`` (retained): birth and last will."""

    site: str
    gateway: str
    status: Literal["online", "offline"]
    reason: str  # "connected", "stopped", "connection lost"
    version: str
    started: Timestamp  # when this gateway process started
    devices: list[str]  # ids of the devices this gateway polls
    ts: Timestamp


class GatewayAlarmMessage(BaseModel):
    """``{prefix}/{site}/gateway/{gateway}/alarm/{id}`` (retained): the gateway is losing data.

    Raised when a queue or buffer drops data (``count``: items lost so far); cleared
    (``active: false``) after a minute without drops.
    """

    site: str
    gateway: str
    id: str
    active: bool
    message: str
    count: int
    ts: Timestamp


class AlarmMessage(BaseModel):
    """``{prefix}/{site}/{area}/{device}/alarm/{alarm}`` (retained while not normal): one alarm's state.

    The fields are those of :class:`gateway.alarms.AlarmEvent`; see docs/alarms.md. When the
    alarm returns to normal the retained message is cleared (an empty payload).
    """

    site: str
    area: str
    device: str
    alarm: str
    signal: str | None
    kind: str  # high, high_high, low, low_low, rate, state, comm_loss, methane
    priority: int  # 1 critical, 2 high, 3 medium, 4 low
    state: Literal["active_unack", "active_ack", "cleared_unack", "normal"]
    value: Value  # of the sample that caused the transition (comm_loss: the link's reason)
    message: str
    ts: Timestamp  # of the transition: the triggering sample's, or the acknowledgement's
    raised_at: Timestamp | None
    cleared_at: Timestamp | None
    acked_at: Timestamp | None
    acked_by: str | None
    suppressed: bool = False  # a comm_loss explained by a network alarm (ISA-18.2 designed suppression)
    suppressed_by: str | None = None  # that network alarm's id


class LinkageNodeMessage(BaseModel):
    node: str
    zone: str
    confirmed: bool
    reason: str | None
    confirm_ms: float | None  # from the broadcast request to this node's confirmation


class LinkageMessage(BaseModel):
    """``{prefix}/{site}/{area}/linkage/{alarm}`` (retained): what the last linkage of an alarm did.

    The fields are those of :class:`gateway.linkage.LinkageEvent`; see docs/broadcast.md, "Linkage".
    """

    site: str
    area: str
    alarm: str
    device: str
    zones: list[str]
    message: str  # broadcast message name
    priority: int  # 1 routine, 2 dispatcher, 3 emergency
    nodes: dict[str, LinkageNodeMessage]
    ok: bool  # every node confirmed
    trigger_ts: Timestamp  # the sample that raised the alarm
    trigger_to_confirmed_ms: float | None  # that sample to the last node's confirmation; None unless ok
    broadcast_elapsed_ms: float | None
    snapshots: list[str]
    snapshot_errors: dict[str, str]
    clips: list[str] = []  # MP4 clips of the area's relayed cameras, next to the snapshots (docs/video.md)
    clip_errors: dict[str, str] = {}
    error: str | None
    ts: Timestamp


class GatewayHealth(BaseModel):
    """``{prefix}/{site}/gateway/{gateway}/health`` (retained): the MQTT sink's counters since start."""

    site: str
    gateway: str
    connected: bool
    published: int  # messages produced for MQTT, re-sends not counted again
    delivered: int  # acknowledged by the broker (QoS 1/2) or written to the socket (QoS 0)
    rejected: int  # refused by the broker in its acknowledgement (MQTT 5 only, e.g. not authorised)
    dropped: int  # discarded because the queue was full (oldest first)
    queued: int  # waiting to be sent or waiting for the broker's acknowledgement
    reconnects: int  # connections made after the first
    ts: Timestamp


def data_payload(site: str, area: str, zone: str | None, kind: str, reading: Reading) -> bytes:
    """JSON bytes of the :class:`DataMessage` for ``reading`` (tests check that its output validates
    and matches the model's own JSON). A sink builds many: it keeps a :class:`DataPayloads` per device."""
    return DataPayloads(site, area, zone, kind).build(reading)


def _json(value: object) -> bytes:
    return pydantic_core.to_json(value, inf_nan_mode="null")  # JSON has no NaN/inf: null, as the models write it


_QUALITY_JSON = {q: q.value.encode() for q in Quality}
_TS_KEY = b'","ts":"'


class _SchemaJson:
    """The bytes of a data message that depend only on a reading's schema: each sample is
    ``KEY:{"value":`` V ``,"unit":U,"quality":"`` Q ``","ts":"`` T ``"}``; keys and units are
    JSON-encoded once, so a reading costs one ``to_json`` of its values and one join."""

    __slots__ = ("schema", "unique", "first", "units", "units_good", "after")

    def __init__(self, schema: Schema):
        self.schema = schema
        self.unique = len(schema.index) == len(schema.signals)  # else a JSON object keeps the last of a name
        keys = [_json(s) + b':{"value":' for s in schema.signals]
        self.first = keys[0] if keys else b""
        self.units = [b',"unit":' + _json(u) + b',"quality":"' for u in schema.units]
        self.units_good = [u + b'good' + _TS_KEY for u in self.units]
        self.after = [b'"},' + k for k in keys[1:]] + [b'"}}}']  # a sample's end and the next one's key


def compiled_for(cache: dict, schema: Schema, compile, limit: int):
    """``compile(schema)``, kept in ``cache`` by the schema's id (the entry keeps the schema alive, so the id
    stays its own); a builder that meets more than ``limit`` schemas (a reader making one per reading) starts over."""
    compiled = cache.get(id(schema))
    if compiled is None or compiled.schema is not schema:
        if len(cache) >= limit:
            cache.clear()
        compiled = cache[id(schema)] = compile(schema)
    return compiled


class DataPayloads:
    """Builds the data messages of one device's (or one area's) readings, byte for byte what
    ``pydantic_core.to_json`` writes for the :class:`DataMessage` dict, at a fraction of the cost:
    the fixed part per device and the keys and units per schema are encoded once, the values of a
    reading in one ``to_json`` call, every distinct timestamp formatted once."""

    MAX_SCHEMAS = 64  # per builder; a reader that makes a new schema per reading (derived) just compiles again

    def __init__(self, site: str, area: str, zone: str | None, kind: str):
        self.site, self.area, self.zone, self.kind = site, area, zone, kind
        self._heads: dict[str, bytes] = {}  # device -> b'{"site":...,"kind":"...","ts":"'
        self._schemas: dict[int, _SchemaJson] = {}  # id(schema) -> its bytes (the entry keeps the schema alive)

    def _head(self, device: str) -> bytes:
        head = self._heads.get(device)
        if head is None:
            fixed = _json({"site": self.site, "area": self.area, "zone": self.zone, "device": device,
                           "kind": self.kind})
            head = self._heads[device] = fixed[:-1] + b',"ts":"'
        return head

    def _compiled(self, schema: Schema) -> _SchemaJson:
        return compiled_for(self._schemas, schema, _SchemaJson, self.MAX_SCHEMAS)

    def build(self, reading: Reading) -> bytes:
        values, n = reading.values, len(reading.values)
        encoded = _json((reading.poll_ms, values))  # b'[poll_ms,[v0,v1,...]]'
        cut = encoded.index(b",")
        ts = iso(reading.ts).encode()
        head = b"".join((self._head(reading.device), ts, b'","poll_ms":', encoded[1:cut], b',"samples":{'))
        if not n:
            return head + b"}}"
        compiled = self._compiled(reading.schema)
        if not compiled.unique:
            return self._per_sample(reading)
        body = encoded[cut + 2:-2]
        texts = body.split(b",")
        if len(texts) != n or b'"' in body:  # a text value (it may hold commas): one call per value
            texts = [_json(v) for v in values]
        times = reading.times
        if times is None:
            stamps = repeat(ts)
        else:
            formatted = dict.fromkeys(times)  # the samples of one block share a timestamp object
            for t in formatted:
                formatted[t] = ts if t == reading.ts else iso(t).encode()
            stamps = map(formatted.__getitem__, times)
        if reading.qualities is None:
            parts = zip(texts, compiled.units_good, stamps, compiled.after)
        else:
            parts = zip(texts, compiled.units, map(_QUALITY_JSON.__getitem__, reading.qualities), repeat(_TS_KEY),
                        stamps, compiled.after)
        return b"".join((head, compiled.first, b"".join(chain.from_iterable(parts))))

    def build_only(self, reading: Reading, indexes: Sequence[int]) -> bytes:
        """The data message with only the samples at ``indexes`` (report by exception)."""
        return self._per_sample(reading, indexes)

    def _per_sample(self, reading: Reading, indexes: Sequence[int] | None = None) -> bytes:
        stamps = {t: iso(t) for t in {reading.ts, *(reading.times or ())}}
        signals, units = reading.schema.signals, reading.schema.units
        return _json({
            "site": self.site, "area": self.area, "zone": self.zone, "device": reading.device, "kind": self.kind,
            "ts": stamps[reading.ts], "poll_ms": reading.poll_ms,
            "samples": {signals[i]: {"value": reading.values[i], "unit": units[i], "quality": reading.quality(i).value,
                                     "ts": stamps[reading.time(i)]}
                        for i in (range(len(signals)) if indexes is None else indexes)}})


# ---- the compact data payload (docs/mqtt.md#compact-payload) -----------------------------------

def schema_version(signals: Sequence[str], units: Sequence[str]) -> str:
    """A schema's version: content-addressed, so one profile has one version on every gateway and every run."""
    text = json.dumps([list(signals), list(units)], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


class SchemaVersion(BaseModel):
    """One version of a device's signal list; more keys (``ranges``, ...) may come and are ignored."""

    signals: list[str]
    units: list[str]
    derived: bool = False  # the signals the gateway derives (equipment status, roof-pressure metrics)


class SchemaMessage(BaseModel):
    """``{prefix}/{site}/{area}/{device}/schema`` (retained): every live schema version of a device."""

    site: str
    area: str
    zone: str | None
    device: str
    kind: str
    schemas: dict[str, SchemaVersion]  # version -> its signals


class CompactDataMessage(BaseModel):
    """A compact ``…/data`` message: the values in the order of the schema ``version`` (an array), or with
    report by exception only those sent (an object index -> value); ``quality`` and ``times`` hold only the
    samples that are not good, not at ``ts + time`` (index as a string -> quality, offset in ms from ``ts``);
    ``time`` is the offset of every other sample from ``ts``. ``poll_ms`` is rounded to 0.01 ms."""
    model_config = ConfigDict(populate_by_name=True)

    version: str = Field(alias="schema")
    ts: int  # poll start, ms since the Unix epoch (UTC)
    poll_ms: float
    values: list[Value] | dict[str, Value]
    quality: dict[str, Quality] = {}
    time: int = 0  # ms from ts of every sample not in ``times``
    times: dict[str, int] = {}
    derived: bool = False

    def expand(self, schema: SchemaMessage) -> DataMessage:
        """The :class:`DataMessage` carrying the same samples (KeyError: a version ``schema`` lacks)."""
        version = schema.schemas[self.version]
        ts = epoch_ms_time(self.ts)
        sent = self.values.items() if isinstance(self.values, dict) else enumerate(self.values)
        samples = {}
        for key, value in sent:
            i = int(key)
            samples[version.signals[i]] = SampleValue(
                value=value, unit=version.units[i], quality=self.quality.get(str(key), Quality.GOOD),
                ts=epoch_ms_time(self.ts + self.times.get(str(key), self.time)))
        return DataMessage(site=schema.site, area=schema.area, zone=schema.zone, device=schema.device,
                           kind=schema.kind, ts=ts, poll_ms=self.poll_ms, samples=samples)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(ts: datetime) -> int:
    """Integer ms since the epoch, truncated as :func:`iso` truncates (so both payloads say the same time)."""
    return (ts - _EPOCH) // _MS


def epoch_ms_time(ms: int) -> datetime:
    return _EPOCH + ms * _MS


class _CompactSchema:
    __slots__ = ("keys", "schema", "version")

    def __init__(self, schema: Schema):
        self.schema = schema
        self.version = schema_version(schema.signals, schema.units)
        self.keys = [str(i) for i in range(len(schema))]  # the JSON object keys of quality, times and values


class CompactPayloads:
    """Builds compact data messages: per schema its version and index keys once, per reading one ``to_json``."""

    MAX_SCHEMAS = 64

    def __init__(self):
        self._schemas: dict[int, _CompactSchema] = {}  # id(schema) -> compiled (the entry keeps the schema alive)

    def _compiled(self, schema: Schema) -> _CompactSchema:
        return compiled_for(self._schemas, schema, _CompactSchema, self.MAX_SCHEMAS)

    def version(self, schema: Schema) -> str:
        return self._compiled(schema).version

    def build(self, reading: Reading, indexes: Sequence[int] | None = None) -> bytes:
        """The message for ``reading``; given ``indexes`` (report by exception), only those samples."""
        compiled = self._compiled(reading.schema)
        keys, ts = compiled.keys, epoch_ms(reading.ts)
        if indexes is None:
            values = reading.values
            indexes = range(len(values))
        else:
            values = {keys[i]: reading.values[i] for i in indexes}
        message = {"schema": compiled.version, "ts": ts, "poll_ms": round(reading.poll_ms, 2), "values": values}
        if reading.qualities is not None:
            qualities = reading.qualities
            if quality := {keys[i]: qualities[i] for i in indexes if qualities[i] is not Quality.GOOD}:
                message["quality"] = quality
        if reading.times is not None:
            self._times(message, reading.times, indexes, keys, ts)
        if reading.derived:
            message["derived"] = True
        return _json(message)

    @staticmethod
    def _times(message: dict, times: Sequence[datetime], indexes: Sequence[int], keys: list[str], ts: int) -> None:
        """``time``: the offset most samples share (a one-block poll: all of them); ``times``: the others."""
        offsets = {t: epoch_ms(t) - ts for t in dict.fromkeys(times)}  # a block's samples share one time
        if len(offsets) == 1:
            [common] = offsets.values()
            at = None
        else:
            full = isinstance(indexes, range)
            sent = list(map(offsets.__getitem__, times)) if full else [offsets[times[i]] for i in indexes]
            common = Counter(sent).most_common(1)[0][0] if sent else 0  # of equals, the first sample's
            pairs = zip(keys, sent) if full else zip(map(keys.__getitem__, indexes), sent)
            at = {key: offset for key, offset in pairs if offset != common}
        if common:
            message["time"] = common
        if at:
            message["times"] = at


# ---- commands and their replies (docs/mqtt.md#commands) ---------------------------------------

REQUEST_ID = r"^[A-Za-z0-9_.:-]{1,64}$"  # it goes into a reply topic: no '/', '+' or '#'
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(max_length=256)]


class Command(BaseModel):
    """What every command carries (docs/mqtt.md#commands)."""
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(pattern=REQUEST_ID)
    issued_at: AwareDatetime = Field(description="when the operator issued it (RFC 3339, UTC)")
    key_id: Name | None = Field(None, description="the operator whose key signed it")
    sig: str | None = Field(None, max_length=128, description="base64 Ed25519 signature (gateway/signing.py)")
    by: Name | None = Field(None, description="who sends it; must equal key_id when signed")
    reason: Text | None = None


class WriteCommand(Command):
    device: Name
    signal: Name
    value: bool | int | float | Text


class BroadcastCommand(Command):
    action: Literal["play", "stop", "volume"]
    message: Name | int | None = None
    zones: list[Name] = Field(min_length=1, max_length=64)
    priority: Literal["emergency", "dispatcher", "routine"] | int | None = None
    volume: int | None = Field(None, ge=0, le=100)


class AckCommand(Command):
    alarm: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class CommandReply(BaseModel):
    request_id: str | None
    ok: bool
    by: str | None = Field(None, description="the verified signer (key_id); the reply topic is under it")
    device: str | None = None
    signal: str | None = None
    value: bool | int | float | str | None = None
    error: str | None = None
    ts: datetime = Field(default_factory=utcnow)


class BroadcastReply(BaseModel):
    request_id: str | None
    ok: bool
    by: str | None = Field(None, description="the verified signer (key_id); the reply topic is under it")
    action: str | None = None
    error: str | None = None
    result: dict | None = Field(None, description="the BroadcastResult: per-node confirmed/failed, elapsed_ms")
    ts: datetime = Field(default_factory=utcnow)


class AckReply(BaseModel):
    request_id: str | None
    ok: bool
    by: str | None = Field(None, description="the verified signer (key_id); the reply topic is under it")
    alarm: str | None = None
    state: str | None = Field(None, description="the alarm's state after the acknowledgement")
    error: str | None = None
    ts: datetime = Field(default_factory=utcnow)
