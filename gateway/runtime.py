"""The gateway: runs one adapter per device and routes their events to every sink."""
from __future__ import annotations

import asyncio
import logging

from adapters.base import Adapter, DeviceConfig
from adapters.registry import build_adapter
from gateway.config import SiteConfig
from gateway.model import DeviceState, Reading
from gateway.sinks import Sink

log = logging.getLogger(__name__)


class Gateway:
    """Adapters feed the router; the router fans out to sinks. Neither knows the other's kind."""

    def __init__(self, site: SiteConfig, sinks: list[Sink]):
        self.site = site
        self.sinks = sinks
        self.adapters: dict[str, Adapter] = {
            d.id: build_adapter(d) for d in site.devices if d.enabled}
        self._routes: list[asyncio.Task] = []
        self.latest: dict[str, Reading] = {}  # last reading per device, for live views

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()
        for adapter in self.adapters.values():
            self._routes.append(asyncio.create_task(self._route(adapter), name=f"route:{adapter.id}"))
            await adapter.start()

    async def stop(self) -> None:
        await asyncio.gather(*(a.stop() for a in self.adapters.values()))
        await asyncio.gather(*self._routes, return_exceptions=True)
        for sink in reversed(self.sinks):
            await sink.stop()

    async def __aenter__(self) -> "Gateway":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def states(self) -> dict[str, DeviceState]:
        return {i: a.state for i, a in self.adapters.items()}

    async def _route(self, adapter: Adapter) -> None:
        device = adapter.config
        async for event in adapter.stream():
            if isinstance(event, Reading):
                self.latest[device.id] = event
                self._dispatch("on_reading", device, event)
            else:
                self._dispatch("on_state", device, event)

    def _dispatch(self, handler: str, device: DeviceConfig, event) -> None:
        for sink in self.sinks:
            try:
                getattr(sink, handler)(device, event)
            except Exception:  # one broken sink must not starve the others
                log.exception("sink %s failed on %s from %s", type(sink).__name__, handler, device.id)
