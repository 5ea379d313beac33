"""Alarm linkage: an alarm entering ``active_unack`` plays a broadcast in its area and takes snapshots.

Rules (``linkage:`` in the site file, :class:`LinkageRule`) match an alarm by kind, id and/or
minimum priority. For every :class:`gateway.alarms.AlarmEvent` entering ``active_unack`` that a
rule matches, :class:`Linkage` starts a task (the router never waits for it) that

* plays the rule's message at the rule's priority (default emergency) in
  ``BroadcastController.emergency_zones(event.area)``: the zones with a node in the alarm's area
  plus the area's escape-route zones;
* when ``snapshot`` is set, takes a snapshot of every ONVIF camera of that area;
* when ``clip`` is set and the video relay runs, saves a clip (pre- and post-roll) of each relayed camera of the area;
* measures ``trigger_to_confirmed_ms``: from the triggering sample's timestamp to the last node's
  confirmation (``None`` unless every node confirmed);

and hands a :class:`LinkageEvent` to ``emit`` (the runtime gives it to every sink's ``on_linkage_event``).
See docs/broadcast.md, "Linkage".

:class:`Linkage` is given what it uses, not the gateway: the controller, ``emit`` and the adapters by
device id (for the cameras). Its settings (:class:`LinkageRule`) live here; the site file
(gateway/config.py) takes them from here, so this module never imports gateway.config nor gateway.runtime.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from adapters.base import Adapter
from gateway.alarms import AlarmEvent, AlarmKind, AlarmState, Priority
from gateway.broadcast import BroadcastController, BroadcastPriority, NodeResult
from gateway.core.model import utcnow

log = logging.getLogger(__name__)


class LinkageRule(BaseModel):
    """One rule of the site file's ``linkage:`` list. Every match field given must match."""

    model_config = ConfigDict(extra="forbid")

    kind: AlarmKind | None = Field(None, description="match alarms of this kind")
    alarms: list[str] = Field([], description="match these alarm ids (a methane rule's cut level is '<id>-cut')")
    min_priority: Priority | None = Field(None, description="match alarms at this priority or more urgent (1 is most)")
    message: str = Field(description="broadcast message name from broadcast.messages")
    priority: BroadcastPriority = Field(BroadcastPriority.EMERGENCY, description="routine, dispatcher, emergency")
    snapshot: bool = Field(True, description="take a snapshot of the area's cameras")
    clip: bool = Field(True, description="save a clip of the area's relayed cameras (video relay, docs/video.md)")

    @field_validator("priority", "min_priority", mode="before")
    @classmethod
    def _names(cls, v, info):
        if isinstance(v, str) and not v.isdigit():
            enum = BroadcastPriority if info.field_name == "priority" else Priority
            try:
                return enum[v.upper()]
            except KeyError:
                raise ValueError(f"unknown priority {v!r}") from None
        return v

    def matches(self, event: AlarmEvent) -> bool:
        if self.kind is not None and event.kind is not self.kind:
            return False
        if self.alarms and event.alarm not in self.alarms:
            return False
        if self.min_priority is not None and event.priority > self.min_priority:
            return False
        return True


class LinkageEvent(BaseModel):
    """What one linkage did, with the measured time from the triggering sample to the last confirmation."""

    alarm: str
    device: str
    area: str
    zones: list[str]
    message: str
    priority: int
    nodes: dict[str, NodeResult]
    ok: bool  # every node confirmed
    trigger_ts: datetime  # the triggering sample's timestamp
    trigger_to_confirmed_ms: float | None  # None unless every node confirmed
    broadcast_elapsed_ms: float | None  # the controller's own request-to-last-confirmation
    snapshots: list[str] = []  # refs in the snapshot store
    snapshot_errors: dict[str, str] = {}  # camera -> why no snapshot
    clips: list[str] = []  # refs of MP4 clips (pre- and post-roll) next to the snapshots
    clip_errors: dict[str, str] = {}  # camera -> why no clip
    error: str | None = None  # the broadcast could not be attempted at all
    ts: datetime  # when the linkage finished


class Linkage:
    """Runs the linkage rules; the gateway calls :meth:`on_alarm_event` for every alarm transition."""

    def __init__(self, rules: list[LinkageRule], controller: BroadcastController, *,
                 emit: Callable[[LinkageEvent], None], adapters: Mapping[str, Adapter], store=None,
                 clips: Callable[[str], Awaitable[tuple[list[str], dict[str, str]]]] | None = None):
        """``emit(event)``: what each linkage did, to the sinks; ``adapters``: device id -> adapter;
        ``clips(area)``: the video relay's clips of the area's cameras (refs, errors), None without a relay."""
        self.rules, self.controller, self.emit, self.adapters, self.store = rules, controller, emit, adapters, store
        self.clips = clips
        for rule in rules:
            controller.message(rule.message)  # unknown message: fail at start, not at the alarm
        self._tasks: set[asyncio.Task] = set()

    def on_alarm_event(self, event: AlarmEvent) -> None:
        if event.state is not AlarmState.ACTIVE_UNACK:
            return
        rule = next((r for r in self.rules if r.matches(event)), None)
        if rule is None:
            return
        task = asyncio.create_task(self._run(rule, event), name=f"linkage:{event.alarm}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, rule: LinkageRule, event: AlarmEvent) -> None:
        try:
            linkage = await self._link(rule, event)
        except Exception:  # noqa: BLE001 - a linkage bug must not go unseen, nor stop anything else
            log.exception("linkage of alarm %s failed", event.alarm)
            return
        log.warning("linkage of alarm %s: %s in %s at priority %d, %s, trigger to confirmed %s ms",
                    event.alarm, linkage.message, ",".join(linkage.zones), linkage.priority,
                    "all nodes confirmed" if linkage.ok else f"failed: {linkage.error or linkage.nodes}",
                    linkage.trigger_to_confirmed_ms)
        self.emit(linkage)

    async def _link(self, rule: LinkageRule, event: AlarmEvent) -> LinkageEvent:
        zones = self.controller.emergency_zones(event.area)
        msg = self.controller.message(rule.message)
        snap = asyncio.create_task(self._snapshots(event.area)) if rule.snapshot else None
        clip = asyncio.create_task(self.clips(event.area)) if rule.clip and self.clips is not None else None
        nodes: dict[str, NodeResult] = {}
        error = elapsed = total = None
        if not zones:
            error = f"no broadcast zone for area {event.area}"
        else:
            result = await self.controller.play(msg, zones, rule.priority)
            nodes, elapsed = result.nodes, result.elapsed_ms
            if result.ok:
                total = round((utcnow() - event.ts).total_seconds() * 1000, 1)
        refs, errors = await snap if snap else ([], {})
        clips, clip_errors = await clip if clip else ([], {})
        return LinkageEvent(alarm=event.alarm, device=event.device, area=event.area, zones=zones,
                            message=msg.name, priority=int(rule.priority), nodes=nodes,
                            ok=bool(nodes) and all(n.confirmed for n in nodes.values()),
                            trigger_ts=event.ts, trigger_to_confirmed_ms=total, broadcast_elapsed_ms=elapsed,
                            snapshots=refs, snapshot_errors=errors, clips=clips, clip_errors=clip_errors,
                            error=error, ts=utcnow())

    async def _snapshots(self, area: str) -> tuple[list[str], dict[str, str]]:
        cameras = [a for a in self.adapters.values()
                   if a.config.area == area and hasattr(a, "snapshot") and a.config.adapter == "onvif"]
        if not cameras:
            return [], {}
        if self.store is None:
            return [], {c.id: "no snapshot store" for c in cameras}
        results = await asyncio.gather(*(c.snapshot(self.store) for c in cameras), return_exceptions=True)
        refs, errors = [], {}
        for cam, r in zip(cameras, results):
            if isinstance(r, BaseException):
                errors[cam.id] = str(r) or type(r).__name__
            else:
                refs.append(r.ref)
        return refs, errors
