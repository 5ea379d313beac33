"""The cameras of a site file, for :class:`simulators.site.SiteSimulator`."""
from __future__ import annotations

from typing import Any

from .camera import CameraSimulator
from .discovery import DiscoveryResponder
from .server import OnvifSimServer


def site_cameras(devices: list[Any], bind_host: str | None = None, discovery_port: int | None = 3702,
                 ) -> tuple[dict[str, CameraSimulator], list[OnvifSimServer | DiscoveryResponder]]:
    """A camera and a server per ONVIF device of a site file (``id``, ``host``, ``port``, ``username``,
    ``secret``, ``name``, ``zone``, ``area``), accepting the login the site file uses, and one
    WS-Discovery responder for them all (none when ``discovery_port`` is None)."""
    cameras: dict[str, CameraSimulator] = {}
    servers: list[OnvifSimServer | DiscoveryResponder] = []
    for d in devices:
        users = {d.username: d.secret or ""} if d.username else {}
        cameras[d.id] = CameraSimulator(d.id, users, name=d.name or d.id, location=d.zone or d.area)
        servers.append(OnvifSimServer(cameras[d.id], d.host, d.port, bind_host=bind_host))
    if servers and discovery_port is not None:
        servers.append(DiscoveryResponder(list(servers), discovery_port, bind_host or "0.0.0.0"))
    return cameras, servers
