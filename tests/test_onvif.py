"""ONVIF cameras end to end: simulated cameras (real SOAP over HTTP, WS-Discovery over UDP)
→ the adapter (onvif-zeep-async) → the gateway → a real Mosquitto and InfluxDB."""
from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import onvif
import pytest
import yaml
import zeep
from lxml import etree
from zeep.loader import parse_xml

from adapters.onvif.config import OnvifDeviceConfig, SnapshotConfig
from adapters.onvif.discovery import discover
from adapters.onvif.events import event_signal
from adapters.onvif.link import AuthError, CameraError, CameraLink, public_uri
from adapters.onvif.snapshots import SnapshotError, SnapshotStore, is_jpeg
from adapters.onvif.tools import camera_config, info
from adapters.registry import ADAPTER_KINDS
from gateway.config import BufferConfig, ConfigError, HistorianConfig, parse_site
from gateway.historian.lineprotocol import inventory_line
from gateway.historian.sink import HistorianSink
from gateway.contract import DataMessage, InventoryMessage, StateMessage
from gateway.core.model import Inventory, MediaProfile
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from simulators.onvif import CameraSimulator, DiscoveryResponder, OnvifSimServer
from simulators.onvif.server import TESTCARD
from simulators.site import SiteSimulator, send_fault
from tests.mqtt_util import MqttCollector
from tests.util import free_port

ROOT = Path(__file__).parent.parent
PASSWORD = "Cam-Secret-9f3e"  # distinctive, so a scan for it finds every leak
CHANGED_PASSWORD = "Changed-Pw-71c2"
CAMERAS = ("cam-belt", "cam-heading", "cam-return")


def camera_site(broker, prefix: str, cameras=CAMERAS, **settings):
    devices = [{"id": cam, "adapter": "onvif", "area": "belt" if i == 0 else "heading", "zone": f"zone-{i}",
                "host": "127.0.0.1", "port": free_port(), "username": "admin", "password": PASSWORD,
                "poll_interval": 0.5, "timeout": 1.0, "backoff_initial": 0.2, "backoff_max": 1.0, **settings}
               for i, cam in enumerate(cameras)]
    return parse_site({
        "site": {"id": "s"}, "areas": [{"id": "belt", "kind": "belt_line"}, {"id": "heading", "kind": "heading"}],
        "devices": devices, "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix}})


class Running:
    def __init__(self, site, sims: SiteSimulator, sub: MqttCollector, gateway: Gateway, prefix: str):
        self.site, self.sims, self.sub, self.gateway, self.prefix = site, sims, sub, gateway, prefix

    def topic(self, camera: str, kind: str) -> str:
        area = next(d.area for d in self.site.devices if d.id == camera)
        return f"{self.prefix}/s/{area}/{camera}/{kind}"

    async def inventory(self, camera: str, online: bool = True, timeout: float = 10) -> InventoryMessage:
        def find(messages):
            found = [InventoryMessage.model_validate_json(m.payload) for m in messages
                     if m.topic == self.topic(camera, "inventory")]
            return found[-1] if found and found[-1].online == online else None
        return await self.sub.until(find, timeout)

    async def state(self, camera: str, status: str, timeout: float = 10) -> StateMessage:
        def find(messages):
            found = [StateMessage.model_validate_json(m.payload) for m in messages
                     if m.topic == self.topic(camera, "state")]
            return found[-1] if found and found[-1].status == status else None
        return await self.sub.until(find, timeout)

    async def sample(self, camera: str, signal: str, value, since: float = 0.0, timeout: float = 10):
        """The first data message of ``camera`` after ``since`` whose ``signal`` has ``value``."""
        def find(messages):
            for m in messages:
                if m.topic == self.topic(camera, "data"):
                    msg = DataMessage.model_validate_json(m.payload)
                    s = msg.samples.get(signal)
                    if s is not None and s.value == value and msg.ts.timestamp() >= since:
                        return msg
        return await self.sub.until(find, timeout)


@asynccontextmanager
async def running(mosquitto, more_sinks=(), before=None, **settings):
    """Cameras (SiteSimulator, fault control on) → gateway → Mosquitto → a collector.

    ``more_sinks``: factories ``site → sink``; ``before(sims)`` runs before the cameras start."""
    prefix = f"onvif-{uuid.uuid4().hex[:8]}"
    site = camera_site(mosquitto, prefix, **settings)
    sims = SiteSimulator(site, onvif_discovery_port=0, control_port=0, rtsp_port=None)  # ONVIF alone: URIs at :554
    if before:
        before(sims)
    await sims.start()
    try:
        with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/#") as sub:
            gateway = Gateway(site, [MqttSink(site.mqtt, site), *(make(site) for make in more_sinks)])
            await gateway.start()
            try:
                yield Running(site, sims, sub, gateway, prefix)
            finally:
                await gateway.stop()
    finally:
        await sims.stop()


# -- inventory, health, events, failures -------------------------------------------------------------
async def test_inventory_of_several_cameras_is_retained_on_mqtt_and_in_the_historian(mosquitto, influxdb, tmp_path):
    database = influxdb.create_database("onvif_inventory")
    historian = HistorianConfig(url=influxdb.url, database=database, flush_interval=0.2,
                                buffer=BufferConfig(path=tmp_path / "buffer.sqlite3"))

    def ptz_and_leaky_uris(sims):
        sims.simulator("cam-heading").ptz = True
        sims.simulator("cam-return").credentials_in_uri = True  # the camera hands out rtsp://admin:pw@...

    async with running(mosquitto, [lambda site: HistorianSink(historian, site)], before=ptz_and_leaky_uris) as r:
        for cam in CAMERAS:
            inv = await r.inventory(cam)
            port = next(d.port for d in r.site.devices if d.id == cam)
            assert (inv.site, inv.kind, inv.online, inv.reason) == ("s", "camera", True, "")
            assert inv.zone == f"zone-{CAMERAS.index(cam)}"
            assert (inv.manufacturer, inv.model, inv.firmware) == ("minegw", "SIM-IPC-2M", "1.4.2")
            assert {"device", "media", "events"} <= set(inv.services)
            assert inv.ptz is (cam == "cam-heading") and ("ptz" in inv.services) is inv.ptz
            assert "tns1:RuleEngine/CellMotionDetector/Motion" in inv.event_topics
            assert [(p.token, p.encoding, p.width, p.height, p.frame_rate) for p in inv.profiles] == [
                ("main", "H264", 1920, 1080, 25), ("sub", "H264", 640, 360, 15)]
            main = inv.profiles[0]
            assert main.stream_uri == f"rtsp://127.0.0.1:554/{cam}/main"  # without admin:...@ for cam-return
            assert main.snapshot_uri == f"http://127.0.0.1:{port}/onvif/snapshot/main.jpg"
            assert main.ptz is inv.ptz
        r.sims.simulator("cam-belt").set_fault("offline")  # the historian gets this change
        await r.inventory("cam-belt", online=False)
        # A dispatch screen opened later finds every camera at once: retained.
        with MqttCollector(mosquitto.host, mosquitto.port, f"{r.prefix}/+/+/+/inventory") as late:
            retained = await late.until(lambda ms: ms if len({m.topic for m in ms}) == 3 else None)
            assert all(m.retain for m in retained)
        deadline = time.monotonic() + 10
        query = """SELECT * FROM "device_inventory" WHERE "device" = 'cam-belt'"""
        while not (rows := influxdb.query(query, database)) or rows[-1]["online"]:
            assert time.monotonic() < deadline, f"no offline inventory in InfluxDB: {rows}"
            await asyncio.sleep(0.2)
    # One point per change; under load a first check may fail before the camera answers,
    # or the offline reason change once: what counts is online, then offline last.
    online = [row["online"] for row in rows]
    assert online[-1] is False and True in online, online
    assert rows[-1]["model"] == "SIM-IPC-2M"
    assert json.loads(rows[-1]["profiles"])[0]["stream_uri"] == "rtsp://127.0.0.1:554/cam-belt/main"


async def test_wrong_password_is_a_clear_auth_error_and_the_other_cameras_keep_working(mosquitto):
    async with running(mosquitto) as r:
        for cam in CAMERAS:
            await r.state(cam, "online")
        r.sims.simulator("cam-heading").set_fault("password", value=CHANGED_PASSWORD)  # someone changed it
        since = time.time()
        state = await r.state("cam-heading", "offline")
        assert state.reason == ("authentication failed: the camera refused user 'admin' "
                                "(ter:NotAuthorized: Sender not Authorized)")
        assert (await r.inventory("cam-heading", online=False)).reason == state.reason
        for cam in ("cam-belt", "cam-return"):  # polled on, events too
            await r.sample(cam, "online", True, since + 1)
        r.sims.simulator("cam-belt").set_fault("motion")
        await r.sample("cam-belt", "motion", True, since)
        r.sims.simulator("cam-heading").clear_fault("password")  # put back: it recovers by itself
        await r.state("cam-heading", "online")


async def test_clock_skew_of_minutes_is_corrected_in_logins_and_event_times(mosquitto):
    def skewed(sims):
        sims.simulator("cam-belt").set_fault("clock", offset=420)  # 7 min fast
        sims.simulator("cam-heading").set_fault("clock", offset=-300)  # 5 min slow

    async with running(mosquitto, before=skewed, cameras=CAMERAS[:2]) as r:
        for cam, offset in (("cam-belt", 420), ("cam-heading", -300)):
            inv = await r.inventory(cam)
            assert inv.clock_offset_s == pytest.approx(offset, abs=1.5)
        for cam in ("cam-belt", "cam-heading"):
            r.sims.simulator(cam).set_fault("tamper")
            at = time.time()
            msg = await r.sample(cam, "tamper", True, at - 5)
            # Stamped by the camera's clock minutes away, published on the gateway's (±1 s: the camera tells seconds).
            assert abs(msg.samples["tamper"].ts.timestamp() - at) < 2.0
        r.sims.simulator("cam-belt").set_fault("clock", offset=-200)  # the camera's clock jumps
        since = time.time()
        await r.sub.until(lambda ms: any(m.topic == r.topic("cam-belt", "inventory")
                                         and InventoryMessage.model_validate_json(m.payload).clock_offset_s < -190
                                         for m in ms), timeout=10)
        states = [StateMessage.model_validate_json(m.payload) for m in r.sub.on(r.topic("cam-belt", "state"))]
        assert [s.status for s in states] == ["online"]  # re-learnt its clock without an offline spell
        await r.sample("cam-belt", "online", True, since)
    # Without the correction the camera refuses: the simulator checks the timestamps.
    camera = CameraSimulator("strict", {"admin": PASSWORD}, clock_offset=420)
    async with OnvifSimServer(camera) as server:
        plain = onvif.ONVIFCamera("127.0.0.1", server.port, "admin", PASSWORD, no_cache=True, adjust_time=False)
        try:
            with pytest.raises(zeep.exceptions.Fault, match="Sender not Authorized"):
                await (await plain.create_devicemgmt_service()).GetDeviceInformation()
        finally:
            await plain.close()


async def test_events_arrive_as_readings_at_their_event_time(mosquitto):
    async with running(mosquitto, cameras=CAMERAS[:2]) as r:
        initial = await r.sample("cam-belt", "motion", False)  # Initialized: the state at subscription
        assert initial.samples["tamper"].value is False
        control = r.sims.control_address
        for fault, signal in (("motion", "motion"), ("tamper", "tamper"),
                              ("digital_input", "device_trigger_digital_input")):  # any topic the camera offers
            at = time.time()
            await send_fault(*control, "cam-belt", fault)  # on command, as `minegw sim-fault` does
            on = await r.sample("cam-belt", signal, True, at - 1)
            await send_fault(*control, "cam-belt", fault, clear=True)
            off = await r.sample("cam-belt", signal, False, at)
            assert on.kind == "camera" and on.zone == "zone-0" and on.samples[signal].quality == "good"
            assert abs(on.samples[signal].ts.timestamp() - at) < 1.0 and off.ts > on.ts
        assert not [m for m in r.sub.on(r.topic("cam-heading", "data"))
                    if json.loads(m.payload)["samples"].get("motion", {}).get("value") is True]
        # A camera that forgets the subscription (a reboot between two pulls): subscribed again, no offline.
        r.sims.simulator("cam-belt").pull_points.clear()
        await asyncio.sleep(1.5)
        at = time.time()
        r.sims.simulator("cam-belt").set_fault("motion")
        await r.sample("cam-belt", "motion", True, at - 1)
        assert [json.loads(m.payload)["status"] for m in r.sub.on(r.topic("cam-belt", "state"))] == ["online"]


async def test_an_offline_camera_is_reported_and_recovers(mosquitto):
    async with running(mosquitto, cameras=CAMERAS[:2]) as r:
        await r.state("cam-belt", "online")
        await r.sample("cam-belt", "motion", False)
        r.sims.simulator("cam-belt").set_fault("offline")
        went = time.time()
        state = await r.state("cam-belt", "offline", timeout=5)
        assert "127.0.0.1:" in state.reason and ("lost" in state.reason or "refused" in state.reason), state.reason
        assert time.time() - went < 3
        down = await r.sample("cam-belt", "online", False, went)
        assert down.samples["motion"].quality == "comm-fail" and down.samples["response_ms"].value is None
        assert (await r.inventory("cam-belt", online=False)).profiles  # still listed, with its streams
        await r.sample("cam-heading", "online", True, went + 0.5)  # the other camera carries on
        r.sims.simulator("cam-belt").clear_fault("offline")
        back = await r.state("cam-belt", "online", timeout=10)
        assert back.reconnects >= 1 and back.errors >= 1
        await r.inventory("cam-belt", online=True)
        await r.sample("cam-belt", "motion", False, time.time() - 1)  # events resubscribed


async def test_no_credential_appears_in_any_payload_or_log(mosquitto, caplog):
    caplog.set_level(logging.DEBUG)  # zeep and aiohttp log whole requests at DEBUG

    def leaky(sims):
        for cam in CAMERAS:
            sims.simulator(cam).credentials_in_uri = True

    async with running(mosquitto, before=leaky) as r:
        for cam in CAMERAS:
            await r.inventory(cam)
        r.sims.simulator("cam-belt").set_fault("motion")
        await r.sample("cam-belt", "motion", True)
        r.sims.simulator("cam-heading").set_fault("password", value=CHANGED_PASSWORD)
        await r.state("cam-heading", "offline")
        r.sims.simulator("cam-return").set_fault("offline")
        await r.inventory("cam-return", online=False)
        payloads = [m.payload.decode() for m in r.sub.messages]
    scanned = {(m.topic.split("/")[-2], m.topic.rsplit("/", 1)[1]) for m in r.sub.messages}
    for cam in CAMERAS:  # every kind of message of every camera was scanned (their number varies with timing)
        assert {(cam, "inventory"), (cam, "state")} <= scanned, scanned
    assert ("cam-belt", "data") in scanned
    uris = [p.stream_uri for m in r.sub.messages if m.topic.endswith("/inventory")
            for p in InventoryMessage.model_validate_json(m.payload).profiles]
    assert uris and all(uri.startswith("rtsp://127.0.0.1:554/") for uri in uris)  # no admin:...@
    for secret in (PASSWORD, CHANGED_PASSWORD):
        assert not [p for p in payloads if secret in p]
        assert not [r.getMessage() for r in caplog.records if secret in r.getMessage()]
    assert any("HTTP Post" in rec.getMessage() for rec in caplog.records)  # the requests were logged: scanned


# -- snapshots -----------------------------------------------------------------------------------
async def test_snapshot_on_alarm_is_stored_as_a_jpeg_within_the_budget(mosquitto, tmp_path):
    store = SnapshotStore(SnapshotConfig(directory=tmp_path / "snaps", max_bytes=3 * len(TESTCARD) + 100))
    async with running(mosquitto, cameras=CAMERAS[:2]) as r:
        await r.state("cam-belt", "online")
        adapter = r.gateway.adapters["cam-belt"]
        refs = [await adapter.snapshot(store) for _ in range(5)]
        assert refs[0].ref.startswith("cam-belt/") and refs[0].ref.endswith("Z.jpg")
        assert store.path(refs[-1].ref).read_bytes() == TESTCARD and is_jpeg(TESTCARD)
        assert r.sims.simulator("cam-belt").snapshots_served == 5  # fetched through HTTP Digest each time
        kept = sorted(p.name for p in (tmp_path / "snaps" / "cam-belt").iterdir())
        assert kept == sorted(Path(ref.ref).name for ref in refs[-3:])  # the oldest went
        assert store.total_bytes() <= store.max_bytes
        r.sims.simulator("cam-belt").set_fault("password", value=CHANGED_PASSWORD)
        with pytest.raises(AuthError):
            await adapter.snapshot(store)
        r.sims.simulator("cam-heading").set_fault("offline")
        await r.state("cam-heading", "offline")
        with pytest.raises(CameraError, match="cam-heading is offline: "):
            await r.gateway.adapters["cam-heading"].snapshot(store)
    with pytest.raises(SnapshotError, match="not a JPEG"):
        await store.save("cam-belt", b"<html>401</html>")
    with pytest.raises(SnapshotError, match="cannot name"):
        await store.save("../etc", TESTCARD)


# -- discovery -----------------------------------------------------------------------------------
async def test_unicast_discovery_finds_the_cameras_that_are_online():
    cameras = [CameraSimulator(f"cam-{i}", {"admin": PASSWORD}, name=f"Transfer {i}", location="belt-main")
               for i in (1, 2, 3)]
    servers = [OnvifSimServer(c) for c in cameras]
    responder = DiscoveryResponder(servers, port=0, bind_host="127.0.0.1")
    for s in servers:
        await s.start()
    await responder.start()
    try:
        cameras[2].set_fault("offline")
        await servers[2].settled()
        found = await discover([f"127.0.0.1:{responder.address[1]}"], timeout=0.5, multicast=False)
    finally:
        await responder.stop()
        for s in servers:
            await s.stop()
    assert sorted((d.endpoint, d.scope("name"), d.scope("location"), d.xaddrs) for d in found) == sorted(
        (c.endpoint, f"Transfer {i}", "belt-main", [s.url]) for i, c, s in zip((1, 2), cameras, servers))
    assert all("NetworkVideoTransmitter" in d.types for d in found)


MULTICAST_SCRIPT = """
import asyncio, json
from adapters.onvif.discovery import discover
from simulators.onvif import CameraSimulator, DiscoveryResponder, OnvifSimServer

async def main():
    cameras = [CameraSimulator(f"cam-{i}", {"admin": "x"}) for i in (1, 2)]
    servers = [OnvifSimServer(c, "10.213.0.1") for c in cameras]
    for s in servers:
        await s.start()
    responder = DiscoveryResponder(servers)  # UDP 3702, joins 239.255.255.250 on 10.213.0.1
    await responder.start()
    found = await discover(timeout=1.0)  # multicast only: no address given
    print(json.dumps({"found": sorted(d.xaddrs[0] for d in found), "expected": sorted(s.url for s in servers)}))

asyncio.run(main())
"""


def test_multicast_discovery_in_a_network_namespace_of_its_own():
    # Loopback carries no multicast and wsdiscovery-style discovery skips it: the probe needs a real
    # interface. A network namespace gets one (a veth pair) without touching the host's network.
    setup = ("ip link set lo up && ip link add mg0 type veth peer name mg1 && "
             "ip addr add 10.213.0.1/24 dev mg0 && ip link set mg0 up && ip link set mg1 up")
    if not shutil.which("unshare") or subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode:
        pytest.skip("unshare -n is not permitted here (needs root or user namespaces)")
    result = subprocess.run(["unshare", "-n", "sh", "-c", f"{setup} && exec {sys.executable} -c '{MULTICAST_SCRIPT}'"],
                            capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["found"] == answer["expected"] and len(answer["found"]) == 2


# -- the simulator speaks ONVIF ------------------------------------------------------------------------
WSDL = Path(onvif.__file__).parent / "wsdl"
XS = "http://www.w3.org/2001/XMLSchema"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"


def onvif_schema() -> etree.XMLSchema:
    """The schemas onvif-zeep-async ships (those inside its device, media and events WSDLs, and what
    they import: onvif.xsd, b-2.xsd, t-1.xsd, ...), compiled as one by lxml."""
    embedded, imports = {}, [("http://docs.oasis-open.org/wsn/b-2", "b-2.xsd")]
    for wsdl in ("devicemgmt.wsdl", "media.wsdl", "events.wsdl"):
        for schema in etree.parse(str(WSDL / wsdl)).iterfind(f".//{{{XS}}}schema"):
            embedded[f"{wsdl}.xsd"] = etree.tostring(schema)
            imports.append((schema.get("targetNamespace"), f"{wsdl}.xsd"))

    class Embedded(etree.Resolver):
        def resolve(self, url, pubid, context):
            name = url.rsplit("/", 1)[-1]
            return self.resolve_string(embedded[name], context, base_url=str(WSDL / name)) if name in embedded else None

    parser = etree.XMLParser()
    parser.resolvers.add(Embedded())
    main = f'<xs:schema xmlns:xs="{XS}">' + "".join(
        f'<xs:import namespace="{ns}" schemaLocation="{loc}"/>' for ns, loc in imports) + "</xs:schema>"
    return etree.XMLSchema(etree.fromstring(main.encode(), parser, base_url=str(WSDL / "all.xsd")))


def zeep_operations(settings: zeep.Settings) -> dict:
    """Every operation of the device, media and events WSDLs, as zeep (strict) reads their answers."""
    operations = {}
    for wsdl in ("devicemgmt.wsdl", "media.wsdl", "events.wsdl"):
        for binding in zeep.Client(str(WSDL / wsdl), settings=settings).wsdl.bindings.values():
            for name, operation in binding._operations.items():
                operations.setdefault(name, operation)
    return operations


async def test_simulator_answers_are_valid_against_the_onvif_schemas_and_parse_in_zeep():
    camera = CameraSimulator("cam-1", {"admin": PASSWORD}, ptz=True, clock_offset=90)
    async with OnvifSimServer(camera) as server:
        async with CameraLink(camera_config(f"127.0.0.1:{server.port}", "admin", PASSWORD)) as link:
            await link.read_inventory()  # the adapter's own client parsed all of this
            await link.subscribe()
            camera.set_fault("motion")
            assert any(s.signal == "motion" and s.value is True for s in await link.pull_events(1.0))
            await (await link.camera.create_subscription_service("PullPointSubscription")).Renew("PT60S")
            await (await link.camera.create_pullpoint_service()).SetSynchronizationPoint()
            assert is_jpeg(await link.snapshot("sub"))
        with pytest.raises(AuthError):
            await CameraLink(camera_config(f"127.0.0.1:{server.port}", "admin", "wrong")).open()
    schema, strict = onvif_schema(), zeep.Settings(strict=True)
    operations = zeep_operations(strict)
    for operation, status, body in server.answers:
        if status == 200:
            payload = etree.fromstring(body).find(f"{{{SOAP12}}}Body")[0]
            assert schema.validate(etree.ElementTree(copy.deepcopy(payload))), (operation, schema.error_log)
            operations[operation].process_reply(parse_xml(body, None, settings=strict))
    assert {op for op, status, _ in server.answers if status == 200} == {
        "GetSystemDateAndTime", "GetServices", "GetDeviceInformation", "GetCapabilities", "GetProfiles",
        "GetStreamUri", "GetSnapshotUri", "GetEventProperties", "CreatePullPointSubscription", "PullMessages",
        "Renew", "SetSynchronizationPoint", "Unsubscribe"}
    refused = [body for op, status, body in server.answers if status != 200]
    assert refused and all(b"<s:Value>s:Sender</s:Value><s:Subcode><s:Value>ter:NotAuthorized</s:Value>" in b
                           for b in refused)
    # The schema bites: an answer without a required element is refused.
    broken = etree.fromstring(
        b'<tds:GetDeviceInformationResponse xmlns:tds="http://www.onvif.org/ver10/device/wsdl">'
        b"<tds:Manufacturer>x</tds:Manufacturer></tds:GetDeviceInformationResponse>")
    assert not schema.validate(etree.ElementTree(broken))


async def test_wrong_login_gets_the_onvif_fault_over_http():
    camera = CameraSimulator("cam-1", {"admin": PASSWORD})
    request = (f'<s:Envelope xmlns:s="{SOAP12}"><s:Body>'
               '<GetDeviceInformation xmlns="http://www.onvif.org/ver10/device/wsdl"/></s:Body></s:Envelope>')
    async with OnvifSimServer(camera) as server, aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}", data=request,
                             headers={"Content-Type": "application/soap+xml"}) as answer:
            assert answer.status == 400 and answer.content_type == "application/soap+xml"
            fault = etree.fromstring(await answer.read()).find(f".//{{{SOAP12}}}Fault")
        async with http.get(camera.snapshot_uri(camera.profiles[0])) as snapshot:
            assert snapshot.status == 401 and snapshot.headers["WWW-Authenticate"].startswith("Digest ")
    ns = {"s": SOAP12}
    assert fault.findtext("s:Code/s:Value", namespaces=ns) == "s:Sender"
    assert fault.findtext("s:Code/s:Subcode/s:Value", namespaces=ns) == "ter:NotAuthorized"
    assert fault.findtext("s:Reason/s:Text", namespaces=ns) == "Sender not Authorized"


# -- the command line ------------------------------------------------------------------------------
async def test_cli_info_discover_and_snapshot(tmp_path):
    camera = CameraSimulator("belt-cam", {"admin": PASSWORD}, name="Belt head", credentials_in_uri=True)
    server = OnvifSimServer(camera)
    await server.start()
    responder = DiscoveryResponder([server], port=0, bind_host="127.0.0.1")
    await responder.start()
    site = {"site": {"id": "s"}, "areas": [{"id": "belt", "kind": "belt_line"}],
            "devices": [{"id": "belt-cam", "adapter": "onvif", "area": "belt", "host": "127.0.0.1",
                         "port": server.port, "username": "admin", "password": "${CAM_PASSWORD}"}],
            "snapshots": {"directory": str(tmp_path / "snaps")}}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
    env = {"CAM_PASSWORD": PASSWORD, "MINEGW_ONVIF_PASSWORD": PASSWORD, "COLUMNS": "250"}
    try:
        info_run, discover_run, snapshot_run, refused = await asyncio.gather(
            _minegw("onvif", "info", f"127.0.0.1:{server.port}", "-u", "admin", env=env),
            _minegw("onvif", "discover", f"127.0.0.1:{responder.address[1]}", "--no-multicast", "--timeout", "0.5",
                    env=env),
            _minegw("onvif", "snapshot", "belt-cam", "-c", str(tmp_path / "site.yaml"), env=env),
            _minegw("onvif", "info", f"http://127.0.0.1:{server.port}", "-u", "admin",
                    env=env | {"MINEGW_ONVIF_PASSWORD": "wrong"}))
    finally:
        await responder.stop()
        await server.stop()
    assert info_run.returncode == 0, info_run.stderr
    assert "SIM-IPC-2M" in info_run.stdout and "rtsp://127.0.0.1:554/belt-cam/main" in info_run.stdout
    assert discover_run.returncode == 0 and "Belt head" in discover_run.stdout and server.url in discover_run.stdout
    assert snapshot_run.returncode == 0, snapshot_run.stderr
    assert (tmp_path / "snaps" / snapshot_run.stdout.split()[0]).read_bytes() == TESTCARD
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "authentication failed: the camera refused user 'admin'" in refused.stderr
    for run in (info_run, discover_run, snapshot_run, refused):
        assert PASSWORD not in run.stdout + run.stderr


async def _minegw(*args, env=None):
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                                   text=True, timeout=60, cwd=ROOT, env=os.environ | (env or {}))


# -- small parts -----------------------------------------------------------------------------------
def test_public_uri_strips_every_credential():
    assert public_uri("rtsp://admin:pw@10.1.2.3:554/Streaming/101?transport=tcp") == \
        "rtsp://10.1.2.3:554/Streaming/101?transport=tcp"
    assert public_uri("http://10.1.2.3/snap.jpg?user=admin&pwd=pw&channel=1") == "http://10.1.2.3/snap.jpg?channel=1"
    assert public_uri("http://admin@[fe80::1]:80/x") == "http://[fe80::1]:80/x"
    assert public_uri(None) is None


def test_event_topics_become_signal_names():
    assert event_signal("tns1:RuleEngine/CellMotionDetector/Motion", "IsMotion") == "motion"
    assert event_signal("tns1:VideoSource/MotionAlarm", "State") == "motion"
    assert event_signal("tns1:RuleEngine/TamperDetector/Tamper", "IsTamper") == "tamper"
    assert event_signal("tns1:VideoSource/GlobalSceneChange/ImagingService", "State") == "tamper"
    assert event_signal("tns1:Device/Trigger/DigitalInput", "LogicalState") == "device_trigger_digital_input"
    assert event_signal("tns1:Device/HardwareFailure/StorageFailure", "Failed", single=False) == \
        "device_hardware_failure_storage_failure.failed"


def test_camera_settings_in_the_site_file():
    base = {"site": {"id": "s"}, "areas": [{"id": "belt", "kind": "belt_line"}]}
    site = parse_site(base | {"devices": [{"id": "c", "adapter": "onvif", "area": "belt", "host": "10.0.0.9",
                                           "username": "admin", "password": PASSWORD}]})
    camera = site.devices[0]
    assert isinstance(camera, OnvifDeviceConfig) and camera.port == 80 and camera.equipment_kind == "camera"
    assert PASSWORD not in repr(camera) + str(site.model_dump()) and site.snapshots.max_bytes == 1_000_000_000
    with pytest.raises(ConfigError) as exc:
        parse_site(base | {"devices": [{"id": "c", "adapter": "onvif", "area": "belt", "host": "h",
                                        "poll_interval": 30, "colour": 1},
                                       {"id": "d", "adapter": "webcam", "area": "belt"},
                                       {"id": "e", "adapter": "onvif", "area": "belt", "host": "h", "password": "p"}]})
    assert "onvif" in ADAPTER_KINDS
    assert exc.value.problems == ["devices[0].poll_interval: must be ≤ 10 s", "devices[0].colour: unknown key",
                                  f"devices[1].adapter: unknown adapter 'webcam' (known: {', '.join(ADAPTER_KINDS)})",
                                  "devices[2]: a password needs a username"]


def test_inventory_line_for_the_historian():
    inventory = Inventory(device="cam-1", ts=datetime(2025, 3, 14, 6, 30, tzinfo=timezone.utc), online=True,
                          manufacturer="ACME", model="IPC 2M", firmware="1.0", serial="S1",
                          profiles=[MediaProfile(token="main", name="Main", stream_uri="rtsp://10.0.0.9/main")])
    line = inventory_line("demo-mine", "belt", inventory)
    assert line.startswith('device_inventory,site=demo-mine,area=belt,device=cam-1 online=true,reason="",ptz=false,')
    assert 'model="IPC 2M"' in line and line.endswith(" 1741933800000000000")


async def test_info_reads_what_the_adapter_reads():
    camera = CameraSimulator("cam-1", {}, serial="SN-42")  # a camera that needs no login
    async with OnvifSimServer(camera) as server:
        inventory = await info(camera_config(f"http://127.0.0.1:{server.port}/onvif/device_service"))
    assert inventory.serial == "SN-42" and len(inventory.profiles) == 2 and inventory.online

