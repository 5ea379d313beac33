"""Broadcast commands: ``minegw broadcast`` → real Mosquitto → gateway → simulated broadcast nodes, audited."""
import asyncio
import json
import sys
import uuid

import pytest

from gateway.config import parse_site
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from simulators.site import SiteSimulator
from tests.sites import mqtt
from tests.test_broadcast import broadcast_site
from tests.util import Operators, RecordingSink, free_port


@pytest.fixture
async def running(mosquitto, tmp_path):
    prefix = f"bc-{uuid.uuid4().hex[:8]}"
    port = free_port()
    operators = Operators(tmp_path, "alice", "mallory")
    raw = broadcast_site(port, site_id="s1", mqtt=mqtt(mosquitto, prefix), commands={
        "allowed_users": ["alice"], "operators": operators.site_entry(), "replay_store": str(tmp_path / "ids.sqlite3")})
    site = parse_site(raw)
    config = tmp_path / "site.yaml"
    config.write_text(json.dumps(raw))  # JSON is YAML
    audit = RecordingSink()
    async with SiteSimulator(site, onvif_discovery_port=None) as sim:
        async with Gateway(site, [MqttSink(site.mqtt, site), audit]) as gw:
            await asyncio.sleep(0.5)
            yield sim, gw, audit, config, operators


async def minegw(config, *args, key=None):
    signed = ["--key", str(key)] if key else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "broadcast", *args[:1], "--config", str(config), *signed, *args[1:],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    return proc.returncode, out.decode() + err.decode()


async def test_minegw_broadcast_play_stop_refuse_and_audit(running):
    sim, gw, audit, config, operators = running
    alice = operators.files["alice"]
    rc, out = await minegw(config, "play", "evacuation", "--zone", "face", "--priority", "emergency", key=alice)
    assert rc == 0, out
    assert "all confirmed" in out and "bn-1" in out and "bn-2" in out
    for node in ("bn-1", "bn-2"):
        v = sim.simulator(node).current_values()
        assert (v["playing"], v["playing_message"], v["playing_priority"]) == (True, 1, 3)
    assert not sim.simulator("bn-3").current_values()["playing"]

    rc, out = await minegw(config, "play", "evacuation", "--zone", "nowhere", key=alice)
    assert rc != 0 and "unknown broadcast zone 'nowhere'" in out, out
    rc, out = await minegw(config, "play", "no-such-message", "--zone", "face", key=alice)
    assert rc != 0 and "unknown message" in out, out
    rc, out = await minegw(config, "stop", "--zone", "face", key=operators.files["mallory"])
    assert rc != 0 and "unauthorised" in out, out
    assert sim.simulator("bn-1").current_values()["playing"]

    rc, out = await minegw(config, "status")
    assert rc == 0 and "bn-1 (zone face)" in out and "playing message 1 at priority 3" in out, out

    rc, out = await minegw(config, "stop", "--zone", "face", key=alice)
    assert rc == 0, out
    assert not any(sim.simulator(n).current_values()["playing"] for n in ("bn-1", "bn-2"))

    got = [(e.device, e.signal, e.by, e.ok) for e in audit.audits]
    assert got == [("broadcast", "play", "alice", True), ("broadcast", "play", "alice", False),
                   ("broadcast", "play", "alice", False), ("broadcast", "stop", "mallory", False),
                   ("broadcast", "stop", "alice", True)]

    cmd = operators.sign("alice", {"request_id": "v-1", "action": "volume", "zones": ["belt"], "volume": 40})
    reply = await gw.commands.handle("broadcast", json.dumps(cmd).encode())
    assert reply.ok and reply.result["nodes"]["bn-3"]["confirmed"], reply
    loud = operators.sign("alice", {"request_id": "v-2", "action": "loud", "zones": ["belt"]})
    bad = await gw.commands.handle("broadcast", json.dumps(loud).encode())
    assert not bad.ok and bad.request_id == "v-2" and bad.error.startswith("malformed command: action"), bad
