"""Reachability: does each device's host answer from here, and how fast (TCP connect to its service port).

Modbus: its port; OPC UA: the endpoint's port; ONVIF: its HTTP port. SNMP is UDP: there the adapter's own
answer says it (``device_health`` takes it from the polls). No ICMP: that needs privileges a gateway
should not have. Results go into ``device_health`` (``reachable``, ``reach_ms``); see docs/network.md.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.core.device import DeviceConfig

log = logging.getLogger(__name__)
DEFAULT_PORTS = {"opc.tcp": 4840}


@dataclass(frozen=True)
class Reach:
    reachable: bool
    ms: float | None  # connect round trip, None when not reachable
    error: str = ""


def service_endpoint(device: DeviceConfig) -> tuple[str, int] | None:
    """(host, TCP port) the device serves on, or None (SNMP: UDP; a kind without one)."""
    if device.adapter == "snmp":
        return None
    url = getattr(device, "url", None)
    if isinstance(url, str):
        parts = urlsplit(url)
        return (parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme, 0)) if parts.hostname else None
    host, port = getattr(device, "host", None), getattr(device, "port", None)
    return (host, port) if isinstance(host, str) and isinstance(port, int) else None


async def tcp_reach(host: str, port: int, timeout: float = 2.0) -> Reach:
    """Connect and close at once; the time the connection took to open."""
    start = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        return Reach(False, None, "timeout" if isinstance(exc, TimeoutError) else exc.strerror or type(exc).__name__)
    ms = (time.perf_counter() - start) * 1000
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return Reach(True, ms)


async def reach_all(devices: Sequence[DeviceConfig], timeout: float = 2.0, at_once: int = 32) -> dict[str, Reach]:
    """Every device with a TCP service port, probed at most ``at_once`` at a time."""
    gate = asyncio.Semaphore(at_once)

    async def one(endpoint: tuple[str, int]) -> Reach:
        async with gate:
            return await tcp_reach(*endpoint, timeout)
    probed = {d.id: endpoint for d in devices if (endpoint := service_endpoint(d))}
    results = await asyncio.gather(*(one(e) for e in probed.values()))
    return dict(zip(probed, results))


class Reachability:
    """Probes the devices every ``interval`` seconds; ``latest()`` gives the last results (on the loop)."""

    def __init__(self, devices: Sequence[DeviceConfig], interval: float = 30.0, timeout: float = 2.0):
        self.devices, self.interval, self.timeout = list(devices), interval, min(timeout, interval)
        self._latest: dict[str, Reach] = {}
        self._task: asyncio.Task | None = None

    def latest(self) -> dict[str, Reach]:
        return dict(self._latest)

    def start(self) -> None:
        if self.interval > 0 and any(service_endpoint(d) for d in self.devices):
            self._task = asyncio.create_task(self._loop(), name="reachability")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                self._latest = await reach_all(self.devices, self.timeout)
            except Exception:  # noqa: BLE001 - a probe bug must not end the loop
                log.exception("reachability probe failed")
            await asyncio.sleep(self.interval)
