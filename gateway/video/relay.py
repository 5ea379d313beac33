"""The underground video relay: one upstream RTSP session per camera stream, re-served to the surface.

Per camera of ``video.cameras`` (docs/video.md, "Relay"):

* the **sub-stream** is pulled from start to stop (:class:`~gateway.video.upstream.Upstream`) and feeds the
  RTSP path ``/CAMERA/sub``, the HLS playlist ``/hls/CAMERA/index.m3u8`` and the clip buffer;
* the **main stream** is pulled only while the RTSP path ``/CAMERA/main`` has a viewer (plus
  ``main_linger_s``, so a VMS that re-opens a stream does not re-dial the camera).

Every viewer of a path shares one RTSP media (one feed), so N viewers are one session at the camera.
Nothing is decoded or re-encoded. Every ``publish_interval_s`` the relay publishes, as readings (see
:meth:`VideoRelay.meter`): per camera on the camera's device, ``relay_ingress_kbps`` (from the camera),
``relay_uplink_kbps`` (to the surface: RTSP payload bytes times viewers plus HLS bytes served),
``relay_viewers``, ``relay_connected``, ``relay_main_active``, ``relay_reconnects``; for the whole gateway
on the device ``video-relay``, ``uplink_kbps``, ``ingress_kbps``, ``cameras_connected`` and, with a
budget, ``budget_kbps`` and ``over_budget``.
Beyond ``uplink_budget_kbps`` it raises the gateway alarm ``video-uplink-over-budget``; below 90 % of it,
the alarm clears.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from gateway.core.device import DeviceConfig
from gateway.core.model import GatewayAlarm, Reading, Schema, utcnow

from .clips import ClipBuffer, ClipError, ClipStore
from .config import RelayCamera, VideoConfig
from .outputs import Feed, HlsWriter, RtspOut
from .upstream import Upstream

log = logging.getLogger(__name__)

CAMERA_SCHEMA = Schema(["relay_ingress_kbps", "relay_uplink_kbps", "relay_viewers", "relay_connected",
                        "relay_main_active", "relay_reconnects"], ["kbit/s", "kbit/s", "", "", "", ""])
TOTAL_SCHEMA = Schema(["uplink_kbps", "ingress_kbps", "budget_kbps", "over_budget", "cameras_connected"],
                      ["kbit/s", "kbit/s", "kbit/s", "", ""])
TOTAL_SCHEMA_NO_BUDGET = Schema(["uplink_kbps", "ingress_kbps", "cameras_connected"], ["kbit/s", "kbit/s", ""])
BUDGET_ALARM = "video-uplink-over-budget"


class RelayDevice(DeviceConfig):
    """The relay itself, as the device its totals are readings of (historian measurement ``video_relay``)."""

    adapter: str = "video_relay"


class CameraRelay:
    """The streams, outputs and counters of one camera."""

    def __init__(self, cam: RelayCamera, config: VideoConfig):
        relay = config.relay
        opts = {"latency_ms": relay.upstream_latency_ms, "stall_s": relay.stall_s,
                "backoff": (relay.reconnect_initial_s, relay.reconnect_max_s)}
        self.id = cam.device
        self.sub = Upstream(f"{cam.device}/sub", cam.sub, **opts)
        self.main = Upstream(f"{cam.device}/main", cam.main, **opts) if cam.main else None
        self.hls = HlsWriter(Path(relay.hls_dir) / cam.device, target_s=relay.hls_segment_s,
                             segments=relay.hls_segments)
        self.clips = ClipBuffer(config.clips.pre_s + config.clips.post_s + 10.0)
        self.sub.add(self.hls.feed)
        self.sub.add(self.clips)
        self.uplink_bytes = 0  # sent to the surface: RTSP (payload bytes x viewers) and HLS (HTTP bytes)
        self.idle_since: float | None = None  # when the main stream's last viewer left
        self.meter_at = (time.monotonic(), 0, 0)  # (when, ingress bytes, uplink bytes) at the last meter

    def upstreams(self) -> list[Upstream]:
        return [self.sub] + ([self.main] if self.main else [])

    def ingress_bytes(self) -> int:
        return sum(u.bytes for u in self.upstreams())


class VideoRelay:
    """Runs the relay; ``publish(device, reading)`` and ``alarm(GatewayAlarm)`` are the gateway's."""

    RELAY_DEVICE_ID = "video-relay"

    def __init__(self, config: VideoConfig, *, areas: dict[str, str], snapshots_dir: Path,
                 publish: Callable[[DeviceConfig, Reading], None] | None = None,
                 alarm: Callable[[GatewayAlarm], None] | None = None, devices: dict[str, DeviceConfig] | None = None):
        """``areas``: camera id -> area; ``devices``: camera id -> its device settings (its readings' device)."""
        self.config, self.areas, self.publish, self.alarm = config, areas, publish, alarm
        self.devices = devices or {}
        self.cameras = {c.device: CameraRelay(c, config) for c in config.cameras}
        area = next(iter(areas.values()), "gateway")
        self.device = RelayDevice(id=self.RELAY_DEVICE_ID, area=area, name="video relay")
        self.clip_store = ClipStore(snapshots_dir, config.clips.max_bytes)
        relay = config.relay
        self.rtsp = RtspOut(relay.bind, relay.rtsp_port, attach=self._attach, detach=self._detach,
                            count_bytes=self._count_rtsp)
        for cam in self.cameras.values():
            self.rtsp.mount(f"/{cam.id}/sub")
            if cam.main:
                self.rtsp.mount(f"/{cam.id}/main")
        self.http = None
        self.over_budget = 0  # intervals over budget while the alarm is up
        self._lock = threading.Lock()
        self._tasks: list[asyncio.Task] = []

    # ---- start, stop ----

    async def start(self) -> None:
        from .http import RelayHttp

        self.rtsp.start()
        for cam in self.cameras.values():
            cam.hls.start()
            cam.sub.start()
        self.http = RelayHttp(self)
        await self.http.start(self.config.relay.bind, self.config.relay.http_port)
        self._tasks = [asyncio.create_task(self._meter_loop(), name="video-meter"),
                       asyncio.create_task(self._linger_loop(), name="video-linger")]
        log.info("video relay: %d cameras, RTSP %s, HLS %s", len(self.cameras), self.rtsp_url("CAMERA/sub"),
                 self.hls_url("CAMERA"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.stop()
        await asyncio.to_thread(self._stop_streams)

    def _stop_streams(self) -> None:
        self.rtsp.stop()
        for cam in self.cameras.values():
            for upstream in cam.upstreams():
                upstream.stop()
            cam.hls.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ---- URLs ----

    @property
    def public_host(self) -> str:
        relay = self.config.relay
        if relay.public_host:
            return relay.public_host
        return relay.bind if relay.bind not in ("0.0.0.0", "::") else socket.gethostname()

    def rtsp_url(self, path: str) -> str:
        return f"rtsp://{self.public_host}:{self.rtsp.port}/{path}"

    def hls_url(self, camera: str) -> str:
        return f"http://{self.public_host}:{self.http.port if self.http else 0}/hls/{camera}/index.m3u8"

    # ---- RTSP media come and go (on the RTSP server's thread) ----

    def _camera_of(self, path: str) -> tuple[CameraRelay, Upstream | None]:
        cam = self.cameras[path.split("/")[1]]
        return cam, (cam.main if path.endswith("/main") else cam.sub)

    def _attach(self, path: str, feed: Feed) -> None:
        cam, upstream = self._camera_of(path)
        upstream.add(feed)
        if upstream is cam.main:
            cam.idle_since = None
            if not upstream.running:
                log.info("video relay: %s watched, pulling its main stream", cam.id)
                upstream.start()

    def _detach(self, path: str, feed: Feed) -> None:
        cam, upstream = self._camera_of(path)
        upstream.remove(feed)
        if upstream is cam.main and not upstream.consumers:
            cam.idle_since = time.monotonic()

    def _count_rtsp(self, path: str, n: int) -> None:
        cam, _ = self._camera_of(path)
        with self._lock:
            cam.uplink_bytes += n

    def count_hls(self, camera: str, n: int) -> None:
        with self._lock:
            self.cameras[camera].uplink_bytes += n

    async def _linger_loop(self) -> None:
        """Stop a main stream ``main_linger_s`` after its last viewer left."""
        while True:
            await asyncio.sleep(0.5)
            for cam in self.cameras.values():
                idle = cam.idle_since
                if cam.main and idle is not None and time.monotonic() - idle >= self.config.relay.main_linger_s:
                    cam.idle_since = None
                    if not cam.main.consumers:
                        log.info("video relay: %s no longer watched, main stream released", cam.id)
                        await asyncio.to_thread(cam.main.stop)
                        if cam.main.consumers:  # a viewer came while it stopped
                            cam.main.start()

    # ---- bitrate, budget ----

    async def _meter_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.publish_interval_s)
            try:
                self.meter()
            except Exception:
                log.exception("video relay: metering failed")

    def meter(self) -> dict[str, dict]:
        """Bitrates since the last call, published as readings; returns them per camera (and ``total``)."""
        now, ts = time.monotonic(), utcnow()
        figures: dict[str, dict] = {}
        for cam in self.cameras.values():
            was, ingress, uplink = cam.meter_at, cam.ingress_bytes(), cam.uplink_bytes
            seconds = max(now - was[0], 1e-3)
            cam.meter_at = (now, ingress, uplink)
            figures[cam.id] = {
                "relay_ingress_kbps": round((ingress - was[1]) * 8 / 1000 / seconds, 1),
                "relay_uplink_kbps": round((uplink - was[2]) * 8 / 1000 / seconds, 1),
                "relay_viewers": sum(self.rtsp.viewer_count(f"/{cam.id}/{s}") for s in ("sub", "main")),
                "relay_connected": int(cam.sub.connected), "relay_main_active": int(bool(cam.main and cam.main.running)),
                "relay_reconnects": sum(u.reconnects for u in cam.upstreams())}
        total = self._totals(figures)
        if self.publish is not None:
            for camera, values in figures.items():
                device = self.devices.get(camera)
                if device is not None:
                    self.publish(device, Reading(camera, ts, 0.0, schema=CAMERA_SCHEMA, values=list(values.values()),
                                                 derived=True))
            schema = TOTAL_SCHEMA if total["budget_kbps"] is not None else TOTAL_SCHEMA_NO_BUDGET
            self.publish(self.device, Reading(self.device.id, ts, 0.0, schema=schema,
                                              values=[total[k] for k in schema.signals], derived=True))
        return {**figures, "total": total}

    def _totals(self, figures: dict[str, dict]) -> dict:
        uplink = round(sum(f["relay_uplink_kbps"] for f in figures.values()), 1)
        budget = self.config.uplink_budget_kbps
        over = budget is not None and uplink > budget
        self._check_budget(uplink, budget)
        return {"uplink_kbps": uplink, "ingress_kbps": round(sum(f["relay_ingress_kbps"] for f in figures.values()), 1),
                "budget_kbps": budget, "over_budget": int(over),
                "cameras_connected": sum(f["relay_connected"] for f in figures.values())}

    def _check_budget(self, uplink: float, budget: float | None) -> None:
        if budget is None:
            return
        if uplink > budget:
            self.over_budget += 1
            if self.over_budget == 1:
                self._raise(True, f"video uplink {uplink:g} kbit/s is over the site's budget of {budget:g} kbit/s")
        elif self.over_budget and uplink <= 0.9 * budget:
            self._raise(False, f"video uplink {uplink:g} kbit/s is back under 90 % of {budget:g} kbit/s")
            self.over_budget = 0

    def _raise(self, active: bool, message: str) -> None:
        log.warning("video relay: %s", message)
        if self.alarm is not None:
            self.alarm(GatewayAlarm(id=BUDGET_ALARM, active=active, message=message, count=self.over_budget))

    # ---- status, clips ----

    def status(self) -> dict:
        """What ``minegw video relay status`` shows (served at ``/status``)."""
        cams = {}
        for cam in self.cameras.values():
            cams[cam.id] = {
                "area": self.areas.get(cam.id), "rtsp_sub": self.rtsp_url(f"{cam.id}/sub"),
                "rtsp_main": self.rtsp_url(f"{cam.id}/main") if cam.main else None, "hls": self.hls_url(cam.id),
                "streams": {u.name.rsplit("/", 1)[1]: {
                    "pulling": u.running, "connected": u.connected, "sessions": u.sessions,
                    "reconnects": u.reconnects, "bytes": u.bytes, "frames": u.frames, "last_error": u.last_error,
                    "viewers": self.rtsp.viewer_count(f"/{u.name}")} for u in cam.upstreams()}}
        return {"cameras": cams, "budget_kbps": self.config.uplink_budget_kbps,
                "over_budget": bool(self.over_budget), "ts": utcnow().isoformat()}

    async def clips(self, area: str) -> tuple[list[str], dict[str, str]]:
        """A clip of every relayed camera of ``area`` around now: waits the post-roll, then writes them."""
        cams = [c for c in self.cameras.values() if self.areas.get(c.id) == area]
        if not cams:
            return [], {}
        alarm_at, ts = time.monotonic(), utcnow()
        await asyncio.sleep(self.config.clips.post_s)
        results = await asyncio.gather(*(asyncio.to_thread(self._clip, c, alarm_at, ts) for c in cams),
                                       return_exceptions=True)
        refs, errors = [], {}
        for cam, result in zip(cams, results):
            if isinstance(result, BaseException):
                errors[cam.id] = str(result) if isinstance(result, ClipError) else repr(result)
            else:
                refs.append(result)
        return refs, errors

    def _clip(self, cam: CameraRelay, alarm_at: float, ts) -> str:
        frames = cam.clips.slice(alarm_at - self.config.clips.pre_s, alarm_at + self.config.clips.post_s)
        return self.clip_store.save(cam.id, frames, ts)
