"""The shipped deploy/ files against real servers: bridge, uplink outage, ACLs, TLS, ingest workers.

Every broker here runs the Mosquitto config shipped in deploy/ (mosquitto.conf, acl,
bridge.conf, …) and InfluxDB runs deploy/surface/influxdb.conf. Only addresses, ports, file
paths, the bridge's password and its reconnect delay are replaced (``render``; a key the
shipped file no longer has fails the test), so these tests prove the shipped files, not
copies of them. The TLS certificates come from a CA made here with openssl.
"""
from __future__ import annotations

import asyncio
import getpass
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import load_site
from gateway.core.errors import UserError
from gateway.surface.ingest import Converter, IngestWorker, Refused, load_ingest
from gateway.contract import data_payload
from gateway.core.model import Quality, Reading, Sample
from gateway.systemd import notify_systemd
from tests.conftest import Influx, Mosquitto
from tests.mqtt_util import TcpProxy
from tests.util import free_port, until

REPO = Path(__file__).resolve().parent.parent
UNDERGROUND, SURFACE = REPO / "deploy" / "underground", REPO / "deploy" / "surface"
T0 = datetime(2025, 3, 14, 6, 0, tzinfo=timezone.utc)
GW_1201, GW_1203 = "demo-mine.gw-1201", "demo-mine.gw-1203"
BRIDGE_STATE = "minegw/demo-mine/bridge/district-2"  # bridge.conf's notification_topic
OPERATOR = "zhang.wei"  # an operator of the shipped site files: sends commands, reads its own replies


# ---- the shipped files, made to run on loopback ---------------------------------------------

def render(path: Path, replace: dict[str, str | None]) -> str:
    """The shipped file, every line whose setting is a key of ``replace`` ("certfile", or
    "listener 8883" for one of several) replaced by its value (None: left out)."""
    out, used = [], set()
    for line in path.read_text().splitlines():
        setting = line.strip()
        key = next((k for k in replace if not setting.startswith("#")
                    and (setting == k or setting.startswith(k + " "))), None)
        if key is None:
            out.append(line)
            continue
        used.add(key)
        if replace[key] is not None:
            out.append(replace[key])
    missing = set(replace) - used
    assert not missing, f"{path} has no {sorted(missing)}: the test must follow the shipped file"
    return "\n".join(out) + "\n"


def setting(path: Path, name: str) -> str:
    return next(line.split(None, 1)[1] for line in path.read_text().splitlines() if line.startswith(name + " "))


def acl_users(path: Path) -> list[str]:
    return [line.split()[1] for line in path.read_text().splitlines() if line.startswith("user ")]


def password(user: str) -> str:
    return f"pw-{user}"


BRIDGE_USER = setting(UNDERGROUND / "bridge.conf", "remote_username")
BRIDGE_CLIENT_ID = setting(UNDERGROUND / "bridge.conf", "remote_clientid")


def write_passwd(path: Path, users: list[str]) -> None:
    binary = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.access(binary, os.X_OK):
        pytest.skip("mosquitto_passwd is not installed (package mosquitto)")
    path.touch()
    for user in users:
        subprocess.run([binary, "-b", str(path), user, password(user)], check=True, capture_output=True)


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_crt: Path
    server_key: Path
    wrong_ca: Path  # a CA that signed nothing of ours


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    """A test CA, a server certificate for 127.0.0.1/localhost signed by it, and an unrelated CA."""
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("certs")

    def run(*args) -> None:
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True)

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for name in ("ca", "wrong-ca"):
        run("req", "-x509", *key, "-days", "2", "-keyout", d / f"{name}.key", "-out", d / f"{name}.crt",
            "-subj", f"/CN=minegw test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *key, "-keyout", d / "server.key", "-out", d / "server.csr", "-subj", "/CN=localhost")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", d / "server.csr", "-CA", d / "ca.crt", "-CAkey", d / "ca.key", "-CAcreateserial",
        "-days", "2", "-out", d / "server.crt", "-extfile", d / "server.ext")
    return Certs(d / "ca.crt", d / "server.crt", d / "server.key", d / "wrong-ca.crt")


class ShippedBroker(Mosquitto):
    """Mosquitto running a shipped config: ``port`` is its loopback listener, ``tls_port`` its TLS one."""

    def __init__(self, workdir: Path, conf: Callable[["ShippedBroker"], str]):
        super().__init__(workdir, persistence=True)
        self.tls_port = free_port(self.host)
        self.cert_port = free_port(self.host)  # the surface's listener for operators' client certificates
        self.conf_d = workdir / "conf.d"
        self.conf_d.mkdir()
        self._conf = conf

    def _take_fresh_ports(self) -> None:
        super()._take_fresh_ports()
        self.tls_port, self.cert_port = free_port(self.host), free_port(self.host)

    def _write_conf(self) -> None:
        # as root, mosquitto would switch to user "mosquitto" and lose our files; log everything
        self.conf.write_text(f"user {getpass.getuser()}\nlog_type all\n" + self._conf(self))


def underground_conf(certs: Certs, uplink_port: int) -> Callable[[ShippedBroker], str]:
    def conf(b: ShippedBroker) -> str:
        write_passwd(b.workdir / "passwd", acl_users(UNDERGROUND / "acl"))
        (b.conf_d / "bridge.conf").write_text(render(UNDERGROUND / "bridge.conf", {
            "address": f"address 127.0.0.1:{uplink_port}",
            "remote_password": f"remote_password {password(BRIDGE_USER)}",
            "bridge_cafile": f"bridge_cafile {certs.ca}",
            "restart_timeout": "restart_timeout 1",  # the test cannot wait 5-60 s
        }))
        return render(UNDERGROUND / "mosquitto.conf", {
            "listener 1883": f"listener {b.port} 127.0.0.1",
            "listener 8883": f"listener {b.tls_port} 127.0.0.1",
            "certfile": f"certfile {certs.server_crt}",
            "keyfile": f"keyfile {certs.server_key}",
            "password_file": f"password_file {b.workdir / 'passwd'}",
            "acl_file": f"acl_file {UNDERGROUND / 'acl'}",
            "persistence_location": f"persistence_location {b.workdir}/",
            "log_dest": f"log_dest file {b.log}",
            "include_dir": f"include_dir {b.conf_d}",
        })
    return conf


def surface_conf(certs: Certs) -> Callable[[ShippedBroker], str]:
    def conf(b: ShippedBroker) -> str:
        write_passwd(b.workdir / "passwd", acl_users(SURFACE / "acl"))
        (b.conf_d / "local.conf").write_text(render(SURFACE / "mosquitto.local.conf", {
            "persistence_location": f"persistence_location {b.workdir}/",
            "listener 1883": f"listener {b.port} 127.0.0.1",
        }))
        return render(SURFACE / "mosquitto.conf", {
            "listener 8883": f"listener {b.tls_port} 127.0.0.1",
            "listener 8884": f"listener {b.cert_port} 127.0.0.1",
            "cafile": f"cafile {certs.ca}",
            "certfile": f"certfile {certs.server_crt}",
            "keyfile": f"keyfile {certs.server_key}",
            "password_file": f"password_file {b.workdir / 'passwd'}",
            "acl_file": f"acl_file {SURFACE / 'acl'}",
            "log_dest": f"log_dest file {b.log}",
            "include_dir": f"include_dir {b.conf_d}",
        })
    return conf


class Uplink(TcpProxy):
    """The district's uplink to the surface: ``down()`` drops every connection and refuses new ones."""

    is_down = False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            try:
                if self.is_down:
                    raise ConnectionRefusedError("uplink down")
                upstream = socket.create_connection(self.target)
            except OSError:  # like a failed uplink: the bridge tries again later
                client.close()
                continue
            self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def down(self) -> None:
        self.is_down = True
        self.cut()

    def up(self) -> None:
        self.is_down = False


class Client:
    """A paho client logged in as one of the shipped ACLs' users; records what it receives and
    the reason code of every acknowledged publish."""

    def __init__(self, port: int, user: str | None, *, subscribe: tuple[str, ...] = (), protocol: int = paho.MQTTv5,
                 tls_ca: Path | None = None, cert: tuple[Path, Path] | None = None):
        """``cert``: a client certificate and its key (``user`` is then its CN, sent no password); ``user``
        None: no login (a test broker without ACLs)."""
        self.messages: list[paho.MQTTMessage] = []
        self.acks: dict[int, str] = {}
        self._cond = threading.Condition()
        self._connected, self._subscribed = threading.Event(), threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        if cert is None and user is not None:
            self.client.username_pw_set(user, password(user))
        if tls_ca:
            self.client.tls_set(ca_certs=str(tls_ca), certfile=cert and str(cert[0]), keyfile=cert and str(cert[1]))
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self._topics = subscribe
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._connected.wait(5):
            self.close()
            raise TimeoutError(f"{user}: no CONNACK")
        if subscribe and not self._subscribed.wait(5):
            self.close()
            raise TimeoutError(f"{user}: no SUBACK")

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if self._topics:
            client.subscribe([(t, 1) for t in self._topics])
        self._connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        with self._cond:
            self.acks[mid] = str(reason)
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> str:
        """Publish at QoS 1; the reason code of the broker's PUBACK ("Success", "Not authorized")."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self.wait_for(lambda: info.mid in self.acks)
        return self.acks[info.mid]

    def publish_all(self, items: list[tuple[str, bytes]]) -> list[str]:
        mids = [self.client.publish(topic, payload, qos=1).mid for topic, payload in items]
        self.wait_for(lambda: all(mid in self.acks for mid in mids), timeout=20)
        return [self.acks[mid] for mid in mids]

    def on(self, topic: str) -> list[bytes]:
        with self._cond:
            return [m.payload for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[], object], timeout: float = 10.0) -> object:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (result := predicate()):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"timed out; {len(self.messages)} messages, last {[m.topic for m in self.messages[-5:]]}"
                self._cond.wait(remaining)
            return result

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def data(device: str, seq: int, area: str = "face-1201", kind: str = "shearer") -> tuple[str, bytes]:
    """A data message of the contract, numbered by its ``seq`` field (and timestamp)."""
    ts = T0 + timedelta(milliseconds=seq)
    reading = Reading(device=device, ts=ts, poll_ms=12.5, samples=[
        Sample(signal="seq", value=seq, ts=ts),
        Sample(signal="left_cutting_current", value=182.4, unit="A", ts=ts),
        Sample(signal="methane", value=None, unit="%CH4", quality=Quality.COMM_FAIL, ts=ts)])
    return f"minegw/demo-mine/{area}/{device}/data", data_payload("demo-mine", area, area, kind, reading)


def seqs(payloads: list[bytes]) -> list[int]:
    return [int(re.search(rb'"seq":\{"value":(\d+)', p)[1]) for p in payloads]


@dataclass
class District:
    underground: ShippedBroker
    surface: ShippedBroker
    uplink: Uplink


@pytest.fixture
def district(tmp_path, certs):
    """An underground broker bridged over TLS, through a cuttable uplink, to a surface broker."""
    for d in ("surface", "underground"):
        (tmp_path / d).mkdir()
    surface = ShippedBroker(tmp_path / "surface", surface_conf(certs))
    surface.start()
    uplink = Uplink("127.0.0.1", surface.tls_port)
    underground = ShippedBroker(tmp_path / "underground", underground_conf(certs, uplink.port))
    underground.start()
    try:
        watch = Client(surface.port, "integration-scada", subscribe=(BRIDGE_STATE,))
        watch.wait_for(lambda: watch.on(BRIDGE_STATE)[-1:] == [b"1"])  # the bridge is up
        watch.close()
        yield District(underground, surface, uplink)
    finally:
        underground.stop()
        uplink.close()
        surface.stop()


# ---- bridge and uplink ------------------------------------------------------------------------

def test_bridge_carries_data_up_and_commands_down(district):
    """Everything a gateway publishes goes up once (retained stays retained), commands come down,
    and a gateway's reply to a command goes up without coming back."""
    surface_reader = Client(district.surface.port, "integration-scada", subscribe=("minegw/#",))
    gateway = Client(district.underground.port, GW_1201, subscribe=("minegw/demo-mine/command/#",
                                                                    "minegw/demo-mine/+/+/command/#"))
    local = Client(district.underground.port, "integration-district-2", subscribe=("minegw/demo-mine/#",))
    dispatch = Client(district.surface.port, OPERATOR, subscribe=(f"minegw/demo-mine/gateway/+/reply/{OPERATOR}/#",))
    gw_ring = Client(district.underground.port, GW_1203)  # the gateway with the district's ring
    try:
        topic, payload = data("shearer-1201", 1)
        up = {topic: (payload, False),
              "minegw/demo-mine/face-1201/shearer-1201/schema": (b'{"schemas": {}}', True),  # compact payload
              "minegw/demo-mine/face-1201/shearer-1201/state": (b'{"status": "online"}', True),
              "minegw/demo-mine/face-1201/shearer-1201/alarm/shearer-ch4": (b'{"state": "active_unack"}', True),
              "minegw/demo-mine/face-1201/camera-1201/inventory": (b'{"online": true}', True),
              "minegw/demo-mine/gateway/gw-1201/status": (b'{"status": "online"}', True),
              "minegw/demo-mine/gateway/gw-1201/alarm/mqtt-dropping": (b'{"active": true}', True),
              "minegw/demo-mine/network/ring/ring-1": (b'{"state": "open"}', True),
              "minegw/demo-mine/network/ring-1/alarm/net.ring-1.open": (b'{"state": "active_unack"}', True),
              f"minegw/demo-mine/gateway/gw-1201/reply/{OPERATOR}/7f3a": (b'{"request_id": "7f3a", "ok": true}', False)}
        for t, (p, retain) in up.items():
            assert (gw_ring if "/network/" in t else gateway).publish(t, p, retain=retain) == "Success", t
        surface_reader.wait_for(lambda: all(surface_reader.on(t) for t in up if "/reply/" not in t))
        dispatch.wait_for(lambda: dispatch.messages)
        time.sleep(0.3)  # anything doubled or echoed would arrive by now
        replies = {t for t in up if "/reply/" in t}
        for t, (p, _) in up.items():
            reader = dispatch if t in replies else surface_reader  # replies: the requester's only
            assert reader.on(t) == [p], t  # once each
            assert local.on(t) == ([] if t in replies else [p]), t
        late = Client(district.surface.port, "integration-scada", subscribe=("minegw/demo-mine/+/+/state",))
        late.wait_for(lambda: late.messages and late.messages[0].retain)  # retained on the surface too
        late.close()

        for command in ("minegw/demo-mine/command/write", "minegw/demo-mine/command/alarm/ack",
                        "minegw/demo-mine/face-1201/shearer-1201/command/stop"):
            assert dispatch.publish(command, b'{"by": "test"}') == "Success"
            gateway.wait_for(lambda: gateway.on(command) == [b'{"by": "test"}'])
    finally:
        for c in (surface_reader, gateway, local, dispatch, gw_ring):
            c.close()


def test_uplink_cut_and_restored_loses_nothing_published_at_qos1(district):
    """300 messages published while the uplink is down, with the district broker restarted meanwhile:
    every one reaches the surface when the uplink returns, oldest first."""
    surface_reader = Client(district.surface.port, "integration-scada",
                            subscribe=("minegw/demo-mine/+/+/data", BRIDGE_STATE))
    gateway = Client(district.underground.port, GW_1201)
    local = Client(district.underground.port, "integration-district-2", subscribe=(BRIDGE_STATE,))
    try:
        assert set(gateway.publish_all([data("shearer-1201", i) for i in range(50)])) == {"Success"}
        surface_reader.wait_for(lambda: len(surface_reader.messages) >= 51)

        district.uplink.down()
        local.wait_for(lambda: local.on(BRIDGE_STATE)[-1:] == [b"0"])  # the district sees its uplink down
        surface_reader.wait_for(lambda: surface_reader.on(BRIDGE_STATE)[-1:] == [b"0"])  # the last will
        assert set(gateway.publish_all([data("shearer-1201", i) for i in range(50, 350)])) == {"Success"}
        district.underground.restart()  # the bridge's queue is in the broker's persistent session
        time.sleep(0.5)  # a failed reconnection attempt or two
        district.uplink.up()

        topic = "minegw/demo-mine/face-1201/shearer-1201/data"
        surface_reader.wait_for(lambda: set(seqs(surface_reader.on(topic))) == set(range(350)), timeout=20)
        arrived = seqs(surface_reader.on(topic))
        first_arrival = list(dict.fromkeys(arrived))
        assert first_arrival == list(range(350))  # oldest first
        assert len(arrived) - 350 <= 100  # QoS 1: at most what was in flight when the link went comes twice
    finally:
        for c in (surface_reader, gateway, local):
            c.close()


# ---- ACLs -------------------------------------------------------------------------------------

def test_acl_refuses_a_gateway_outside_its_site_or_sending_commands(district):
    """MQTT 5: Mosquitto 2.0 answers a refused QoS 1 publish with reason code 0x87 Not authorized.
    MQTT 3.1.1 has no such code: the broker acknowledges and drops the message."""
    port = district.underground.port
    reader = Client(port, "integration-district-2", subscribe=("minegw/demo-mine/#",))
    v5 = Client(port, GW_1201)
    v311 = Client(port, GW_1201, protocol=paho.MQTTv311)
    try:
        refused = ["minegw/other-mine/face-1/shearer-1/data",  # another site
                   f"minegw/other-mine/gateway/gw-1201/reply/{OPERATOR}/1",
                   "minegw/demo-mine/command/write",  # commands: dispatch only
                   "minegw/demo-mine/command/alarm/ack",
                   "minegw/demo-mine/face-1201/shearer-1201/command/stop",
                   "minegw/demo-mine/command/x/data",  # area "command" would be a command
                   "minegw/demo-mine/gateway/gw-1203/status",  # another gateway's status
                   "minegw/demo-mine/gateway/gw-1203/data",  # area "gateway" is reserved
                   "minegw/demo-mine/heading-1203/roadheader-1203/data",  # another gateway's area
                   "minegw/demo-mine/gateway/gw-1201/reply/7f3a",  # a reply outside an operator's namespace
                   "minegw/demo-mine/gateway/gw-1201/reply/mallory/7f3a",  # ... or for no operator of the site
                   f"minegw/demo-mine/gateway/gw-1203/reply/{OPERATOR}/7f3a",  # ... or as another gateway
                   f"minegw/demo-mine/command/reply/{OPERATOR}/7f3a"]  # ... or where every gateway answered once
        for topic in refused:
            assert v5.publish(topic, b"{}") == "Not authorized", topic
            assert v311.publish(topic, b"{}") == "Success", topic  # acknowledged ...
        own = ["minegw/demo-mine/face-1201/shearer-1201/data", "minegw/demo-mine/gateway/gw-1201/health",
               "minegw/demo-mine/face-1201/shearer-1201/alarm/ch4", f"minegw/demo-mine/gateway/gw-1201/reply/{OPERATOR}/7f3a"]
        for topic in own:
            assert v5.publish(topic, b"{}") == "Success"
        marker = "minegw/demo-mine/face-1201/afc-1201/data"
        assert v311.publish(marker, b"marker") == "Success"
        reader.wait_for(lambda: reader.on(marker))
        readable = {t for t in own if "/reply/" not in t}  # the integration reads no reply
        assert {m.topic for m in reader.messages} - {BRIDGE_STATE} == {*readable, marker}  # ... and dropped
        assert "Denied PUBLISH from" in district.underground.log.read_text()
    finally:
        for c in (reader, v5, v311):
            c.close()


def test_acl_lets_only_dispatch_send_commands(district):
    port = district.surface.port
    bridge_side = Client(port, BRIDGE_USER, subscribe=("minegw/+/command/#", "minegw/+/+/+/command/#"))
    integration = Client(port, "integration-scada")
    ingest = Client(port, "minegw-ingest")
    dispatch = Client(port, OPERATOR)
    underground_integration = Client(district.underground.port, "integration-district-2")
    try:
        commands = ["minegw/demo-mine/command/write", "minegw/demo-mine/command/alarm/ack",
                    "minegw/demo-mine/face-1201/shearer-1201/command/stop"]
        for topic in commands:
            assert integration.publish(topic, b"{}") == "Not authorized"
            assert ingest.publish(topic, b"{}") == "Not authorized"
            assert underground_integration.publish(topic, b"{}") == "Not authorized"
        for topic, payload in [data("shearer-1201", 1)]:  # integrations do not publish data either
            assert integration.publish(topic, payload) == "Not authorized"
            assert underground_integration.publish(topic, payload) == "Not authorized"
        for topic in commands:
            assert dispatch.publish(topic, b"{}") == "Success"
        bridge_side.wait_for(lambda: sorted(m.topic for m in bridge_side.messages) == sorted(commands))
    finally:
        for c in (bridge_side, integration, ingest, dispatch, underground_integration):
            c.close()


# ---- TLS --------------------------------------------------------------------------------------

def plain_mqtt_answered(port: int) -> bytes:
    """What a listener answers to a plain MQTT 3.1.1 CONNECT (a TLS listener: nothing, it hangs up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        try:
            return sock.recv(16)
        except ConnectionResetError:
            return b""


def test_tls_listener_takes_the_right_ca_and_refuses_a_wrong_one(district, certs):
    """Both brokers' TLS listeners: the test CA's server certificate verifies (host name included),
    a client trusting another CA refuses the connection, plain MQTT gets no answer."""
    cases = [(district.underground, GW_1201, "minegw/demo-mine/face-1201/shearer-1201/data"),
             (district.surface, OPERATOR, "minegw/demo-mine/command/write")]
    for broker, user, topic in cases:
        client = Client(broker.tls_port, user, tls_ca=certs.ca)
        try:
            assert client.publish(topic, b"{}") == "Success"
        finally:
            client.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            Client(broker.tls_port, user, tls_ca=certs.wrong_ca)
        assert plain_mqtt_answered(broker.tls_port) == b""
        assert plain_mqtt_answered(broker.port) == b"\x20\x02\x00\x05"  # loopback: CONNACK "not authorised"
    # the bridge crossed the uplink over TLS, verifying the surface's certificate (bridge_cafile)
    log = district.surface.log.read_text()
    bridge = re.search(rf"New bridge connected from 127\.0\.0\.1:(\d+) as {re.escape(BRIDGE_CLIENT_ID)}", log)
    assert f"New connection from 127.0.0.1:{bridge[1]} on port {district.surface.tls_port}." in log


# ---- ingest workers ---------------------------------------------------------------------------

WRITER = ("minegw", "writer-secret")


class ShippedInflux(Influx):
    """influxd running deploy/surface/influxdb.conf (auth on); the users and retention policy as
    docker-compose.yml creates them on first start."""

    def __init__(self, workdir: Path, certs: Certs):
        super().__init__(workdir, auth=True)
        self.certs = certs
        self.ssl_context = ssl.create_default_context(cafile=str(certs.ca))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _write_conf(self) -> None:
        self.conf.write_text(render(SURFACE / "influxdb.conf", {
            'bind-address = "127.0.0.1:8088"': f'bind-address = "127.0.0.1:{self.rpc_port}"',
            'dir = "/var/lib/influxdb/meta"': f'  dir = "{self.workdir}/meta"',
            'dir = "/var/lib/influxdb/data"': f'  dir = "{self.workdir}/data"',
            'wal-dir = "/var/lib/influxdb/wal"': f'  wal-dir = "{self.workdir}/wal"',
            'bind-address = "historian.dispatch.demo-mine.local:8086"': f'  bind-address = "{self.host}:{self.port}"',
            'https-certificate': f'  https-certificate = "{self.certs.server_crt}"',
            'https-private-key': f'  https-private-key = "{self.certs.server_key}"',
        }))

    def start(self, timeout: float = 10.0) -> None:
        super().start(timeout)
        if not (self.workdir / "data" / "minegw").exists():  # first start: what the image's init does
            self.query('CREATE DATABASE "minegw"')
            self.query((SURFACE / "influxdb-init" / "retention.iql").read_text())
            self.query(f"CREATE USER \"{WRITER[0]}\" WITH PASSWORD '{WRITER[1]}'")
            self.query(f'GRANT WRITE ON "minegw" TO "{WRITER[0]}"')


@pytest.fixture(scope="module")
def historian(tmp_path_factory, certs) -> ShippedInflux:
    server = ShippedInflux(tmp_path_factory.mktemp("influxdb"), certs)
    server.start()
    yield server
    server.stop()


def ingest_env(worker: int, mqtt_port: int, influx_url: str, state_dir: Path, ca: Path | None = None
               ) -> dict[str, str]:
    """What docker-compose.yml / minegw-ingest@.service give a worker."""
    return {**({"MINEGW_INFLUX_CA": str(ca)} if ca else {}),"MINEGW_INGEST_ID": str(worker), "MINEGW_MQTT_HOST": "127.0.0.1", "MINEGW_MQTT_PORT": str(mqtt_port),
            "MINEGW_MQTT_INGEST_PASSWORD": password("minegw-ingest"), "MINEGW_INFLUX_URL": influx_url,
            "MINEGW_INFLUX_WRITE_USER": WRITER[0], "MINEGW_INFLUX_WRITE_PASSWORD": WRITER[1],
            "MINEGW_STATE_DIR": str(state_dir)}


def worker_for(n: int, monkeypatch, district: District, influx: ShippedInflux, tmp_path: Path) -> IngestWorker:
    for name, value in ingest_env(n, district.surface.port, influx.url, tmp_path, influx.certs.ca).items():
        monkeypatch.setenv(name, value)
    return IngestWorker(load_ingest(SURFACE / "ingest.yaml"))


def counts(influx: Influx, measurement: str, field: str, devices: str) -> dict[str, int]:
    rows = influx.query(f'SELECT count("{field}") FROM "{measurement}" WHERE device =~ /^{devices}$/ '
                        f'GROUP BY device', "minegw")
    return {row["device"]: row["count"] for row in rows}


HOSTILE = [  # (device, payload) published by a gateway the ACL lets publish data for its site
    ("bad-json", b"not json {"),
    ("bad-schema", b'{"site": "demo-mine"}'),
    ("mismatch", data("someone-else", 1)[1]),
    ("reserved-kind", data("reserved-kind", 1, kind="gateway_health")[1]),
    ("newline", data("newline", 1)[1].replace(b'"left_cutting_current"', b'"a\\nb"')),
    ("huge-int", data("huge-int", 1)[1].replace(b'"seq":{"value":1,', b'"seq":{"value":1180591620717411303424,')),
    ("reserved-signal", data("reserved-signal", 1)[1].replace(b'"left_cutting_current"', b'"seq__quality"')),
    ("year-2300", data("year-2300", 1)[1].replace(b'"ts":"2025-03-14T06:00:00.001Z","poll_ms"',
                                                  b'"ts":"2300-01-01T00:00:00.000Z","poll_ms"')),
]


async def test_two_ingest_workers_split_the_stream_and_store_every_message_once(district, historian, tmp_path,
                                                                               monkeypatch):
    """Gateways underground → bridge → surface broker → two workers (shared subscription) → InfluxDB."""
    workers = [worker_for(n, monkeypatch, district, historian, tmp_path) for n in (1, 2)]
    for w in workers:
        await w.start()
    gw_a = Client(district.underground.port, GW_1201)
    gw_b = Client(district.underground.port, GW_1203)
    try:
        await until(lambda: all(w.subscribed.is_set() for w in workers), what="SUBACK")
        n = 200
        sent = await asyncio.gather(
            asyncio.to_thread(gw_a.publish_all, [data("shearer-a", i) for i in range(n)]),
            asyncio.to_thread(gw_b.publish_all, [data("roadheader-b", i, area="heading-1203", kind="roadheader")
                                                 for i in range(n)]),
            asyncio.to_thread(gw_a.publish_all, [(f"minegw/demo-mine/face-1201/{dev}/data", payload)
                                                 for dev, payload in HOSTILE]))
        assert {r for batch in sent for r in batch} == {"Success"}
        state = ('{"site":"demo-mine","area":"face-1201","device":"shearer-a","status":"online","reason":"polling",'
                 '"since":"2025-03-14T05:00:00.000Z","last_good_poll":"2025-03-14T06:00:00.000Z","polls":7,'
                 '"errors":0,"consecutive_errors":0,"exception_responses":0,"timeouts":0,"reconnects":0,'
                 '"last_poll_ms":12.5}')
        alarm = ('{"site":"demo-mine","gateway":"gw-1201","id":"mqtt-dropping","active":true,'
                 '"message":"mqtt: data dropped","count":3,"ts":"2025-03-14T06:00:01.000Z"}')
        assert gw_a.publish("minegw/demo-mine/face-1201/shearer-a/state", state.encode(), retain=True) == "Success"
        assert gw_a.publish("minegw/demo-mine/gateway/gw-1201/alarm/mqtt-dropping", alarm.encode(),
                            retain=True) == "Success"
        total = 2 * n + len(HOSTILE) + 2

        await until(lambda: sum(w.received for w in workers) >= total, what="all messages received")
        await until(lambda: counts(historian, "shearer", "seq", "shearer-a") == {"shearer-a": n}
                    and counts(historian, "roadheader", "seq", "roadheader-b") == {"roadheader-b": n}
                    and counts(historian, "device_state", "polls", "shearer-a") == {"shearer-a": 1},
                    what="every point in InfluxDB")
        assert historian.query('SELECT "count", "active" FROM "gateway_alarm" WHERE "gateway" = \'gw-1201\'',
                               "minegw")[0]["count"] == 3

        ups_and_downs = sum(len(historian.query(f'SELECT * FROM "{m}"', "minegw"))  # bridge and gateway status
                            for m in ("uplink_status", "gateway_status"))
        assert sum(w.received for w in workers) == total + ups_and_downs  # each message to one worker only ...
        assert all(w.received > total // 4 for w in workers)  # ... and both did their share
        refused = sum(w.health()["refused"] for w in workers)
        assert refused == len(HOSTILE)  # counted, not stored, and the workers went on
        hostile = "|".join(device for device, _ in HOSTILE)
        assert counts(historian, "shearer", "left_cutting_current", hostile) == {}
        # the points are the historian's schema: a good value in its field, comm-fail as __quality
        row = historian.query('SELECT * FROM "shearer" WHERE device = \'shearer-a\' LIMIT 1', "minegw")[0]
        assert row["left_cutting_current"] == 182.4 and row["methane__quality"] == "comm-fail"
        assert row["site"] == "demo-mine" and row["area"] == "face-1201"
    finally:
        gw_a.close()
        gw_b.close()
        for w in workers:
            await w.stop()
    rows = historian.query('SELECT last("received") FROM "gateway_health" GROUP BY "gateway"', "minegw")
    assert {r["gateway"] for r in rows} >= {"ingest-1", "ingest-2"}  # the workers' own health, written on stop


async def test_ingest_worker_killed_midway_loses_nothing(district, historian, tmp_path, monkeypatch):
    """A worker is killed (SIGKILL) while messages flow and comes back: its unacknowledged messages
    and its share queued meanwhile arrive; every message is in InfluxDB exactly once."""
    env = {**os.environ, **ingest_env(1, district.surface.port, historian.url, tmp_path, historian.certs.ca), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "gateway.surface.ingest", str(SURFACE / "ingest.yaml")]
    log = open(tmp_path / "worker-1.log", "ab")

    def spawn() -> subprocess.Popen:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def subacks() -> int:
        return district.surface.log.read_text().count("Sending SUBACK to minegw-ingest-ingest-1")

    processes: list[subprocess.Popen] = []
    other = worker_for(2, monkeypatch, district, historian, tmp_path)
    bridge = None
    try:
        processes.append(first := spawn())
        await other.start()
        bridge = Client(district.surface.port, BRIDGE_USER)  # what the bridge publishes on the surface
        await until(lambda: subacks() >= 1 and other.subscribed.is_set(), what="both workers subscribed")
        n = 600

        def publish() -> None:
            for i in range(n):
                bridge.client.publish(*data("afc-k", i, kind="face_conveyor"), qos=1)
                time.sleep(0.003)

        publisher = asyncio.create_task(asyncio.to_thread(publish))
        await until(lambda: other.received >= 100, what="messages flowing")
        first.send_signal(signal.SIGKILL)
        first.wait()
        await asyncio.sleep(0.3)
        processes.append(second := spawn())
        await publisher
        await until(lambda: counts(historian, "face_conveyor", "seq", "afc-k") == {"afc-k": n}, timeout=30,
                    what=f"{n} points; {counts(historian, 'face_conveyor', 'seq', 'afc-k')}")
        assert subacks() >= 2  # the restarted worker came back (same id, same session)
        rows = historian.query('SELECT "seq" FROM "face_conveyor" WHERE device = \'afc-k\'', "minegw")
        assert sorted(r["seq"] for r in rows) == list(range(n))
        second.send_signal(signal.SIGTERM)  # the clean stop: unsubscribe, drain, end the session
        assert second.wait(30) == 0
    finally:
        if bridge is not None:
            bridge.close()
        await other.stop()
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
        log.close()


def test_converter_refuses_what_the_historian_must_not_take():
    convert = Converter("minegw", max_payload=4096).convert
    topic, payload = data("shearer-1201", 7)
    (ts, line), = convert(topic, payload)
    assert line.startswith("shearer,site=demo-mine,area=face-1201,device=shearer-1201 seq=7i,")
    assert ts == (T0 + timedelta(milliseconds=7)).timestamp()
    for device, hostile in HOSTILE:
        with pytest.raises(Refused):
            convert(f"minegw/demo-mine/face-1201/{device}/data", hostile)
    for bad_topic in ("other/demo-mine/face-1201/shearer-1201/data", "minegw/demo-mine/gateway/gw-1/data",
                      "minegw/demo-mine/command/x/data", "minegw/demo-mine/face-1201/shearer-1201/status",
                      "minegw/demo-mine/bridge/district-2/x", "minegw/demo-mine/network/ring-1/data",
                      "minegw/demo-mine/network/ring/ring-1"):
        with pytest.raises(Refused, match="topic"):
            convert(bad_topic, payload)
    with pytest.raises(Refused, match="too-large"):
        convert(topic, b" " * 5000)
    with pytest.raises(Refused, match="invalid"):  # a bridge topic (uplink_status) takes only 0 or 1
        convert("minegw/demo-mine/bridge/district-2", payload)


def test_ingest_workers_cannot_share_a_buffer_file(tmp_path, monkeypatch, certs):
    for name, value in ingest_env(1, 1883, "http://127.0.0.1:8086", tmp_path, certs.ca).items():
        monkeypatch.setenv(name, value)
    one, same = (IngestWorker(load_ingest(SURFACE / "ingest.yaml")) for _ in range(2))
    one._lock_buffer()
    try:
        with pytest.raises(UserError, match="own historian.buffer.path"):
            same._lock_buffer()
    finally:
        one._unlock_buffer()


# ---- systemd ----------------------------------------------------------------------------------

@pytest.mark.parametrize("abstract", [False, True])
async def test_systemd_notifications_ready_watchdog_stopping(tmp_path, monkeypatch, abstract):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = f"\0minegw-test-{os.getpid()}" if abstract else str(tmp_path / "notify")
    sock.bind(address)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + address[1:] if abstract else address)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # WatchdogSec=0.1s: a ping every 50 ms
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    try:
        async with notify_systemd("12 devices"):
            await asyncio.sleep(0.3)
        got = []
        while not got or got[-1] != "STOPPING=1":
            got.append(sock.recv(1024).decode())
    finally:
        sock.close()
    assert got[0] == "READY=1\nSTATUS=12 devices"
    assert got.count("WATCHDOG=1") >= 4
    monkeypatch.setenv("WATCHDOG_PID", "1")  # the watchdog is someone else's: no pings
    from gateway.systemd import watchdog_interval
    assert watchdog_interval() is None


# ---- the files themselves ---------------------------------------------------------------------

def test_shipped_files_fit_together(tmp_path, monkeypatch):
    # the gateway's site file loads, and its MQTT user has an ACL block granting its gateway topics
    env = dict(line.split("=", 1) for line in (UNDERGROUND / "minegw.env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    site = load_site(UNDERGROUND / "site.yaml")  # with exactly the variables of minegw.env.example
    user = f"{site.site.id}.{site.site.gateway_id}"
    assert site.mqtt.username == user and user in acl_users(UNDERGROUND / "acl")
    assert f"topic write minegw/{site.site.id}/gateway/{site.site.gateway_id}/status" in (UNDERGROUND / "acl").read_text()
    # the bridge logs in with a user the surface ACL knows
    assert BRIDGE_USER in acl_users(SURFACE / "acl")
    # the ingest file loads as a worker would get it
    for name, value in ingest_env(3, 1883, "http://127.0.0.1:8086", tmp_path).items():
        monkeypatch.setenv(name, value)
    cfg = load_ingest(SURFACE / "ingest.yaml")
    assert cfg.ingest.id == "ingest-3" and cfg.historian.buffer.path == tmp_path / "ingest-3.sqlite3"
    assert cfg.mqtt.username in acl_users(SURFACE / "acl")

    compose = yaml.safe_load((SURFACE / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"mosquitto", "influxdb", "grafana", "ingest-1", "ingest-2"} <= set(services)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(".") and not source.startswith(("./secrets/", "./certs")):  # made per site
                assert (SURFACE / source).exists(), f"{name}: {source} is not shipped"
    ids = [s["environment"]["MINEGW_INGEST_ID"] for n, s in services.items() if n.startswith("ingest-")]
    assert len(set(ids)) == len(ids), "every ingest worker needs its own MINEGW_INGEST_ID"
    env_example = {line.split("=")[0] for line in (SURFACE / "env.example").read_text().splitlines()
                   if "=" in line and not line.startswith("#")}
    text = (SURFACE / "docker-compose.yml").read_text()
    needed = set(re.findall(r"\$\{(\w+)(?::\?[^}]*)?\}", text)) | set(re.findall(r"\$\{(\w+):\?", text))
    assert needed <= env_example, f"not in env.example: {needed - env_example}"
    grafana_env = services["grafana"]["environment"]
    datasource = yaml.safe_load((SURFACE / "../grafana/provisioning/datasources/influxdb.yaml").read_text())
    for var in re.findall(r"\$\{(\w+)\}", (SURFACE / "../grafana/provisioning/datasources/influxdb.yaml").read_text()):
        assert var in grafana_env, f"grafana provisioning uses {var}, compose does not pass it"
    assert datasource["datasources"][0]["uid"] == "minegw-influxdb"
    provider = yaml.safe_load((SURFACE / "../grafana/provisioning/dashboards/minegw.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert any(v.endswith(":" + path + ":ro") for v in services["grafana"]["volumes"])

    analyze = shutil.which("systemd-analyze")
    if analyze:  # the units' keys and values, as systemd reads them
        for unit in (UNDERGROUND / "minegw.service", SURFACE / "minegw-ingest@.service"):
            copy = tmp_path / unit.name.replace("@.", "@1.")
            copy.write_text(unit.read_text().replace("/opt/minegw/bin/minegw", "/bin/true"))
            out = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True)
            problems = [l for l in out.stderr.splitlines() if "/bin/true" not in l and l.strip()]
            assert out.returncode == 0 and not problems, problems
