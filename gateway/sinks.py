"""What a sink is: where normalised readings, device states and the gateway's events go (MQTT, historian).

:class:`Sink` is the interface and its default: a sink derives from it and overrides the events it
takes; every other one is a no-op. The runtime (gateway/runtime.py) calls each method on every sink,
isolating a sink that raises, and never probes a sink for what it has.

Handlers are called on the event loop and must not block: sinks queue internally. Before ``start``
the runtime wires every sink with ``set_command_handler``, ``set_state_source``, ``set_alarm_handler``
and ``add_health_source`` (the other sinks' ``health``); a sink that needs none ignores them.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel

from gateway.core.device import DeviceConfig
from gateway.core.model import DeviceState, GatewayAlarm, Inventory, Reading

if TYPE_CHECKING:
    from gateway.alarms import AlarmEvent
    from gateway.commands import AuditEntry
    from gateway.linkage import LinkageEvent
    from gateway.network.watch import RingStatus

log = logging.getLogger(__name__)

Reply = Callable[[BaseModel], None]
CommandHandler = Callable[[str, bytes, bool, Reply], None]
"""``handler(kind, payload, retained, reply)``: a command (kind ``write``, ``broadcast`` or ``ack``) as
received, from any thread; ``reply(answer)`` is called once the result is known (gateway/commands.py)."""
HealthSource = Callable[[], "Mapping[str, object] | BaseModel"]
StateSource = Callable[[], "dict[str, DeviceState]"]


class CommandSource(Protocol):
    """Where commands come in (the MQTT sink's command topics): the one way they reach the runtime."""

    def set_command_handler(self, handler: CommandHandler) -> None: ...


class Sink:
    """A sink: override what it takes. The defaults do nothing (and ``health`` has no counters)."""

    name = "sink"  # names the sink in gateway alarms (``<name>-dropping``) and in gateway_health
    durable = False  # True: readings reach the other sinks only once this sink's ``when_committed`` resolved

    async def start(self) -> None:
        """Called once the wiring below is done."""

    async def stop(self) -> None:
        """Called after the adapters stopped and the last states were given, in reverse order of the sinks."""

    # ---- events (on the event loop; never block) ----

    def on_reading(self, device: DeviceConfig, reading: Reading) -> None:
        """One poll of a device, or derived signals computed from one (``reading.derived``)."""

    def on_readings(self, batch: list[tuple[DeviceConfig, Reading]]) -> None:
        """Readings released together (a durable sink's commit): by default ``on_reading`` for each, in
        order; a sink that hands them to a thread overrides it to hand them over at once. One reading
        that raises does not keep the others from the sink."""
        for device, reading in batch:
            try:
                self.on_reading(device, reading)
            except Exception:
                log.exception("sink %s failed on reading of %s", self.name, device.id)

    def on_state(self, device: DeviceConfig, state: DeviceState) -> None:
        """A device's link state changed."""

    def on_inventory(self, device: DeviceConfig, inventory: Inventory) -> None:
        """What a device is (make, model, firmware, media profiles), when learnt or changed."""

    def on_alarm(self, alarm: GatewayAlarm) -> None:
        """A gateway alarm raised or cleared (data dropped, a broadcast node that did not confirm, ...)."""

    def on_alarm_event(self, event: AlarmEvent) -> None:
        """Every transition of a device alarm (gateway/alarms.py)."""

    def on_linkage_event(self, event: LinkageEvent) -> None:
        """What an alarm linkage did (gateway/linkage.py)."""

    def on_command_audit(self, entry: AuditEntry) -> None:
        """Every command, accepted or refused (gateway/commands.py)."""

    def on_ring_status(self, status: RingStatus) -> None:
        """A ring's diagnosis changed (gateway/network/watch.py)."""

    def health(self) -> Mapping[str, object] | BaseModel:
        """Counters; a growing ``dropped`` (items lost at a full queue or buffer) raises a gateway alarm."""
        return {}

    # ---- wiring, before start ----

    def set_command_handler(self, handler: CommandHandler) -> None:
        """A sink that takes commands (a :class:`CommandSource`) hands each to ``handler``."""

    def set_state_source(self, source: StateSource) -> None:
        """``source()`` gives every device's current state (thread-safe copies), e.g. to re-publish on reconnect."""

    def set_alarm_handler(self, handler: Callable[[GatewayAlarm], None]) -> None:
        """A sink that raises gateway alarms itself calls ``handler(alarm)`` (on the loop): every sink gets it."""

    def set_reach_source(self, source: Callable[[], Mapping[str, object]]) -> None:
        """``source()`` gives device id -> its last reachability probe (gateway/network/reach.py ``Reach``)."""

    def add_health_source(self, prefix: str, health: HealthSource) -> None:
        """Another sink's ``health``, for a sink that records health (the historian's ``gateway_health``)."""

    def when_committed(self) -> asyncio.Future | None:
        """A durable sink: a future resolved by its next group commit (docs/historian.md). Others: None."""
        return None
