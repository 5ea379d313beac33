"""The cameras of a site file, for :class:`simulators.site.SiteSimulator`."""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from .camera import CameraSimulator
from .discovery import DiscoveryResponder
from .server import OnvifSimServer

log = logging.getLogger(__name__)


def site_cameras(devices: list[Any], bind_host: str | None = None, discovery_port: int | None = 3702,
                 rtsp_port: int | None = 0) -> tuple[dict[str, CameraSimulator], list[Any]]:
    """A camera and a server per ONVIF device of a site file (``id``, ``host``, ``port``, ``username``,
    ``secret``, ``name``, ``zone``, ``area``), accepting the login the site file uses, one
    WS-Discovery responder for them all (none when ``discovery_port`` is None), and their
    streams: one RTSP server per address listened on, on ``rtsp_port`` (0: a free one; None:
    no streams)."""
    cameras: dict[str, CameraSimulator] = {}
    servers: list[OnvifSimServer | DiscoveryResponder] = []
    for d in devices:
        users = {d.username: d.secret or ""} if d.username else {}
        cameras[d.id] = CameraSimulator(d.id, users, name=d.name or d.id, location=d.zone or d.area)
        servers.append(OnvifSimServer(cameras[d.id], d.host, d.port, bind_host=bind_host))
    if servers and discovery_port is not None:
        servers.append(DiscoveryResponder(list(servers), discovery_port, bind_host or "0.0.0.0"))
    if cameras and rtsp_port is not None:
        servers += stream_servers(devices, cameras, bind_host, rtsp_port)
    return cameras, servers


def stream_servers(devices: list[Any], cameras: dict[str, CameraSimulator], bind_host: str | None,
                   port: int) -> list[Any]:
    """RTSP servers for the cameras (GStreamer: the ``video`` extra; without it the cameras stream nothing)."""
    try:
        from .stream import RtspSimServer  # GStreamer: only where cameras stream
    except (ImportError, ValueError) as exc:  # gi missing, or its GStreamer typelibs
        log.warning("cameras serve no video (install minegw[video] and GStreamer, docs/video.md): %s", exc)
        return []
    by_host: dict[str, list[CameraSimulator]] = defaultdict(list)
    for d in devices:
        by_host[bind_host or d.host].append(cameras[d.id])
    return [RtspSimServer(group, host, port) for host, group in by_host.items()]
