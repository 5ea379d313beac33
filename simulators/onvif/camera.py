"""One simulated ONVIF camera: what it is, its clock, its logins, its event states and faults.

The camera is protocol-free: :mod:`.server` answers SOAP and HTTP from it, :mod:`.discovery`
announces it. Faults (the same interface as the Modbus and OPC UA simulators, so a scenario
or ``minegw sim-fault`` drives them):

- ``motion``, ``tamper``, ``digital_input``: the event is active while the fault is set
  (``IsMotion``/``IsTamper``/``LogicalState`` true), inactive once it is cleared;
  every PullPoint subscription receives a ``Changed`` notification at each transition;
- ``offline``: the camera's port closes (connection refused) until cleared;
- ``clock``: the camera's clock jumps ``offset`` seconds away from UTC;
- ``password``: the camera's ``user`` (default: its first) now has password ``value``;
- ``frozen``, ``black``, ``obscured`` (``level``), ``bitrate_collapse`` (``kbps``),
  ``stream_refused``: what its RTSP streams show or do (:mod:`.stream`).
"""
from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from pydantic import Field

from simulators.faults import FaultError, FaultHolder, FaultParams, Listener, NoParams

from . import responses
from .auth import HttpDigest, TokenChecker
from .identity import DEFAULT_PROFILES, StreamProfile

MAX_QUEUED = 100  # notifications a PullPoint keeps for a client that does not pull


class ClockParams(FaultParams):
    offset: float = Field(description="seconds the camera's clock is ahead of UTC (negative: behind)",
                          ge=-7 * 86400, le=7 * 86400)


class PasswordParams(FaultParams):
    value: str = Field(min_length=1, description="the new password")
    user: str | None = Field(None, description="whose password changes; default: the camera's first user")


class ObscuredParams(FaultParams):
    level: float = Field(1.0, gt=0, le=1, description="how thick the dust on the lens: 1, the picture a grey blur")


class BitrateParams(FaultParams):
    kbps: int = Field(24, ge=8, le=100_000, description="what the encoder drops to, kbit/s")


FAULTS: dict[str, type[FaultParams]] = {
    "offline": NoParams, "motion": NoParams, "tamper": NoParams, "digital_input": NoParams,
    "clock": ClockParams, "password": PasswordParams,
    "frozen": NoParams, "black": NoParams, "obscured": ObscuredParams, "bitrate_collapse": BitrateParams,
    "stream_refused": NoParams,
}


@dataclass(frozen=True)
class EventTopic:
    """A property event the camera offers: its topic, the source items and its one data item."""

    topic: str
    source: tuple[tuple[str, str], ...]
    data: str


_VIDEO_RULE = (("VideoSourceConfigurationToken", "vsc-1"), ("VideoAnalyticsConfigurationToken", "vac-1"))
EVENT_TOPICS = {
    "motion": EventTopic("tns1:RuleEngine/CellMotionDetector/Motion", (*_VIDEO_RULE, ("Rule", "MotionRule")),
                         "IsMotion"),
    "tamper": EventTopic("tns1:RuleEngine/TamperDetector/Tamper", (*_VIDEO_RULE, ("Rule", "TamperRule")),
                         "IsTamper"),
    "digital_input": EventTopic("tns1:Device/Trigger/DigitalInput", (("InputToken", "DI-1"),), "LogicalState"),
}


@dataclass
class PullPoint:
    """One PullPoint subscription: notifications wait here until the client pulls them."""

    id: str
    termination: datetime  # camera time
    messages: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_QUEUED))
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, message: str) -> None:
        self.messages.append(message)
        self.arrived.set()

    async def pull(self, timeout: float, limit: int) -> list[str]:
        """Up to ``limit`` notifications; waits up to ``timeout`` seconds for the first."""
        if not self.messages:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), timeout)
            except asyncio.TimeoutError:
                return []
        return [self.messages.popleft() for _ in range(min(limit, len(self.messages)))]


class CameraSimulator(FaultHolder):
    """A camera's identity and behaviour. ``users`` maps user names to passwords (none: no login needed).

    ``clock_offset``: seconds the camera's clock runs ahead of UTC. ``auth_tolerance``:
    how far (s) a UsernameToken's ``Created`` may be from that clock. ``credentials_in_uri``:
    stream URIs carry ``user:password@`` as some cameras' do (a gateway must strip them).
    """

    def __init__(self, device_id: str, users: dict[str, str], *, name: str = "", location: str = "",
                 manufacturer: str = "minegw", model: str = "SIM-IPC-2M", firmware: str = "1.4.2",
                 serial: str | None = None, ptz: bool = False, profiles: tuple[StreamProfile, ...] = DEFAULT_PROFILES,
                 clock_offset: float = 0.0, auth_tolerance: float = 10.0, credentials_in_uri: bool = False,
                 rtsp_port: int = 554):
        self.device_id = device_id
        self.name, self.location = name or device_id, location
        self.manufacturer, self.model, self.firmware = manufacturer, model, firmware
        self.serial = serial or f"SIM{uuid.uuid5(uuid.NAMESPACE_DNS, device_id).hex[:10].upper()}"
        self.ptz, self.profiles = ptz, profiles
        self.clock_offset, self.credentials_in_uri, self.rtsp_port = clock_offset, credentials_in_uri, rtsp_port
        self.endpoint = uuid.uuid5(uuid.NAMESPACE_URL, f"minegw-sim-camera:{device_id}").urn  # stable WS-Discovery EPR
        self.base_url = ""  # http://host:port, set by the server that serves the camera
        self._users = dict(users)
        self.users = dict(users)  # in effect now (the password fault changes it in place)
        self.tokens = TokenChecker(self.users, auth_tolerance)
        self.digest = HttpDigest(self.users, realm=f"{model} {self.serial}")
        self.pull_points: dict[str, PullPoint] = {}
        self.snapshots_served = 0
        self._faults: dict[str, FaultParams] = {}
        self._listeners: list[Listener] = []

    def __repr__(self) -> str:
        return f"CameraSimulator({self.device_id!r}, {self.base_url or 'not served'})"

    # -- clock ------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The camera's clock (UTC plus its offset)."""
        clock = self._faults.get("clock")
        offset = clock.offset if isinstance(clock, ClockParams) else self.clock_offset
        return datetime.now(timezone.utc) + timedelta(seconds=offset)

    # -- events -----------------------------------------------------------------------------
    def event_state(self, name: str) -> bool:
        return name in self._faults

    def subscribe_pull_point(self, seconds: float) -> PullPoint:
        """A new PullPoint holding an ``Initialized`` message per event, as ONVIF requires."""
        self._expire()
        point = PullPoint(uuid.uuid4().hex[:12], self.now() + timedelta(seconds=seconds))
        self.synchronize(point)
        self.pull_points[point.id] = point
        return point

    def pull_point(self, point_id: str) -> PullPoint | None:
        self._expire()
        return self.pull_points.get(point_id)

    def synchronize(self, point: PullPoint) -> None:
        """SetSynchronizationPoint: the current state of every event again (one time stamp for all)."""
        now = self.now()
        for name in EVENT_TOPICS:
            point.push(self._notification(name, "Initialized", now))

    def _expire(self) -> None:
        now = self.now()
        for point_id in [p.id for p in self.pull_points.values() if p.termination < now]:
            del self.pull_points[point_id]

    def _notification(self, name: str, operation: str, at: datetime | None = None) -> str:
        topic = EVENT_TOPICS[name]
        value = "true" if self.event_state(name) else "false"
        return responses.notification(topic.topic, at or self.now(), operation, topic.source, ((topic.data, value),))

    def _announce(self, name: str) -> None:
        message = self._notification(name, "Changed")
        for point in self.pull_points.values():
            point.push(message)

    # -- faults -----------------------------------------------------------------------------
    @property
    def fault_kinds(self) -> dict[str, type[FaultParams]]:
        return FAULTS

    @property
    def active_faults(self) -> dict[str, FaultParams]:
        """Active faults with their checked parameters (a copy)."""
        return dict(self._faults)

    def _check_targets(self, name: str, checked: FaultParams) -> FaultParams:
        if isinstance(checked, PasswordParams) and (not self._users or checked.user not in (None, *self._users)):
            raise FaultError(f"{self.device_id}: password: no user {checked.user or ''!r}")
        return checked

    def set_fault(self, name: str, **params: Any) -> FaultParams:
        """Inject a fault now (replacing the same fault's earlier parameters)."""
        checked = self.check_fault(name, params)
        was_active = name in self._faults
        self._faults[name] = checked
        self._apply(name, changed=not was_active)
        self._notify(name, checked)
        return checked

    def _fault_cleared(self, name: str) -> None:
        self._apply(name, changed=True)

    def _apply(self, name: str, changed: bool) -> None:
        if name == "password":
            self.users.clear()
            self.users.update(self._users)
            if p := self._faults.get("password"):
                self.users[p.user or next(iter(self._users))] = p.value
        if name in EVENT_TOPICS and changed:
            self._announce(name)

    # -- what the services answer ---------------------------------------------------------------
    def stream_uri(self, profile: StreamProfile) -> str:
        host = self.base_url.split("//", 1)[1].rsplit(":", 1)[0] if self.base_url else "127.0.0.1"
        login = ""
        if self.credentials_in_uri and self.users:
            user, password = next(iter(self.users.items()))
            login = f"{user}:{password}@"
        return f"rtsp://{login}{host}:{self.rtsp_port}/{self.device_id}/{profile.token}"

    @property
    def scopes(self) -> list[str]:
        """Its ONVIF scopes, after ``onvif://www.onvif.org/`` (WS-Discovery and GetScopes)."""
        return ["type/video_encoder", "Profile/Streaming", f"hardware/{quote(self.model)}",
                f"name/{quote(self.name)}"] + ([f"location/{quote(self.location)}"] if self.location else [])

    def snapshot_uri(self, profile: StreamProfile) -> str:
        return f"{self.base_url}/onvif/snapshot/{profile.token}.jpg"

    def profile(self, token: str | None) -> StreamProfile | None:
        return next((p for p in self.profiles if p.token == token), None)
