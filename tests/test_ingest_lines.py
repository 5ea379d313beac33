"""Issue 22: ingest takes the gateways' historian lines (``{prefix}/{site}/gateway/{gw}/historian``), each line
checked against what its gateway may write (``writers:``, from ``minegw deploy writers``).

Real Mosquitto (the session broker, MQTT 5, QoS 1 as a gateway publishes) and InfluxDB 1.x; each test has
its own topic prefix and database."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gateway.alarms import AlarmEvent
from gateway.commands import AuditEntry
from gateway.config import ConfigError
from gateway.core.model import GatewayAlarm, Quality, Reading, Sample
from gateway.historian import lineprotocol as lp
from gateway.surface.ingest import IngestWorker, parse_ingest
from gateway.surface.lines import GatewayLines, GatewayScope
from gateway.surface.writers import with_writers, writers_block
from tests.test_ingest_compact import full, publish
from tests.util import until

REPO = Path(__file__).resolve().parent.parent
SITES = [REPO / "deploy/underground/site.yaml", REPO / "deploy/underground/site-gw-1203.yaml"]
T0 = datetime(2025, 3, 14, 6, 0, tzinfo=UTC)
SITE = "demo-mine"
WRITERS = {SITE: {"gw-1201": {"areas": ["face-1201"], "rings": []},
                  "gw-1203": {"areas": ["heading-1203"], "rings": ["ring-1"]}}}


def topic(prefix: str, gateway: str = "gw-1201", site: str = SITE) -> str:
    return f"{prefix}/{site}/gateway/{gateway}/historian"


def reading_line(device: str, seq: int, area: str = "face-1201", site: str = SITE) -> str:
    ts = T0 + timedelta(milliseconds=seq)
    samples = [Sample(signal="seq", value=seq, unit="", quality=Quality.GOOD, ts=ts),
               Sample(signal="current", value=182.4, unit="A", quality=Quality.GOOD, ts=ts),
               Sample(signal="methane", value=None, unit="%CH4", quality=Quality.COMM_FAIL, ts=ts)]
    return lp.reading_lines(site, area, "shearer", Reading(device=device, ts=ts, poll_ms=12.5, samples=samples))[0]


def every_kind(seq: int = 0) -> list[str]:
    """One line of each measurement the gateway sink writes, as it writes them (gateway/historian/sink.py)."""
    ts = T0 + timedelta(seconds=seq)
    event = AlarmEvent(alarm="ch4-high", device="shearer-1201", signal="methane", area="face-1201", kind="high",
                       priority=1, state="active_unack", value=1.2, ts=ts, message='CH4 "high", 1.2 %\nat the face')
    audit = AuditEntry(request_id="r-1", device="shearer-1201", signal="speed", value=3, by="zhang.wei", reason=None,
                       source="mqtt", ok=True, error=None, ts=ts)
    return [reading_line("shearer-1201", seq),
            lp.point("device_state", {"site": SITE, "area": "face-1201", "device": "shearer-1201"},
                     {"status": "online", "reason": "polling, fine", "polls": 7}, ts),
            lp.alarm_event_line(SITE, event),
            lp.command_audit_line(SITE, "gw-1201", audit),
            lp.alarm_line(SITE, "gw-1201", GatewayAlarm(id="mqtt-dropping", active=True, message="m", count=3, ts=ts)),
            lp.gateway_status_line(SITE, "gw-1201", True, "started", ts),
            lp.gateway_heartbeat_line(SITE, "gw-1201", ts + timedelta(milliseconds=1)),
            lp.health_line(SITE, "gw-1201", {"buffered": 10, "connected": True, "depth": 0.0}, ts),
            lp.device_health_line(SITE, "face-1201", "shearer-1201", {"polls": 10, "failed_polls": 0}, ts)]


MEASUREMENTS = ("shearer", "device_state", "alarm_event", "command_audit", "gateway_alarm", "gateway_status",
                "gateway_health", "device_health")


def ingest_config(mosquitto, influxdb, tmp_path: Path, prefix: str, **ingest) -> dict:
    return {"ingest": {"id": prefix, "group": prefix, "session_expiry": 60, **ingest},
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "protocol": "5", "topic_prefix": prefix, "qos": 1},
            "historian": {"url": influxdb.url, "database": influxdb.create_database(prefix), "flush_interval": 0.1,
                          "buffer": {"path": str(tmp_path / f"{prefix}.sqlite3")}},
            "writers": WRITERS}


def stored(influxdb, db: str, measurement: str) -> list[dict]:
    """The points of ``measurement`` of the mine's sites (not the workers' own health, site ``surface``)."""
    rows = influxdb.query(f'SELECT * FROM "{measurement}" WHERE "site" != \'surface\'', db)
    return [{k: v for k, v in row.items() if v is not None} for row in rows]


# ---- the lines, checked (no server) ---------------------------------------------------------------

def test_each_line_is_checked_against_its_gateways_scope():
    lines = GatewayLines(SITE, "gw-1203", GatewayScope(areas=["heading-1203"], rings=["ring-1"]))
    good = [reading_line("rh-1", 1, area="heading-1203"),
            lp.gateway_status_line(SITE, "gw-1203", False, "stopped", T0),
            'network_ring,site=demo-mine,ring=ring-1 state="open",open_links="sw3 port 2 — sw4 port 1" 1',
            'belt\\,main\\ x,site=demo-mine,area=heading-1203,device=a\\ b\\=c v=1 2']  # escaped , space =
    bad = [(reading_line("sh-1", 1), "may not write area 'face-1201'"),
           (reading_line("rh-1", 1, area="heading-1203", site="other-mine"), "may not write site 'other-mine'"),
           (lp.gateway_status_line(SITE, "gw-1201", True, "x", T0), "may not write gateway 'gw-1201'"),
           ('network_ring,site=demo-mine,ring=ring-2 state="open" 1', "may not write ring 'ring-2'"),
           (lp.uplink_status_line(SITE, "district-2", True, T0), "may not write measurement 'uplink_status'"),
           ("shearer,site=demo-mine,device=x v=1 1", "naming none of its areas, its gateway id or its rings"),
           ("gateway_status,site=demo-mine,area=heading-1203 up=0i 1", "gateway_status line without its gateway tag"),
           ("x,area=heading-1203 v=1 1", "without a site tag"),
           ("x,site=demo-mine,area=heading-1203,area=face-1201 v=1 1", "tag 'area' twice"),
           ("x\\,area=face-1201,site=demo-mine,gateway=gw-1203 v=1 1", None),  # an escaped comma is no tag
           ("x,site=demo-mine,area=heading-1203 1", "not line protocol (no fields)"),
           ("x,site=demo-mine,area=heading-1203 v=1", "not line protocol (no timestamp)"),
           ("x,site=demo-mine,area=heading-1203 v=abc 1", "not line protocol (fields"),
           ("x,site=demo-mine,area=heading-1203 v=1 99999999999999999999", "timestamp: not integer nanoseconds"),
           ("x,site=demo-mine,area=heading-1203 v=1 9223372036854775807", "outside InfluxDB's range")]
    text = "\n".join(good + [line for line, _ in bad])
    checked = lines.check(text.encode() + b"\n\n# a comment\nx,site=demo-mine,area=heading-1203 v=\"\xd6\xd0\" 3\n")
    assert [line for _, line in checked.readings + checked.events] == [good[0], good[3], bad[9][0], good[1], good[2]]
    assert [ts for ts, _ in checked.readings[:1]] == [(T0 + timedelta(milliseconds=1)).timestamp()]
    refused = dict(checked.refused)
    expected = {len(good) + i + 1: why for i, (_, why) in enumerate(bad) if why}
    assert set(refused) == set(expected) | {len(good) + len(bad) + 3}
    for number, why in expected.items():
        assert why in refused[number], (number, refused[number])
    assert refused[len(good) + len(bad) + 3] == "sent a line that is not UTF-8"  # GBK bytes: that line only


def test_a_string_field_may_span_lines_and_line_numbers_count_them():
    lines = GatewayLines(SITE, "gw-1201", GatewayScope(areas=["face-1201"]))
    event = every_kind()[2]
    assert "\n" in event
    checked = lines.check("\n".join([event, reading_line("sh-1", 1, area="heading-1203")]).encode())
    assert [line for _, line in checked.events] == [event]
    assert checked.refused == [(3, "may not write area 'heading-1203'")]


def test_the_shipped_ingest_yaml_holds_what_minegw_deploy_writers_prints(tmp_path):
    shipped = (REPO / "deploy/surface/ingest.yaml").read_text()
    block = writers_block(SITES)
    assert block in shipped and with_writers(shipped, block) == shipped
    cfg = parse_ingest({"mqtt": {"protocol": "5"}, "historian": {}, "writers": yaml.safe_load(shipped)["writers"]})
    assert {gw: (s.areas, s.rings) for gw, s in cfg.writers[SITE].items()} == {
        "gw-1201": (["face-1201"], []), "gw-1203": (["heading-1203", "belt-main"], ["ring-1"])}
    # the command: prints the block; -o puts it into a file (replacing the old one), --check compares
    run = [sys.executable, "-m", "gateway.cli", "deploy", "writers", "-c", str(SITES[0]), "-c", str(SITES[1])]
    done = subprocess.run(run, capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout == block
    target = tmp_path / "ingest.yaml"
    target.write_text(shipped.replace("gw-1201: {areas: [face-1201]", "gw-1201: {areas: [face-1201, heading-1203]"))
    assert subprocess.run(run + ["-o", str(target), "--check"], capture_output=True, cwd=REPO,
                          check=False).returncode == 1
    subprocess.run(run + ["-o", str(target)], capture_output=True, cwd=REPO, check=True)
    assert target.read_text() == shipped


def test_writers_are_checked_where_they_are_wrong(tmp_path):
    base = {"mqtt": {"protocol": "5"}, "historian": {}}
    cases = [({"writers": {SITE: {"gw 1": {}}}}, "writers: gateway 'gw 1': not an id"),
             ({"writers": {SITE: {"gw-1": {"areas": ["a/b"]}}}}, "writers: area 'a/b': not an id"),
             ({"writers": {SITE: {"gw-1": {"zones": []}}}}, "writers.demo-mine.gw-1.zones"),
             ({"writers": {"surface": {"gw-1": {}}}}, "'surface' is ingest.site"),
             ({"ingest": {"sites": ["other"]}, "writers": {SITE: {"gw-1": {}}}}, "writers: demo-mine not in ing")]
    for extra, where in cases:
        with pytest.raises(ConfigError, match=where):
            parse_ingest({**base, **extra}, "ingest.yaml")
    site = tmp_path / "site.yaml"
    site.write_text(SITES[0].read_text().split("\nhistorian:")[0] + "\n")
    with pytest.raises(ConfigError, match="historian: this gateway keeps no historian buffer"):
        writers_block([site])
    with pytest.raises(ConfigError, match="site.gateway_id 'gw-1201' of site 'demo-mine' is also"):
        writers_block([SITES[0], SITES[0]])


# ---- through Mosquitto and InfluxDB -----------------------------------------------------------------

async def test_a_gateways_lines_land_in_influxdb_exactly_as_its_own_post_would(mosquitto, influxdb, tmp_path):
    prefix = "hl1"
    w = IngestWorker(parse_ingest(ingest_config(mosquitto, influxdb, tmp_path, prefix)))
    reference = influxdb.create_database("hl1ref")  # what the gateway's v1 writer would have stored
    lines = every_kind(0) + every_kind(1) + [reading_line("shearer-1201", i) for i in range(2, 300)]
    status, _ = influxdb.request("POST", "/write", {"db": reference, "precision": "ns"}, "\n".join(lines).encode())
    assert status == 204
    await w.start()
    try:
        await until(w.subscribed.is_set, what="SUBACK")
        publish(mosquitto.port, [(topic(prefix), "\n".join(lines[i:i + 50]).encode()) for i in range(0, 318, 50)])
        await until(lambda: len(stored(influxdb, prefix, "shearer")) == 300, what="every reading")
        await until(lambda: w.sink.written >= len(lines), what="every line")
    finally:
        await w.stop()
    for measurement in MEASUREMENTS:
        assert stored(influxdb, prefix, measurement) == stored(influxdb, reference, measurement), measurement
    assert "at the face" in stored(influxdb, prefix, "alarm_event")[0]["message"]  # a string over two lines
    health = w.health()
    assert health["historian_lines"] == len(lines) and health["refused_lines"] == 0 and health["refused"] == 0


async def test_lines_beyond_the_gateways_scope_are_refused_and_the_others_kept(mosquitto, influxdb, tmp_path, caplog):
    prefix = "hl2"
    w = IngestWorker(parse_ingest(ingest_config(mosquitto, influxdb, tmp_path, prefix)))
    caplog.set_level(logging.WARNING, "gateway.surface.ingest")
    good = [reading_line("shearer-1201", i) for i in range(5)]
    hostile = [reading_line("rh-1203", 1, area="heading-1203"),  # another gateway's area
               lp.gateway_status_line(SITE, "gw-1203", False, "stopped", T0),  # another gateway
               'network_ring,site=demo-mine,ring=ring-1 state="open" 1',  # another gateway's ring
               reading_line("shearer-1201", 1, site="other-mine"),  # another site
               lp.uplink_status_line(SITE, "district-2", False, T0),  # only ingest writes it
               "shearer,site=demo-mine,area=face-1201,device=shearer-1201 1741932000000000000"]  # no fields
    payload = "\n".join([good[0], good[1], *hostile, good[2]]).encode()
    payload += b"\n\x00\xff garbage\nshearer,site=demo-mine,area=face-1201,device=gbk-\xd6\xd0 v=1 1\n"
    payload += "\n".join(good[3:]).encode()
    await w.start()
    try:
        await until(w.subscribed.is_set, what="SUBACK")
        publish(mosquitto.port, [(topic(prefix), payload),
                                 (topic(prefix, "gw-9999"), good[0].replace("shearer-1201", "ghost").encode())])
        await until(lambda: w.health()["refused_lines"] == len(hostile) + 2 and w.refusals["writer"] == 1,
                    what="refused")
        await until(lambda: len(stored(influxdb, prefix, "shearer")) == 5, what="the good lines")
        await until(lambda: w.sink.unacknowledged == 0, what="acknowledged")
    finally:
        await w.stop()
    rows = stored(influxdb, prefix, "shearer")
    assert sorted(r["seq"] for r in rows) == list(range(5)) and {r["device"] for r in rows} == {"shearer-1201"}
    for measurement in ("gateway_status", "network_ring", "uplink_status"):
        assert stored(influxdb, prefix, measurement) == [], measurement
    assert (f"gateway gw-1201 may not write area 'heading-1203': line 3 of a message on {topic(prefix)}"
            in caplog.text)
    assert "gateway 'gw-9999' of site 'demo-mine' is not in writers" in caplog.text


async def test_lines_only_leaves_the_writers_data_topics_to_their_lines(mosquitto, influxdb, tmp_path):
    prefix = "hl3"
    cfg = ingest_config(mosquitto, influxdb, tmp_path, prefix, lines_only=True)
    cfg["writers"] = {"pit": {"gw-1": {"areas": ["face"]}}}
    w = IngestWorker(parse_ingest(cfg))
    await w.start()
    try:
        await until(w.subscribed.is_set, what="SUBACK")
        other_area = [(t.replace("/face/", "/face-2/"), p.replace(b'"area":"face"', b'"area":"face-2"'))
                      for t, p in (full(prefix, "sh-2", i) for i in range(3))]
        publish(mosquitto.port, [full(prefix, "sh-1", i) for i in range(3)] + other_area)
        await until(lambda: w.covered == 3 and len(stored(influxdb, prefix, "shearer")) == 3, what="stored")
        await until(lambda: w.sink.unacknowledged == 0, what="acknowledged")
    finally:
        await w.stop()
    assert {r["device"] for r in stored(influxdb, prefix, "shearer")} == {"sh-2"}  # sh-1 comes by its lines


TRACED = """\
import asyncio, logging, os, sys
from gateway.surface import ingest
logging.basicConfig(level=logging.INFO)
trace = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # unbuffered: a SIGKILL loses no line
on_message, acknowledge = ingest.IngestWorker._on_message, ingest.IngestWorker._acknowledge

def traced_message(self, *args):
    on_message(self, *args)
    os.write(trace, b"received\\n")

def traced_acknowledge(self, acks):
    acknowledge(self, acks)
    os.write(trace, b"acknowledged %d\\n" % len(acks))

ingest.IngestWorker._on_message, ingest.IngestWorker._acknowledge = traced_message, traced_acknowledge
asyncio.run(ingest.run_ingest(ingest.load_ingest(sys.argv[1])))
"""


async def test_ingest_killed_before_its_commit_loses_no_line(mosquitto, influxdb, tmp_path):
    """SIGKILL while a worker holds messages received and not committed (commits a second apart; the worker
    traces what it received and acknowledged): the broker re-sends them; every line is in InfluxDB once."""
    prefix = "hl4"
    cfg = ingest_config(mosquitto, influxdb, tmp_path, prefix)
    cfg["historian"]["buffer"]["commit_interval"] = 1.0
    path, trace = tmp_path / "ingest.yaml", tmp_path / "trace"
    path.write_text(yaml.safe_dump(cfg))
    (tmp_path / "traced.py").write_text(TRACED)
    trace.touch()

    def spawn(*command: str) -> subprocess.Popen:
        with open(tmp_path / "worker.log", "ab") as log:  # the child keeps its own descriptor
            return subprocess.Popen([sys.executable, *command], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHONPATH": str(REPO)})

    def count() -> int:
        rows = influxdb.query('SELECT count("seq") FROM "shearer"', prefix)
        return rows[0]["count"] if rows else 0

    def in_flight() -> tuple[int, int]:
        """(messages received, acknowledged) by the traced worker so far."""
        lines = trace.read_text().splitlines()
        return lines.count("received"), sum(int(line.split()[1]) for line in lines if line.startswith("ack"))

    n, per_message = 200, 10
    messages = [(topic(prefix), "\n".join(reading_line("shearer-1201", i * per_message + j)
                                           for j in range(per_message)).encode()) for i in range(n)]
    processes = [spawn(str(tmp_path / "traced.py"), str(path), str(trace))]
    stop = threading.Event()

    def publish_slowly() -> None:  # 50 messages/s for 4 s: some always arrive between two commits
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.connect("127.0.0.1", mosquitto.port)
        client.loop_start()
        try:
            for message in messages:
                if stop.wait(0.02):
                    break
                client.publish(*message, qos=1)
            client.publish(*messages[-1], qos=1).wait_for_publish(10)  # the last one again: all are out
        finally:
            client.disconnect()
            client.loop_stop()

    try:
        await until(lambda: "connected" in (tmp_path / "worker.log").read_text(), what="connected")
        await asyncio.sleep(1.0)  # its SUBACK: from here on its session keeps its messages
        publisher = threading.Thread(target=publish_slowly)
        publisher.start()
        await until(lambda: 0 < in_flight()[1] < in_flight()[0], timeout=60,
                    what=f"messages in flight after a commit: (received, acknowledged) {in_flight()}")
        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait()
        received, acknowledged = in_flight()
        assert received > acknowledged  # killed holding messages it had not committed
        await asyncio.to_thread(publisher.join)  # the rest while it is down: its session keeps them
        processes.append(spawn("-m", "gateway.surface.ingest", str(path)))
        await until(lambda: count() == n * per_message, timeout=60, what=f"every line, {count()}")
        assert "connected (session resumed)" in (tmp_path / "worker.log").read_text()
        processes[1].send_signal(signal.SIGTERM)
        assert processes[1].wait(30) == 0
    finally:
        stop.set()
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    seqs = [r["seq"] for r in influxdb.query('SELECT "seq" FROM "shearer"', prefix)]
    assert sorted(seqs) == list(range(n * per_message))
