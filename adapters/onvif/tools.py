"""ONVIF tools behind ``minegw onvif discover | info | snapshot``.

``discover``, ``info`` and ``snapshot`` return data (tests and other code use them); the
``*_command`` functions print it for the command line and turn expected failures into a
:class:`UserError` (one line, exit 1).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from gateway.core.device import DeviceConfig
from gateway.core.errors import UserError
from gateway.core.model import Inventory

from .config import OnvifDeviceConfig, SnapshotConfig
from .discovery import Discovered, discover
from .link import CameraError, CameraLink
from .snapshots import SnapshotError, SnapshotRef, SnapshotStore

__all__ = ["Discovered", "discover", "info", "snapshot", "camera_config", "discover_command", "info_command", "snapshot_command"]


def camera_config(url: str, username: str | None = None, password: str | None = None,
                  timeout: float = 5.0) -> OnvifDeviceConfig:
    """Settings for one camera given as ``http://host[:port][/...]`` or ``host[:port]``."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise UserError(f"{url!r}: expected http://HOST[:PORT] or HOST[:PORT]")
    try:
        port = parts.port or 80
    except ValueError:
        raise UserError(f"{url!r}: bad port") from None
    return OnvifDeviceConfig(id="camera", area="-", host=parts.hostname, port=port, username=username or None,
                             password=password if username else None, timeout=timeout)


async def info(config: OnvifDeviceConfig) -> Inventory:
    """What the adapter reads from one camera."""
    async with CameraLink(config) as link:
        return await link.read_inventory()


async def snapshot(devices: Sequence[DeviceConfig], store: SnapshotConfig, camera: str,
                   directory: Path | None = None) -> SnapshotRef:
    """Take a snapshot from ``camera`` (the id of one of ``devices``, a site's) into the snapshot
    store ``store`` (or one in ``directory`` with its disk budget)."""
    device = next((d for d in devices if d.id == camera), None)
    if not isinstance(device, OnvifDeviceConfig):
        cameras = ", ".join(d.id for d in devices if isinstance(d, OnvifDeviceConfig)) or "none"
        raise UserError(f"no camera {camera!r} in the site file (cameras: {cameras})")
    store_config = store if directory is None else SnapshotConfig(directory=directory, max_bytes=store.max_bytes)
    async with CameraLink(device) as link:
        jpeg = await link.snapshot(device.snapshot_profile)
    return await SnapshotStore(store_config).save(device.id, jpeg)


# -- for the command line -------------------------------------------------------------------------
async def discover_command(console: Console, addresses: list[str], timeout: float, multicast: bool) -> None:
    found = await discover(addresses, timeout=timeout, multicast=multicast)
    table = Table(title=f"{len(found)} ONVIF device(s) answered")
    for column in ("address", "name", "location", "hardware", "device service", "endpoint"):
        table.add_column(column)
    for d in found:
        table.add_row(d.address, d.scope("name") or "", d.scope("location") or "", d.scope("hardware") or "",
                      " ".join(d.xaddrs), d.endpoint)
    console.print(table)


async def info_command(console: Console, url: str, username: str | None, password: str | None,
                       timeout: float) -> None:
    config = camera_config(url, username, password, timeout)
    try:
        inventory = await info(config)
    except CameraError as exc:
        raise UserError(str(exc)) from None
    console.print(_describe(inventory), highlight=False)
    profiles = Table(title="media profiles")
    for column in ("token", "name", "encoding", "resolution", "fps", "stream", "snapshot", "ptz"):
        profiles.add_column(column)
    for p in inventory.profiles:
        profiles.add_row(p.token, p.name, p.encoding or "", f"{p.width}x{p.height}" if p.width else "",
                         f"{p.frame_rate:g}" if p.frame_rate else "", p.stream_uri or "", p.snapshot_uri or "",
                         "yes" if p.ptz else "")
    console.print(profiles)


def _describe(inventory: Inventory) -> str:
    return "\n".join([
        f"[bold]{inventory.manufacturer} {inventory.model}[/]  firmware {inventory.firmware}  "
        f"serial {inventory.serial}  hardware {inventory.hardware_id}",
        f"services: {', '.join(inventory.services)}; PTZ: {'yes' if inventory.ptz else 'no'}",
        f"clock: {inventory.clock_offset_s:+.0f} s from this host's",
        f"event topics: {', '.join(inventory.event_topics) or 'none'}"])


async def snapshot_command(console: Console, devices: Sequence[DeviceConfig], store: SnapshotConfig, camera: str,
                           directory: Path | None) -> None:
    try:
        ref = await snapshot(devices, store, camera, directory)
    except (CameraError, SnapshotError) as exc:
        raise UserError(f"{camera}: {exc}") from None
    console.print(f"{ref.ref} ({ref.bytes} bytes) in {ref.path.parent.parent}", highlight=False)
