"""What a sink is: where normalised readings and device states go (MQTT, historian)."""
from __future__ import annotations

from typing import Protocol

from gateway.core.device import DeviceConfig
from gateway.core.model import DeviceState, GatewayAlarm, Reading


class Sink(Protocol):
    """Handlers are called on the event loop and must not block: sinks queue internally.

    ``name`` names the sink in gateway alarms; ``health()`` returns its counters, of which
    ``dropped`` (items lost at a full queue or buffer) raises a gateway alarm when it grows.
    Optional: ``on_inventory(device, inventory)`` (:class:`gateway.core.model.Inventory`); sinks
    without it do not receive inventories. ``on_alarm_event(event)`` receives every transition
    of a device alarm (:class:`gateway.alarms.AlarmEvent`); ``set_command_handler(handler)``, called
    before ``start``, gives a sink that takes commands ``handler(kind, payload, retained, reply)``
    (thread-safe; gateway/commands.py).
    ``add_health_source(prefix, health)``: a sink that records health (the historian's
    ``gateway_health``) is given every other sink's ``health`` before ``start``, to record it too.
    ``set_alarm_handler(handler)``: a sink that raises gateway alarms itself (the historian's
    ``historian-buffer-unwritable``) gets ``handler(GatewayAlarm)``, which sends it to every sink.
    ``set_state_source(source)``: ``source()`` gives every device's current state (thread-safe copies).
    ``when_committed()``: a durable sink (the historian) returns a future resolved by its next group
    commit; the runtime then gives readings to the other sinks only after it (docs/historian.md).
    """

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def on_reading(self, device: DeviceConfig, reading: Reading) -> None: ...

    def on_state(self, device: DeviceConfig, state: DeviceState) -> None: ...

    def on_alarm(self, alarm: GatewayAlarm) -> None: ...

    def health(self) -> dict: ...
