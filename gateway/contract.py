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

The gateway builds data payloads with :func:`data_payload`, not with the models:
it runs once per device poll and is several times faster (tests check that its
output validates and matches the model's own JSON).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

import pydantic_core
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints

from gateway.core.model import DeviceStatus, MediaProfile, Quality, Reading, Value, iso, utcnow


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

    def inventory(self, area: str, device: str) -> str:
        return f"{self.prefix}/{self.site}/{area}/{device}/inventory"

    def gateway_status(self, gateway: str) -> str:
        return f"{self.prefix}/{self.site}/gateway/{gateway}/status"

    def gateway_health(self, gateway: str) -> str:
        return f"{self.prefix}/{self.site}/gateway/{gateway}/health"

    def gateway_alarm(self, gateway: str, alarm_id: str) -> str:
        return f"{self.prefix}/{self.site}/gateway/{gateway}/alarm/{alarm_id}"

    def alarm(self, area: str, device: str, alarm_id: str) -> str:
        return f"{self.prefix}/{self.site}/{area}/{device}/alarm/{alarm_id}"

    def linkage(self, area: str, alarm_id: str) -> str:
        return f"{self.prefix}/{self.site}/{area}/linkage/{alarm_id}"

    def alarms(self) -> str:
        """Every device alarm of the site (gateway alarms have area ``gateway``: filter them out)."""
        return f"{self.prefix}/{self.site}/+/+/alarm/+"

    def alarm_ack(self) -> str:
        return f"{self.prefix}/{self.site}/command/alarm/ack"

    def command_write(self) -> str:
        return f"{self.prefix}/{self.site}/command/write"

    def command_broadcast(self) -> str:
        return f"{self.prefix}/{self.site}/command/broadcast"

    def command_reply(self, request_id: str) -> str:
        return f"{self.prefix}/{self.site}/command/reply/{request_id}"

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
    """JSON bytes of the :class:`DataMessage` for ``reading``.

    Plain dicts with pre-formatted strings: pydantic_core serialises these several
    times faster than nested models, or than dicts holding enums and datetimes.
    Samples of one block share a timestamp object, so each instant is formatted once.
    """
    stamps: dict[datetime, str] = {}

    def stamp(ts: datetime) -> str:
        text = stamps.get(ts)
        if text is None:
            text = stamps[ts] = iso(ts)
        return text

    return pydantic_core.to_json({
        "site": site, "area": area, "zone": zone, "device": reading.device, "kind": kind,
        "ts": stamp(reading.ts), "poll_ms": reading.poll_ms,
        "samples": {s.signal: {"value": s.value, "unit": s.unit, "quality": s.quality.value, "ts": stamp(s.ts)}
                    for s in reading.samples},
    }, inf_nan_mode="null")  # JSON has no NaN/inf; the models serialise them as null too


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
    device: str | None = None
    signal: str | None = None
    value: bool | int | float | str | None = None
    error: str | None = None
    ts: datetime = Field(default_factory=utcnow)


class BroadcastReply(BaseModel):
    request_id: str | None
    ok: bool
    action: str | None = None
    error: str | None = None
    result: dict | None = Field(None, description="the BroadcastResult: per-node confirmed/failed, elapsed_ms")
    ts: datetime = Field(default_factory=utcnow)


class AckReply(BaseModel):
    request_id: str | None
    ok: bool
    alarm: str | None = None
    state: str | None = Field(None, description="the alarm's state after the acknowledgement")
    error: str | None = None
    ts: datetime = Field(default_factory=utcnow)
