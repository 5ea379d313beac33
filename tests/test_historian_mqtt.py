"""``historian.api: mqtt``: the gateway's historian lines go to the surface broker (docs/historian.md,
"Over MQTT"), against real Mosquitto: every kind of line arrives, an outage loses nothing, a publish the
ACL refuses keeps the lines in the buffer, a large batch is split."""
from __future__ import annotations

import logging
import os
import signal
import uuid
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from gateway.config import HistorianConfig
from gateway.historian.errors import DataError
from gateway.historian.influx import check_historian
from gateway.historian.mqtt_writer import MAX_PAYLOAD, historian_topic, split_payloads
from gateway.historian.sink import HistorianSink
from gateway.runtime import Gateway
from simulators.site import SiteSimulator
from tests.mqtt_util import MqttCollector
from tests.sites import make_site, modbus, site_dict
from tests.util import free_port, until

T0 = 1_741_932_000_000_000_000  # ns


def mqtt_historian(broker, buffer: Path, **settings) -> dict:
    """``historian:`` publishing to ``broker`` (plain MQTT on loopback), flushing every 0.1 s."""
    return {"api": "mqtt", "url": f"mqtt://{broker.host}:{broker.port}", "flush_interval": 0.1, "timeout": 2,
            "buffer": {"path": str(buffer)}, **settings}


def site_for(broker, tmp_path: Path, *devices: dict, **settings):
    prefix = f"hist-{uuid.uuid4().hex[:8]}"
    return make_site(*devices, mqtt={"host": broker.host, "port": broker.port, "topic_prefix": prefix},
                     historian=mqtt_historian(broker, tmp_path / "buffer.sqlite3", **settings.pop("historian", {})),
                     **settings)


def lines_of(messages) -> list[str]:
    return [line for m in messages for line in m.payload.decode().split("\n") if line]


def numbered(first: int, last: int, pad: int = 0) -> list[tuple[float, str]]:
    """Lines ``t seq=<i>i`` (padded with a ``pad``-byte string field), one nanosecond apart."""
    extra = f',pad="{"x" * pad}"' if pad else ""
    return [((T0 + i) / 1e9, f"t seq={i}i{extra} {T0 + i}") for i in range(first, last)]


def seqs(lines: list[str]) -> list[int]:
    return [int(line.split("seq=")[1].split("i")[0]) for line in lines if line.startswith("t ")]


# ---- configuration --------------------------------------------------------------------------

def test_api_mqtt_takes_only_a_broker_url_and_a_broker_url_only_api_mqtt():
    assert HistorianConfig(api="mqtt", url="mqtts://mqtt.dispatch.demo-mine.local:8883").api == "mqtt"
    with pytest.raises(ValidationError, match="api mqtt needs mqtts://host:8883"):
        HistorianConfig(api="mqtt", url="https://historian:8086")
    with pytest.raises(ValidationError, match="is a broker: set api: mqtt"):
        HistorianConfig(api="v1", url="mqtts://mqtt.dispatch.demo-mine.local:8883")


def test_a_bad_url_in_a_site_file_is_a_located_error(tmp_path):
    from gateway.config import ConfigError, load_site

    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site_dict(historian={"api": "mqtt", "url": "tcp://10.0.0.1:1883"})))
    with pytest.raises(ConfigError) as raised:
        load_site(path)
    assert any(p.startswith("historian") and "api mqtt needs mqtts://" in p for p in raised.value.problems)


def test_split_at_line_boundaries_within_the_limit():
    lines = [f"m v={i}i" for i in range(1000)]
    payloads = split_payloads(lines, limit=100)
    assert all(len(p) <= 100 for p in payloads) and len(payloads) > 1
    assert b"\n".join(payloads).decode().split("\n") == lines
    assert split_payloads(["a v=1i"]) == [b"a v=1i"]
    with pytest.raises(DataError, match="over the 100 bytes"):
        split_payloads(["short v=1i", "x" * 101], limit=100)


# ---- a gateway publishing its historian ------------------------------------------------------

async def test_a_gateway_publishes_every_kind_of_historian_line(mosquitto, tmp_path):
    site = site_for(mosquitto, tmp_path, modbus("shearer-1", "shearer"),
                    {"id": "rp-1", "adapter": "opcua", "area": "face", "url": f"opc.tcp://127.0.0.1:{free_port()}",
                     "supports": 3, "backoff_initial": 0.1},
                    alarms=[{"id": "ch4", "device": "shearer-1", "signal": "methane", "kind": "methane",
                             "location": "machine"}])
    topic = historian_topic(site)
    assert topic == f"{site.mqtt.topic_prefix}/s1/gateway/gateway-1/historian"
    wanted = {"shearer", "roof_pressure", "device_state", "device_inventory", "gateway_status", "gateway_health",
              "alarm_event"}

    def measurements(messages) -> set[str]:
        return {line.split(",", 1)[0].split(" ", 1)[0] for line in lines_of(messages)}

    with MqttCollector(mosquitto.host, mosquitto.port, topic) as sub:
        async with (SiteSimulator(site, seed=3, opcua_certificate_dir=tmp_path) as sims,
                    Gateway(site, [HistorianSink(site.historian, site, health_interval=0.3)])):
            await sub.until(lambda ms: "shearer" in measurements(ms), timeout=15)
            sims.simulator("shearer-1").set_fault("out_of_range", signal="methane", value=4.4)
            await sub.until(lambda ms: wanted <= measurements(ms), timeout=30)
    assert all(not m.retain and m.qos == 1 and len(m.payload) <= MAX_PAYLOAD for m in sub.messages)
    lines = lines_of(sub.messages)
    status = [line for line in lines if line.startswith("gateway_status,")]
    assert any('reason="started"' in line for line in status)  # "stopped" waits in the buffer for the next start
    alarm = next(line for line in lines if line.startswith("alarm_event,"))
    assert "area=face" in alarm and "device=shearer-1" in alarm and "alarm=ch4" in alarm


async def test_broker_down_lines_wait_in_the_buffer_and_all_arrive_once_in_order(fresh_mosquitto, tmp_path, caplog):
    broker = fresh_mosquitto
    site = site_for(broker, tmp_path)
    sink = HistorianSink(site.historian, site, health_interval=600)
    topic = historian_topic(site)
    caplog.set_level(logging.WARNING, "gateway.historian")
    with MqttCollector(broker.host, broker.port, topic, persistent=True, client_id=f"c-{uuid.uuid4().hex[:6]}") as sub:
        await sink.start()
        try:
            sink.put_lines(numbered(0, 100))
            await sub.until(lambda ms: 99 in seqs(lines_of(ms)), timeout=10)
            broker.stop()
            sink.put_lines(numbered(100, 3000))
            await until(lambda: sink.retries > 0 and sink.buffered >= 3000 + 1, what="a failed write")
            await until(lambda: sink.health()["depth"] >= 2900, what="the lines in the buffer")
            assert "cannot reach MQTT broker mqtt://" in caplog.text
            broker.start()
            try:
                await sub.until(lambda ms: 2999 in seqs(lines_of(ms)), timeout=30)
            except AssertionError as exc:  # seen once on a loaded machine: say which side held the lines
                raise AssertionError(f"{exc}\nsink: {sink.health()}\nbroker:{broker.log_tail(40)}") from None
            await until(lambda: sink.health()["depth"] == 0, what="an empty buffer")
        finally:
            await sink.stop()
    got = seqs(lines_of(sub.messages))
    assert got == list(range(3000))  # once each, in order
    assert sink.health()["connected"] and sink.dead_lettered == 0


async def test_a_publish_the_acl_refuses_keeps_the_lines_and_says_where(make_mosquitto, tmp_path, caplog):
    acl = tmp_path / "acl"
    acl.write_text("topic read #\n")  # anonymous (our clients): read only, so the historian's PUBACK is 0x87
    broker = make_mosquitto(extra=(f"acl_file {acl}",))
    site = site_for(broker, tmp_path)
    sink = HistorianSink(site.historian, site, health_interval=600)
    topic = historian_topic(site)
    caplog.set_level(logging.WARNING, "gateway.historian")
    with MqttCollector(broker.host, broker.port, topic) as sub:
        await sink.start()
        try:
            sink.put_lines(numbered(0, 50))
            await until(lambda: "Not authorized" in caplog.text, what="the refusal logged")
            refusal = next(r for r in caplog.records if "Not authorized" in r.getMessage())
            assert refusal.levelno == logging.ERROR
            assert f"publishing {topic} (PUBACK 0x87 Not authorized)" in refusal.getMessage()
            assert "minegw deploy acl surface" in refusal.getMessage()
            await until(lambda: sink.health()["depth"] >= 50, what="the lines kept")
            assert sink.written == 0 and sink.dead_lettered == 0
            acl.write_text("topic readwrite #\n")
            os.kill(broker.process.pid, signal.SIGHUP)  # Mosquitto re-reads its ACL
            await sub.until(lambda ms: 49 in seqs(lines_of(ms)), timeout=30)
        finally:
            await sink.stop()
    assert seqs(lines_of(sub.messages))[:50] == list(range(50))
    assert len([r for r in caplog.records if "Not authorized" in r.getMessage()]) == 1  # once per state change


async def test_a_batch_over_256_kib_is_split_into_messages_that_fit(mosquitto, tmp_path):
    site = site_for(mosquitto, tmp_path, historian={"batch_lines": 5000})
    sink = HistorianSink(site.historian, site, health_interval=600)
    lines = numbered(0, 3000, pad=300)  # ~1 MB
    with MqttCollector(mosquitto.host, mosquitto.port, historian_topic(site)) as sub:
        await sink.start()
        try:
            sink.put_lines(lines)
            await sub.until(lambda ms: 2999 in seqs(lines_of(ms)), timeout=20)
        finally:
            await sink.stop()
    data = [m for m in sub.messages if b"seq=" in m.payload]
    assert len(data) >= 4 and all(len(m.payload) <= MAX_PAYLOAD <= 256 * 1024 for m in data)
    assert [line for line in lines_of(data) if line.startswith("t ")] == [line for _, line in lines]  # split at line boundaries, nothing lost or changed


# ---- minegw historian check ------------------------------------------------------------------

async def test_check_connects_and_gets_a_probe_acknowledged(mosquitto, make_mosquitto, tmp_path):
    site = site_for(mosquitto, tmp_path)
    with MqttCollector(mosquitto.host, mosquitto.port, historian_topic(site)) as sub:
        results = await check_historian(site.historian, site)
        await sub.until(lambda ms: ms, timeout=5)
    assert [(r.step, r.ok) for r in results] == [("ping", True), ("write", True)], results
    assert sub.messages[0].payload == b""  # a probe with no line: nothing for the ingest to write

    acl = tmp_path / "acl"
    acl.write_text("topic read #\n")
    refusing = make_mosquitto(extra=(f"acl_file {acl}",))
    results = await check_historian(site.historian.model_copy(update={"url": f"mqtt://127.0.0.1:{refusing.port}"}),
                                    site)
    assert [(r.step, r.ok) for r in results] == [("ping", True), ("auth", False)]
    assert "0x87 Not authorized" in results[-1].message
    results = await check_historian(site.historian.model_copy(update={"url": f"mqtt://127.0.0.1:{free_port()}",
                                                                      "timeout": 1}), site)
    assert [(r.step, r.ok) for r in results] == [("ping", False)] and "cannot reach MQTT broker" in results[0].message


def test_check_command_reads_the_site_file(mosquitto, tmp_path):
    from gateway.cli import app

    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site_dict(mqtt={"host": mosquitto.host, "port": mosquitto.port},
                                             historian=mqtt_historian(mosquitto, tmp_path / "b.sqlite3"))))
    done = CliRunner().invoke(app, ["historian", "check", "--config", str(path)])
    assert done.exit_code == 0, done.output
    assert "ok write: the broker acknowledged an empty probe message on minegw/s1/gateway/gateway-1/historian" \
        in " ".join(done.output.split())
    done = CliRunner().invoke(app, ["historian", "check", "mqtt://127.0.0.1:1883", "--api", "mqtt"])
    assert done.exit_code == 1 and "give the gateway's site file with --config" in done.output


async def test_credentials_the_broker_refuses_are_an_auth_error(make_mosquitto, tmp_path):
    from tests.test_deploy import password, write_passwd

    passwd = tmp_path / "passwd"
    write_passwd(passwd, ["demo-mine.gw-1201"])
    broker = make_mosquitto(extra=("allow_anonymous false", f"password_file {passwd}"))
    site = site_for(broker, tmp_path, historian={"username": "demo-mine.gw-1201", "password": "wrong"})
    results = await check_historian(site.historian, site)
    assert [(r.step, r.ok) for r in results] == [("auth", False)]
    assert "refused the connection of user 'demo-mine.gw-1201'" in results[0].message
    right = site.historian.model_copy(update={"password": SecretStr(password("demo-mine.gw-1201"))})
    assert [r.ok for r in await check_historian(right, site)] == [True, True]


async def test_a_broker_that_stops_acknowledging_is_retried(make_mosquitto, tmp_path):
    from gateway.historian.errors import RetryableError
    from gateway.historian.mqtt_writer import MqttHistorianWriter

    broker = make_mosquitto()
    site = site_for(broker, tmp_path, historian={"timeout": 1})
    writer = MqttHistorianWriter(site.historian, site)
    with MqttCollector(broker.host, broker.port, historian_topic(site)) as sub:
        try:
            await writer.write(["a v=1i 1"])
            os.kill(broker.process.pid, signal.SIGSTOP)  # connected, but no PUBACK comes
            try:
                with pytest.raises(RetryableError, match="acknowledged no message for 1 s"):
                    await writer.write(["a v=2i 2"])
            finally:
                os.kill(broker.process.pid, signal.SIGCONT)
            await writer.write(["a v=2i 2"])  # the sink's retry: at least once (InfluxDB keeps one point)
            await sub.until(lambda ms: [m for m in ms if m.payload == b"a v=2i 2"], timeout=5)
        finally:
            await writer.close()
