"""The relay's HTTP side (aiohttp): HLS playlists and segments, ``/status``, a player page per camera.

``/player/CAMERA`` is what a dashboard tile shows in an iframe: a muted live ``<video>`` of the camera's
HLS, played natively where the browser can, else by hls.js (``/hls.min.js``, from ``video.relay.hls_js``);
its ``#state`` line says what plays (``playing 12.3 s 320x180``), for people and for the headless-browser
test. CORS is open (``Access-Control-Allow-Origin: *``) for players on other origins. HLS bytes served
count towards each camera's uplink bitrate.
"""
from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

_FILE = re.compile(r"^(index\.m3u8|segment\d+\.ts)$")
TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}
CORS = {"Access-Control-Allow-Origin": "*"}


class RelayHttp:
    def __init__(self, relay):
        self.relay = relay
        self.port = 0
        app = web.Application()
        app.router.add_get("/status", self.status)
        app.router.add_get("/hls/{camera}/{name}", self.hls)
        app.router.add_get("/hls.min.js", self.hls_js)
        app.router.add_get("/player/{camera}", self.player)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self, host: str, port: int) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def status(self, _request: web.Request) -> web.Response:
        return web.json_response(self.relay.status(), headers=CORS)

    async def hls(self, request: web.Request) -> web.Response:
        camera, name = request.match_info["camera"], request.match_info["name"]
        if camera not in self.relay.cameras or not _FILE.match(name):
            raise web.HTTPNotFound(text=f"no HLS file {camera}/{name}")
        path = Path(self.relay.config.relay.hls_dir) / camera / name
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            raise web.HTTPNotFound(text=f"{camera}/{name} is not (or no longer) there") from None
        self.relay.count_hls(camera, len(body))
        headers = {**CORS, "Cache-Control": "no-cache" if name.endswith(".m3u8") else "max-age=60"}
        return web.Response(body=body, content_type=TYPES[path.suffix], headers=headers)

    async def hls_js(self, _request: web.Request) -> web.Response:
        script = self.relay.config.relay.hls_js
        if script is None or not Path(script).is_file():
            raise web.HTTPNotFound(text="no hls.js configured (video.relay.hls_js)")
        return web.FileResponse(script, headers=CORS)

    async def player(self, request: web.Request) -> web.Response:
        camera = request.match_info["camera"]
        if camera not in self.relay.cameras:
            raise web.HTTPNotFound(text=f"no relayed camera {camera}")
        return web.Response(text=PLAYER.replace("CAMERA", camera), content_type="text/html", headers=CORS)


# hls.js: one segment behind live (liveSyncDurationCount 1), so the tile lags about one segment
PLAYER = """<!doctype html>
<html><head><meta charset="utf-8"><title>CAMERA</title>
<style>html,body{margin:0;height:100%;background:#000;color:#ccc;font:12px sans-serif}
video{width:100%;height:calc(100% - 16px);object-fit:contain}#state{height:16px;padding-left:4px}</style>
</head><body>
<video id="video" muted autoplay playsinline></video><div id="state">loading</div>
<script src="/hls.min.js"></script>
<script>
(function () {
  var video = document.getElementById("video"), state = document.getElementById("state");
  var src = "/hls/CAMERA/index.m3u8", how = "";
  if (window.Hls && Hls.isSupported()) {
    var hls = new Hls({liveSyncDurationCount: 1, liveMaxLatencyDurationCount: 4});
    hls.on(Hls.Events.ERROR, function (_e, d) { if (d.fatal) { state.textContent = "error " + d.details; } });
    hls.loadSource(src); hls.attachMedia(video); how = "hls.js";
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = src; how = "native";
  } else { state.textContent = "this browser cannot play HLS (no hls.js on the relay)"; return; }
  video.play().catch(function () {});
  setInterval(function () {
    if (video.currentTime > 0) {
      state.textContent = "playing " + video.currentTime.toFixed(1) + " s " + video.videoWidth + "x" +
        video.videoHeight + " (" + how + ")";
      if (window.parent !== window) { window.parent.postMessage("CAMERA: " + state.textContent, "*"); }
    }
  }, 250);
})();
</script></body></html>
"""
