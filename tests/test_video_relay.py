"""The underground video relay (issue 19, items 3, 5, 8) against a real GStreamer RTSP camera.

ffprobe reads what the relay serves (RTSP, HLS); viewers through the relay share one upstream session
at the camera; the relay survives a camera restart (and its viewers keep their session); bitrates are
measured; an alarm saves a clip next to the snapshots.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("gi", reason="the relay needs PyGObject<3.51 and GStreamer (docs/video.md)")
if not shutil.which("ffprobe"):
    pytest.skip("needs ffprobe (Debian ffmpeg)", allow_module_level=True)

from gateway.video.config import VideoConfig
from gateway.video.relay import VideoRelay
from gateway.video.upstream import Upstream
from tests.rtsp_util import RtspCamera

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def camera():
    cam = RtspCamera().start()
    yield cam
    cam.stop()


def relay_config(camera: RtspCamera, tmp_path: Path, **settings) -> VideoConfig:
    return VideoConfig.model_validate({
        "cameras": [{"device": "cam-1", "sub": camera.url("sub"), "main": camera.url("main")}],
        "relay": {"bind": "127.0.0.1", "rtsp_port": 0, "http_port": 0, "hls_dir": str(tmp_path / "hls"),
                  "main_linger_s": 0.5, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0, "stall_s": 3.0},
        **settings})


async def ffprobe(url: str) -> dict:
    proc = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries",
        "stream=codec_name,width,height,r_frame_rate:format=format_name", "-of", "json", url,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, f"ffprobe {url}: {err.decode()}"
    return json.loads(out)


async def until(check, timeout: float = 15, step: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := check():
            return value
        await asyncio.sleep(step)
    return check()


async def test_ffprobe_reads_the_relays_rtsp_and_hls_without_transcoding(camera, tmp_path):
    published = []
    async with VideoRelay(relay_config(camera, tmp_path), areas={"cam-1": "face"}, snapshots_dir=tmp_path / "snap",
                          publish=lambda device, reading: published.append(reading)) as relay:
        assert await until(lambda: relay.cameras["cam-1"].sub.connected)
        sub = (await ffprobe(relay.rtsp_url("cam-1/sub")))["streams"][0]
        main = (await ffprobe(relay.rtsp_url("cam-1/main")))["streams"][0]
        assert (sub["codec_name"], sub["width"], sub["height"]) == ("h264", 320, 180)
        assert (main["codec_name"], main["width"], main["height"]) == ("h264", 640, 360)  # as the camera sent it
        assert await until(lambda: (tmp_path / "hls/cam-1/index.m3u8").exists() and
                           "segment" in (tmp_path / "hls/cam-1/index.m3u8").read_text())
        hls = await ffprobe(relay.hls_url("cam-1"))
        assert hls["format"]["format_name"] == "hls"
        assert (hls["streams"][0]["codec_name"], hls["streams"][0]["width"]) == ("h264", 320)
        figures = relay.meter()
        assert figures["cam-1"]["relay_ingress_kbps"] > 50  # the camera's ~250 kbit/s sub-stream
        assert figures["cam-1"]["relay_uplink_kbps"] > 0  # what ffprobe took
        assert figures["total"]["ingress_kbps"] == figures["cam-1"]["relay_ingress_kbps"]
        total = published[-1]  # no budget: no budget fields (a None would be stored as a bad sample)
        assert total.device == "video-relay" and total.get("budget_kbps") is None
        assert total.get("ingress_kbps").value == figures["total"]["ingress_kbps"]


async def viewer(url: str, name: str) -> Upstream:
    """A surface viewer of the relay (its own RTSP session), counting the frames it gets."""
    client = Upstream(name, url, stall_s=30)
    client.add(lambda data, key: None)
    client.start()
    return client


async def test_two_viewers_make_one_upstream_session_and_the_main_stream_is_pulled_only_while_watched(
        camera, tmp_path):
    async with VideoRelay(relay_config(camera, tmp_path), areas={"cam-1": "face"},
                          snapshots_dir=tmp_path / "snap") as relay:
        cam = relay.cameras["cam-1"]
        assert await until(lambda: cam.sub.connected)
        assert camera.connections == 1 and not cam.main.running  # the sub-stream only, nobody watches main
        viewers = [await viewer(relay.rtsp_url("cam-1/main"), f"v{i}") for i in range(2)]
        viewers += [await viewer(relay.rtsp_url("cam-1/sub"), "v-sub")]
        try:
            assert await until(lambda: all(v.frames > 20 for v in viewers), timeout=20)
            assert relay.rtsp.viewer_count("/cam-1/main") == 2
            assert camera.connections == 2  # sub + one main session, for three viewers
            assert cam.main.sessions == 1 and cam.sub.sessions == 1
            assert relay.status()["cameras"]["cam-1"]["streams"]["main"]["viewers"] == 2
        finally:
            for v in viewers:
                await asyncio.to_thread(v.stop)
        assert await until(lambda: not cam.main.running, timeout=10)  # the last viewer left: released
        assert camera.connections == 2


async def test_the_relay_and_its_viewers_survive_a_camera_restart(camera, tmp_path):
    async with VideoRelay(relay_config(camera, tmp_path), areas={"cam-1": "face"},
                          snapshots_dir=tmp_path / "snap") as relay:
        cam = relay.cameras["cam-1"]
        assert await until(lambda: cam.sub.connected)
        watching = await viewer(relay.rtsp_url("cam-1/sub"), "nvr")
        try:
            assert await until(lambda: watching.frames > 10)
            camera.stop()
            assert await until(lambda: not cam.sub.connected, timeout=10)
            before = watching.frames
            await asyncio.sleep(1.0)
            camera.start()  # same port, a new process: the relay dials again
            assert await until(lambda: cam.sub.connected and cam.sub.sessions >= 2, timeout=20)
            assert await until(lambda: watching.frames > before + 20, timeout=20)  # the same viewer session
            assert watching.sessions == 1 and watching.reconnects == 0
            assert cam.sub.reconnects >= 1 and cam.sub.last_error
            playlist = tmp_path / "hls/cam-1/index.m3u8"
            listed = playlist.read_text()
            assert await until(lambda: playlist.read_text() != listed and ".ts" in playlist.read_text())
            sub = (await ffprobe(relay.rtsp_url("cam-1/sub")))["streams"][0]
            assert sub["codec_name"] == "h264"
        finally:
            await asyncio.to_thread(watching.stop)


async def test_uplink_budget_raises_and_clears_a_gateway_alarm(camera, tmp_path):
    alarms, readings = [], []
    config = relay_config(camera, tmp_path, uplink_budget_kbps=20)
    async with VideoRelay(config, areas={"cam-1": "face"}, snapshots_dir=tmp_path / "snap", alarm=alarms.append,
                          publish=lambda device, reading: readings.append((device.id, reading))) as relay:
        assert await until(lambda: relay.cameras["cam-1"].sub.connected)
        relay.meter()
        watching = await viewer(relay.rtsp_url("cam-1/main"), "vms")  # the ball's ~80 kbit/s up: over 20
        try:
            await until(lambda: watching.frames > 30)
            total = relay.meter()["total"]
            assert total["uplink_kbps"] > 20 and total["over_budget"] == 1
        finally:
            await asyncio.to_thread(watching.stop)
        assert [a.active for a in alarms] == [True] and alarms[0].id == "video-uplink-over-budget"
        await asyncio.sleep(1.0)
        assert relay.meter()["total"]["uplink_kbps"] < 18  # nothing sent up in the last second
        assert [a.active for a in alarms] == [True, False]
        total = readings[-1][1]
        assert readings[-1][0] == "video-relay" and total.get("over_budget").value == 0
        assert total.get("budget_kbps").value == 20


async def test_a_clip_holds_pre_and_post_roll(camera, tmp_path):
    config = relay_config(camera, tmp_path, clips={"pre_s": 2, "post_s": 2})
    async with VideoRelay(config, areas={"cam-1": "face"}, snapshots_dir=tmp_path / "snap") as relay:
        assert await until(lambda: relay.cameras["cam-1"].sub.frames > 60)  # > 4 s buffered at 15 fps
        refs, errors = await relay.clips("face")
        assert errors == {} and len(refs) == 1 and refs[0].startswith("cam-1/") and refs[0].endswith(".mp4")
        probe = await ffprobe(str(tmp_path / "snap" / refs[0]))
        assert probe["streams"][0]["codec_name"] == "h264"
        proc = await asyncio.create_subprocess_exec(
            "ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
            str(tmp_path / "snap" / refs[0]), stdout=subprocess.PIPE)
        duration = float((await proc.communicate())[0])
        assert 3.5 <= duration <= 7.0  # 2 s before (from the keyframe before: GOP 2 s) + 2 s after
        assert await relay.clips("elsewhere") == ([], {})


async def test_an_alarm_saves_a_clip_next_to_the_snapshots_and_the_gateway_publishes_bitrates(
        camera, tmp_path, mosquitto):
    from gateway.config import parse_site
    from gateway.contract import LinkageMessage
    from gateway.mqtt import MqttSink
    from gateway.runtime import Gateway
    from simulators.site import SiteSimulator
    from tests.mqtt_util import MqttCollector
    from tests.test_linkage import linkage_site
    from tests.util import free_port

    prefix = f"video-{time.monotonic_ns() % 10**8}"
    cam = {"id": "face-cam", "adapter": "onvif", "area": "face-1", "host": "127.0.0.1", "port": free_port(),
           "events": False}
    video = relay_config(camera, tmp_path, clips={"pre_s": 2, "post_s": 2}, publish_interval_s=1).model_dump(mode="json")
    video["cameras"][0]["device"] = "face-cam"
    data = linkage_site(prefix, mosquitto, snapshots={"directory": str(tmp_path / "snap")}).model_dump(mode="json")
    site = parse_site({**data, "devices": [*data["devices"], cam], "video": video})
    link_topic = f"{prefix}/s1/face-1/linkage/ch4"
    data_topic = f"{prefix}/s1/face-1/face-cam/data"

    def seen(messages):
        topics = {m.topic for m in messages}
        return messages if {link_topic, data_topic} <= topics else None

    with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/#") as sub:
        async with SiteSimulator(site, onvif_discovery_port=None) as sim, \
                Gateway(site, [MqttSink(site.mqtt, site)]) as gw:
            assert gw.video is not None and await until(lambda: gw.video.cameras["face-cam"].sub.frames > 40)
            sim.simulator("shearer-1").set_fault("out_of_range", signal="methane", value=4.4)
            got = await sub.until(seen, timeout=30)
    link = LinkageMessage.model_validate_json(next(m for m in got if m.topic == link_topic).payload)
    assert link.clip_errors == {} and len(link.clips) == 1 and link.clips[0].startswith("face-cam/")
    assert link.snapshots and link.snapshots[0].startswith("face-cam/")  # the ONVIF snapshot, same folder
    clip = tmp_path / "snap" / link.clips[0]
    assert (await ffprobe(str(clip)))["streams"][0]["codec_name"] == "h264"
    bitrate = json.loads(next(m for m in got if m.topic == data_topic and b"relay_ingress_kbps" in m.payload).payload)
    assert bitrate["kind"] == "camera" and bitrate["samples"]["relay_ingress_kbps"]["value"] > 50
    assert bitrate["samples"]["relay_connected"]["value"] == 1


async def test_relay_status_cli_shows_what_the_running_relay_pulls_and_serves(camera, tmp_path):
    import typer
    import yaml
    from typer.testing import CliRunner

    from gateway.cli.video_relay import register
    from gateway.config import load_site
    from tests.sites import site_dict
    from tests.util import free_port

    video = relay_config(camera, tmp_path).model_dump(mode="json")
    video["relay"]["http_port"] = free_port()
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site_dict(
        {"id": "cam-1", "adapter": "onvif", "area": "face", "host": "127.0.0.1", "port": free_port()}, video=video)))
    site = load_site(path)
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    async with VideoRelay(site.video, areas={"cam-1": "face"}, snapshots_dir=tmp_path / "snap") as relay:
        assert await until(lambda: relay.cameras["cam-1"].sub.connected)
        shown = await asyncio.to_thread(runner.invoke, app, ["relay", "status", "-c", str(path), "--json"])
        table = await asyncio.to_thread(runner.invoke, app, ["relay", "status", "-c", str(path)], terminal_width=250)
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.output)["cameras"]["cam-1"]
    assert status["streams"]["sub"]["connected"] and status["streams"]["sub"]["sessions"] == 1
    assert not status["streams"]["main"]["pulling"]
    assert status["hls"].endswith(f":{video['relay']['http_port']}/hls/cam-1/index.m3u8")
    assert table.exit_code == 0 and "cam-1" in table.output and "no uplink budget" in table.output
    gone = await asyncio.to_thread(runner.invoke, app, ["relay", "status", "-c", str(path)])
    assert gone.exit_code == 1 and "no video relay answers" in gone.output
