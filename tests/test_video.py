"""Camera video end to end: the simulator's real RTSP streams (GStreamer) read by ffprobe, PyAV and
the health module; its Profile S answers through onvif-zeep-async; picture faults detected and
cleared; stream health as camera samples through the gateway to Mosquitto, raising a lens alarm."""
from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import subprocess
import sys
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
import zeep
from lxml import etree
from zeep.loader import parse_xml

from adapters.onvif.link import CameraLink
from adapters.onvif.tools import camera_config
from gateway.config import parse_site
from gateway.contract import AlarmMessage, DataMessage
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from gateway.video.health import HealthSample, StreamHealth, probe
from gateway.video.picture import HealthRules, PictureJudge, measure
from simulators.onvif import CameraSimulator, OnvifSimServer
from simulators.onvif.stream import RtspSimServer, pipeline, verify_launch
from simulators.site import SiteSimulator, send_fault
from tests.mqtt_util import MqttCollector
from tests.test_onvif import PASSWORD, SOAP12, onvif_schema, zeep_operations
from tests.util import free_port

ROOT = Path(__file__).parent.parent
FAST = HealthRules(frozen_after_s=2.0, stall_s=1.0)  # the sub stream has a key frame every 2 s
PROFILE_S = {"GetVideoSources", "GetVideoSourceConfigurations", "GetVideoEncoderConfigurations", "GetAudioSources",
             "GetOSDs", "GetScopes", "GetHostname", "GetNTP", "GetNetworkInterfaces"}


@asynccontextmanager
async def camera(**kwargs):
    """One simulated camera: its ONVIF server and its RTSP streams."""
    cam = CameraSimulator("cam-tp3", {"admin": PASSWORD}, name="Transfer point 3", **kwargs)
    async with OnvifSimServer(cam) as onvif, RtspSimServer([cam]) as rtsp:
        yield cam, onvif, rtsp


def ffprobe(url: str) -> dict:
    run = subprocess.run(["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_streams", "-of", "json", url],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)["streams"][0]


# -- the simulator streams ---------------------------------------------------------------------------
async def test_ffprobe_reads_each_profile_at_the_uri_onvif_hands_out():
    async with camera() as (_cam, onvif, rtsp):
        async with CameraLink(camera_config(f"127.0.0.1:{onvif.port}", "admin", PASSWORD)) as link:
            profiles = {p.token: p for p in (await link.read_inventory()).profiles}
        assert profiles["sub"].stream_uri == f"rtsp://127.0.0.1:{rtsp.port}/cam-tp3/sub"
        main, sub = await asyncio.gather(*(asyncio.to_thread(ffprobe, profiles[t].stream_uri) for t in ("main", "sub")))
        # two viewers of one profile share one pipeline (one encoder) at the camera
        both = await asyncio.gather(*(asyncio.to_thread(ffprobe, profiles["sub"].stream_uri) for _ in range(2)))
    assert (main["codec_name"], main["width"], main["height"], main["r_frame_rate"]) == ("h264", 1920, 1080, "25/1")
    assert (sub["codec_name"], sub["width"], sub["height"], sub["r_frame_rate"]) == ("h264", 640, 360, "15/1")
    assert all(s["codec_name"] == "h264" for s in both)
    assert rtsp.sessions_started["/cam-tp3/sub"] <= 3  # not one per viewer: 2 at most for 3 probes in 2 rounds


def test_a_gstreamer_element_the_machine_lacks_is_named_at_start():
    cam = CameraSimulator("cam-tp3", {"admin": PASSWORD})
    verify_launch(pipeline(cam, cam.profiles[0]))  # what this machine has builds the camera's picture
    with pytest.raises(OSError, match='no element "nosuchoverlay".*docs/video.md'):
        verify_launch("( videotestsrc is-live=true ! nosuchoverlay ! fakesink )")


async def test_a_refused_stream_is_reported_with_a_reason_and_comes_back():
    async with camera() as (cam, _onvif, rtsp):
        url = f"rtsp://127.0.0.1:{rtsp.port}/cam-tp3/sub"
        health = StreamHealth(url, rules=FAST, report_every=0.5, sample_every=0.5, retry=(0.2, 0.5))
        samples = health.watch()
        try:
            assert (await until(samples, lambda s: s.stream_ok)).codec == "h264"
            cam.set_fault("stream_refused")
            refused = await until(samples, lambda s: not s.stream_ok and "5XX" in s.reason)
            assert refused.problems == [f"no stream: {refused.reason}"] and url not in refused.reason
            cam.clear_fault("stream_refused")
            await until(samples, lambda s: s.stream_ok and s.fps)
            cam.set_fault("offline")  # the camera gone: its connections closed at once, no answer
            await until(samples, lambda s: not s.stream_ok and s.reason.startswith("cannot open the stream"))
        finally:
            await samples.aclose()


async def until(samples, condition, timeout: float = 20.0) -> HealthSample:
    async def first():
        async for sample in samples:
            if condition(sample):
                return sample
    return await asyncio.wait_for(first(), timeout)


# -- the picture --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["frozen", "black", "obscured"])
async def test_each_picture_fault_is_detected_and_cleared(fault):
    async with camera() as (cam, _onvif, rtsp):
        health = StreamHealth(f"rtsp://127.0.0.1:{rtsp.port}/cam-tp3/sub", rules=FAST, report_every=0.5,
                              sample_every=0.5)
        samples = health.watch()
        try:
            healthy = await until(samples, lambda s: s.picture == "ok" and s.motion is not None)
            assert healthy.verdict == "ok" and 13 <= healthy.fps <= 17 and healthy.keyframe_interval_s == 2.0
            cam.set_fault(fault)
            seen = await until(samples, lambda s: s.picture != "ok")
            assert seen.picture == fault and seen.problems == [f"picture {fault}"] and seen.stream_ok
            cam.clear_fault(fault)
            assert (await until(samples, lambda s: s.picture == "ok")).stream_ok
        finally:
            await samples.aclose()


async def test_bitrate_collapse_is_reported_below_the_rules_minimum():
    async with camera() as (cam, _onvif, rtsp):
        rules = HealthRules(min_kbps=100)
        health = StreamHealth(f"rtsp://127.0.0.1:{rtsp.port}/cam-tp3/sub", rules=rules, report_every=1.0)
        samples = health.watch()
        try:
            assert (await until(samples, lambda s: s.kbps and s.kbps > 200)).verdict == "ok"
            cam.set_fault("bitrate_collapse", kbps=24)
            low = await until(samples, lambda s: s.kbps is not None and s.kbps < 60)
            assert any(p.startswith("bit rate") for p in low.problems)
            cam.clear_fault("bitrate_collapse")
            await until(samples, lambda s: s.kbps and s.kbps > 200)
        finally:
            await samples.aclose()


def test_picture_rules_on_plain_frames():
    rng = np.random.default_rng(1)
    textured = rng.integers(0, 255, (180, 320), dtype=np.uint8)
    black = np.full((180, 320), 16, np.uint8)
    black[:16, :100] = textured[:16, :100]  # a burned-in clock stays allowed
    grey = np.full((180, 320), 120, np.uint8) + (np.arange(320, dtype=np.uint8) // 40)[None, :]  # no edges
    judge = PictureJudge(HealthRules(frozen_after_s=2))
    assert judge.judge(measure(textured), 0.0) == "ok"
    assert judge.judge(measure(textured), 1.0) == "ok"  # still, not long enough yet
    assert judge.judge(measure(textured), 2.0) == "frozen"
    assert judge.judge(measure(black), 3.0) == "black"
    assert judge.judge(measure(grey), 4.0) == "obscured"
    assert judge.judge(measure(textured[::-1]), 5.0) == "ok"
    with pytest.raises(ValueError, match="too small"):
        measure(np.zeros((8, 8), np.uint8))


def test_any_pyav_input_a_recorded_file_is_judged(tmp_path):
    import av

    path = tmp_path / "black.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"g": "10"})
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for _ in range(30):
            frame = av.VideoFrame.from_ndarray(np.zeros((180, 320, 3), np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    sample = probe(str(path), seconds=60, sample_every=0.0)  # ends with the file
    assert sample.stream_ok and (sample.codec, sample.width, sample.height) == ("h264", 320, 180)
    assert sample.picture == "black" and sample.keyframe_interval_s == 1.0 and sample.fps == 10.0


# -- Profile S ------------------------------------------------------------------------------------------
async def test_profile_s_operations_answer_through_onvif_zeep_async_and_the_schemas():
    async with camera() as (_cam, onvif, _rtsp):
        async with CameraLink(camera_config(f"127.0.0.1:{onvif.port}", "admin", PASSWORD)) as link:
            device = await link.camera.create_devicemgmt_service()
            media = await link.camera.create_media_service()
            sources = await media.GetVideoSources()
            source_configs = await media.GetVideoSourceConfigurations()
            encoders = await media.GetVideoEncoderConfigurations()
            audio = await media.GetAudioSources()
            osds = await media.GetOSDs({})
            scopes = await device.GetScopes()
            hostname = await device.GetHostname()
            ntp = await device.GetNTP()
            interfaces = await device.GetNetworkInterfaces()
    assert (sources[0].token, sources[0].Resolution.Width, sources[0].Framerate) == ("video-1", 1920, 25)
    assert source_configs[0].SourceToken == "video-1"
    assert {(e.Resolution.Width, e.H264.GovLength) for e in encoders} == {(1920, 50), (640, 30)}
    assert audio == [] and {o.token for o in osds} == {"osd-clock", "osd-name"}
    assert "onvif://www.onvif.org/name/Transfer%20point%203" in {s.ScopeItem for s in scopes}
    assert hostname.Name == "cam-tp3" and ntp.NTPManual[0].DNSname == "pool.ntp.org"
    assert interfaces[0].IPv4.Config.Manual[0].Address == "127.0.0.1"
    schema, strict = onvif_schema(), zeep.Settings(strict=True)
    operations = zeep_operations(strict)
    answered = {op: body for op, status, body in onvif.answers if status == 200 and op in PROFILE_S}
    assert set(answered) == PROFILE_S
    for operation, body in answered.items():
        payload = etree.fromstring(body).find(f"{{{SOAP12}}}Body")[0]
        assert schema.validate(etree.ElementTree(copy.deepcopy(payload))), (operation, schema.error_log)
        operations[operation].process_reply(parse_xml(body, None, settings=strict))


NODE_CLIENT = """
const onvif = require('onvif');
const [host, port, user, pass] = process.argv.slice(2);
new onvif.Cam({hostname: host, port: +port, username: user, password: pass, timeout: 10000}, function (err) {
  if (err) { console.error('connect: ' + err.message); process.exit(1); }
  const cam = this;
  cam.getStreamUri({protocol: 'RTSP', profileToken: 'sub'}, function (err, stream) {
    if (err) { console.error('stream: ' + err.message); process.exit(1); }
    console.log(JSON.stringify({uri: stream.uri, profiles: cam.profiles.length,
                                sources: Object.keys(cam.videoSources || {}).length}));
  });
});
"""


def npm_onvif() -> Path:
    """A directory with the npm ``onvif`` client installed (skips the test when node or npm cannot)."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm not installed")
    where = Path(os.environ.get("MINEGW_NPM_CACHE", Path.home() / ".cache" / "minegw-test-npm"))
    if not (where / "node_modules" / "onvif").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        run = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(where), "onvif@0.8"],
                             capture_output=True, text=True, timeout=300)
        if run.returncode != 0:
            pytest.skip(f"npm cannot install onvif here: {run.stderr.strip()[-200:]}")
    return where


async def test_the_npm_onvif_client_connects_and_gets_a_stream_that_ffprobe_reads(tmp_path):
    modules = npm_onvif()
    script = tmp_path / "client.js"
    script.write_text(NODE_CLIENT)
    async with camera() as (_cam, onvif, rtsp):
        run = await asyncio.to_thread(subprocess.run, ["node", str(script), "127.0.0.1", str(onvif.port), "admin",
                                                       PASSWORD], capture_output=True, text=True, timeout=60,
                                      env=os.environ | {"NODE_PATH": str(modules / "node_modules")})
        assert run.returncode == 0, run.stderr + run.stdout
        answer = json.loads(run.stdout.strip().splitlines()[-1])
        assert answer["uri"] == f"rtsp://127.0.0.1:{rtsp.port}/cam-tp3/sub" and answer["profiles"] == 2
        assert (await asyncio.to_thread(ffprobe, answer["uri"]))["codec_name"] == "h264"
    assert not [op for op, status, _ in onvif.answers if status == 500]  # no "Optional Action Not Implemented"


# -- through the gateway -----------------------------------------------------------------------------
async def test_stream_health_samples_reach_mqtt_and_raise_and_clear_the_lens_alarm(mosquitto):
    prefix = f"video-{uuid.uuid4().hex[:8]}"
    site = parse_site({
        "site": {"id": "s"}, "areas": [{"id": "belt", "kind": "belt_line"}],
        "devices": [{"id": "cam-tp3", "adapter": "onvif", "area": "belt", "host": "127.0.0.1", "port": free_port(),
                     "username": "admin", "password": PASSWORD, "poll_interval": 0.5, "timeout": 1.0,
                     "backoff_initial": 0.2, "backoff_max": 1.0, "stream_health": True, "health_interval": 0.5}],
        "alarms": [{"id": "tp3-lens", "device": "cam-tp3", "signal": "picture_obscured", "kind": "state",
                    "message": "lens obscured at transfer point 3"}],
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "topic_prefix": prefix}})
    data = f"{prefix}/s/belt/cam-tp3/data"
    alarm = f"{prefix}/s/belt/cam-tp3/alarm/tp3-lens"

    def picture(value, *also):
        def find(messages):
            for m in reversed(messages):
                samples = DataMessage.model_validate_json(m.payload).samples if m.topic == data else {}
                if "picture" in samples and samples["picture"].value == value and all(a in samples for a in also):
                    return m
        return find

    def alarm_state(state):
        def find(messages):
            ours = [m for m in messages if m.topic == alarm and m.payload]
            return ours[-1] if ours and AlarmMessage.model_validate_json(ours[-1].payload).state == state else None
        return find

    sims = SiteSimulator(site, onvif_discovery_port=0, control_port=0)
    async with sims:
        with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/#") as sub:
            gateway = Gateway(site, [MqttSink(site.mqtt, site)])
            await gateway.start()
            try:
                ok = DataMessage.model_validate_json((await sub.until(picture("ok", "picture_motion", "keyframe_interval_s"), 30)).payload)
                assert ok.samples["stream_ok"].value is True and ok.samples["stream_fps"].unit == "fps"
                assert ok.samples["stream_kbps"].value > 100 and ok.samples["keyframe_interval_s"].value == 2.0
                assert ok.samples["picture_obscured"].value is False and ok.samples["picture_frozen"].value is False
                await send_fault(*sims.control_address, "cam-tp3", "obscured")
                await sub.until(picture("obscured"), 20)
                raised = AlarmMessage.model_validate_json((await sub.until(alarm_state("active_unack"), 10)).payload)
                assert raised.message == "lens obscured at transfer point 3"
                await send_fault(*sims.control_address, "cam-tp3", "obscured", clear=True)
                await sub.until(alarm_state("cleared_unack"), 20)
                await send_fault(*sims.control_address, "cam-tp3", "stream_refused")

                def refused(messages):
                    return next((m for m in reversed(messages) if m.topic == data and "5XX" in problem_of(m)), None)
                down = DataMessage.model_validate_json((await sub.until(refused, 20)).payload)
                assert down.samples["stream_ok"].value is False
                assert down.samples["picture"].quality == "comm-fail"
            finally:
                await gateway.stop()


def problem_of(message) -> str:
    sample = DataMessage.model_validate_json(message.payload).samples.get("stream_problem")
    return sample.value if sample else ""


# -- the command line -----------------------------------------------------------------------------------
async def test_video_probe_prints_the_stream_and_its_verdict():
    async with camera() as (cam, _onvif, rtsp):
        url = f"rtsp://127.0.0.1:{rtsp.port}/cam-tp3/sub"
        good = await minegw("video", "probe", url, "--seconds", "3")
        cam.set_fault("black")
        black = await minegw("video", "probe", url, "--seconds", "3")
        cam.set_fault("stream_refused")
        refused = await minegw("video", "probe", url.replace("rtsp://", "rtsp://admin:secret-9@"), "--seconds", "2")
    assert good.returncode == 0, good.stderr
    assert "codec h264  640x360" in good.stdout and "picture ok" in good.stdout and "verdict: ok" in good.stdout
    assert black.returncode == 1 and "verdict: picture black" in black.stdout
    assert refused.returncode == 1 and "verdict: no stream: cannot open the stream" in refused.stdout
    assert "secret-9" not in refused.stdout + refused.stderr and "Traceback" not in refused.stderr


async def minegw(*args):
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                                   text=True, timeout=60, cwd=ROOT, env=os.environ | {"COLUMNS": "200"})
