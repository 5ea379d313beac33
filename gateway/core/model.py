"""The normalised data model every adapter produces and every sink consumes.

A :class:`Reading` is columnar and a plain class: the hot path builds no model per sample.
The rest are pydantic models, built far less often (state changes, inventories, alarms).
"""
from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from collections.abc import Sequence
from typing import Union

from pydantic import BaseModel, ConfigDict, Field

Value = Union[bool, int, float, str, None]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(ts: datetime) -> str:
    """UTC timestamp as ISO 8601 with milliseconds and a ``Z`` suffix."""
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Quality(str, Enum):
    GOOD = "good"
    BAD = "bad"  # the device answered, but not with a value (exception response, NaN)
    COMM_FAIL = "comm-fail"  # the device did not answer (timeout, connection lost)
    OUT_OF_RANGE = "out-of-range"  # decoded fine, outside the signal's engineering range
    STALE = "stale"  # read fine, but the answer came later than one poll interval


class Sample(BaseModel):
    """One signal's value at one instant."""

    model_config = ConfigDict(frozen=True)

    signal: str
    value: Value
    unit: str = ""
    quality: Quality = Quality.GOOD
    ts: datetime


class DeviceStatus(str, Enum):
    ONLINE = "online"
    OFFLINE = "offline"


class DeviceState(BaseModel):
    """What the gateway knows about a device's link, retained on MQTT."""

    device: str
    status: DeviceStatus = DeviceStatus.OFFLINE
    reason: str = "not polled yet"
    since: datetime = Field(default_factory=utcnow)
    last_good_poll: datetime | None = None
    polls: int = 0
    errors: int = 0  # failed polls since start
    consecutive_errors: int = 0
    exception_responses: int = 0
    timeouts: int = 0
    reconnects: int = 0
    last_poll_ms: float | None = None


class Schema:
    """The signals of one device's readings, in order, with their units: built once per device
    (a Modbus profile, an OPC UA node map), shared by every reading of it."""

    __slots__ = ("signals", "units", "index")

    def __init__(self, signals: Sequence[str], units: Sequence[str]):
        self.signals: tuple[str, ...] = tuple(signals)
        self.units: tuple[str, ...] = tuple(units)
        if len(self.units) != len(self.signals):
            raise ValueError(f"{len(self.signals)} signals but {len(self.units)} units")
        self.index: dict[str, int] = {s: i for i, s in enumerate(self.signals)}

    def __len__(self) -> int:
        return len(self.signals)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and (self.signals, self.units) == (other.signals, other.units)

    def __hash__(self) -> int:
        return hash((self.signals, self.units))

    def __repr__(self) -> str:
        return f"Schema({list(self.signals)!r})"


class Reading:
    """All samples one device poll produced: one MQTT message, one historian point.

    Columnar, so the hot path builds no object per signal: one ``ts`` (when the poll started),
    ``values`` in the order of ``schema``, ``qualities`` (None: every sample good) and ``times``
    (None: every sample at ``ts``; else when the answer carrying each sample arrived). Adapters
    off the hot path may pass ``samples`` instead; :attr:`samples` gives them back as
    :class:`Sample` objects for readers that want them (not on the hot path).
    """

    __slots__ = ("device", "ts", "poll_ms", "schema", "values", "qualities", "times", "derived")

    def __init__(self, device: str, ts: datetime, poll_ms: float, samples: Sequence[Sample] | None = None, *,
                 schema: Schema | None = None, values: list[Value] | None = None,
                 qualities: list[Quality] | None = None, times: list[datetime] | None = None,
                 derived: bool = False):
        self.device, self.ts, self.poll_ms, self.derived = device, ts, poll_ms, derived
        if samples is not None:
            schema = Schema([x.signal for x in samples], [x.unit for x in samples])
            values = [x.value for x in samples]
            qualities = [x.quality for x in samples]
            if all(q is Quality.GOOD for q in qualities):
                qualities = None
            times = [x.ts for x in samples]
            if all(t == ts for t in times):
                times = None
        if schema is None or values is None or len(values) != len(schema):
            raise ValueError("a reading needs samples, or a schema and one value per signal")
        self.schema, self.values, self.qualities, self.times = schema, values, qualities, times

    def quality(self, i: int) -> Quality:
        return Quality.GOOD if self.qualities is None else self.qualities[i]

    def time(self, i: int) -> datetime:
        return self.ts if self.times is None else self.times[i]

    def get(self, signal: str) -> Sample | None:
        """One signal as a :class:`Sample`, or None when the reading does not carry it."""
        i = self.schema.index.get(signal)
        return None if i is None else self._sample(i)

    def _sample(self, i: int) -> Sample:
        return Sample(signal=self.schema.signals[i], value=self.values[i], unit=self.schema.units[i],
                      quality=self.quality(i), ts=self.time(i))

    @property
    def samples(self) -> list[Sample]:
        return [self._sample(i) for i in range(len(self.values))]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reading) and (self.device, self.ts, self.poll_ms, self.derived, self.samples) == (
            other.device, other.ts, other.poll_ms, other.derived, other.samples)

    def __repr__(self) -> str:
        return f"Reading({self.device!r}, {self.ts.isoformat()}, {len(self.values)} signals)"


class WriteResult(BaseModel):
    device: str
    signal: str
    ok: bool
    value: Value = None
    error: str | None = None


class GatewayAlarm(BaseModel):
    """An alarm about the gateway itself, e.g. data dropped at a full buffer or queue.

    Device and process alarms (limits, ISA-18.2 lifecycle) belong to the alarm engine;
    these say that the gateway is losing data, which must never be silent.
    """

    id: str  # e.g. "historian-dropping"
    active: bool
    message: str
    count: int  # items lost so far
    ts: datetime = Field(default_factory=utcnow)


class MediaProfile(BaseModel):
    """One video stream a camera offers (an ONVIF media profile). URIs never carry credentials."""

    token: str
    name: str
    encoding: str | None = None  # H264, JPEG, MPEG4, H265
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    stream_uri: str | None = None  # RTSP
    snapshot_uri: str | None = None  # HTTP, JPEG
    ptz: bool = False  # the profile has a PTZ configuration


class Inventory(BaseModel):
    """What a device is and offers, for lists and dispatch screens (cameras: their streams).

    Announced after the device was read, when it changes, and when the device goes
    online or offline (then with what was last read).
    """

    device: str
    ts: datetime
    online: bool
    reason: str = ""  # why offline
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None
    serial: str | None = None
    hardware_id: str | None = None
    services: list[str] = []  # device, media, events, ptz, imaging, ...
    ptz: bool = False
    event_topics: list[str] = []
    profiles: list[MediaProfile] = []
    clock_offset_s: float | None = None  # the device's clock minus the gateway's
