"""What a sink is: where normalised readings and device states go (MQTT, historian)."""
from __future__ import annotations

from typing import Protocol

from adapters.base import DeviceConfig
from gateway.model import DeviceState, Reading


class Sink(Protocol):
    """Handlers are called on the event loop and must not block: sinks queue internally."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def on_reading(self, device: DeviceConfig, reading: Reading) -> None: ...

    def on_state(self, device: DeviceConfig, state: DeviceState) -> None: ...
