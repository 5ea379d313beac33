"""Issue 22: the shipped deploy/ files against real Mosquitto and InfluxDB (fixtures of test_deploy):
no plain-text credentials, no account that can speak for another. Grafana and InfluxDB 2.x cannot
run here: tests over the shipped files stand in for them (docs/deploy.md, "Security")."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.request

import pytest
import yaml

from gateway.aclgen import generate_acl
from gateway.config import HistorianConfig
from gateway.historian.errors import HistorianError
from gateway.historian.influx import InfluxV1Writer, InfluxV2Writer
from tests.test_deploy import (BRIDGE_USER, GW_1201, GW_1203, OPERATOR, SURFACE, UNDERGROUND, Client,  # noqa: F401
                               ShippedInflux, certs, district)  # certs, district: fixtures

SITES = [UNDERGROUND / "site.yaml", UNDERGROUND / "site-gw-1203.yaml"]


def test_minegw_deploy_acl_reproduces_the_shipped_acls():
    assert generate_acl("underground", SITES) == (UNDERGROUND / "acl").read_text()
    assert generate_acl("surface", SITES) == (SURFACE / "acl").read_text()


def test_a_gateway_cannot_fake_or_clear_another_gateways_alarms(district):  # noqa: F811
    gw = Client(district.underground.port, GW_1201)
    try:
        for topic in ("minegw/demo-mine/heading-1203/roadheader-1203/alarm/ch4",
                      "minegw/demo-mine/gateway/gw-1203/alarm/offline", "minegw/demo-mine/network/ring-1/alarm/open"):
            assert gw.publish(topic, b'{"state": "active_unack"}', retain=True) == "Not authorized", topic
            assert gw.publish(topic, b"", retain=True) == "Not authorized", topic  # an empty retained one clears
        assert gw.publish("minegw/demo-mine/face-1201/shearer-1201/alarm/ch4", b"{}", retain=True) == "Success"
    finally:
        gw.close()


def test_a_bridge_cannot_send_commands_nor_speak_for_other_districts(district):  # noqa: F811
    bridge = Client(district.surface.port, BRIDGE_USER)
    try:
        for topic in ("minegw/demo-mine/command/write", "minegw/demo-mine/command/alarm/ack",
                      "minegw/demo-mine/face-1201/shearer-1201/command/stop",
                      "minegw/demo-mine/gateway/gw-1201/command/write",
                      "minegw/demo-mine/gateway/gw-3301/status",  # another district's gateway
                      "minegw/demo-mine/face-3301/shearer-3301/alarm/ch4"):
            assert bridge.publish(topic, b"{}") == "Not authorized", topic
        assert bridge.publish("minegw/demo-mine/gateway/gw-1203/status", b"{}") in ("Success", "No matching subscribers")
    finally:
        bridge.close()


def test_replies_are_read_by_the_requester_only_and_gateways_read_no_reply(district):  # noqa: F811
    topic = f"minegw/demo-mine/gateway/gw-1201/reply/{OPERATOR}/r-1"
    everything = ("minegw/#",)
    operator = Client(district.surface.port, OPERATOR, subscribe=(f"minegw/demo-mine/gateway/+/reply/{OPERATOR}/#",))
    other = Client(district.surface.port, "li.na", subscribe=everything)
    peer = Client(district.underground.port, GW_1203, subscribe=everything)
    gw = Client(district.underground.port, GW_1201)
    try:
        assert gw.publish(topic, b'{"ok": true}') == "Success"
        operator.wait_for(lambda: operator.on(topic))
        marker = "minegw/demo-mine/face-1201/shearer-1201/state"
        assert gw.publish(marker, b"{}") == "Success"
        other.wait_for(lambda: other.on(marker))
        assert other.on(topic) == [] and peer.on(topic) == []
    finally:
        for c in (operator, other, peer, gw):
            c.close()


def handshake(port: int, cipher: str) -> bool:
    openssl = shutil.which("openssl") or pytest.skip("openssl is not installed")
    done = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-cipher", cipher],
                          input=b"", capture_output=True, timeout=10, check=False)
    return done.returncode == 0 and b"Cipher is " + cipher.encode() in done.stdout


def test_tls_listeners_refuse_cbc_and_sha1_suites(district):  # noqa: F811
    for broker in (district.underground, district.surface):
        assert handshake(broker.tls_port, "ECDHE-ECDSA-AES128-GCM-SHA256")
        for weak in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA256"):
            assert not handshake(broker.tls_port, weak), weak


@pytest.fixture(scope="module")
def tls_influx(tmp_path_factory, certs):  # noqa: F811
    server = ShippedInflux(tmp_path_factory.mktemp("influxdb-tls"), certs)
    server.start()
    yield server
    server.stop()


def test_influxdb_debug_endpoints_need_credentials(tls_influx):
    assert tls_influx.request("GET", "/debug/pprof/", auth=False)[0] != 200
    assert tls_influx.request("POST", "/query", {"q": "SHOW DATABASES"}, auth=False)[0] == 401
    conf = (SURFACE / "influxdb.conf").read_text()  # 1.8 (the image): /debug/vars too; 1.6 here lacks the key
    assert "pprof-auth-enabled = true" in conf and "\n  https-enabled = true" in conf


def test_v1_writer_verifies_influxdbs_certificate(tls_influx, certs):  # noqa: F811
    async def write(ca) -> None:
        writer = InfluxV1Writer(HistorianConfig(url=tls_influx.url, ca_file=ca, username="admin",
                                                password="admin-secret", database="tlscheck"))
        try:
            await writer.write(["probe value=1i"])
        finally:
            await writer.close()

    asyncio.run(write(certs.ca))  # the mine's CA: written
    with pytest.raises(HistorianError, match="certificate"):
        asyncio.run(write(certs.wrong_ca))
    with pytest.raises(OSError):  # plain HTTP gets no answer from the HTTPS listener
        urllib.request.urlopen(f"http://127.0.0.1:{tls_influx.port}/ping", timeout=5)


def test_v2_writer_verifies_with_the_configured_ca(certs):  # noqa: F811  (no InfluxDB 2.x here)
    async def configured() -> tuple:
        writer = InfluxV2Writer(HistorianConfig(url="https://127.0.0.1:1", api="v2", org="o", bucket="b",
                                                token="t", ca_file=certs.ca))
        conf = writer._connect().api_client.configuration
        await writer.close()
        return conf.verify_ssl, conf.ssl_ca_cert

    assert asyncio.run(configured()) == (True, str(certs.ca))


def test_grafana_and_shipped_secrets_files():  # no Grafana server here: the compose file stands in
    compose = yaml.safe_load((SURFACE / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    env = grafana["environment"]
    assert env["GF_SERVER_PROTOCOL"] == "https" and env["GF_SECURITY_COOKIE_SECURE"] == "true"
    assert all(p.startswith("${MINEGW_DISPATCH_ADDRESS") for p in grafana["ports"])  # the dispatch network only
    assert env["MINEGW_INFLUX_URL"].startswith("https://")
    datasource = (SURFACE / "../grafana/provisioning/datasources/influxdb.yaml").read_text()
    assert "tlsAuthWithCACert: true" in datasource
    shared = [line for f in (UNDERGROUND / "minegw.env.example", SURFACE / "env.example")
              for line in f.read_text().splitlines() if line.endswith("=minegw") or line.startswith("MINEGW_INFLUX_URL=http:")]
    assert shared == []
    assert "user dispatch" not in (SURFACE / "acl").read_text()


def test_systemd_units_score(tmp_path):
    analyze = shutil.which("systemd-analyze") or pytest.skip("systemd-analyze is not installed")
    for unit in (UNDERGROUND / "minegw.service", SURFACE / "minegw-ingest@.service"):
        copy = tmp_path / unit.name.replace("@.", "@1.")
        copy.write_text(unit.read_text().replace("/opt/minegw/bin/minegw", "/bin/true"))
        out = subprocess.run([analyze, "security", "--offline=yes", str(copy)], capture_output=True, text=True, check=False)
        score = float(out.stdout.rsplit("exposure level for", 1)[1].split(":")[1].split()[0])
        assert score <= 1.2, out.stdout[-300:]
