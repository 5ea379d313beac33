"""Device writes on command: simulators → gateway ← real Mosquitto, audit in a real InfluxDB: signed, fresh,
one-shot and bounded commands run; replayed, forged, stale, retained and oversized ones never reach a device."""
import asyncio
import json
import os
import sys
import threading
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.historian.sink import HistorianSink
from gateway.core.model import utcnow
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from simulators.site import SiteSimulator
from tests.sites import historian, make_site, modbus, mqtt
from tests.util import Operators


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
            except (ValueError, RecursionError):  # the test's own hostile commands come by too
                body = {}
            body = body if isinstance(body, dict) else {}
            self.replies.append((msg.topic, body, getattr(msg.properties, "CorrelationData", None)))
            self._cond.notify_all()

    def send(self, topic, payload, response_topic=None, correlation=None):
        props = None
        if response_topic:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic, body, qos=1, properties=props).wait_for_publish(5)

    def answers(self, request_id, ok=None):
        """The gateway's replies to ``request_id`` so far (``ok``: only those with that outcome)."""
        with self._cond:
            return [r for t, r, _ in self.replies if r.get("request_id") == request_id and "/reply/" in t
                    and (ok is None or r.get("ok") is ok)]

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


def site_of(mosquitto, influxdb, tmp_path, prefix, operators, **commands):
    db = prefix.replace("-", "_")
    machines = (("belt-1", "belt_conveyor"), ("shearer-1", "shearer"))
    return make_site(
        *(modbus(device, profile, poll_interval=0.5) for device, profile in machines),
        mqtt=mqtt(mosquitto, prefix), historian=historian(influxdb, db, tmp_path / "b.sqlite3"),
        commands={"rate": 0.2, "burst": 3, "allowed_users": ["alice", "bob"], "operators": operators.site_entry(),
                  "replay_store": str(tmp_path / "ids.sqlite3"), **commands})


async def start_gateway(site, client, prefix):
    sink = MqttSink(site.mqtt, site)
    gateway = Gateway(site, [sink, HistorianSink(site.historian, site)])
    before = sum(1 for t, *_ in client.replies if t.endswith("/gateway/gateway-1/status"))
    await gateway.start()
    for _ in range(100):  # the birth comes after the command subscription
        if sum(1 for t, *_ in client.replies if t.endswith("/gateway/gateway-1/status")) > before:
            break
        await asyncio.sleep(0.05)
    return gateway, sink


@pytest.fixture
async def running(mosquitto, influxdb, tmp_path):
    prefix = f"cmd-{uuid.uuid4().hex[:8]}"
    db = prefix.replace("-", "_")
    operators = Operators(tmp_path, "alice", "bob", "mallory")
    site = site_of(mosquitto, influxdb, tmp_path, prefix, operators)
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
    gateway, sink = await start_gateway(site, client, prefix)
    state = {"gateway": gateway}
    yield Bench(site, sims, client, sink, writes, prefix, db, tmp_path, operators, state)
    await state["gateway"].stop()
    client.close()
    await sims.stop()


class Bench:
    def __init__(self, site, sims, client, sink, writes, prefix, db, tmp_path, operators, state):
        self.site, self.sims, self.client, self.sink, self.writes = site, sims, client, sink, writes
        self.prefix, self.db, self.tmp_path, self.operators, self._state = prefix, db, tmp_path, operators, state
        self.topic = f"{prefix}/s1/command/write"

    async def restart(self):
        await self._state["gateway"].stop()
        self._state["gateway"], self.sink = await start_gateway(self.site, self.client, self.prefix)

    def send(self, rid, by="alice", age=0.0, **fields):
        self.client.send(self.topic, self.operators.sign(by, command(rid, **fields), age=age))


async def served(sim, signal, expected):
    """The simulated device serves ``expected`` (the model takes a write in on its next step)."""
    for _ in range(40):
        if sim.current_values()[signal] == expected:
            return True
        await asyncio.sleep(0.05)
    return False


def command(rid, device="belt-1", signal="run_command", value=False, **extra):
    return {"request_id": rid, "device": device, "signal": signal, "value": value, **extra}


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
    b = running
    belt = b.sims.simulator("belt-1")
    assert belt.current_values()["run_command"] is True  # the simulation starts running

    b.send("ok-1", reason="end of shift")
    _, reply, _ = await b.client.reply("ok-1")
    assert reply["ok"] and reply["error"] is None and reply["value"] is False
    assert await served(belt, "run_command", False)
    assert b.writes == [("belt-1", "run_command", False)]

    before = {d: b.sims.simulator(d).current_values()["run_command"] for d in ("belt-1", "shearer-1")}
    refusals = {
        "bad-1": ({"request_id": "bad-1", "device": "belt-1", "value": 1}, "malformed command: signal"),
        "unk-1": (command("unk-1", device="belt-9"), "unknown device 'belt-9'"),
        "ro-1": (command("ro-1", signal="speed", value=1.0), "speed of belt-1 is read-only"),
        "rng-1": (command("rng-1", device="shearer-1", signal="haulage_speed_setpoint", value=20),
                  "out of range: haulage_speed_setpoint=20 outside -15..15 m/min"),
    }
    for payload, _ in refusals.values():
        b.client.send(b.topic, b.operators.sign("alice", payload))
    b.client.send(b.topic, b.operators.sign("mallory", command("auth-1")))  # a known key, not allowed to write
    refusals["auth-1"] = (None, "unauthorised: 'mallory' may not write")
    b.client.send(b.topic, b"{not json")  # no request id: audited and counted, nowhere to reply, no crash
    for rid, (_, why) in refusals.items():
        _, reply, _ = await b.client.reply(rid)
        assert not reply["ok"] and reply["error"].startswith(why), reply
    assert b.writes == [("belt-1", "run_command", False)]  # nothing else reached any device
    assert {d: b.sims.simulator(d).current_values()["run_command"] for d in before} == before

    # MQTT 5: the reply goes to the response topic, with the correlation data, when the response topic is the
    # gateway's own reply topic for the signer; anywhere else, to the default reply topic
    replies = f"{b.prefix}/s1/gateway/gateway-1/reply"
    b.client.send(b.topic, b.operators.sign("bob", command("v5-1", value=True)),
                  response_topic=f"{replies}/bob/mine", correlation=b"\x01corr")
    reply_topic, reply, corr = await b.client.reply("v5-1")
    assert reply_topic == f"{replies}/bob/mine" and corr == b"\x01corr" and reply["ok"]
    assert await served(belt, "run_command", True)
    elsewhere = {"v5-2": f"{b.prefix}/ops/r", "v5-3": f"{replies}/alice/x",  # not ours; another signer's
                 "v5-4": f"{b.prefix}/s1/gateway/gateway-9/reply/bob/x", "v5-5": f"{replies}/bob/x/y"}
    for rid, response_topic in elsewhere.items():
        b.client.send(b.topic, b.operators.sign("bob", command(rid, device="belt-9")), response_topic=response_topic,
                      correlation=rid.encode())  # refused (unknown device) before the rate limit: answered all the same
        reply_topic, reply, corr = await b.client.reply(rid)
        assert (reply_topic, corr, reply["ok"]) == (f"{replies}/bob/{rid}", rid.encode(), False), response_topic
    assert b.sink.malformed_commands == 1

    rows = await audit_rows(influxdb, b.db, 8 + len(elsewhere))
    audited = {r["request_id"]: r for r in rows}
    assert set(audited) == {"ok-1", "v5-1", None, *refusals, *elsewhere}
    assert audited["ok-1"]["result"] == "accepted" and audited["ok-1"]["by"] == "alice"
    assert audited["ok-1"]["reason"] == "end of shift" and audited["ok-1"]["value"] == "false"
    assert audited["v5-1"]["by"] == "bob"
    assert audited["auth-1"]["result"] == "refused" and audited["auth-1"]["by"] == "mallory"
    assert "unauthorised" in audited["auth-1"]["error"]
    assert audited[None]["error"].startswith("malformed command: not JSON")


async def test_replayed_forged_stale_retained_and_oversized_commands_never_reach_the_device(running, influxdb):
    b = running
    belt = b.sims.simulator("belt-1")
    ops, client = b.operators, b.client
    fresh = ops.sign("alice", command("once-1"))
    client.send(b.topic, fresh)
    assert (await client.reply("once-1"))[1]["ok"] and await served(belt, "run_command", False)
    assert b.writes == [("belt-1", "run_command", False)]

    tampered = ops.sign("alice", command("forged-1"))
    tampered["value"] = True  # the signature no longer covers the payload
    wrong_key = {**ops.sign("mallory", command("forged-2", value=True)), "key_id": "alice"}
    (b.tmp_path / "outsider").mkdir()
    outsider = Operators(b.tmp_path / "outsider", "eve")  # a valid key the site does not know
    attacks = {
        "once-1": (fresh, "replay: request_id once-1 was used before"),
        "old-1": (ops.sign("alice", command("old-1", value=True), age=31), "expired: issued 3"),
        "future-1": (ops.sign("alice", command("future-1", value=True), age=-60), "issued 5"),
        "unsigned-1": ({**command("unsigned-1", value=True), "by": "alice",
                        "issued_at": fresh["issued_at"]}, "unauthenticated: unsigned"),
        "forged-1": (tampered, "unauthenticated: bad signature for key_id 'alice'"),
        "forged-2": (wrong_key, "unauthenticated: bad signature for key_id 'alice'"),
        "eve-1": (outsider.sign("eve", command("eve-1", value=True)), "unauthenticated: unknown key_id 'eve'"),
        "claim-1": (ops.sign("alice", command("claim-1", value=True, by="bob")), "by 'bob' is not the signer"),
        "long-1": (ops.sign("alice", command("long-1", value=True, reason="x" * 300)),
                   "malformed command: reason: String should have at most 256"),
    }
    for payload, _ in attacks.values():
        client.send(b.topic, payload)
    deep = b'{"request_id": "deep-1", "value": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    unsigned = f"{b.prefix}/s1/gateway/gateway-1/reply"  # no verified signer: no signer level
    client.send(b.topic, deep, response_topic=f"{unsigned}/deep")  # garbage of any depth: a refusal
    big = json.dumps(ops.sign("alice", command("big-1", value=True, reason="x" * 5_000_000))).encode()
    client.send(b.topic, big, response_topic=f"{unsigned}/big")  # not even parsed: no request id to answer
    for rid, (_, why) in attacks.items():
        replies = await wait_for(lambda: client.answers(rid, ok=False))  # once-1 had its first, good reply
        assert replies[0]["error"].startswith(why), (rid, replies)
    deep_reply = await wait_for(lambda: [r for t, r, _ in client.replies if t == f"{unsigned}/deep"])
    assert deep_reply[0]["ok"] is False and deep_reply[0]["error"].startswith("malformed command: not JSON")
    big_reply = await wait_for(lambda: [r for t, r, _ in client.replies if t == f"{unsigned}/big"])
    assert big_reply[0]["error"] == f"too large: {len(big)} bytes, at most 8192"

    # retained: published live it runs once (a fresh, signed command); redelivered from the retained store
    # when the gateway restarts, it is refused
    client.client.publish(b.topic, json.dumps(ops.sign("alice", command("kept-1", value=True))).encode(), qos=1,
                          retain=True).wait_for_publish(5)
    assert (await client.reply("kept-1"))[1]["ok"] and await served(belt, "run_command", True)
    runs = len(b.writes)
    await b.restart()
    refused = await wait_for(lambda: client.answers("kept-1", ok=False))
    assert refused[0]["error"].startswith("retained"), refused
    client.client.publish(b.topic, b"", qos=1, retain=True).wait_for_publish(5)  # clear it

    # the window of seen request ids survives the restart
    client.send(b.topic, fresh)
    replay = await wait_for(lambda: client.answers("once-1")[2:])
    assert replay[0]["error"] == "replay: request_id once-1 was used before"

    await asyncio.sleep(0.6)  # a poll or two: nothing else was written
    assert len(b.writes) == runs == 2 and belt.current_values()["run_command"] is True
    rows = await audit_rows(influxdb, b.db, 2 + len(attacks) + 4)
    refused_rows = [r for r in rows if r["result"] == "refused"]
    assert {r["request_id"] for r in refused_rows} >= set(attacks) | {"kept-1", None}
    assert next(r for r in refused_rows if r["request_id"] == "forged-1")["by"] is None  # never the claim


async def wait_for(probe, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        if found := probe():
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_a_burst_of_commands_is_rate_limited(running, influxdb):
    b = running
    for i in range(6):
        b.send(f"burst-{i}", value=bool(i % 2))
    replies = [(await b.client.reply(f"burst-{i}"))[1] for i in range(6)]
    assert [r["ok"] for r in replies] == [True] * 3 + [False] * 3
    assert all(r["error"].startswith("rate limited") for r in replies[3:])
    assert len(b.writes) == 3
    rows = await audit_rows(influxdb, b.db, 6)
    assert sorted(r["result"] for r in rows) == ["accepted"] * 3 + ["refused"] * 3


async def test_minegw_write_signs_with_the_operators_key(running, mosquitto):
    b = running
    base = [sys.executable, "-m", "gateway.cli", "write", "--host", mosquitto.host, "--port", str(mosquitto.port),
            "--prefix", b.prefix, "--site", "s1"]

    async def run(*args, env=None):  # "--": a negative value is not an option
        proc = await asyncio.create_subprocess_exec(*base, *args, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, env=env)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode, out.decode() + err.decode()

    code, text = await run("--key", str(b.operators.files["bob"]), "--", "shearer-1", "haulage_speed_setpoint", "-4.5")
    assert code == 0 and text.startswith("ok: shearer-1.haulage_speed_setpoint=-4.5"), text
    assert b.writes == [("shearer-1", "haulage_speed_setpoint", -4.5)]
    code, text = await run("--key", str(b.operators.files["bob"]), "--", "shearer-1", "haulage_speed_setpoint", "99")
    assert code == 1 and "refused: out of range" in text and "Traceback" not in text, text
    env = {**os.environ, "MINEGW_KEY": str(b.operators.files["mallory"])}
    code, text = await run("--", "shearer-1", "haulage_speed_setpoint", "1", env=env)
    assert code == 1 and "refused: unauthorised: 'mallory'" in text, text
    code, text = await run("--by", "alice", "--", "shearer-1", "haulage_speed_setpoint", "1")  # no key: unsigned
    assert code == 1 and "refused: unauthenticated: unsigned" in text, text
    code, text = await run("--key", str(b.tmp_path / "nope.key"), "--", "shearer-1", "haulage_speed_setpoint", "1")
    assert code == 1 and "nope.key: cannot read the key" in text and "Traceback" not in text, text
    assert len(b.writes) == 1


async def test_unsigned_commands_where_the_site_allows_them(mosquitto, influxdb, tmp_path, caplog):
    prefix = f"cmd-{uuid.uuid4().hex[:8]}"
    site = site_of(mosquitto, influxdb, tmp_path, prefix, Operators(tmp_path, "alice"), require_signature=False)
    sims = SiteSimulator(site, seed=3)
    await sims.start()
    client = Client(mosquitto.host, mosquitto.port, f"{prefix}/#")
    gateway, _ = await start_gateway(site, client, prefix)
    try:
        assert "require_signature is false" in caplog.text
        issued = utcnow().isoformat()
        client.send(f"{prefix}/s1/command/write", {**command("u-1"), "by": "bob", "issued_at": issued})
        assert (await client.reply("u-1"))[1]["ok"]
        client.send(f"{prefix}/s1/command/write", {**command("u-2"), "by": "mallory", "issued_at": issued})
        assert (await client.reply("u-2"))[1]["error"] == "unauthorised: 'mallory' may not write to devices"
        client.send(f"{prefix}/s1/command/write", {**command("u-3"), "issued_at": issued})
        assert (await client.reply("u-3"))[1]["error"] == "malformed command: by: required in an unsigned command"
    finally:
        await gateway.stop()
        client.close()
        await sims.stop()


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
