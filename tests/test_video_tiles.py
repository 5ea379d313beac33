"""The video dashboard's live tile (issue 19, item 6) in a real browser: the panel's HTML, with Grafana's
variables set to the relay's real URL and a camera, loaded in headless Debian chromium; the relay's player
page inside it plays the camera's HLS (hls.js from npm). Skips without chromium, npm or GStreamer."""
from __future__ import annotations

import asyncio
import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

pytest.importorskip("gi", reason="the relay needs PyGObject<3.51 and GStreamer (docs/video.md)")
if not shutil.which("chromium"):
    pytest.skip("needs Debian chromium", allow_module_level=True)

import dashboards
from dashboards.common import UID_VIDEO
from gateway.video.config import VideoConfig
from gateway.video.relay import VideoRelay
from tests.rtsp_util import RtspCamera

pytestmark = pytest.mark.timeout(180)
HLS_JS_CACHE = Path(os.environ.get("MINEGW_HLS_JS_DIR", "/tmp/minegw-hls-js"))


@pytest.fixture(scope="module")
def hls_js() -> Path:
    """hls.js from the npm registry (what docs/video.md tells a site to install), once per machine."""
    script = HLS_JS_CACHE / "node_modules/hls.js/dist/hls.min.js"
    if not script.is_file():
        if not shutil.which("npm"):
            pytest.skip("needs npm for hls.js")
        HLS_JS_CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(HLS_JS_CACHE), "hls.js@1"],
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0 or not script.is_file():
            pytest.skip(f"cannot install hls.js: {done.stderr[-300:]}")
    return script


def live_tile_html() -> str:
    tiles = [p for p in dashboards.build_all()[UID_VIDEO]["panels"] if p["type"] == "text" and p.get("repeat")]
    assert len(tiles) == 1 and tiles[0]["repeat"] == "tile" and tiles[0]["options"]["mode"] == "html"
    return tiles[0]["options"]["content"]


def grafana_page(content: str, variables: dict[str, str]) -> str:
    """The panel as Grafana renders it with sanitising off: variables replaced, the HTML in the page. The
    page lists what the player frames report (their postMessage), for --dump-dom to show."""
    for name, value in variables.items():
        content = content.replace(f"${{{name}}}", value)
    assert "$" not in content, f"a variable the test does not set: {content}"
    return ('<!doctype html><html><body><div class="panel" style="width:480px;height:300px">' + content +
            '</div><pre id="frames"></pre><script>window.addEventListener("message", function (e) '
            '{ document.getElementById("frames").textContent = e.data; });</script></body></html>')


@pytest.fixture
def grafana(tmp_path):
    """The page holding the panel, served over HTTP like Grafana's (a file:// page's player frame stays idle)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_the_live_tile_plays_the_relays_hls_in_headless_chromium(tmp_path, hls_js, grafana):
    camera = RtspCamera().start()
    try:
        config = VideoConfig.model_validate({
            "cameras": [{"device": "belt-transfer-cam", "sub": camera.url("sub")}],
            "relay": {"bind": "127.0.0.1", "rtsp_port": 0, "http_port": 0, "hls_dir": str(tmp_path / "hls"),
                      "hls_js": str(hls_js)}})
        async with VideoRelay(config, areas={"belt-transfer-cam": "belt"}, snapshots_dir=tmp_path / "snap") as relay:
            base = f"http://127.0.0.1:{relay.http.port}"
            assert relay.hls_url("belt-transfer-cam") == f"{base}/hls/belt-transfer-cam/index.m3u8"
            page = tmp_path / "panel.html"
            page.write_text(grafana_page(live_tile_html(), {"relay": base, "tile": "belt-transfer-cam"}))
            playlist = tmp_path / "hls/belt-transfer-cam/index.m3u8"
            for _ in range(100):  # two segments written
                if playlist.exists() and playlist.read_text().count(".ts") >= 2:
                    break
                await asyncio.sleep(0.1)
            proc = await asyncio.create_subprocess_exec(
                "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required",
                "--virtual-time-budget=8000", "--dump-dom", f"{grafana}/panel.html",
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(), 90)
        dom = out.decode()
        assert f'src="{base}/player/belt-transfer-cam"' in dom
        frames = re.search(r'<pre id="frames">(.*?)</pre>', dom, re.DOTALL).group(1)
        assert re.match(r"belt-transfer-cam: playing \d+\.\d s 320x180 \(hls\.js\)$", frames), frames
    finally:
        camera.stop()
