"""What the relay serves to the surface from each upstream: RTSP (one shared media per path) and HLS files.

Neither decodes nor encodes: access units from :class:`~gateway.video.upstream.Upstream` go into an
``appsrc`` stamped with the time they arrive (``do-timestamp``), then ``h264parse`` and either the RTP
payloader of a shared RTSP media (every viewer of a path shares one media, so one upstream session) or
``hlssink2`` (MPEG-TS segments cut at keyframes, a sliding playlist).
"""
from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from .gst import H264_CAPS, Gst, GstRtspServer, MainLoop, buffer_of

log = logging.getLogger(__name__)

APPSRC = (f"appsrc name=src is-live=true format=time do-timestamp=true caps={H264_CAPS} "
          "max-bytes=4000000 leaky-type=downstream")
RTSP_MEDIA = f"( {APPSRC} ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
HLS = (f"{APPSRC} ! h264parse ! hlssink2 name=hls location={{dir}}/segment%05d.ts "
       "playlist-location={dir}/index.m3u8 target-duration={target} max-files={files} playlist-length={length}")


class Feed:
    """Pushes a stream's access units into one ``appsrc``, starting at a keyframe (a decoder needs one)."""

    def __init__(self, appsrc, on_bytes: Callable[[int], None] | None = None):
        self.appsrc, self.on_bytes = appsrc, on_bytes
        self.started = False

    def __call__(self, data: bytes, key: bool) -> None:
        if not self.started:
            if not key:
                return
            self.started = True
        self.appsrc.emit("push-buffer", buffer_of(data))
        if self.on_bytes is not None:
            self.on_bytes(len(data))


class RtspOut:
    """The relay's RTSP server: a mount per stream path (``/CAMERA/sub``, ``/CAMERA/main``), viewers counted.

    ``attach(path, feed)`` is called when a path's shared media is built (its first viewer), ``detach(path,
    feed)`` when it is torn down (its last viewer left): the relay starts and stops a main stream's upstream on them.
    """

    def __init__(self, host: str, port: int, *, attach: Callable[[str, Feed], None],
                 detach: Callable[[str, Feed], None], count_bytes: Callable[[str, int], None]):
        self.attach, self.detach, self.count_bytes = attach, detach, count_bytes
        self.viewers: dict[str, set[int]] = {}  # path -> ids of the clients playing it
        self._lock = threading.Lock()
        self.loop = MainLoop("video-rtsp")
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address(host)
        self.server.set_service(str(port))
        self.server.connect("client-connected", self._on_client)
        # a thread per client: preparing a media waits for the stream's next keyframe, and with the
        # default single thread N viewers arriving together would wait N keyframes in turn
        self.server.get_thread_pool().set_max_threads(-1)
        self._source_id = 0
        self._clients = 0

    def mount(self, path: str) -> None:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(RTSP_MEDIA)
        factory.set_shared(True)  # every viewer of the path: one media, one feed, one upstream session
        factory.connect("media-configure", self._on_media, path)
        self.server.get_mount_points().add_factory(path, factory)
        self.viewers[path] = set()

    def start(self) -> None:
        self._source_id = self.server.attach(self.loop.context)
        if self._source_id == 0:
            raise OSError(f"the RTSP server cannot listen on port {self.server.get_service()}")
        self.loop.start()
        self.port = self.server.get_bound_port()

    def stop(self) -> None:
        pool = self.server.get_session_pool()
        self.loop.call(lambda: (pool.filter(lambda _p, _s: GstRtspServer.RTSPFilterResult.REMOVE),
                                self.server.client_filter(lambda _s, _c: GstRtspServer.RTSPFilterResult.REMOVE)))
        if self._source_id:
            self.loop.call(lambda: self.loop.context.find_source_by_id(self._source_id).destroy())
        self.loop.stop()

    def viewer_count(self, path: str) -> int:
        with self._lock:
            return len(self.viewers.get(path, ()))

    def _on_media(self, _factory, media, path: str) -> None:
        appsrc = media.get_element().get_by_name("src")
        feed = Feed(appsrc, lambda n: self.count_bytes(path, n * max(self.viewer_count(path), 1)))
        media.connect("unprepared", lambda _m: self.detach(path, feed))
        self.attach(path, feed)

    def _on_client(self, _server, client) -> None:
        self._clients += 1
        key = self._clients  # not id(client): the Python wrapper may be freed and its id reused
        client.connect("play-request", lambda _c, ctx: self._playing(key, ctx.uri.abspath, True))
        client.connect("teardown-request", lambda _c, ctx: self._playing(key, ctx.uri.abspath, False))
        client.connect("closed", lambda _c: self._gone(key))

    def _playing(self, key: int, abspath: str, playing: bool) -> None:
        path = next((p for p in self.viewers if abspath.rstrip("/").startswith(p)), None)
        if path is None:
            return
        with self._lock:
            (self.viewers[path].add if playing else self.viewers[path].discard)(key)

    def _gone(self, key: int) -> None:
        with self._lock:
            for clients in self.viewers.values():
                clients.discard(key)


class HlsWriter:
    """HLS of one stream under ``directory`` (``index.m3u8`` and ``segmentNNNNN.ts``), written while started."""

    def __init__(self, directory: Path, *, target_s: int, segments: int):
        self.directory = directory
        shutil.rmtree(directory, ignore_errors=True)  # a previous run's segments would confuse players
        directory.mkdir(parents=True, exist_ok=True)
        self.pipeline = Gst.parse_launch(HLS.format(dir=directory, target=target_s, files=segments + 4,
                                                    length=segments))
        self.feed = Feed(self.pipeline.get_by_name("src"))

    def start(self) -> None:
        self.pipeline.set_state(Gst.State.PLAYING)

    def stop(self) -> None:
        self.pipeline.get_by_name("src").emit("end-of-stream")
        self.pipeline.get_bus().timed_pop_filtered(2 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
        self.pipeline.set_state(Gst.State.NULL)
