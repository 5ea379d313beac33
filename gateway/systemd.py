"""systemd integration without a dependency: ``sd_notify(3)`` over ``$NOTIFY_SOCKET``.

For ``Type=notify`` units (deploy/underground/minegw.service): ``READY=1`` once the
service has started, ``WATCHDOG=1`` every half ``WatchdogSec`` while the asyncio loop
runs (a loop that stops turning stops the pings: systemd kills and restarts the
unit), ``STOPPING=1`` on the way out (systemd stops enforcing the watchdog then).
Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing.

Usage, around the part of a long-running command that is "running"::

    async with gateway, notify_systemd():
        await until_signalled()
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

log = logging.getLogger(__name__)


def notify(*assignments: str) -> bool:
    """Send ``assignments`` (``"READY=1"``, ``"STATUS=…"``) to systemd; False when not under systemd.

    Never raises: a notification that cannot be sent is logged at DEBUG (the service
    itself must not fail because systemd is gone).
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not assignments:
        return False
    if address[0] == "@":  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(assignments).encode())
    except OSError as exc:
        log.debug("sd_notify to %r failed: %s", address, exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of ``WatchdogSec``), or None when the watchdog is off for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 / 2 if value > 0 else None


async def _watchdog(interval: float) -> None:
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)


@asynccontextmanager
async def notify_systemd(status: str | None = None) -> AsyncIterator[None]:
    """``READY=1`` on entry and watchdog pings from this event loop until exit, then ``STOPPING=1``."""
    notify("READY=1", *([f"STATUS={status}"] if status else []))
    interval = watchdog_interval()
    task = asyncio.create_task(_watchdog(interval), name="systemd-watchdog") if interval else None
    try:
        yield
    finally:
        notify("STOPPING=1")
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
