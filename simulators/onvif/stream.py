"""Real H.264 over RTSP for the simulated cameras: GStreamer's RTSP server, one mount per camera profile.

``rtsp://host:port/<camera>/<profile>`` (what GetStreamUri answers) serves a moving test
picture (scrolling colour bars) with the camera's name and clock burned in, encoded by x264
at the profile's resolution, frame rate and bit rate, a key frame every two seconds. A
mount's pipeline is built when the first client asks and shared by every client (one
encoder per mount, whatever the number of viewers); it goes when the last one leaves.

The picture follows the camera's faults (:mod:`.camera`), as a real camera's would:

- ``frozen``: the scene stops moving; the stream goes on at full rate and the clock
  burned in keeps ticking (a hung image pipeline behind a live encoder);
- ``black``: the picture goes black (the clock stays readable);
- ``obscured``: dust on the lens: blurred, washed-out, low contrast;
- ``bitrate_collapse``: the encoder drops to ``kbps``;
- ``stream_refused``: DESCRIBE is answered ``503 Service Unavailable``, clients are cut off;
- ``offline`` (or cut off by the simulated network): the connection is closed at once.

GStreamer runs its own GLib main loop in a thread; fault changes are handed to it.
``gi`` (PyGObject) and the GStreamer packages are the ``video`` extra (docs/video.md).
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

from simulators.faults import FaultParams

from .camera import BitrateParams, CameraSimulator, ObscuredParams
from .identity import StreamProfile

log = logging.getLogger(__name__)

SCROLL_PX = 3  # per frame: the test picture's motion
DUST_SCALE = 12  # the dusty lens: the picture at 1/12 of its size, scaled back up
PICTURE_FAULTS = ("frozen", "black", "obscured", "bitrate_collapse")


def pipeline(camera: CameraSimulator, profile: StreamProfile) -> str:
    """The launch line of one mount; elements the faults touch are named.

    The dusty lens is a second branch (the picture scaled down by :data:`DUST_SCALE` and back
    up: a blur at a few per cent of a gaussian's CPU) that the selector switches to; its valve
    keeps it idle otherwise."""
    name = camera.name.replace('"', "'")
    w, h = profile.width, profile.height
    small = f"width={max(w // DUST_SCALE, 8)},height={max(h // DUST_SCALE, 8)}"
    return (f"( videotestsrc name=src is-live=true pattern=smpte horizontal-speed={SCROLL_PX} "
            f"! video/x-raw,format=I420,width={w},height={h},framerate={profile.frame_rate}/1 "
            "! videobalance name=balance ! tee name=split "
            "input-selector name=lens sync-streams=false "
            f'! clockoverlay text="{name}" time-format="%Y-%m-%d %H:%M:%S" halignment=left valignment=top '
            'shaded-background=true font-desc="Sans 12" '
            f"! x264enc name=enc tune=zerolatency sliced-threads=false speed-preset=ultrafast "
            f"bitrate={profile.bitrate} key-int-max={profile.gov_length} ! rtph264pay name=pay0 pt=96 config-interval=-1 "
            f"split. ! lens.sink_0 split. ! valve name=dust drop=true ! videoscale ! video/x-raw,{small} "
            f"! videoscale ! video/x-raw,width={w},height={h} ! lens.sink_1 )")


def verify_launch(line: str) -> None:
    """Build ``line`` once, not playing: a GStreamer element the machine lacks (the clock overlay is
    in Debian's gstreamer1.0-x, which ``--no-install-recommends`` leaves out) is an OSError naming
    it at start, not a ``503`` to every client."""
    try:
        Gst.parse_launch(line.strip()[1:-1])  # a factory's launch line is one bin in parentheses
    except GLib.Error as exc:
        raise OSError(f"RTSP: GStreamer cannot build the camera picture: {exc.message} "
                      "(the packages: docs/video.md)") from None


def _apply(bin_: Gst.Bin, faults: dict[str, FaultParams], profile: StreamProfile) -> None:
    """Set a running mount's picture to what the camera's faults say (and back when cleared)."""
    bin_.get_by_name("src").set_property("horizontal-speed", 0 if "frozen" in faults else SCROLL_PX)
    balance, obscured = bin_.get_by_name("balance"), faults.get("obscured")
    level = obscured.level if isinstance(obscured, ObscuredParams) else 0.0
    black = "black" in faults
    balance.set_property("contrast", 0.0 if black else 1.0 - 0.85 * level)
    balance.set_property("brightness", -1.0 if black else 0.25 * level)
    balance.set_property("saturation", 1.0 - 0.8 * level)
    bin_.get_by_name("dust").set_property("drop", not level)
    lens = bin_.get_by_name("lens")
    lens.set_property("active-pad", lens.get_static_pad("sink_1" if level else "sink_0"))
    collapse = faults.get("bitrate_collapse")
    bin_.get_by_name("enc").set_property(
        "bitrate", collapse.kbps if isinstance(collapse, BitrateParams) else profile.bitrate)


class RtspSimServer:
    """One RTSP server (``host``, ``port``; 0: a free one) for ``cameras``: sets each camera's
    ``rtsp_port``, so their GetStreamUri answers point here."""

    def __init__(self, cameras: list[CameraSimulator], host: str = "127.0.0.1", port: int = 0, *,
                 bind_host: str | None = None):
        Gst.init(None)
        self.cameras = {c.device_id: c for c in cameras}
        self.host, self.port, self.bind_host = host, port, bind_host
        self.context = GLib.MainContext()
        self._loop = GLib.MainLoop(self.context)
        self._thread: threading.Thread | None = None
        self._source_id = 0
        self._server: GstRtspServer.RTSPServer | None = None
        self._medias: dict[str, list[tuple[GstRtspServer.RTSPMedia, StreamProfile]]] = defaultdict(list)
        self._clients: dict[GstRtspServer.RTSPClient, str] = {}  # client → camera it asked for
        self.sessions_started: dict[str, int] = defaultdict(int)  # mount path → pipelines built (for tests)
        for camera in cameras:
            camera.subscribe(self._fault_changed)

    def __repr__(self) -> str:
        return f"RtspSimServer({self.host}:{self.port}, {len(self.cameras)} cameras)"

    @property
    def listening(self) -> bool:
        return self._server is not None

    # -- life cycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if self._server is not None:
            return
        if (first := next(iter(self.cameras.values()), None)) is not None:  # every mount has the same elements
            verify_launch(pipeline(first, first.profiles[0]))
        server = GstRtspServer.RTSPServer()
        server.set_address(self.bind_host or self.host)
        server.set_service(str(self.port))
        mounts = server.get_mount_points()
        for camera in self.cameras.values():
            for profile in camera.profiles:
                mounts.add_factory(f"/{camera.device_id}/{profile.token}", self._factory(camera, profile))
        server.connect("client-connected", self._client_connected)
        try:
            self._source_id = server.attach(self.context)
        except GLib.Error as exc:
            raise OSError(f"RTSP: cannot listen on {self.host}:{self.port}: {exc.message}") from None
        if not self._source_id:
            raise OSError(f"RTSP: cannot listen on {self.host}:{self.port}")
        self.port = server.get_bound_port()
        for camera in self.cameras.values():
            camera.rtsp_port = self.port
        self._server = server
        self._thread = threading.Thread(target=self._loop.run, name=f"rtsp-sim-{self.port}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        if self._server is None:
            return
        self._call(self._shutdown)
        self._loop.quit()
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None

    async def settled(self) -> None:
        """Fault changes are applied on GStreamer's thread before ``set_fault`` returns."""

    async def __aenter__(self) -> RtspSimServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    def _shutdown(self) -> None:
        self._server.client_filter(lambda _server, _client, *_: GstRtspServer.RTSPFilterResult.REMOVE)
        for medias in self._medias.values():
            for media, _ in medias:
                media.unprepare()
        self._medias.clear()
        source = self.context.find_source_by_id(self._source_id)
        if source is not None:
            source.destroy()

    def _call(self, work: Callable[[], None], timeout: float = 5.0) -> None:
        """Run ``work`` on GStreamer's thread and wait for it (at once when the loop is not running)."""
        if self._thread is None or not self._thread.is_alive():
            work()
            return
        done = threading.Event()

        def run(*_: Any) -> bool:
            try:
                work()
            finally:
                done.set()
            return GLib.SOURCE_REMOVE
        source = GLib.idle_source_new()
        source.set_callback(run)
        source.attach(self.context)
        if not done.wait(timeout):
            log.warning("RTSP: GStreamer's thread did not answer within %.0f s", timeout)

    # -- mounts -----------------------------------------------------------------------------
    def _factory(self, camera: CameraSimulator, profile: StreamProfile) -> GstRtspServer.RTSPMediaFactory:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(pipeline(camera, profile))
        factory.set_shared(True)
        factory.connect("media-configure", self._configured, camera, profile)
        return factory

    def _configured(self, _factory, media: GstRtspServer.RTSPMedia, camera: CameraSimulator,
                    profile: StreamProfile) -> None:
        _apply(media.get_element(), camera.active_faults, profile)
        self._medias[camera.device_id].append((media, profile))
        self.sessions_started[f"/{camera.device_id}/{profile.token}"] += 1
        media.connect("unprepared", self._unprepared, camera.device_id)

    def _unprepared(self, media: GstRtspServer.RTSPMedia, device_id: str) -> None:
        self._medias[device_id] = [(m, p) for m, p in self._medias[device_id] if m is not media]

    # -- clients ----------------------------------------------------------------------------
    def _client_connected(self, _server, client: GstRtspServer.RTSPClient) -> None:
        client.connect("pre-describe-request", self._admit)
        client.connect("pre-setup-request", self._admit)
        client.connect("closed", lambda c: self._clients.pop(c, None))

    def _admit(self, client: GstRtspServer.RTSPClient, context: GstRtspServer.RTSPContext) -> GstRtsp.RTSPStatusCode:
        """Refuse a camera that is offline (connection closed) or refuses its stream (503)."""
        path = context.uri.abspath if context.uri is not None else ""
        camera = self.cameras.get(path.strip("/").split("/")[0])
        if camera is None:
            return GstRtsp.RTSPStatusCode.OK  # no such mount: the server answers 404 itself
        self._clients[client] = camera.device_id
        if camera.offline:
            client.close()
            return GstRtsp.RTSPStatusCode.SERVICE_UNAVAILABLE
        if "stream_refused" in camera.active_faults:
            return GstRtsp.RTSPStatusCode.SERVICE_UNAVAILABLE
        return GstRtsp.RTSPStatusCode.OK

    # -- faults -----------------------------------------------------------------------------
    def _fault_changed(self, camera: CameraSimulator, fault: str, _params: FaultParams | None) -> None:
        if fault in PICTURE_FAULTS:
            self._call(lambda: self._repaint(camera))
        elif fault in ("stream_refused", "offline") and (camera.offline or "stream_refused" in camera.active_faults):
            self._call(lambda: self._cut_off(camera.device_id))

    def _repaint(self, camera: CameraSimulator) -> None:
        for media, profile in self._medias[camera.device_id]:
            _apply(media.get_element(), camera.active_faults, profile)

    def _cut_off(self, device_id: str) -> None:
        for client in [c for c, d in self._clients.items() if d == device_id]:
            client.close()
