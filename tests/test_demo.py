"""`minegw demo`, run as a user would: the whole demo mine, its broker, the story and the summary."""
import json
import os
import shlex
import signal
import socket
import subprocess
import sys

import pytest

from gateway import signing
from gateway.config import MqttConfig
from gateway.core.errors import UserError
from gateway.demo import site as demo_site
from gateway.demo.run import PORT_TRIES, DemoOptions, start_simulators
from tests.test_cli import ROOT, assert_one_clean_error, minegw

ALL_KINDS = {"shearer", "face_conveyor", "roof_pressure", "roadheader", "belt_conveyor", "camera", "broadcast_node",
             "network_switch", "ups"}


def test_headless_demo_plays_the_story_and_sums_it_up(tmp_path):
    summary_file = tmp_path / "summary.json"
    result = minegw("demo", "--headless", "--seconds", "60", "--story-at", "5", "--summary-json", str(summary_file),
                    timeout=150)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    summary = json.loads(summary_file.read_text())
    assert set(summary["online"]) == ALL_KINDS
    assert all(up == total for up, total in summary["online"].values()), summary["online"]
    assert summary["online"]["roof_pressure"] == [1, 1] and summary["online"]["camera"] == [3, 3]
    assert summary["messages"] > 500 and summary["by_topic"]["linkage"] >= 1
    alarms = {a["alarm"]: a for a in summary["alarms"]}
    for alarm in ("shearer-ch4", "belt-1-slip", "cam-belt-transfer-link"):  # raised, cleared, acknowledged
        assert alarms[alarm]["raised"] == 1 and alarms[alarm]["cleared"] == 1, alarms[alarm]
        assert alarms[alarm]["acked_by"] == "demo-operator" and alarms[alarm]["state"] == "normal"
    assert not [a for a in summary["alarms"] if a["state"] != "normal"]
    link = next(x for x in summary["linkages"] if x["alarm"] == "shearer-ch4")
    assert link["ok"] and link["message"] == "evacuation" and set(link["zones"]) == {"face-1201", "escape-main"}
    assert set(link["nodes"]) == {"bn-1201-1", "bn-1201-2", "bn-escape-1"}
    assert all(ms is not None for ms in link["nodes"].values())
    assert 0 < link["trigger_to_confirmed_ms"] < 10_000
    assert "no InfluxDB" in summary["historian"] and "buffered" in summary["historian"]
    assert any("the story is over" in line for line in summary["story"])
    out = result.stdout  # the same facts, printed
    assert "broker mosquitto (MQTT 5)" in out
    assert "devices online: belt_conveyor 2/2, broadcast_node 5/5, camera 3/3" in out
    assert "linkage shearer-ch4: evacuation in face-1201, escape-main: trigger → all confirmed" in out
    assert "alarms raised: 3, cleared: 3, acknowledged: 3, still active: 0" in out


def test_demo_on_amqtt_writes_the_historian_to_influxdb(influxdb, tmp_path):
    result = minegw("demo", "--headless", "--seconds", "20", "--no-story", "--embedded", "amqtt", "--influx",
                    influxdb.url, "--state-dir", str(tmp_path / "state"), "--summary-json", str(tmp_path / "s.json"),
                    timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["broker"].startswith("amqtt (MQTT 3.1.1)")
    assert all(up == total for up, total in summary["online"].values()), summary["online"]
    assert summary["alarms"] == [] and summary["linkages"] == [] and summary["story"] == []
    assert f"written to {influxdb.url}" in summary["historian"]
    rows = influxdb.query('SELECT count("speed") FROM "belt_conveyor"', "minegw_demo")
    assert rows and rows[0]["count"] > 10, rows
    assert (tmp_path / "state" / "historian.sqlite3").exists()  # kept: --state-dir


def test_demo_hint_works_broker_log_stays_out_and_ctrl_c_prints_the_summary():
    # Ctrl-C as from a terminal, even when the suite runs as a background job (whose children ignore SIGINT)
    demo = subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--headless", "--embedded", "amqtt"],
                            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=os.environ | {"COLUMNS": "250", "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = demo.stdout.readline()
        hint = shlex.split(first.split("watch it: ", 1)[1])  # as a shell would pass it
        assert hint[:3] == ["minegw", "mqtt", "tail"], first
        args = hint[1:]
        tailed = minegw(*args, "--count", "3", "--timeout", "20")
        assert tailed.returncode == 0, tailed.stderr
        assert "minegw/demo-mine/" in tailed.stdout
        port = args[args.index("--port") + 1]
        refused = minegw("mqtt", "tail", "--port", port, "--protocol", "5", "--timeout", "5")
        assert_one_clean_error(refused, "Unsupported protocol version")  # amqtt speaks 3.1.1 only
    finally:
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=30)
    assert demo.returncode == 0, err
    assert err == "", err  # no broker log, no "received pdu without a corresponding request"
    assert "devices online:" in out and "messages received:" in out


def test_shearer_gas_fault_raises_methane_at_its_rate_and_lets_it_fall_back():
    from simulators.modbus.machines.shearer import ShearerModel

    model = ShearerModel(seed=3)
    background = model.values(5.0)["methane"]
    assert background < 0.5
    model.set_fault("gas", t=5.0, level=1.3, rate=0.1)
    assert 0.4 < model.values(10.0)["methane"] < 0.7  # 5 s at 0.1 %/s
    assert abs(model.values(25.0)["methane"] - 1.3) < 0.01  # the level reached, held
    model.clear_fault("gas", t=25.0)
    assert model.values(45.0)["methane"] < 0.5  # back to the background


@pytest.mark.parametrize("races", [1, PORT_TRIES])
async def test_the_demo_takes_other_ports_when_one_is_taken_before_its_simulator_binds_it(tmp_path, races):
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # another program's, bound after the demo looked
    taken.bind((demo_site.HOST, 0))
    taken_port = taken.getsockname()[1]
    public = signing.public_text(signing.new_private_key())
    attempts = []

    def site_on_free_ports():
        attempts.append(len(attempts) + 1)
        site = demo_site.demo_site(MqttConfig(), tmp_path, public)
        if len(attempts) <= races:  # the race lost: a port the demo found free is taken by now
            site.devices[-1].port = taken_port
        return site

    with taken:
        if races == PORT_TRIES:
            with pytest.raises(UserError, match=f"{PORT_TRIES} sets of ports tried.*ups-1: cannot listen on udp"):
                await start_simulators(DemoOptions(), tmp_path, site_on_free_ports)
            assert attempts == [1, 2, 3]
            return
        site, sims = await start_simulators(DemoOptions(), tmp_path, site_on_free_ports)
        try:
            assert attempts == [1, 2] and site.devices[-1].port != taken_port
            assert all(server.listening for server in sims.servers)
        finally:
            await sims.stop()
