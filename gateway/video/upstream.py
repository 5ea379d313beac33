"""One camera stream pulled by the relay: one RTSP session at the camera, whatever the number of viewers.

``rtspsrc → rtph264depay → h264parse → appsink`` (no decoding): every access unit goes to the
stream's consumers (the RTSP media and HLS writer of the relay, the clip buffer). A thread supervises the
pipeline: on an error, an end of stream or ``stall_s`` without data it tears the session down and dials
again after a back-off, so a camera restart costs a reconnect, never the relay. Bytes are counted as they
arrive: that is the stream's bitrate.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gateway.core.backoff import Backoff

from .gst import H264_CAPS, Gst

log = logging.getLogger(__name__)

# an access unit: its bytes, whether it is a keyframe (with SPS/PPS in front: h264parse config-interval=-1)
Consumer = Callable[[bytes, bool], None]

PIPELINE = ("rtspsrc name=src location={url} protocols=tcp latency={latency} do-rtcp=true ! "
            "rtph264depay ! video/x-h264,alignment=au ! h264parse config-interval=-1 ! " + H264_CAPS + " ! "
            "appsink name=out emit-signals=true sync=false max-buffers=50 drop=true")


class Upstream:
    """Pulls ``url`` while started; ``consumers`` get every access unit on GStreamer's streaming thread."""

    def __init__(self, name: str, url: str, *, latency_ms: int = 100, stall_s: float = 5.0,
                 backoff: tuple[float, float] = (0.5, 10.0)):
        self.name, self.url, self.latency_ms, self.stall_s = name, url, latency_ms, stall_s
        self.backoff = Backoff(*backoff)
        self.consumers: list[Consumer] = []
        self.connected = False
        self.sessions = 0  # RTSP sessions opened at the camera since start
        self.reconnects = 0
        self.bytes = 0  # received since start
        self.frames = 0
        self.last_error = ""
        self._last_data = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def add(self, consumer: Consumer) -> None:
        with self._lock:
            self.consumers = [*self.consumers, consumer]  # copy on write: the streaming thread never locks

    def remove(self, consumer: Consumer) -> None:
        with self._lock:
            self.consumers = [c for c in self.consumers if c is not consumer]

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._supervise, name=f"upstream:{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def _supervise(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            reason = self._session()
            self.connected = False
            if self._stop.is_set():
                break
            self.last_error = reason
            self.reconnects += 1
            if time.monotonic() - started > 30:  # it ran for a while: start the back-off again
                self.backoff.reset()
            delay = self.backoff.next()
            log.warning("video relay: %s lost (%s), reconnecting in %.1f s", self.name, reason, delay)
            self._stop.wait(delay)

    def _session(self) -> str:
        """Run one RTSP session until it fails or the relay stops; returns why it ended."""
        pipeline = Gst.parse_launch(PIPELINE.format(url=self.url, latency=self.latency_ms))
        pipeline.get_by_name("out").connect("new-sample", self._on_sample)
        bus = pipeline.get_bus()
        self._last_data = time.monotonic()
        self.sessions += 1
        pipeline.set_state(Gst.State.PLAYING)
        try:
            while not self._stop.is_set():
                msg = bus.timed_pop_filtered(250 * Gst.MSECOND, Gst.MessageType.ERROR | Gst.MessageType.EOS)
                if msg is not None:
                    if msg.type == Gst.MessageType.EOS:
                        return "end of stream"
                    err, _ = msg.parse_error()
                    return err.message
                if time.monotonic() - self._last_data > self.stall_s:
                    return f"no data for {self.stall_s:g} s"
            return "stopped"
        finally:
            pipeline.set_state(Gst.State.NULL)

    def _on_sample(self, sink) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        buf = sample.get_buffer()
        data = buf.extract_dup(0, buf.get_size())
        key = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        self._last_data = time.monotonic()
        if not self.connected:
            self.connected = True
            self.backoff.reset()
            log.info("video relay: %s streaming from %s", self.name, self.url)
        self.bytes += len(data)
        self.frames += 1
        for consumer in self.consumers:
            try:
                consumer(data, key)
            except Exception:
                log.exception("video relay: a consumer of %s failed", self.name)
        return Gst.FlowReturn.OK
