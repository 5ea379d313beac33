"""ONVIF adapter: one IP camera's inventory, health and events, through onvif-zeep-async (see link.py).

The loop: connect (learn the camera's clock, log in), read the inventory, subscribe to
events; then, until the link fails, check the camera every ``poll_interval`` (one
authenticated request: its round trip is ``response_ms``) and in between wait for events
on the PullPoint (a long poll that returns at the first event). A failure marks the camera
offline with the reason; reconnects back off with jitter.

What it emits: health readings (``online``, ``response_ms``), event readings (``motion``,
``tamper`` and any other topic, at the event time), stream-health readings when
``stream_health`` is on (:mod:`.streamwatch`), device states, and the camera's
:class:`~gateway.core.model.Inventory` whenever it is read anew or the camera goes on or offline.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import datetime

from adapters.base import LinkedAdapter
from gateway.core.backoff import Backoff
from gateway.core.model import DeviceStatus, Inventory, Quality, Reading, Sample, Value, WriteResult, utcnow

from .config import OnvifDeviceConfig
from .link import AuthError, CameraError, CameraLink, LinkDown, NoAnswer
from .snapshots import SnapshotRef, SnapshotStore
from .streamwatch import StreamWatch

log = logging.getLogger(__name__)

MIN_PULL_S = 0.2  # shorter waits for events are slept instead: a PullMessages costs a round trip


class OnvifAdapter(LinkedAdapter):
    kind = "onvif"
    config: OnvifDeviceConfig

    def __init__(self, config: OnvifDeviceConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.link: CameraLink | None = None
        self.inventory: Inventory | None = None  # as last read from the camera
        self._announced: Inventory | None = None  # as last emitted
        self._event_signals: set[str] = set()  # seen so far: reported comm-fail when the camera goes offline
        self._relogin_tried = False
        self._subscribe_problem: str | None = None  # why the last subscription failed, logged once
        self.stream_watch = StreamWatch(config, self._emit) if config.stream_health else None

    # -- the loop -----------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = Backoff(self.config.backoff_initial, self.config.backoff_max)
        await asyncio.sleep(self.first_poll_delay())
        while not self.stopping:
            connected = False
            try:
                await self._connect()
                connected = True
                backoff.reset()
                await self._serve()
            except AuthError as exc:
                # Refused in the middle of a session: the camera's clock may have jumped, so our
                # stamps are off. Log in again at once (learning its clock) before calling it a failure.
                if connected and not self._relogin_tried:
                    self._relogin_tried = True
                    await self._drop_link()
                    continue
                self._failed(str(exc), timeout=False)
            except CameraError as exc:
                self._failed(str(exc), timeout=isinstance(exc, NoAnswer))
            await self._drop_link()
            await asyncio.sleep(backoff.next())

    async def _connect(self) -> None:
        link = CameraLink(self.config)
        await link.open()
        self.link = link
        self.state.reconnects += 1 if self.state.polls else 0
        self.inventory = await link.read_inventory()
        if self.stream_watch is not None:
            self.stream_watch.follow(self.inventory)

    @property
    def _wants_events(self) -> bool:
        return self.config.events and self.inventory is not None and "events" in self.inventory.services

    async def _subscribe(self) -> None:
        try:
            await self.link.subscribe()
        except (AuthError, LinkDown):
            raise
        except CameraError as exc:  # the camera still streams and answers: no events is not offline
            if str(exc) != self._subscribe_problem:
                log.warning("%s: no events (retried at every check): %s", self.id, exc)
            self._subscribe_problem = str(exc)
        else:
            self._subscribe_problem = None

    async def _serve(self) -> None:
        interval = self.config.poll_interval
        next_check = time.monotonic()
        next_inventory = next_check + self.config.inventory_interval
        while not self.stopping:
            now = time.monotonic()
            if now >= next_check:
                await self._check()
                next_check = now + interval - (now - next_check) % interval
                if self._wants_events and not self.link.subscribed:
                    await self._subscribe()
            if now >= next_inventory:
                self.inventory = await self.link.read_inventory()
                if self.stream_watch is not None:
                    self.stream_watch.follow(self.inventory)
                self._announce(True, "")
                next_inventory = now + self.config.inventory_interval
            wait = next_check - time.monotonic()
            if self.link.subscribed and wait >= MIN_PULL_S:
                self._deliver(await self.link.pull_events(wait))
            elif wait > 0:
                await asyncio.sleep(wait)

    async def _check(self) -> None:
        started_at = utcnow()
        ms = await self.link.check()
        s = self.state
        s.polls += 1
        s.consecutive_errors = 0
        s.last_good_poll = utcnow()
        s.last_poll_ms = round(ms, 2)
        self._relogin_tried = False
        self._set_status(DeviceStatus.ONLINE, "polling")
        self._announce(True, "")
        self._emit(Reading(device=self.id, ts=started_at, poll_ms=ms, samples=[
            Sample(signal="online", value=True, ts=started_at),
            Sample(signal="response_ms", value=round(ms, 1), unit="ms", ts=started_at)]))

    def _failed(self, reason: str, timeout: bool) -> None:
        s = self.state
        s.polls += 1
        s.errors += 1
        s.consecutive_errors += 1
        s.timeouts += timeout
        went_offline = s.status is DeviceStatus.ONLINE
        if went_offline or s.reason != reason:
            log.warning("%s: offline: %s", self.id, reason)
        self._set_status(DeviceStatus.OFFLINE, reason)
        now = utcnow()
        samples = [Sample(signal="online", value=False, ts=now),
                   Sample(signal="response_ms", value=None, unit="ms", quality=Quality.COMM_FAIL, ts=now)]
        if went_offline:  # what the events said no longer holds
            samples += [Sample(signal=name, value=None, quality=Quality.COMM_FAIL, ts=now)
                        for name in sorted(self._event_signals)]
        self._emit(Reading(device=self.id, ts=now, poll_ms=0.0, samples=samples))
        self._announce(False, reason)

    def _deliver(self, samples: list[Sample]) -> None:
        """Events as readings, one per event time."""
        by_time: dict[datetime, list[Sample]] = defaultdict(list)
        for sample in samples:
            by_time[sample.ts].append(sample)
            self._event_signals.add(sample.signal)
        for ts, group in sorted(by_time.items()):
            self._emit(Reading(device=self.id, ts=ts, poll_ms=0.0, samples=group))

    def _announce(self, online: bool, reason: str) -> None:
        """Emit the inventory with this online state, unless that is what was last emitted."""
        base = self.inventory or Inventory(device=self.id, ts=utcnow(), online=online)
        current = base.model_copy(update={"online": online, "reason": reason, "ts": utcnow()})
        if self._announced is None or self._announced.model_dump(exclude={"ts"}) != current.model_dump(exclude={"ts"}):
            self._announced = current
            self._emit(current)

    async def _close(self) -> None:
        if self.stream_watch is not None:
            self.stream_watch.stop()
        await super()._close()

    # -- for the alarm engine and the command line ------------------------------------------------
    async def snapshot(self, store: SnapshotStore, profile: str | None = None) -> SnapshotRef:
        """Fetch a JPEG now (``profile``: media profile token; default ``snapshot_profile`` or the
        first) and keep it in ``store``. Raises CameraError (offline, refused) or SnapshotError."""
        link = self.link
        if link is None:
            raise CameraError(f"{self.id} is offline: {self.state.reason}")
        jpeg = await link.snapshot(profile or self.config.snapshot_profile)
        return await store.save(self.id, jpeg)

    async def write(self, signal: str, value: Value) -> WriteResult:
        return WriteResult(device=self.id, signal=signal, ok=False, value=value,
                           error="an ONVIF camera has no writable signals")
