"""Device writes on command: simulators → gateway ← real Mosquitto, audit in a real InfluxDB (issue 6, item 4)."""
import asyncio
import json
import sys
import threading
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import parse_site
from gateway.historian.sink import HistorianSink
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from simulators.site import SiteSimulator
from tests.util import free_port


class Client:
    """An MQTT 5 operator client: publishes commands, records every reply with its properties."""

    def __init__(self, host, port, topic):
        self.replies: list[tuple[str, dict, bytes | None]] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, client, userdata, msg):
        with self._cond:
            try:
                body = json.loads(msg.payload)
            except ValueError:
                body = {}
            body = body if isinstance(body, dict) else {}
            self.replies.append((msg.topic, body, getattr(msg.properties, "CorrelationData", None)))
            self._cond.notify_all()

    def send(self, topic, payload, response_topic=None, correlation=None):
        props = None
        if response_topic:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic, props.CorrelationData = response_topic, correlation
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic, body, qos=1, properties=props).wait_for_publish(5)

    async def reply(self, request_id, timeout=5.0):
        def find():
            with self._cond:
                return next((r for r in self.replies if r[1].get("request_id") == request_id
                             and not r[0].endswith("/command/write")), None)
        for _ in range(int(timeout / 0.05)):
            if found := find():
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"no reply to {request_id}; got {self.replies}")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
async def running(mosquitto, influxdb, tmp_path):
    prefix = f"cmd-{uuid.uuid4().hex[:8]}"
    db = prefix.replace("-", "_")
    site = parse_site({
        "site": {"id": "s1"}, "areas": [{"id": "face", "kind": "longwall_face"}],
        "devices": [{"id": dev, "adapter": "modbus", "area": "face", "profile": profile, "host": "127.0.0.1",
                     "port": free_port(), "poll_interval": 0.5, "timeout": 0.5, "retries": 0}
                    for dev, profile in (("belt-1", "belt_conveyor"), ("shearer-1", "shearer"))],
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "topic_prefix": prefix},
        "historian": {"url": influxdb.url, "database": db, "flush_interval": 0.1,
                      "buffer": {"path": str(tmp_path / "b.sqlite3")}},
        "commands": {"rate": 0.2, "burst": 3, "allowed_users": ["alice", "bob"]},
    })
    (tmp_path / "site.yaml").write_text(json.dumps(site.model_dump(mode="json", exclude_none=True)))
    sims = SiteSimulator(site, seed=3)
    await sims.start()
    writes: list[tuple[str, str, object]] = []  # every write that reached a simulated device
    for dev in ("belt-1", "shearer-1"):
        model = sims.simulator(dev).model
        original = model.command

        def spy(name, value, t=None, _dev=dev, _original=original):
            writes.append((_dev, name, value))
            return _original(name, value, t=t)
        model.command = spy
    client = Client(mosquitto.host, mosquitto.port, f"{prefix}/#")
    sink = MqttSink(site.mqtt, site)
    gateway = Gateway(site, [sink, HistorianSink(site.historian, site)])
    await gateway.start()
    status = f"{prefix}/s1/gateway/gateway-1/status"
    for _ in range(100):  # the birth comes after the command subscription
        if any(t == status for t, *_ in client.replies):
            break
        await asyncio.sleep(0.05)
    yield site, sims, client, sink, writes, prefix, db, tmp_path
    await gateway.stop()
    client.close()
    await sims.stop()


async def served(sim, signal, expected):
    """The simulated device serves ``expected`` (the model takes a write in on its next step)."""
    for _ in range(40):
        if sim.current_values()[signal] == expected:
            return True
        await asyncio.sleep(0.05)
    return False


def command(rid, device="belt-1", signal="run_command", value=False, by="alice", **extra):
    return {"request_id": rid, "device": device, "signal": signal, "value": value, "by": by, **extra}


async def audit_rows(influxdb, db, count):
    for _ in range(60):
        try:
            rows = influxdb.query('SELECT * FROM "command_audit"', db)
        except RuntimeError:  # the database is not there yet
            rows = []
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"{len(rows)} audit rows, expected {count}")


async def test_accepted_write_reaches_the_device_and_refusals_write_nothing(running, influxdb):
    site, sims, client, sink, writes, prefix, db, _ = running
    topic = f"{prefix}/s1/command/write"
    belt = sims.simulator("belt-1")
    assert belt.current_values()["run_command"] is True  # the simulation starts running

    client.send(topic, command("ok-1", reason="end of shift"))
    _, reply, _ = await client.reply("ok-1")
    assert reply["ok"] and reply["error"] is None and reply["value"] is False
    assert await served(belt, "run_command", False)
    assert writes == [("belt-1", "run_command", False)]

    before = {d: sims.simulator(d).current_values()["run_command"] for d in ("belt-1", "shearer-1")}
    refusals = {
        "bad-1": ({"request_id": "bad-1", "device": "belt-1", "value": 1}, "malformed command: signal"),
        "unk-1": (command("unk-1", device="belt-9"), "unknown device 'belt-9'"),
        "ro-1": (command("ro-1", signal="speed", value=1.0), "speed of belt-1 is read-only"),
        "rng-1": (command("rng-1", device="shearer-1", signal="haulage_speed_setpoint", value=20),
                  "out of range: haulage_speed_setpoint=20 outside -15..15 m/min"),
        "auth-1": (command("auth-1", by="mallory"), "unauthorised: 'mallory' may not write"),
    }
    for payload, _ in refusals.values():
        client.send(topic, payload)
    client.send(topic, b"{not json")  # no request id: logged and counted, no reply, no crash
    for rid, (_, why) in refusals.items():
        _, reply, _ = await client.reply(rid)
        assert not reply["ok"] and reply["error"].startswith(why), reply
    assert writes == [("belt-1", "run_command", False)]  # nothing else reached any device
    assert {d: sims.simulator(d).current_values()["run_command"] for d in before} == before
    assert sink.malformed_commands == 1

    # MQTT 5: the reply goes to the response topic, with the correlation data
    client.send(topic, command("v5-1", value=True, by="bob"), response_topic=f"{prefix}/ops/replies",
                correlation=b"\x01corr")
    reply_topic, reply, corr = await client.reply("v5-1")
    assert reply_topic == f"{prefix}/ops/replies" and corr == b"\x01corr" and reply["ok"]
    assert await served(belt, "run_command", True)

    rows = await audit_rows(influxdb, db, 7)
    audited = {r["request_id"]: r for r in rows}
    assert set(audited) == {"ok-1", "v5-1", *refusals}
    assert audited["ok-1"]["result"] == "accepted" and audited["ok-1"]["by"] == "alice"
    assert audited["ok-1"]["reason"] == "end of shift" and audited["ok-1"]["value"] == "false"
    assert audited["auth-1"]["result"] == "refused" and audited["auth-1"]["by"] == "mallory"
    assert "unauthorised" in audited["auth-1"]["error"]


async def test_a_burst_of_commands_is_rate_limited(running, influxdb):
    site, sims, client, sink, writes, prefix, db, _ = running
    for i in range(6):
        client.send(f"{prefix}/s1/command/write", command(f"burst-{i}", value=bool(i % 2)))
    replies = [(await client.reply(f"burst-{i}"))[1] for i in range(6)]
    assert [r["ok"] for r in replies] == [True] * 3 + [False] * 3
    assert all(r["error"].startswith("rate limited") for r in replies[3:])
    assert len(writes) == 3
    rows = await audit_rows(influxdb, db, 6)
    assert sorted(r["result"] for r in rows) == ["accepted"] * 3 + ["refused"] * 3


async def test_minegw_write_uses_the_same_path(running, mosquitto):
    site, sims, client, sink, writes, prefix, db, tmp_path = running
    base = [sys.executable, "-m", "gateway.cli", "write", "--host", mosquitto.host, "--port", str(mosquitto.port),
            "--prefix", prefix, "--site", "s1"]

    async def run(*args):  # "--": a negative value is not an option
        proc = await asyncio.create_subprocess_exec(*base, "--by", "bob", "--", *args, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode, out.decode() + err.decode()

    code, text = await run("shearer-1", "haulage_speed_setpoint", "-4.5")
    assert code == 0 and text.startswith("ok: shearer-1.haulage_speed_setpoint=-4.5"), text
    assert writes == [("shearer-1", "haulage_speed_setpoint", -4.5)]
    code, text = await run("shearer-1", "haulage_speed_setpoint", "99")
    assert code == 1 and "refused: out of range" in text and "Traceback" not in text, text
    assert len(writes) == 1


def test_token_bucket_and_audit_line():
    from datetime import datetime, timezone

    from gateway.commands import AuditEntry, TokenBucket
    from gateway.historian.lineprotocol import command_audit_line

    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] = 0.5  # one token back
    assert [bucket.take() for _ in range(2)] == [True, False]

    entry = AuditEntry(request_id=None, device=None, signal=None, value=None, by=None, reason=None, source="mqtt",
                       ok=False, error='malformed command: payload: "x"', ts=datetime(2025, 3, 14, tzinfo=timezone.utc))
    assert command_audit_line("s1", "gateway-1", entry) == (
        'command_audit,site=s1,gateway=gateway-1,result=refused ok=false,source="mqtt",'
        'error="malformed command: payload: \\"x\\"" 1741910400000000000')
