"""The gateway: runs one adapter per device and routes their events to every sink."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from adapters.base import Adapter
from adapters.registry import build_adapter
from gateway.alarms import AlarmEngine, AlarmEvent
from gateway.broadcast import BroadcastController
from gateway.commands import AuditEntry, CommandHandler
from gateway.config import SiteConfig
from gateway.core.device import DeviceConfig
from gateway.core.model import DeviceState, GatewayAlarm, Inventory, Reading
from gateway.derived import processor_for
from gateway.linkage import Linkage, LinkageEvent
from gateway.network.reach import Reachability
from gateway.network.watch import NetworkUpdate, NetworkWatch
from gateway.sinks import Reply, Sink

log = logging.getLogger(__name__)


class DropWatch:
    """Turns a sink's growing ``dropped`` counter into a gateway alarm, cleared after a quiet spell."""

    def __init__(self, sink: Sink, quiet_to_clear: float):
        self.sink, self.quiet_to_clear = sink, quiet_to_clear
        self.alarm_id = f"{sink.name}-dropping"
        self.seen = _dropped(sink)
        self.active = False
        self.last_drop = 0.0

    def check(self, now: float) -> GatewayAlarm | None:
        dropped = _dropped(self.sink)
        if dropped > self.seen:
            self.seen, self.last_drop = dropped, now
            if not self.active:
                self.active = True
                return GatewayAlarm(id=self.alarm_id, active=True, count=dropped,
                                    message=f"{self.sink.name}: data dropped (queue or buffer full), oldest first")
        elif self.active and now - self.last_drop >= self.quiet_to_clear:
            self.active = False
            return GatewayAlarm(id=self.alarm_id, active=False, count=dropped,
                                message=f"{self.sink.name}: no more drops for {self.quiet_to_clear:g} s")
        return None


def _dropped(sink: Sink) -> int:
    health = sink.health()
    return int(health.get("dropped", 0) if isinstance(health, Mapping) else health.dropped)


class CommitGate:
    """Holds readings for the live sinks until the durable sink's next group commit has run.

    So a reading is on MQTT only once it is in the historian's buffer file: a kill -9 cannot leave
    a reading that integrators hold and history lacks (docs/historian.md, "MQTT agrees with
    history"). Cheap on the hot path: one list append per reading, one hand-off per commit.
    """

    def __init__(self, durable: Sink, release: Callable[[list[tuple[DeviceConfig, Reading]]], None]):
        self._durable, self._release = durable, release
        self._waiting: deque[tuple[asyncio.Future, list[tuple[DeviceConfig, Reading]]]] = deque()

    def hold(self, device: DeviceConfig, reading: Reading) -> None:
        """After the durable sink got the reading: the live sinks get it with its commit."""
        commit = self._durable.when_committed()
        if not self._waiting or self._waiting[-1][0] is not commit:
            commit.add_done_callback(self._on_commit)
            self._waiting.append((commit, []))
        self._waiting[-1][1].append((device, reading))

    def _on_commit(self, _: asyncio.Future) -> None:
        while self._waiting and self._waiting[0][0].done():  # in commit order
            self._release(self._waiting.popleft()[1])


class LatestReadings(dict[str, Reading]):
    """The last reading of every device (for live views), and a wait for a device's next one."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: dict[str, list[asyncio.Future]] = {}

    def arrived(self, reading: Reading) -> None:
        """The router's: ``reading`` is its device's latest; whoever waits for it is woken."""
        self[reading.device] = reading
        if self._waiting and (waiters := self._waiting.pop(reading.device, None)):
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(reading)

    async def next(self, device_id: str, timeout: float) -> Reading | None:
        """The device's next reading, or None when none arrives within ``timeout`` seconds."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(device_id, []).append(waiter)
        try:
            return await asyncio.wait_for(waiter, max(timeout, 0.0))
        except TimeoutError:
            return None
        finally:
            waiters = self._waiting.get(device_id)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiting[device_id]


class Gateway:
    """Adapters feed the router; the router fans out to sinks. Neither knows the other's kind."""

    WATCH_INTERVAL_S = 5.0
    QUIET_TO_CLEAR_S = 60.0
    STOPPED_REASON = "gateway stopped"

    def __init__(self, site: SiteConfig, sinks: list[Sink]):
        self.site = site
        self.sinks = sinks
        # A durable sink (the historian): the others get readings once it committed them.
        durable = next((s for s in sinks if s.durable), None)
        self._live_sinks = [s for s in sinks if s is not durable]
        self._gate = None if durable is None else CommitGate(durable, self._release)
        self._durable_sinks = [] if durable is None else [durable]
        self._watch_task: asyncio.Task | None = None
        self.adapters: dict[str, Adapter] = {
            d.id: build_adapter(d) for d in site.devices if d.enabled}
        self._routes: list[asyncio.Task] = []
        self.latest = LatestReadings()  # last reading per device, for live views and broadcast confirmations
        self.processors = {d.id: p for d in site.devices if d.enabled and (p := processor_for(d, site.roof_pressure))}
        self.alarms = AlarmEngine(site.alarms, {d.id: d.area for d in site.devices})
        self.network = NetworkWatch(site.network, site.devices)  # rings and UPS: diagnosis, network alarms
        self.reach = Reachability([d for d in site.devices if d.enabled], site.network.reach_interval)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._command_tasks: set[asyncio.Task] = set()
        self.broadcast: BroadcastController | None = None
        self.linkage: Linkage | None = None
        if site.broadcast is not None:  # broadcast commands (gateway/commands.py) and linkage
            self.broadcast = BroadcastController(site.broadcast, site.devices, adapters=self.adapters,
                                                 latest=self.latest, next_reading=self.latest.next,
                                                 announce=self._announce)
        self.commands = CommandHandler(site.commands, self.adapters, self._audit, broadcast=self.broadcast,
                                       ack=self.ack)
        self.video = None  # the video relay (gateway/video/relay.py), GStreamer loaded only when enabled
        if site.video is not None and site.video.relay.enabled and site.video.cameras:
            from gateway.video.relay import VideoRelay
            self.video = VideoRelay(site.video, areas={d.id: d.area for d in site.devices},
                                    devices={d.id: d for d in site.devices}, snapshots_dir=site.snapshots.directory,
                                    publish=self.publish_reading, alarm=self.raise_alarm)
        if self.broadcast is not None and site.linkage:  # alarm -> broadcast + snapshots (gateway/linkage.py)
            from adapters.onvif.snapshots import SnapshotStore
            self.linkage = Linkage(site.linkage, self.broadcast, emit=self._dispatch_linkage,
                                   adapters=self.adapters, store=SnapshotStore(site.snapshots),
                                   clips=self.video.clips if self.video is not None else None)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._share_health()
        for sink in self.sinks:
            sink.set_command_handler(self._command_from_thread)  # a source may call from its own thread
            sink.set_state_source(self.states)  # current states, re-published on reconnect (any thread)
            sink.set_alarm_handler(self.raise_alarm)  # gateway alarms a sink raises itself (on the loop)
            sink.set_reach_source(self.reach.latest)  # device_health: reachable, reach_ms
            await sink.start()
        for adapter in self.adapters.values():
            self._routes.append(asyncio.create_task(self._route(adapter), name=f"route:{adapter.id}"))
            await adapter.start()
        self.reach.start()
        if self.video is not None:
            await self.video.start()
        watches = [DropWatch(s, self.QUIET_TO_CLEAR_S) for s in self.sinks]
        self._watch_task = asyncio.create_task(self._watch_drops(watches), name="drop-watch")

    def _share_health(self) -> None:
        """Sinks that record health (the historian's ``gateway_health``) also record the other sinks' counters."""
        for sink in self.sinks:
            for other in self.sinks:
                if other is not sink:
                    sink.add_health_source(other.name, other.health)

    async def stop(self) -> None:
        if self._watch_task:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
        await asyncio.gather(*self._command_tasks, return_exceptions=True)  # writes under way end first
        self.commands.close()
        if self.linkage is not None:
            await self.linkage.stop()  # linkages under way end (confirm or time out) first
        if self.video is not None:
            await self.video.stop()
        await asyncio.gather(*(a.stop() for a in self.adapters.values()))
        await self.reach.stop()
        await asyncio.gather(*self._routes, return_exceptions=True)
        self._announce_stopped()
        for sink in reversed(self.sinks):
            await sink.stop()

    def _announce_stopped(self) -> None:
        """Every device's retained state must not say "online" after a clean stop. The sinks
        learn it; the alarm engine does not (a stopped gateway is not a lost device)."""
        for adapter in self.adapters.values():
            device, state = adapter.config, adapter.mark_stopped(self.STOPPED_REASON)
            self._each(lambda sink: sink.on_state(device, state), "state of", device.id)

    async def __aenter__(self) -> "Gateway":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def states(self) -> dict[str, DeviceState]:
        """Every device's state now: copies, so another thread may read them (the MQTT sink on reconnect)."""
        return {i: a.state.model_copy() for i, a in self.adapters.items()}

    async def _route(self, adapter: Adapter) -> None:
        device = adapter.config
        async for event in adapter.stream():
            if isinstance(event, Reading):
                self.latest.arrived(event)
                self._fan_out(device, event)
                self._evaluate(self.alarms.on_reading, device, event)
                self._derive(device, event)
                if self.network.follows(device.id):
                    self._diagnose(self.network.on_reading, event)
            elif isinstance(event, Inventory):
                self._each(lambda sink: sink.on_inventory(device, event), "inventory of", device.id)
            else:
                self._each(lambda sink: sink.on_state(device, event), "state of", device.id)
                self._evaluate(self.alarms.on_state, device, event)
                if self.network.follows(device.id):
                    self._diagnose(lambda state: self.network.on_state(device.id, state), event)

    # ---- the alarm engine ----

    def _evaluate(self, feed, device: DeviceConfig, event) -> None:
        try:
            events = feed(device.id, event)
        except Exception:  # a bug in the alarm engine must not stop the data
            log.exception("alarm evaluation of %s failed", device.id)
            return
        for alarm_event in events:
            self._announce_event(alarm_event)

    def _diagnose(self, feed: Callable[[object], NetworkUpdate | None], event) -> None:
        """A switch or UPS event: changed ring statuses to the sinks, the network alarms to the engine."""
        try:
            update = feed(event)
            if update is None:
                return
            for status in update.rings:
                self._each(lambda sink: sink.on_ring_status(status), "ring status", status.diagnosis.ring)
            events = self.alarms.on_network(update.alarms, update.ts)
        except Exception:  # a bug in the diagnosis must not stop the data
            log.exception("network diagnosis failed")
            return
        for alarm_event in events:
            self._announce_event(alarm_event)

    def ack(self, alarm: str, by: str) -> AlarmEvent | None:
        """Acknowledge an alarm (on the event loop; KeyError: no such alarm); the transition goes to the sinks."""
        event = self.alarms.ack(alarm, by)
        if event is not None:
            self._announce_event(event)
        return event

    def _command_from_thread(self, kind: str, payload: bytes, retained: bool, reply: Reply) -> None:
        """A command (``kind``: write, broadcast, ack) from a sink, on any thread; ``reply`` gets the result on the loop."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._spawn_command, kind, payload, retained, reply)

    def _spawn_command(self, kind: str, payload: bytes, retained: bool, reply: Reply) -> None:
        async def run() -> None:
            try:
                reply(await self.commands.handle(kind, payload, retained))
            except Exception:  # noqa: BLE001
                log.exception("handling a %s command failed", kind)
        task = asyncio.create_task(run(), name=f"command:{kind}")
        self._command_tasks.add(task)
        task.add_done_callback(self._command_tasks.discard)

    def _audit(self, entry: AuditEntry) -> None:
        self._each(lambda sink: sink.on_command_audit(entry), "command audit", entry.request_id)

    def _announce_event(self, event: AlarmEvent) -> None:
        log.warning("alarm %s %s (priority %d, value %r): %s", event.alarm, event.state.value,
                    event.priority, event.value, event.message)
        self._each(lambda sink: sink.on_alarm_event(event), "alarm event", event.alarm)
        if self.linkage is not None:
            try:
                self.linkage.on_alarm_event(event)  # starts a task: never blocks the router
            except Exception:
                log.exception("linkage of alarm event %s failed", event.alarm)

    def _dispatch_linkage(self, event: LinkageEvent) -> None:
        self._each(lambda sink: sink.on_linkage_event(event), "linkage event", event.alarm)

    async def _watch_drops(self, watches: list[DropWatch]) -> None:
        while True:
            await asyncio.sleep(self.WATCH_INTERVAL_S)
            for watch in watches:
                if alarm := watch.check(time.monotonic()):
                    self.raise_alarm(alarm)

    def raise_alarm(self, alarm: GatewayAlarm) -> None:
        """A gateway alarm raised or cleared (on the event loop): logged, and sent to every sink."""
        log.warning("gateway alarm %s %s: %s (%d lost so far)", alarm.id,
                    "raised" if alarm.active else "cleared", alarm.message, alarm.count)
        self._announce(alarm)

    def _announce(self, alarm: GatewayAlarm) -> None:
        self._each(lambda sink: sink.on_alarm(alarm), "gateway alarm", alarm.id)

    def publish_reading(self, device: DeviceConfig, reading: Reading) -> None:
        """A reading the gateway measured itself (the video relay's bitrates): to the sinks and the alarm rules."""
        self._fan_out(device, reading)
        self._evaluate(self.alarms.on_reading, device, reading)

    def _derive(self, device: DeviceConfig, reading: Reading) -> None:
        """Derived signals travel as readings of the device they are computed from."""
        processor = self.processors.get(device.id)
        if processor is None:
            return
        try:
            derived = processor.process(reading)
        except Exception:  # a bug in a metric must not stop the raw data
            log.exception("deriving signals of %s failed", device.id)
            return
        if derived is not None:
            self._fan_out(device, derived)
            self._evaluate(self.alarms.on_reading, device, derived)

    def _fan_out(self, device: DeviceConfig, reading: Reading) -> None:
        """A reading to the durable sink first; to the others at once, or after its commit when there is one."""
        if self._gate is None:
            self._each(lambda sink: sink.on_reading(device, reading), "reading of", device.id)
            return
        self._each(lambda sink: sink.on_reading(device, reading), "reading of", device.id, self._durable_sinks)
        self._gate.hold(device, reading)

    def _release(self, held: list[tuple[DeviceConfig, Reading]]) -> None:
        """A commit's readings to the live sinks, all at once (one hand-off to a sink's thread, not one each)."""
        self._each(lambda sink: sink.on_readings(held), "readings of", f"{len(held)} polls", self._live_sinks)

    def _each(self, call: Callable[[Sink], object], what: str, about: str, sinks: Iterable[Sink] | None = None) -> None:
        """The one fan-out: ``call(sink)`` for every sink (or ``sinks``); one that raises is logged, the
        others still get the event (one broken sink must not starve the others)."""
        for sink in self.sinks if sinks is None else sinks:
            try:
                call(sink)
            except Exception:
                log.exception("sink %s failed on %s %s", sink.name, what, about)
