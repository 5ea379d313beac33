"""The relay's HTTP side (aiohttp): HLS playlists and segments, ``/status`` and the player script.

CORS is open (``Access-Control-Allow-Origin: *``): the dashboard tiles load the playlist from the
Grafana page's origin. HLS bytes served count towards each camera's uplink bitrate.
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
