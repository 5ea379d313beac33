"""Emergency broadcast: zones, a message library, priorities, and confirmed playback.

The broadcast nodes are ordinary Modbus devices (profile ``broadcast_node``, see
docs/broadcast.md); the gateway polls their status like any device. The
:class:`BroadcastController` plays a message in zones by writing every node of those
zones through the gateway's adapters, then confirms each node from its next readings:
a node that does not report playing the message at the requested priority within the
timeout is reported, with the reason, and raises the gateway alarm ``broadcast-node-<id>``.

The controller is given what it uses, not the gateway: the adapters by device id (to write),
the latest readings and a wait for a device's next reading (to confirm), and a callable that
announces a gateway alarm. Its settings (:class:`BroadcastConfig`) live here; the site file
(gateway/config.py) takes them from here, so this module never imports gateway.config nor
gateway.runtime.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from enum import IntEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.base import Adapter
from gateway.core.device import DeviceConfig
from gateway.core.model import GatewayAlarm, Reading, utcnow

NODE_KIND = "broadcast_node"


class BroadcastPriority(IntEnum):
    """Higher pre-empts lower (equal replaces); 0 on a node means idle."""

    ROUTINE = 1
    DISPATCHER = 2
    EMERGENCY = 3


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BroadcastMessage(_Strict):
    id: int = Field(ge=1, le=999, description="number written to the node's message_id register")
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    text: str = ""


DEFAULT_MESSAGES = [
    BroadcastMessage(id=1, name="evacuation", text="Evacuate now. Follow the escape route to the surface."),
    BroadcastMessage(id=2, name="gas", text="Gas over limit. Stop work, cut power, withdraw by the intake airway."),
    BroadcastMessage(id=3, name="fire", text="Fire. Put on your self-rescuer and withdraw against the smoke."),
    BroadcastMessage(id=4, name="all_clear", text="All clear. Resume normal work."),
]


class BroadcastZone(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    nodes: list[str] = Field(min_length=1, description="device ids of the broadcast nodes in this zone")
    escape_route: bool = False


class BroadcastConfig(_Strict):
    """``broadcast:`` in the site file."""

    zones: list[BroadcastZone] = Field(min_length=1)
    escape_routes: dict[str, list[str]] = Field({}, description="area id -> escape-route zones")
    messages: list[BroadcastMessage] = Field(default_factory=lambda: list(DEFAULT_MESSAGES))
    confirm_timeout: float = Field(5.0, gt=0, le=60, description="seconds for every node to confirm")

    @model_validator(mode="after")
    def _check(self) -> "BroadcastConfig":
        problems = []
        zone_ids = [z.id for z in self.zones]
        if len(set(zone_ids)) != len(zone_ids):
            problems.append("zones: zone ids must differ")
        for area, zones in self.escape_routes.items():
            problems += [f"escape_routes.{area}: unknown zone {z!r}" for z in zones if z not in zone_ids]
        for field in ("id", "name"):
            values = [getattr(m, field) for m in self.messages]
            if len(set(values)) != len(values):
                problems.append(f"messages: {field}s must differ")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def zone_number(self, zone: str) -> int:
        """The number a node's zone register carries: the zone's position, from 1."""
        return next(i for i, z in enumerate(self.zones, 1) if z.id == zone)


class NodeResult(BaseModel):
    node: str
    zone: str
    confirmed: bool
    reason: str | None = None
    confirm_ms: float | None = None


class BroadcastResult(BaseModel):
    action: str  # "play" | "stop"
    message: BroadcastMessage | None = None
    zones: list[str]
    priority: int | None = None
    nodes: dict[str, NodeResult]
    elapsed_ms: float | None = Field(None, description="request to the last confirmation; None unless all confirmed")

    @property
    def ok(self) -> bool:
        return all(n.confirmed for n in self.nodes.values())

    @property
    def failed(self) -> dict[str, NodeResult]:
        return {k: n for k, n in self.nodes.items() if not n.confirmed}


class BroadcastController:
    """Owns the zones, the message library and the priorities; plays and confirms."""

    def __init__(self, config: BroadcastConfig, devices: Iterable[DeviceConfig], *,
                 adapters: Mapping[str, Adapter], latest: Mapping[str, Reading],
                 next_reading: Callable[[str, float], Awaitable[Reading | None]],
                 announce: Callable[[GatewayAlarm], None], confirm_timeout: float | None = None):
        """``config``: the site's ``broadcast:``; ``devices``: the site's devices. ``adapters``: device id ->
        adapter (absent: disabled); ``latest``: device id -> its last reading; ``next_reading(id, timeout)``:
        the device's next reading, or None after ``timeout`` seconds; ``announce(alarm)``: a gateway alarm
        to every sink."""
        self.config = config
        self.adapters, self.latest, self.next_reading, self.announce = adapters, latest, next_reading, announce
        self.timeout = confirm_timeout or self.config.confirm_timeout
        devices = {d.id: d for d in devices}
        for zone in self.config.zones:
            for node in zone.nodes:
                device = devices.get(node)
                if device is None:
                    raise ValueError(f"broadcast zone {zone.id}: unknown device {node!r}")
                if getattr(device, "equipment_kind", None) != NODE_KIND:
                    raise ValueError(f"broadcast zone {zone.id}: {node} is not a {NODE_KIND}")
        self.zones = {z.id: z for z in self.config.zones}
        self.messages = {m.name: m for m in self.config.messages}
        self._areas = {d.id: d.area for d in devices.values()}
        self.failures: dict[str, int] = {}  # node -> failed confirmations while its alarm is up

    # -- lookups --------------------------------------------------------------------------
    def message(self, message: str | int | BroadcastMessage) -> BroadcastMessage:
        if isinstance(message, BroadcastMessage):
            return message
        for m in self.config.messages:
            if message in (m.name, m.id):
                return m
        raise KeyError(f"unknown message {message!r} (known: {', '.join(self.messages)})")

    def nodes_of(self, zones: list[str]) -> dict[str, str]:
        """node -> the first of ``zones`` it belongs to."""
        out: dict[str, str] = {}
        for zone in zones:
            if zone not in self.zones:
                raise KeyError(f"unknown broadcast zone {zone!r} (known: {', '.join(self.zones)})")
            for node in self.zones[zone].nodes:
                out.setdefault(node, zone)
        return out

    def emergency_zones(self, area: str) -> list[str]:
        """The zones with a node in ``area``, plus the area's escape-route zones."""
        own = [z.id for z in self.config.zones if any(self._areas.get(n) == area for n in z.nodes)]
        return own + [z for z in self.config.escape_routes.get(area, []) if z not in own]

    # -- actions --------------------------------------------------------------------------
    async def play(self, message: str | int | BroadcastMessage, zones: list[str],
                   priority: BroadcastPriority | int | str = BroadcastPriority.ROUTINE) -> BroadcastResult:
        """Play ``message`` on every node of ``zones`` and confirm each from its readings."""
        msg = self.message(message)
        prio = BroadcastPriority[priority.upper()] if isinstance(priority, str) else BroadcastPriority(priority)
        nodes = self.nodes_of(zones)
        started = time.monotonic()
        writes = [("message_id", msg.id), None, ("priority", int(prio)), ("play_command", True)]

        async def one(node: str, zone: str) -> NodeResult:
            steps = [w if w else ("zone", self.config.zone_number(zone)) for w in writes]

            def playing(v: dict) -> bool:
                return (v.get("playing") is True and v.get("playing_message") == msg.id
                        and v.get("playing_priority") == prio)

            return await self._command(node, zone, steps, playing, started)

        results = await asyncio.gather(*(one(n, z) for n, z in nodes.items()))
        return self._finish("play", results, zones, started, message=msg, priority=int(prio))

    async def stop(self, zones: list[str]) -> BroadcastResult:
        """Stop every node of ``zones`` and confirm each is quiet."""
        started = time.monotonic()
        nodes = self.nodes_of(zones)
        results = await asyncio.gather(*(
            self._command(n, z, [("stop_command", True)], lambda v: v.get("playing") is False, started)
            for n, z in nodes.items()))
        return self._finish("stop", results, zones, started)

    async def set_volume(self, zones: list[str], volume: int) -> BroadcastResult:
        """Set the volume of every node of ``zones``; a node confirms by taking the write."""
        started = time.monotonic()
        results = []
        for node, zone in self.nodes_of(zones).items():
            adapter = self.adapters.get(node)
            if adapter is None:
                results.append(NodeResult(node=node, zone=zone, confirmed=False, reason="node disabled (no adapter)"))
                continue
            r = await adapter.write("volume_setpoint", volume)
            results.append(NodeResult(node=node, zone=zone, confirmed=r.ok, reason=None if r.ok else r.error,
                                      confirm_ms=round((time.monotonic() - started) * 1000, 1) if r.ok else None))
        return self._finish("volume", results, zones, started)

    # -- internals ------------------------------------------------------------------------
    async def _command(self, node: str, zone: str, steps, done, started: float) -> NodeResult:
        adapter = self.adapters.get(node)
        if adapter is None:
            return NodeResult(node=node, zone=zone, confirmed=False, reason="node disabled (no adapter)")
        for signal, value in steps:
            result = await adapter.write(signal, value)
            if not result.ok:
                return NodeResult(node=node, zone=zone, confirmed=False, reason=f"write {signal}: {result.error}")
        written_at = utcnow()
        deadline = started + self.timeout
        values: dict | None = None
        reading = self.latest.get(node)
        while True:  # the latest reading, then each next one as the router hands it over, until the deadline
            if reading is not None and reading.ts >= written_at:
                values = dict(zip(reading.schema.signals, reading.values))
                if done(values):
                    return NodeResult(node=node, zone=zone, confirmed=True,
                                      confirm_ms=round((time.monotonic() - started) * 1000, 1))
            left = deadline - time.monotonic()
            if left <= 0:
                return NodeResult(node=node, zone=zone, confirmed=False, reason=self._why(values))
            reading = await self.next_reading(node, left)

    def _why(self, v: dict | None) -> str:
        timeout = f"not confirmed within {self.timeout:g} s"
        if v is None:
            return f"{timeout}: no reading since the command"
        if all(x is None for x in v.values()):
            return f"{timeout}: node offline"
        faults = [name.replace("_", " ") for name in ("amplifier_fault", "line_fault") if v.get(name)]
        if faults:
            return f"{timeout}: {', '.join(faults)}"
        if v.get("playing"):
            return (f"{timeout}: playing message {v.get('playing_message')} "
                    f"at priority {v.get('playing_priority')}")
        return f"{timeout}: not playing"

    def _finish(self, action: str, results: list[NodeResult], zones: list[str], started: float,
                **extra) -> BroadcastResult:
        for r in results:
            self._alarm(r, action)
        all_ok = all(r.confirmed for r in results)
        return BroadcastResult(action=action, zones=zones, nodes={r.node: r for r in results},
                               elapsed_ms=round((time.monotonic() - started) * 1000, 1) if all_ok else None,
                               **extra)

    def _alarm(self, r: NodeResult, action: str) -> None:
        alarm_id = f"broadcast-node-{r.node}"
        if not r.confirmed:
            self.failures[r.node] = self.failures.get(r.node, 0) + 1
            self.announce(GatewayAlarm(
                id=alarm_id, active=True, count=self.failures[r.node],
                message=f"broadcast node {r.node} (zone {r.zone}) did not confirm {action}: {r.reason}"))
        elif self.failures.pop(r.node, None) is not None:
            self.announce(GatewayAlarm(
                id=alarm_id, active=False, count=0,
                message=f"broadcast node {r.node} (zone {r.zone}) confirmed {action} again"))
