"""Reading devices once through their adapters (the field engineer's ``minegw net ring`` and ``config check --live``).

Only the adapter interface is used (``adapters.registry.build_adapter``, ``start``, ``stream``, ``stop``):
what the SNMP adapter reads and how is its own business.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from adapters.registry import build_adapter
from gateway.core.device import DeviceConfig
from gateway.core.model import DeviceState, DeviceStatus, Reading


@dataclass
class Answer:
    """What one device said: its first reading (None: it did not answer) and its link state then."""

    reading: Reading | None
    state: DeviceState

    @property
    def answered(self) -> bool:
        return self.reading is not None


async def read_once(devices: Sequence[DeviceConfig], timeout: float | None = None) -> dict[str, Answer]:
    """Every device's first reading (all read at once), or its state when it fails or ``timeout`` passes.

    ``timeout`` default: a device's poll interval (its first poll may wait that long) and its own timeouts."""
    adapters = [build_adapter(d) for d in devices]
    for adapter in adapters:
        await adapter.start()
    try:
        answers = await asyncio.gather(*(_first(a, timeout or _patience(a.config)) for a in adapters))
    finally:
        await asyncio.gather(*(a.stop() for a in adapters), return_exceptions=True)
    return {a.id: answer for a, answer in zip(adapters, answers)}


def _patience(device: DeviceConfig) -> float:
    per_request = getattr(device, "timeout", 2.0) * (getattr(device, "retries", 1) + 1)
    return device.poll_interval + per_request + 1.0


async def _first(adapter, timeout: float) -> Answer:
    async def first() -> Answer:
        async for event in adapter.stream():
            if isinstance(event, Reading):
                return Answer(event, adapter.state.model_copy())
            if isinstance(event, DeviceState) and event.status is DeviceStatus.OFFLINE \
                    and event.reason != "not polled yet":
                return Answer(None, event)
        return Answer(None, adapter.state.model_copy())
    try:
        return await asyncio.wait_for(first(), timeout)
    except TimeoutError:
        state = adapter.state.model_copy()
        if state.reason == "not polled yet":
            state.reason = f"no answer within {timeout:g} s"
        return Answer(None, state)
