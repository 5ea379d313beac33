"""Linkage clips: the last seconds of each relayed sub-stream in memory, written around an alarm as MP4.

:class:`ClipBuffer` keeps the access units of one stream for ``keep_s`` seconds (a consumer of its
:class:`~gateway.video.upstream.Upstream`). :func:`write_mp4` muxes a slice of them, from the keyframe at
or before the start, into an MP4 (``h264parse ! mp4mux``: no transcoding). :class:`ClipStore` keeps the
files next to the snapshots, ``<snapshots.directory>/<camera>/<UTC time>.mp4``, within a disk budget of
their own, written atomically like the snapshots.
"""
from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path

from gateway.core.model import iso, utcnow

from .gst import H264_CAPS, Gst

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")
MUX = f"appsrc name=src format=time caps={H264_CAPS} ! h264parse ! mp4mux ! filesink name=out"

Frame = tuple[float, bytes, bool]  # (monotonic arrival, access unit, keyframe)


class ClipError(Exception):
    """No clip: nothing buffered for the camera, or the file cannot be written."""


class ClipBuffer:
    """The last ``keep_s`` seconds of one stream's access units."""

    def __init__(self, keep_s: float):
        self.keep_s = keep_s
        self.frames: deque[Frame] = deque()
        self._lock = threading.Lock()

    def __call__(self, data: bytes, key: bool) -> None:
        now = time.monotonic()
        with self._lock:
            self.frames.append((now, data, key))
            while self.frames and now - self.frames[0][0] > self.keep_s:
                self.frames.popleft()

    def slice(self, start: float, end: float) -> list[Frame]:
        """Frames from the last keyframe at or before ``start`` (else the first keyframe after it) to ``end``."""
        with self._lock:
            frames = [f for f in self.frames if f[0] <= end]
        first = next((i for i in range(len(frames) - 1, -1, -1) if frames[i][2] and frames[i][0] <= start), None)
        if first is None:
            first = next((i for i, f in enumerate(frames) if f[2]), None)
        return [] if first is None else frames[first:]


def write_mp4(frames: list[Frame], path: Path) -> None:
    """Mux ``frames`` into an MP4 at ``path``, each at its arrival time (blocking: call it in a thread)."""
    pipeline = Gst.parse_launch(MUX)
    pipeline.get_by_name("out").set_property("location", str(path))
    src = pipeline.get_by_name("src")
    pipeline.set_state(Gst.State.PLAYING)
    t0 = frames[0][0]
    for i, (arrived, data, key) in enumerate(frames):
        buf = Gst.Buffer.new_wrapped(data)
        buf.pts = buf.dts = int((arrived - t0) * Gst.SECOND)
        nxt = frames[i + 1][0] if i + 1 < len(frames) else arrived + 0.04
        buf.duration = max(int((nxt - arrived) * Gst.SECOND), 1)
        if not key:
            buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
        src.emit("push-buffer", buf)
    src.emit("end-of-stream")
    msg = pipeline.get_bus().timed_pop_filtered(10 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if msg is None or msg.type == Gst.MessageType.ERROR:
        raise ClipError(f"muxing {path.name} failed: {msg.parse_error()[0].message if msg else 'timed out'}")


class ClipStore:
    """MP4 clips under the snapshot directory, one folder per camera, the oldest removed beyond ``max_bytes``."""

    def __init__(self, directory: Path, max_bytes: int):
        self.directory, self.max_bytes = Path(directory), max_bytes
        self._lock = threading.Lock()

    def save(self, camera: str, frames: list[Frame], ts: datetime | None = None) -> str:
        """Write ``frames`` as ``<camera>/<time>.mp4``; returns its reference (relative to the directory)."""
        if not _SAFE.match(camera):
            raise ClipError(f"camera id {camera!r} cannot name a directory")
        if not frames:
            raise ClipError(f"{camera}: no video buffered (is the relay receiving the camera?)")
        folder = self.directory / camera
        stamp = iso(ts or utcnow()).replace("-", "").replace(":", "")
        with self._lock:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                path, n = folder / f"{stamp}.mp4", 1
                while path.exists():
                    path, n = folder / f"{stamp}-{n}.mp4", n + 1
                part = path.with_suffix(".mp4.part")
                write_mp4(frames, part)
                os.replace(part, path)
            except OSError as exc:
                raise ClipError(f"{camera}: cannot write a clip in {folder}: {exc.strerror or exc}") from None
            self._trim()
        return str(path.relative_to(self.directory))

    def _trim(self) -> None:
        files = sorted((p.stat().st_mtime, p) for p in self.directory.glob("*/*.mp4"))
        total = sum(p.stat().st_size for _, p in files)
        for _, path in files:
            if total <= self.max_bytes:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
