"""The `minegw` command, run as a user would: a subprocess, real servers, no tracebacks."""
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from adapters.modbus.codec import DataType, Order, encode
from tests.modbus_util import raw_server, regs
from tests.util import free_port

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "deploy" / "site.example.yaml"


def minegw(*args, timeout=60, **kw):
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kw)


async def aminegw(*args, timeout=60):
    return await asyncio.to_thread(minegw, *args, timeout=timeout)


def assert_one_clean_error(result, *needles):
    assert result.returncode == 1, (result.stdout, result.stderr)
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, text


async def test_modbus_read_decodes_values_as_asked():
    words = encode(123.5, DataType.FLOAT32, Order.CDAB) + [0xFFFF]
    async with raw_server(inputs=[regs(10, words)]) as (host, port):
        result = await aminegw("modbus", "read", host, "10", "--port", str(port), "--table", "input_register",
                               "--type", "float32", "--order", "CDAB")
        assert result.returncode == 0, result.stderr
        assert "123.5" in result.stdout
        refused = await aminegw("modbus", "read", host, "500", "--port", str(port), "--table", "input_register")
        assert_one_clean_error(refused, "exception 2 (illegal data address)")


def test_probe_failures_are_one_clear_line():
    port = free_port()
    assert_one_clean_error(minegw("modbus", "read", "127.0.0.1", "0", "--port", str(port)),
                           f"cannot connect to 127.0.0.1:{port}")
    assert_one_clean_error(minegw("mqtt", "tail", "--port", str(port), "--timeout", "2"), str(port))
    assert_one_clean_error(minegw("sim-fault", "belt-main-1", "slip", "--control", f"127.0.0.1:{port}"),
                           "no simulator control endpoint")
    assert_one_clean_error(minegw("run", "no-such-site.yaml"), "cannot read")
    assert_one_clean_error(minegw("run", str(EXAMPLE), env=os.environ | {"MINEGW_PYMODBUS_LOG": "loud"}),
                           "MINEGW_PYMODBUS_LOG='loud': expected DEBUG, INFO, WARNING or ERROR")


def test_mqtt_tail_prints_messages(mosquitto):
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    pub = paho.Client(CallbackAPIVersion.VERSION2)
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    pub.publish("cli-test/hello", json.dumps({"value": 42}), qos=1, retain=True).wait_for_publish(5)
    result = minegw("mqtt", "tail", "cli-test/#", "--host", mosquitto.host, "--port", str(mosquitto.port),
                    "--count", "1", "--timeout", "10")
    pub.publish("cli-test/hello", b"", retain=True).wait_for_publish(5)
    pub.loop_stop()
    assert result.returncode == 0, result.stderr
    assert "cli-test/hello" in result.stdout and '"value": 42' in result.stdout


def test_sim_serves_the_site_and_takes_faults_from_the_cli(tmp_path):
    site = yaml.safe_load(EXAMPLE.read_text())
    port, control = free_port(), free_port()
    site["devices"] = [{k: v for k, v in d.items() if k != "network"} | {"port": port}
                       for d in site["devices"] if d.get("profile") == "belt_conveyor"]
    site.pop("network")  # its switches are gone with the other devices
    site.pop("alarms", None)  # they watch the camera, gone here
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "sim", str(path), "--control",
                             f"127.0.0.1:{control}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        read = ["modbus", "read", "127.0.0.1", "2", "--port", str(port), "--table", "discrete_input", "--unit", "1"]
        deadline = time.monotonic() + 20
        while (result := minegw(*read)).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert result.returncode == 0, result.stderr
        assert "False" in result.stdout  # slip bit clear
        injected = minegw("sim-fault", "belt-main-1", "slip", "-p", "ratio=0.3", "--control", f"127.0.0.1:{control}")
        assert injected.returncode == 0, injected.stderr
        assert "slip" in injected.stdout
        deadline = time.monotonic() + 10
        while "True" not in (result := minegw(*read)).stdout and time.monotonic() < deadline:
            time.sleep(0.3)
        assert "True" in result.stdout  # the belt's slip protection tripped
        unknown = minegw("sim-fault", "belt-main-1", "meltdown", "--control", f"127.0.0.1:{control}")
        assert_one_clean_error(unknown, "meltdown")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_historian_check_against_a_real_influxdb(influxdb):
    ok = minegw("historian", "check", f"http://{influxdb.host}:{influxdb.port}", "--database", "cli_check")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok  ping: " in ok.stdout and "ok  write" in ok.stdout
    port = free_port()
    down = minegw("historian", "check", f"http://127.0.0.1:{port}")
    assert down.returncode == 1 and "FAILED  ping" in down.stdout and "Traceback" not in down.stderr


def test_buffer_commands_show_replay_and_purge_dead_letters(tmp_path):
    from gateway.buffer import DurableBuffer

    path = tmp_path / "buffer.sqlite3"
    buffer = DurableBuffer(path)
    buffer.put([(time.time(), 'belt_conveyor,device=b1 speed=1.0 1'), (time.time(), 'belt_conveyor,device=b1 speed="x" 2')])
    batch = buffer.take_batch(1)
    buffer.dead_letter(batch, "field type conflict")
    buffer.close()

    status = minegw("buffer", "status", "--path", str(path))
    assert status.returncode == 0, status.stderr
    assert "depth 1 lines" in status.stdout and "dead letters 1" in status.stdout
    dead = minegw("buffer", "dead", "--path", str(path))
    assert "field type conflict" in dead.stdout and "1 shown" in dead.stdout
    assert "replayed 1" in minegw("buffer", "replay", "--path", str(path)).stdout
    assert "depth 2 lines" in minegw("buffer", "status", "--path", str(path)).stdout
    assert "purged 0" in minegw("buffer", "purge", "--path", str(path)).stdout
    assert_one_clean_error(minegw("buffer", "status", "--path", str(tmp_path / "none.sqlite3")), "no historian buffer")


async def test_run_publishes_and_stops_cleanly_on_sigterm(mosquitto, tmp_path):
    from gateway.config import load_site
    from simulators.site import SiteSimulator
    from tests.mqtt_util import MqttCollector

    site = yaml.safe_load(EXAMPLE.read_text())
    port = free_port()
    site["devices"] = [{k: v for k, v in d.items() if k != "network"} | {"port": port}
                       for d in site["devices"] if d.get("profile") == "belt_conveyor"]
    site.pop("network")  # its switches are gone with the other devices
    site.pop("alarms", None)  # they watch the camera, gone here
    site["mqtt"] = {"host": mosquitto.host, "port": mosquitto.port, "topic_prefix": "cli-run"}
    del site["historian"]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    async with SiteSimulator(load_site(path)):
        with MqttCollector(mosquitto.host, mosquitto.port, "cli-run/#") as sub:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway.cli", "run", str(path),
                                                        cwd=ROOT, stderr=asyncio.subprocess.PIPE)
            data = await sub.until(lambda ms: [m for m in ms if m.topic.endswith("/belt-main-2/data")], timeout=15)
            assert json.loads(data[0].payload)["kind"] == "belt_conveyor"
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 15)
            assert proc.returncode == 0, err.decode()
            status = "cli-run/demo-mine/gateway/gateway-1/status"
            stopped = await sub.until(lambda ms: [m for m in ms if m.topic == status and
                                                  json.loads(m.payload)["status"] == "offline"], timeout=5)
            assert json.loads(stopped[-1].payload)["reason"] == "stopped"
            assert b"Traceback" not in err


async def test_opcua_browse_read_and_cert(tmp_path):
    from adapters.opcua.nodemap import load_nodemap
    from simulators.opcua.face import FaceSimulator
    from simulators.opcua.server import OpcUaSimServer

    face = FaceSimulator("rp", load_nodemap("longwall", supports=3), seed=1)
    server = OpcUaSimServer(f"opc.tcp://127.0.0.1:{free_port()}", [face], certificate_dir=tmp_path / "sim")
    await server.start()
    try:
        tree = await aminegw("opcua", "browse", server.url, "--depth", "4")
        assert tree.returncode == 0, tree.stderr
        assert "Support001" in tree.stdout and "FrontLegPressure" in tree.stdout
        node = next(w for w in tree.stdout.split() if w.endswith("Support001.FrontLegPressure"))
        value = await aminegw("opcua", "read", server.url, node)
        assert value.returncode == 0, value.stderr
        assert "status Good" in value.stdout
    finally:
        await server.stop()
    cert = minegw("opcua", "cert", str(tmp_path / "pki"))
    assert cert.returncode == 0 and (tmp_path / "pki" / "minegw.der").is_file()
    assert_one_clean_error(minegw("opcua", "read", f"opc.tcp://127.0.0.1:{free_port()}", "ns=2;s=x"), "Connect")


def site_file(tmp_path, **mqtt) -> Path:
    site = yaml.safe_load(EXAMPLE.read_text())
    site["mqtt"] = {"host": "127.0.0.1", "port": free_port(), **mqtt}  # nobody listens there
    del site["historian"]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def test_host_and_port_options_override_the_site_file(mosquitto, tmp_path):
    path = str(site_file(tmp_path))
    broker = ["--host", mosquitto.host, "--port", str(mosquitto.port)]
    listed = minegw("alarm", "list", "-c", path, *broker, "--wait", "0.5")
    assert listed.returncode == 0, listed.stderr
    assert "0 alarm(s)" in listed.stdout
    # the broker took the command; no gateway answers on this test broker
    written = minegw("write", "belt-main-1", "run_command", "false", "--by", "tester", "-c", path, *broker,
                     "--timeout", "0.5")
    assert_one_clean_error(written, "no reply from gateway gateway-1 within 0.5 s")
    played = minegw("broadcast", "play", "evacuation", "-z", "face-1201", "--by", "tester", "-c", path, *broker,
                    "--timeout", "0.5")
    assert_one_clean_error(played, "no reply from gateway gateway-1 within 0.5 s")
    assert_one_clean_error(minegw("alarm", "list", "-c", path, "--host", "127.0.0.1:1883"),
                           "--host: '127.0.0.1:1883' has a port in it")


async def test_modbus_read_checks_count_and_timeout_before_asking():
    async with raw_server(inputs=[regs(0, [0] * 8)]) as (host, port):
        base = ("modbus", "read", host, "0", "--port", str(port), "--table", "input_register")
        too_many = await aminegw(*base, "--type", "float64", "--count", "125")
        assert_one_clean_error(too_many, "--count 125 of float64 is 500 registers; one read takes at most 125: "
                                         "the largest --count for float64 is 31")
        for timeout in ("0", "-1"):
            assert_one_clean_error(await aminegw(*base, "--timeout", timeout), "must be more than 0 s")
        assert (await aminegw(*base, "--type", "float64", "--count", "2")).returncode == 0


