"""GStreamer through PyGObject: initialised once, one GLib main loop thread for the RTSP server.

Imported only by the relay's modules, so a gateway without video never needs GStreamer.
"""
from __future__ import annotations

import threading

from gateway.core.errors import UserError

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstApp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstApp, GstRtspServer  # noqa: F401  (re-exported)
except (ImportError, ValueError) as exc:  # pragma: no cover - depends on the machine
    raise UserError(f"the video relay needs GStreamer and PyGObject<3.51 ({exc}); see docs/video.md") from None

Gst.init(None)

H264_CAPS = "video/x-h264,stream-format=byte-stream,alignment=au"


class MainLoop:
    """A GLib main loop on a thread of its own, with its own context (the RTSP server attaches to it)."""

    def __init__(self, name: str):
        self.context = GLib.MainContext()
        self.loop = GLib.MainLoop(self.context)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        self.context.push_thread_default()
        try:
            self.loop.run()
        finally:
            self.context.pop_thread_default()

    def start(self) -> None:
        self._thread.start()

    def call(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the loop's thread (GLib objects attached to it are touched only there)."""
        def once():
            fn(*args)
            return False
        self.context.invoke_full(GLib.PRIORITY_DEFAULT, once)

    def stop(self) -> None:
        self.loop.quit()
        self._thread.join(timeout=5)


def buffer_of(data: bytes) -> Gst.Buffer:
    """A new buffer holding ``data``; its time is stamped by the receiving appsrc (do-timestamp)."""
    return Gst.Buffer.new_wrapped(data)
