"""A GStreamer RTSP test camera for the relay's tests and bench: ``python tests/rtsp_camera.py PORT [--fps N]``.

Serves ``/main`` (640x360) and ``/sub`` (320x180) as H.264 (videotestsrc → x264enc → rtph264pay), a
clock overlay when ``--clock`` (for latency measurements). Prints one line per event on stdout, so a
test counts the sessions at the camera: ``ready``, ``connected N`` (a client connection, N so far),
``closed N``.
"""
from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

LAUNCH = ("( videotestsrc is-live=true pattern={pattern} ! video/x-raw,width={w},height={h},framerate={fps}/1 ! "
          "{overlay}x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={gop} ! "
          "rtph264pay name=pay0 pt=96 config-interval=-1 )")


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("port", type=int)
    args.add_argument("--fps", type=int, default=15)
    args.add_argument("--clock", action="store_true", help="overlay the wall clock (ms) on the picture")
    opts = args.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(opts.port))
    overlay = ("timeoverlay time-mode=elapsed-running-time halignment=left valignment=top font-desc=\"Sans 24\" ! "
               if opts.clock else "")
    for path, (w, h, kbps, pattern) in {"/main": (640, 360, 800, "ball"), "/sub": (320, 180, 250, "smpte")}.items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(LAUNCH.format(w=w, h=h, fps=opts.fps, gop=opts.fps * 2, kbps=kbps, pattern=pattern,
                                         overlay=overlay))
        factory.set_shared(True)
        server.get_mount_points().add_factory(path, factory)
    counts = {"connected": 0, "closed": 0}

    def say(what: str) -> None:
        counts[what] += 1
        print(what, counts[what], flush=True)

    def on_client(_server, client) -> None:
        say("connected")
        client.connect("closed", lambda _c: say("closed"))

    server.connect("client-connected", on_client)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {opts.port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
