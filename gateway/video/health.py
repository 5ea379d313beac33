"""Stream health from the stream itself: rate, bit rate, key frames, stalls, and what the picture shows.

:class:`StreamHealth` watches one stream (an RTSP URL, or anything PyAV opens) in a worker
thread: it reads every packet (counting frames, bytes, key frames and gaps, cheap) but
decodes only a key frame every ``sample_every`` seconds (a key frame decodes on its own,
so the decoder never sees the frames between) and judges it (:mod:`.picture`). Every
``report_every`` seconds it hands out a :class:`HealthSample`; when the stream cannot be
opened or breaks it hands one out with ``stream_ok`` false and the reason, and tries again
with back-off. Reasons never carry the URL (it may hold credentials).

``watch()`` yields the samples to asyncio code (the ONVIF adapter); :func:`probe` watches
a stream for a while in the calling thread (``minegw video probe``). No ``gateway`` import
beyond the core: adapters use this module (docs/architecture.md).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime

import av
import av.error

from gateway.core.backoff import Backoff
from gateway.core.model import utcnow

from .picture import ANALYSIS_WIDTH, HealthRules, Picture, PictureJudge, measure

log = logging.getLogger(__name__)

RTSP_OPTIONS = {"rtsp_transport": "tcp"}  # interleaved: no UDP ports to open through the mine's firewalls


class StreamEnded(Exception):
    """The source stopped sending (end of file, or the server closed the session)."""


@dataclass(frozen=True)
class HealthSample:
    """One report: the stream over the last window and the picture at its last sampled frame."""

    ts: datetime
    stream_ok: bool
    reason: str = ""  # why the stream is not ok
    picture: str | None = None  # ok, frozen, black, obscured; None: no frame judged yet
    fps: float | None = None
    kbps: float | None = None
    keyframe_interval_s: float | None = None
    stalls: int = 0  # gaps longer than the rules' stall_s since the watch began
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    measured: Picture | None = None
    motion: float | None = None  # share of the picture that changed between the last two sampled frames
    rules: HealthRules = field(default_factory=HealthRules, repr=False)

    @property
    def problems(self) -> list[str]:
        """What is wrong, in words (empty: healthy)."""
        if not self.stream_ok:
            return [f"no stream: {self.reason}"]
        found = [] if self.picture in (None, "ok") else [f"picture {self.picture}"]
        if self.rules.min_kbps is not None and self.kbps is not None and self.kbps < self.rules.min_kbps:
            found.append(f"bit rate {self.kbps:.0f} kbit/s below {self.rules.min_kbps:g}")
        return found

    @property
    def verdict(self) -> str:
        return "; ".join(self.problems) or "ok"


class _Window:
    """Packets counted since the last report. Rates run on the stream's own time stamps, so the
    burst a demuxer hands over after opening (the packets it probed) does not count as speed."""

    def __init__(self, now: float):
        self.started, self.frames, self.bytes = now, 0, 0
        self.first: float | None = None
        self.last: float | None = None

    def add(self, size: int, at: float | None) -> None:
        """One packet; a frame may come as several (slices), all stamped ``at``."""
        self.bytes += size
        if at is None or at != self.last:
            self.frames += 1
        if at is not None:
            self.first = at if self.first is None else self.first
            self.last = at

    def rates(self, now: float) -> tuple[float | None, float | None]:
        """Frames per second and kbit/s."""
        if self.frames > 1 and self.first is not None and self.last > self.first:
            seconds = (self.last - self.first) * self.frames / (self.frames - 1)  # and the last frame's time
        else:
            seconds = now - self.started
        if seconds <= 0:
            return None, None
        return round(self.frames / seconds, 2), round(self.bytes * 8 / 1000 / seconds, 1)


class _AccessUnit:
    """The packets of one key frame: RTSP hands a frame over as several packets (one per slice,
    all with the frame's time stamp), so a frame is decoded once its last packet is in."""

    def __init__(self, codec: av.codec.context.CodecContext):
        self.codec = codec
        self.packets: list[av.Packet] = []

    @property
    def collecting(self) -> bool:
        return bool(self.packets)

    def start(self, packet: av.Packet) -> None:
        self.packets = [packet]

    def add(self, packet: av.Packet) -> bool:
        """Take ``packet`` if it belongs to the frame; False: the frame is complete."""
        if packet.pts is None or packet.pts != self.packets[0].pts:
            return False
        self.packets.append(packet)
        return True

    def decode(self) -> list[av.VideoFrame]:
        """The frame (the decoder drained and reset: it never sees the frames in between)."""
        frames = [frame for packet in self.packets for frame in self.codec.decode(packet)]
        frames += self.codec.decode(None)
        self.codec.flush_buffers()
        self.packets = []
        return frames[-1:]


class StreamHealth:
    """Watches ``source`` in a worker thread; see the module's description.

    ``options``: PyAV/FFmpeg options (default: RTSP over TCP for ``rtsp://``). ``timeout``: seconds
    to open the stream, and without a packet before it counts as lost.
    """

    def __init__(self, source: str, *, rules: HealthRules | None = None, report_every: float = 5.0,
                 sample_every: float = 2.0, timeout: float = 5.0, options: dict[str, str] | None = None,
                 retry: tuple[float, float] = (1.0, 30.0), name: str = "stream"):
        self.source, self.name = source, name
        self.rules = rules or HealthRules()
        self.report_every, self.sample_every, self.timeout = report_every, sample_every, timeout
        self.options = options if options is not None else (RTSP_OPTIONS if source.startswith("rtsp") else {})
        self._backoff = Backoff(*retry)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[HealthSample], None]] = []
        self._judge = PictureJudge(self.rules)
        self.stalls = 0
        self.sessions = 0  # streams opened (for tests: reconnects)
        self._keyframe_interval: float | None = None

    # -- running ------------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[HealthSample], None]) -> None:
        """Call ``listener(sample)`` (on the worker thread) at every report."""
        self._listeners.append(listener)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name=f"health-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, wait: float | None = None) -> None:
        """Ask the worker to stop; it does at its next packet or within ``timeout`` (``wait``: join that long)."""
        self._stopping.set()
        if self._thread is not None and wait:
            self._thread.join(wait)

    async def watch(self) -> AsyncIterator[HealthSample]:
        """The samples, as they come (starts the worker; stops it when the consumer stops)."""
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        self.subscribe(lambda sample: loop.call_soon_threadsafe(queue.put_nowait, sample))
        self.start()
        try:
            while True:
                yield await queue.get()
        finally:
            self.stop()

    def run(self) -> None:
        """The worker: watch, report, reopen after a failure, until stopped."""
        while not self._stopping.is_set():
            try:
                self._session()
                reason = "the stream ended"
            except StreamEnded as exc:
                reason = str(exc)
            except (av.error.FFmpegError, OSError) as exc:
                reason = self._reason(exc)
            except (IndexError, ValueError) as exc:  # no video stream, undecodable parameters
                reason = f"unusable stream: {exc}"
            if self._stopping.is_set():
                break
            self._report(HealthSample(ts=utcnow(), stream_ok=False, reason=reason, stalls=self.stalls,
                                      rules=self.rules))
            self._stopping.wait(self._backoff.next())

    def _reason(self, exc: Exception) -> str:
        if isinstance(exc, (av.error.ExitError, av.error.TimeoutError, TimeoutError)):
            return f"no answer within {self.timeout:g} s"
        # never str(exc): PyAV appends the URL, which may carry a password
        return f"cannot open the stream: {getattr(exc, 'strerror', None) or type(exc).__name__}"

    # -- one connection -------------------------------------------------------------------------
    def _session(self) -> None:
        container = av.open(self.source, options=self.options, timeout=(self.timeout, self.timeout))
        try:
            stream = container.streams.video[0]
            self.sessions += 1
            self._judge.reset()
            self._watch(container, stream)
        finally:
            container.close()

    def _watch(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> None:
        now = time.monotonic()
        window, next_report, next_frame, last_packet = _Window(now), now + self.report_every, now, now
        last_key: float | None = None
        picture: str | None = None
        key_frame = _AccessUnit(stream.codec_context)
        for packet in container.demux(stream):
            if self._stopping.is_set():
                return
            if packet.size == 0:
                continue  # a demuxer's flush packet
            now = time.monotonic()
            if now - last_packet > self.rules.stall_s:
                self.stalls += 1
            last_packet = now
            at = float(packet.pts * stream.time_base) if packet.pts is not None and stream.time_base else None
            window.add(packet.size, at)
            if key_frame.collecting and not key_frame.add(packet):
                picture = self._judge_frames(key_frame.decode(), now) or picture
            if packet.is_keyframe:
                if at is not None and (last_key is None or at > last_key):
                    self._keyframe_interval = round(at - last_key, 3) if last_key is not None else None
                    last_key = at
                if now >= next_frame:
                    key_frame.start(packet)
                    next_frame = now + self.sample_every
            if now >= next_report:
                self._backoff.reset()
                self._report(self._sample(window, now, picture, stream.codec_context))
                window, next_report = _Window(now), now + self.report_every
        if window.frames:  # a file ends: what was read since the last report counts
            self._report(self._sample(window, time.monotonic(), picture, stream.codec_context))
        raise StreamEnded("the stream ended")

    def _judge_frames(self, frames: list[av.VideoFrame], now: float) -> str | None:
        verdict = None
        for frame in frames:
            width = min(ANALYSIS_WIDTH, frame.width)
            height = max(2, round(frame.height * width / frame.width))
            grey = frame.reformat(width=width, height=height, format="gray").to_ndarray()
            verdict = self._judge.judge(measure(grey, self.rules.black_luma, self.rules.edge_step), now)
        return verdict

    def _sample(self, window: _Window, now: float, picture: str | None, codec) -> HealthSample:
        fps, kbps = window.rates(now)
        return HealthSample(ts=utcnow(), stream_ok=True, picture=picture, fps=fps, kbps=kbps,
                            keyframe_interval_s=self._keyframe_interval, stalls=self.stalls, codec=codec.name,
                            width=codec.width or None, height=codec.height or None, measured=self._judge.last,
                            motion=self._judge.motion, rules=self.rules)

    def _report(self, sample: HealthSample) -> None:
        for listener in self._listeners:
            try:
                listener(sample)
            except Exception:  # one broken listener must not end the watch
                log.exception("%s: a health listener failed", self.name)


def public_url(url: str) -> str:
    """``url`` without ``user:password@`` (for screens and logs)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    where, slash, path = rest.partition("/")
    return f"{scheme}://{where.rpartition('@')[2]}{slash}{path}"


def probe(source: str, seconds: float = 10.0, *, rules: HealthRules | None = None,
          sample_every: float = 1.0, timeout: float = 5.0) -> HealthSample:
    """Watch ``source`` for ``seconds`` in this thread; the one report at the end (or the failure)."""
    health = StreamHealth(source, rules=rules, report_every=seconds, sample_every=sample_every, timeout=timeout)
    found: list[HealthSample] = []

    def keep(sample: HealthSample) -> None:
        found.append(sample)
        health.stop()
    health.subscribe(keep)
    health.run()
    return found[-1]
