"""Issue 22: the historian over MQTT, against the surface Mosquitto started from the shipped files
(deploy/surface/mosquitto.conf and acl, fixtures of test_deploy): a gateway's account writes its own
historian topic and nothing else there, only the ingest workers read it, and the gateway's writer, as
the shipped site file sets it up, publishes over TLS verified against the mine's CA."""
from __future__ import annotations

import asyncio

import pytest

from gateway.config import load_site
from gateway.historian.errors import RetryableError
from gateway.historian.mqtt_writer import MqttHistorianWriter
from tests.test_deploy import (  # noqa: F401  (certs: fixture)
    GW_1201,
    UNDERGROUND,
    Client,
    ShippedBroker,
    certs,
    password,
    surface_conf,
)

OWN, OTHER = "minegw/demo-mine/gateway/gw-1201/historian", "minegw/demo-mine/gateway/gw-1203/historian"
ACCEPTED = ("Success", "No matching subscribers")


@pytest.fixture
def surface(tmp_path, certs):  # noqa: F811
    broker = ShippedBroker(tmp_path, surface_conf(certs))
    broker.start()
    yield broker
    broker.stop()


def test_a_gateway_writes_its_own_historian_topic_only(surface):
    gw = Client(surface.port, GW_1201)
    try:
        assert gw.publish(OWN, b"m v=1i") in ACCEPTED
        for topic in (OTHER, "minegw/demo-mine/gateway/gw-1201/status", "minegw/demo-mine/gateway/gw-1201/alarm/x",
                      "minegw/demo-mine/face-1201/shearer-1201/data", "minegw/demo-mine/face-1201/shearer-1201/state",
                      "minegw/demo-mine/command/write", "minegw/demo-mine/face-1201/shearer-1201/command/stop",
                      "minegw/demo-mine/bridge/district-2", "minegw/other-mine/gateway/gw-1201/historian"):
            assert gw.publish(topic, b"m v=1i") == "Not authorized", topic
    finally:
        gw.close()


def test_only_the_ingest_workers_read_the_historian_lines(surface):
    ingest = Client(surface.port, "minegw-ingest",
                    subscribe=("$share/minegw-ingest/minegw/demo-mine/gateway/+/historian",))
    scada = Client(surface.port, "integration-scada", subscribe=("minegw/#",))
    operator = Client(surface.port, "zhang.wei", subscribe=("minegw/#",))
    gw = Client(surface.port, GW_1201)
    try:
        assert gw.publish(OWN, b"m v=1i") == "Success"
        ingest.wait_for(lambda: ingest.on(OWN))
        marker = Client(surface.port, "bridge.demo-mine.district-2")
        try:  # what the bridge publishes after it reaches the others: the historian line would have come first
            assert marker.publish("minegw/demo-mine/gateway/gw-1201/status", b"{}") == "Success"
        finally:
            marker.close()
        for reader in (scada, operator):
            reader.wait_for(lambda r=reader: r.on("minegw/demo-mine/gateway/gw-1201/status"))
            assert reader.on(OWN) == []
    finally:
        for c in (ingest, scada, operator, gw):
            c.close()


def test_the_shipped_gateway_publishes_its_historian_over_verified_tls(surface, certs, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MINEGW_MQTT_PASSWORD", password(GW_1201))
    monkeypatch.setenv("MINEGW_HISTORIAN_PASSWORD", password(GW_1201))
    site = load_site(UNDERGROUND / "site.yaml")
    shipped = site.historian
    assert (shipped.api, shipped.url, shipped.username) == ("mqtt", "mqtts://mqtt.dispatch.demo-mine.local:8883", GW_1201)
    here = shipped.model_copy(update={"url": f"mqtts://localhost:{surface.tls_port}", "ca_file": certs.ca, "timeout": 3})

    async def write(cfg) -> None:
        writer = MqttHistorianWriter(cfg, site)
        try:
            await writer.write(["m,site=demo-mine v=1i 1", "m,site=demo-mine v=2i 2"])
        finally:
            await writer.close()

    ingest = Client(surface.port, "minegw-ingest", subscribe=(f"$share/g/{OWN}",))
    try:
        asyncio.run(write(here))
        ingest.wait_for(lambda: ingest.on(OWN))
        assert ingest.on(OWN) == [b"m,site=demo-mine v=1i 1\nm,site=demo-mine v=2i 2"]
    finally:
        ingest.close()
    with pytest.raises(RetryableError, match="certificate verify failed"):
        asyncio.run(write(here.model_copy(update={"ca_file": certs.wrong_ca})))
