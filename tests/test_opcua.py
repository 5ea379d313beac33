"""OPC UA roof-pressure monitoring: node maps, the longwall model, and the adapter against the
simulator over loopback (real asyncua server and client, no mocks), through to Mosquitto."""
from __future__ import annotations

import asyncio
import copy
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from statistics import median

import pytest
from asyncua import ua
from cryptography import x509

from adapters.opcua.adapter import OpcUaAdapter, judge
from adapters.opcua.client import Security, thumbprint
from adapters.opcua.config import OpcUaDeviceConfig
from adapters.opcua.nodemap import NodeMapError, load_nodemap, parse_nodemap
from adapters.opcua.tools import browse, make_client_certificate, read
from adapters.registry import ADAPTER_KINDS
from gateway.config import ConfigError, parse_site
from gateway.contract import DataMessage, StateMessage
from gateway.core.model import DeviceState, DeviceStatus, Inventory, Quality, Reading
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from simulators.opcua.longwall import LongwallModel
from simulators.opcua.face import FaceSimulator
from simulators.opcua.server import OpcUaSimServer
from simulators.site import SiteSimulator
from tests.mqtt_util import MqttCollector, TcpProxy
from tests.util import free_port

SUPPORTS = 10
SIGNALS = SUPPORTS * 2 + 100 + 50  # legs + gauges (2 anchors each) + load cells
LEG = "support_003_front_leg_pressure"


# -- helpers ------------------------------------------------------------------------------
@pytest.fixture
async def make_face(tmp_path):
    """Factory: a started simulator serving one face; every one stopped at the end."""
    servers: list[OpcUaSimServer] = []

    async def make(nodemap: str = "longwall", supports: int | None = SUPPORTS, seed: int = 5,
                   time_scale: float = 1.0, **options) -> tuple[FaceSimulator, OpcUaSimServer]:
        n = len(servers)
        face = FaceSimulator(f"face-{n}", load_nodemap(nodemap, supports), seed=seed, time_scale=time_scale)
        server = OpcUaSimServer(f"opc.tcp://127.0.0.1:{free_port()}", [face],
                                certificate_dir=tmp_path / f"sim-{n}", **options)
        await server.start()
        servers.append(server)
        return face, server

    yield make
    for server in servers:
        await server.stop()


def device(server: OpcUaSimServer, **settings) -> OpcUaDeviceConfig:
    base = {"id": "face-1201", "area": "face-1201", "url": server.url, "supports": SUPPORTS, "timeout": 2,
            "backoff_initial": 0.1, "backoff_max": 0.5}
    return OpcUaDeviceConfig(**{**base, **settings})


class Events:
    """Everything an adapter emits, as it arrives."""

    def __init__(self, adapter: OpcUaAdapter):
        self.readings: list[Reading] = []
        self.states: list[DeviceState] = []
        self.inventories: list[Inventory] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._pump(adapter))

    async def _pump(self, adapter: OpcUaAdapter) -> None:
        async for event in adapter.stream():
            kind = {Reading: self.readings, Inventory: self.inventories}.get(type(event), self.states)
            kind.append(event)
            self._changed.set()

    async def until(self, predicate: Callable[[Events], object], timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while not (result := predicate(self)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s; states: "
                                     f"{[(s.status.value, s.reason) for s in self.states]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass
        return result

    def samples(self, signal: str, since: float = 0.0) -> list:
        return [s for r in self.readings for s in r.samples if s.signal == signal and r.ts.timestamp() >= since]

    def state(self, status: str, since: int = 0) -> DeviceState | None:
        return next((s for s in self.states[since:] if s.status.value == status), None)


@asynccontextmanager
async def running(config: OpcUaDeviceConfig):
    adapter = OpcUaAdapter(config)
    events = Events(adapter)
    await adapter.start()
    try:
        yield adapter, events
    finally:
        await adapter.stop()
        await events._task


def assert_as_served(face: FaceSimulator, readings: list[Reading]) -> int:
    """Every good sample equals what the simulator served in the update its timestamp names."""
    checked = 0
    for reading in readings:
        for sample in reading.samples:
            served = face.served_at(sample.ts)
            assert served is not None, f"{sample.signal}: nothing was served at {sample.ts}"
            assert sample.value == served[sample.signal].value, sample
            checked += 1
    return checked


# -- node maps ----------------------------------------------------------------------------
def test_nodemap_expands_groups_into_located_signals():
    full = load_nodemap("longwall")
    assert len(full.expanded) == 150 * 2 + 100 + 50
    leg = full.signal("support_150_rear_leg_pressure")
    assert (leg.unit, leg.range, leg.role, leg.index, leg.location_m) == ("MPa", (0, 60), "leg_rear", 150, 224.25)
    assert leg.address == "nsu=urn:minegw:longwall-roof-pressure;s=Longwall.Support150.RearLegPressure"
    gauge = full.signal("tailgate_roof_sep_25_shallow")
    assert gauge.path[-2:] == (("urn:minegw:longwall-roof-pressure", "RoofSeparation25"),
                               ("urn:minegw:longwall-roof-pressure", "ShallowAnchor"))
    assert (gauge.along.value, gauge.location_m, gauge.range) == ("tailgate", 980, (0, 200))
    assert len(full.group("headgate_bolt_load")) == 13 and full.kind == "roof_pressure"
    small = load_nodemap("longwall", supports=SUPPORTS)
    assert len(small.expanded) == SIGNALS and small.expanded[-1].name == "tailgate_cable_load_12"


@pytest.mark.parametrize("change, expected", [
    ({"groups": [{"name": "supports", "count": 3, "signals": [{"name": "leg", "node": "s=L{n}"}]}]},
     "groups[0].signals[0].name: needs {n} (the group repeats 3 times)"),
    ({"groups": [{"name": "supports", "count": 3, "signals": [{"name": "leg_{n}_{m}", "node": "s=L{n}"}]}]},
     "groups[0].signals[0]: 'leg_{n}_{m}': unknown placeholder {m}; templates know only {n}"),
    ({"signals": [{"name": "x", "node": "s=X", "path": "A/X"}]},
     "signals[0]: give exactly one of node (a node id) or path (a browse path)"),
    ({"signals": [{"name": "x", "node": "Support1.Leg"}]}, "signals[0].node: 'Support1.Leg' is not a node id"),
    ({"signals": [{"name": "x", "node": "s=X", "range": [60, 0]}]},
     "signals[0]: range must be [low, high] with low < high"),
    ({"signals": [{"name": "x", "node": "s=X", "type": "String", "range": [0, 1]}]},
     "signals[0]: a String signal cannot have a range"),
    ({"signals": [{"name": "x", "node": "s=X"}, {"name": "x", "node": "s=Y"}]}, "duplicate signal name 'x'"),
    ({"signals": [{"name": "x", "node": "s=X"}, {"name": "y", "node": "s=X"}]},
     "y and x have the same address 'nsu=urn:t;s=X'"),
    ({"signals": [{"name": "x", "node": "s=X", "colour": "red"}]}, "signals[0].colour: unknown key"),
    ({"signals": [{"name": "3x", "node": "s=X"}]}, "signals[0].name: '3x' is not a signal name"),
])
def test_nodemap_problems_are_reported_with_their_location(change, expected):
    with pytest.raises(NodeMapError) as err:
        parse_nodemap({"namespace": "urn:t", **change}, "test.yaml")
    assert any(p.startswith(expected) for p in err.value.problems), err.value.problems


def test_supports_override_needs_a_supports_group():
    with pytest.raises(NodeMapError, match="no group named 'supports'"):
        parse_nodemap({"namespace": "urn:t", "signals": [{"name": "x", "node": "s=X"}]}, supports=10)


def test_site_file_takes_opcua_devices_and_checks_them():
    site = {"site": {"id": "s"}, "areas": [{"id": "face", "kind": "longwall_face"}], "devices": [
        {"id": "rp-1", "adapter": "opcua", "area": "face", "url": "opc.tcp://10.0.0.5:4840", "supports": 120,
         "deadband": {"type": "absolute", "value": 0.2}},
        {"id": "rp-2", "adapter": "opcua", "area": "face", "url": "opc.tcp://10.0.0.5:4840"},  # same URL: fine
        {"id": "shearer", "area": "face", "profile": "shearer", "host": "h"},  # no adapter: Modbus, as before
    ]}
    parsed = parse_site(site)
    assert [d.equipment_kind for d in parsed.devices] == ["roof_pressure", "roof_pressure", "shearer"]
    assert parsed.devices[0].deadband.value == 0.2 and parsed.devices[2].adapter == "modbus"
    bad = copy.deepcopy(site)
    bad["devices"][0].update(publishing_interval=30, security_policy="Basic256Sha256", colour="red")
    bad["devices"][1].update(adapter="profinet")
    with pytest.raises(ConfigError) as err:
        parse_site(bad)
    assert err.value.problems == ["devices[0].publishing_interval: must be ≤ 10 s", "devices[0].colour: unknown key",
                                  "devices[1].adapter: unknown adapter 'profinet' (known: " + ", ".join(ADAPTER_KINDS) + ")"]
    bad = copy.deepcopy(site)
    bad["devices"][0].update(security_policy="Basic256Sha256", security_mode="SignAndEncrypt")
    bad["devices"][1].update(nodemap="nowhere", password="x")
    with pytest.raises(ConfigError) as err:
        parse_site(bad)
    assert err.value.problems[0].startswith("devices[0]: security_policy Basic256Sha256 needs certificate")
    assert err.value.problems[1].startswith("devices[1].nodemap: node map nowhere: unknown node map")


# -- the model ----------------------------------------------------------------------------
def test_face_model_is_deterministic_and_its_cycles_carry_the_roof_pressure_figures():
    nodemap = load_nodemap("longwall", supports=30)
    a, b = LongwallModel(nodemap, seed=11), LongwallModel(nodemap, seed=11)
    times = [i * 600.0 for i in range(200)]  # 33 h of face time
    forward = [a.values(t) for t in times]
    assert [b.values(t) for t in reversed(times)] == forward[::-1]  # any order, same values
    assert LongwallModel(nodemap, seed=12).values(0) != forward[0]

    cycles = [a.cycle(n, k) for n in (1, 15, 30) for k in range(40)]
    for c in cycles:
        assert 24.0 <= c.setting["rear"] <= c.setting["front"] <= 26.0
        assert c.end_resistance["front"] > c.setting["front"]
        assert all(p < 40.0 for p in c.end_resistance.values())  # the yield valve caps it
        assert c.lowered_at < c.set_at < c.ended_at
        assert a.leg_pressure(c.support, "front", c.lowered_at + 5) < 2.0  # lowered to advance
        assert a.leg_pressure(c.support, "front", c.set_at) == pytest.approx(c.setting["front"])
    weighted = [c for c in cycles if c.weighting_factor > 1]
    normal = [c for c in cycles if c.weighting_factor == 1]
    assert weighted and normal
    assert median(c.load_rise_mpa_h("front") for c in weighted) > 2 * median(c.load_rise_mpa_h("front") for c in normal)
    assert sum(c.yields["front"] for c in weighted) > 0 == sum(c.yields["front"] for c in normal)
    sep = [v["headgate_roof_sep_01_deep"] for v in forward]
    assert sep == sorted(sep) and sep[-1] > sep[0]  # roof separation only grows


def test_status_codes_map_to_qualities():
    signal = load_nodemap("longwall", supports=1).signal("support_001_front_leg_pressure")
    sc = ua.StatusCodes
    assert judge(signal, sc.Good, 25.0) == (25.0, Quality.GOOD)
    assert judge(signal, sc.Good, 61.0) == (61.0, Quality.OUT_OF_RANGE)
    assert judge(signal, sc.Good, float("nan")) == (None, Quality.BAD)
    assert judge(signal, sc.UncertainLastUsableValue, 25.0) == (25.0, Quality.STALE)
    assert judge(signal, sc.UncertainEngineeringUnitsExceeded, 59.0) == (59.0, Quality.OUT_OF_RANGE)
    assert judge(signal, sc.BadSensorFailure, None) == (None, Quality.BAD)
    assert judge(signal, sc.BadNoCommunication, None) == (None, Quality.COMM_FAIL)
    assert judge(signal, sc.BadWaitingForInitialData | 0x0400, None) == (None, Quality.COMM_FAIL)  # info bits


# -- adapter and simulator ----------------------------------------------------------------
async def test_subscription_delivers_what_the_simulator_serves(make_face):
    face, server = await make_face()
    async with running(device(server)) as (adapter, events):
        await events.until(lambda e: len(e.readings) >= 4, timeout=10)
    online = events.state("online")
    assert online.reason == f"subscribed: {SIGNALS} items, publishing every 1 s [anonymous]"
    first = events.readings[0]
    assert len(first.samples) == SIGNALS and {s.quality for s in first.samples} == {Quality.GOOD}
    assert {s.unit for s in first.samples} == {"MPa", "mm", "kN"}
    assert assert_as_served(face, events.readings) > SIGNALS + 3 * SUPPORTS


async def test_deadband_suppresses_small_changes(make_face):
    face, server = await make_face()
    async with running(device(server, id="plain")) as (_, plain), \
            running(device(server, id="banded", deadband={"type": "absolute", "value": 0.5})) as (_, banded):
        await asyncio.sleep(4.5)
    legs = [s.name for s in face.nodemap.expanded if s.unit == "MPa"]
    reported = {name: [s.value for s in banded.samples(name)] for name in legs}
    for name, values in reported.items():  # each report differs from the previous *report* by > 0.5
        assert all(abs(b - a) > 0.5 for a, b in zip(values, values[1:])), (name, values)
    banded_count = sum(len(v) for v in reported.values())
    plain_count = sum(len(plain.samples(name)) for name in legs)
    assert plain_count >= 3 * len(legs) and banded_count < plain_count / 3
    assert assert_as_served(face, banded.readings) >= SIGNALS


async def test_poll_mode_reads_every_interval(make_face):
    face, server = await make_face()
    async with running(device(server, mode="poll", poll_interval=0.5)) as (adapter, events):
        await events.until(lambda e: len(e.readings) >= 5, timeout=10)
    assert events.state("online").reason == f"polling {SIGNALS} every 0.5 s [anonymous]"
    assert all(len(r.samples) == SIGNALS and r.poll_ms > 0 for r in events.readings)
    gaps = [b.ts.timestamp() - a.ts.timestamp() for a, b in zip(events.readings, events.readings[1:])]
    assert all(0.35 < g < 0.75 for g in gaps), gaps
    assert assert_as_served(face, events.readings) == len(events.readings) * SIGNALS


async def test_items_the_server_will_not_monitor_are_polled(make_face, tmp_path):
    nodemap = tmp_path / "mixed.yaml"
    nodemap.write_text("""
namespace: urn:test:mixed
signals:
  - {name: pump_pressure, node: "s=Pump.Pressure", type: Double, unit: MPa, range: [0, 40]}
  - {name: shift_counter, node: "i=1001", type: Int32}        # no EU range: no percent deadband
""")
    face, server = await make_face(nodemap=str(nodemap), supports=None)
    config = device(server, nodemap=str(nodemap), supports=None, deadband={"type": "percent", "value": 1},
                    poll_interval=0.5)
    async with running(config) as (adapter, events):
        await events.until(lambda e: len(e.samples("shift_counter")) >= 3 and e.samples("pump_pressure"))
    assert events.state("online").reason == ("subscribed: 1 items, publishing every 1 s; "
                                             "polling 1 every 0.5 s (refused: 1 BadFilterNotAllowed) [anonymous]")
    assert {s.quality for s in events.samples("shift_counter")} == {Quality.GOOD}
    assert assert_as_served(face, events.readings) >= 4


async def test_stuck_dead_and_unreachable_sensors_get_their_quality(make_face):
    face, server = await make_face()
    async with running(device(server)) as (adapter, events):
        await events.until(lambda e: e.readings)
        stuck_value = face.served[LEG].value
        face.set_fault("stuck", signal=LEG)
        face.set_fault("dead", signal="support_004_rear_leg_pressure")
        face.set_fault("no_communication", signals=["headgate_roof_sep_02_deep"])
        face.set_fault("out_of_range", signal="headgate_bolt_load_01")
        since = time.time()
        await events.until(lambda e: all(e.samples(n, since) for n in (
            LEG, "support_004_rear_leg_pressure", "headgate_roof_sep_02_deep", "headgate_bolt_load_01")))
        stuck = events.samples(LEG, since)[-1]
        assert (stuck.quality, stuck.value) == (Quality.STALE, stuck_value) and stuck.ts.timestamp() < since
        assert [(s.quality, s.value) for s in events.samples("support_004_rear_leg_pressure", since)] == [
            (Quality.BAD, None)]
        assert events.samples("headgate_roof_sep_02_deep", since)[-1].quality is Quality.COMM_FAIL
        assert events.samples("headgate_bolt_load_01", since)[-1].value == 550.0  # 10 % of span above
        assert events.samples("headgate_bolt_load_01", since)[-1].quality is Quality.OUT_OF_RANGE
        face.clear_fault()
        cleared = time.time()
        await events.until(lambda e: e.samples(LEG, cleared) and e.samples("support_004_rear_leg_pressure", cleared))
        assert events.samples(LEG, cleared)[-1].quality is Quality.GOOD
        assert events.state("offline", 1) is None  # sensor faults never take the device offline


async def test_server_restart_goes_offline_then_online_by_itself(make_face):
    face, server = await make_face()
    async with running(device(server)) as (adapter, events):
        await events.until(lambda e: e.state("online") and len(e.readings) >= 2)
        face.set_fault("restart", downtime=1.0)
        offline = await events.until(lambda e: e.state("offline", 1))
        assert offline.reason == f"connection to {server.url} lost"
        gap = next(r for r in events.readings if r.samples[0].quality is Quality.COMM_FAIL)
        assert len(gap.samples) == SIGNALS and {s.value for s in gap.samples} == {None}
        mark = len(events.states)
        online = await events.until(lambda e: e.state("online", mark), timeout=15)
        back = time.time()
        await events.until(lambda e: e.samples(LEG, back), timeout=5)  # a new subscription delivers
    assert server.starts == 2 and online.reconnects == 1 and online.errors >= 1
    assert assert_as_served(face, [r for r in events.readings if r.ts.timestamp() >= back]) > 0


async def test_silent_network_is_noticed_and_survived(make_face):
    face, server = await make_face()
    proxy = TcpProxy("127.0.0.1", server.port)
    try:
        config = device(server, url=f"opc.tcp://127.0.0.1:{proxy.port}", timeout=1)
        async with running(config) as (adapter, events):
            await events.until(lambda e: e.state("online") and len(e.readings) >= 2)
            proxy.blackhole = True  # packets vanish: no FIN, no RST
            offline = await events.until(lambda e: e.state("offline", 1), timeout=10)
            assert "lost" in offline.reason and adapter.state.timeouts >= 1
            proxy.blackhole = False
            proxy.cut()
            mark = len(events.states)
            await events.until(lambda e: e.state("online", mark), timeout=15)
    finally:
        proxy.close()


async def test_basic256sha256_with_a_password_and_clear_refusals(make_face, tmp_path):
    cert, key = make_client_certificate(tmp_path / "pki", "gw-test")
    stranger = make_client_certificate(tmp_path / "other", "stranger")
    face, server = await make_face(users={"gw": "s3cret"}, allow_anonymous=False, allow_insecure=False,
                                   trusted_clients=[cert])
    secure = {"security_policy": "Basic256Sha256", "certificate": cert, "private_key": key, "username": "gw",
              "server_certificate": server.certificate}
    async with running(device(server, id="enc", security_mode="SignAndEncrypt", password="s3cret", **secure)) \
            as (_, encrypted), \
            running(device(server, id="sign", security_mode="Sign", password="s3cret", **secure)) as (_, signed), \
            running(device(server, id="wrong", security_mode="SignAndEncrypt", password="guess", **secure)) \
            as (_, refused), \
            running(device(server, id="untrusted", security_mode="SignAndEncrypt", password="s3cret",
                           **{**secure, "certificate": stranger[0], "private_key": stranger[1]})) as (_, untrusted):
        await encrypted.until(lambda e: len(e.readings) >= 2)
        await signed.until(lambda e: len(e.readings) >= 2)
        offline = await refused.until(lambda e: e.state("offline"))
        distrusted = await untrusted.until(lambda e: e.state("offline"))
    assert encrypted.state("online").reason.endswith("[Basic256Sha256/SignAndEncrypt, user 'gw']")
    assert signed.state("online").reason.endswith("[Basic256Sha256/Sign, user 'gw']")
    assert offline.reason.startswith("authentication failed for user 'gw': BadUserAccessDenied")
    assert distrusted.reason.startswith(f"{server.url} refused to open a secure channel: the server rejected our "
                                        f"certificate {stranger[0]} (SHA-1 thumbprint {thumbprint(stranger[0])})")
    assert refused.state("online") is None
    assert {s.quality for r in refused.readings for s in r.samples} == {Quality.COMM_FAIL}
    assert assert_as_served(face, encrypted.readings) >= SIGNALS


async def test_x509_user_certificate_over_basic256sha256_and_clear_refusal(make_face, tmp_path):
    cert, key = make_client_certificate(tmp_path / "pki", "gw-app")
    user_cert, user_key = make_client_certificate(tmp_path / "users", "operator")
    stranger_cert, stranger_key = make_client_certificate(tmp_path / "strangers", "stranger")
    face, server = await make_face(allow_anonymous=False, allow_insecure=False, trusted_clients=[cert],
                                   trusted_users=[user_cert])
    secure = {"security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt", "certificate": cert,
              "private_key": key, "server_certificate": server.certificate}
    async with running(device(server, id="user", user_certificate=user_cert, user_private_key=user_key,
                              **secure)) as (_, trusted), \
            running(device(server, id="stranger", user_certificate=stranger_cert, user_private_key=stranger_key,
                           **secure)) as (_, refused), \
            running(device(server, id="anon", **secure)) as (_, anonymous):
        await trusted.until(lambda e: len(e.readings) >= 2)
        offline = await refused.until(lambda e: e.state("offline"))
        anonymous_offline = await anonymous.until(lambda e: e.state("offline"))
    assert trusted.state("online").reason.endswith(
        "[Basic256Sha256/SignAndEncrypt, user certificate 'operator.der']")
    assert assert_as_served(face, trusted.readings) >= SIGNALS
    assert offline.reason.startswith(
        "authentication failed for user certificate 'stranger.der': BadIdentityTokenRejected"), offline.reason
    assert anonymous_offline.reason.startswith("authentication failed for anonymous user: BadIdentityTokenRejected")
    assert refused.state("online") is None
    # the tools take the same identity
    user = Security("Basic256Sha256", "SignAndEncrypt", cert, key, server.certificate,
                    user_certificate=user_cert, user_private_key=user_key)
    value, status, ts = await read(server.url, "ns=2;s=Longwall.Support002.FrontLegPressure", security=user)
    assert status == "Good" and value == face.served_at(ts)["support_002_front_leg_pressure"].value
    # settings: a user is a password or a certificate, and the files must exist
    with pytest.raises(ValueError, match="not both"):
        device(server, username="gw", user_certificate=user_cert, user_private_key=user_key, **secure)
    with pytest.raises(ValueError, match="go together"):
        device(server, user_certificate=user_cert, **secure)
    with pytest.raises(ValueError, match="user_private_key: no such file"):
        device(server, user_certificate=user_cert, user_private_key=tmp_path / "nope.pem", **secure)


async def test_tools_browse_read_and_make_certificates(make_face, tmp_path):
    face, server = await make_face(supports=2)
    rows = await browse(server.url, "ns=2;s=Longwall.Support001", depth=1)
    assert [(r.depth, r.browse_name, r.node_class) for r in rows] == [
        (0, "2:Support001", "Object"), (1, "2:FrontLegPressure", "Variable"), (1, "2:RearLegPressure", "Variable")]
    assert rows[1].data_type == "Float" and rows[1].status == "Good" and 0 <= rows[1].value <= 60
    face.set_fault("dead", signal="support_001_rear_leg_pressure")
    await asyncio.sleep(1.2)
    value, status, ts = await read(server.url, "ns=2;s=Longwall.Support001.RearLegPressure")
    assert (value, status) == (None, "BadSensorFailure") and ts.tzinfo is not None
    cert, key = make_client_certificate(tmp_path, "dispatch-gw")
    parsed = x509.load_der_x509_certificate(cert.read_bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:minegw:gateway:dispatch-gw"]
    assert key.stat().st_mode & 0o077 == 0
    secure = Security("Basic256Sha256", "SignAndEncrypt", cert, key)
    value, status, ts = await read(server.url, "ns=2;s=Longwall.Support002.FrontLegPressure", security=secure)
    assert status == "Good" and value == face.served_at(ts)["support_002_front_leg_pressure"].value


# -- servers we did not write -------------------------------------------------------------
@pytest.mark.parametrize("mode", ["subscribe", "poll"])
@pytest.mark.parametrize("published", [True, False], ids=["published-limit", "unpublished-limit"])
async def test_requests_fit_the_servers_operation_limits(make_face, mode, published):
    face, server = await make_face(operation_limit=100, publish_limits=published)  # SIGNALS > 100
    # polls of 1 s: a poll answered after its interval is stale, and a loaded machine can take 0.5 s for these
    async with running(device(server, mode=mode, poll_interval=1.0)) as (adapter, events):
        await events.until(lambda e: e.state("online") and len(e.readings) >= 3, timeout=15)
        await asyncio.sleep(1.2)  # polls and publishes go on fitting the limit
    assert events.state("offline", 1) is None, [(s.status.value, s.reason) for s in events.states]
    assert len({s.signal for r in events.readings for s in r.samples}) == SIGNALS
    assert all(s.quality is Quality.GOOD for r in events.readings for s in r.samples)
    assert assert_as_served(face, events.readings) > SIGNALS  # and changes kept coming


async def test_untrusted_certificate_says_where_to_trust_it_once(make_face, tmp_path, caplog):
    cert, key = make_client_certificate(tmp_path / "pki", "gw-test")
    stranger, stranger_key = make_client_certificate(tmp_path / "other", "stranger")
    face, server = await make_face(allow_insecure=False, trusted_clients=[cert])
    config = device(server, security_policy="Basic256Sha256", security_mode="SignAndEncrypt",
                    certificate=stranger, private_key=stranger_key, server_certificate=server.certificate)
    caplog.set_level(logging.INFO)
    async with running(config) as (adapter, events):
        await events.until(lambda e: adapter.state.errors >= 3)
    offline = events.state("offline")
    assert offline.reason == (
        f"{server.url} refused to open a secure channel: the server rejected our certificate {stranger} "
        f"(SHA-1 thumbprint {thumbprint(stranger)}): trust it on the server (copy it into its "
        "trusted-certificate folder, e.g. pki/trusted/certs, or accept it in its certificate manager)")
    client_logs = [r for r in caplog.records if r.name.startswith(("adapters.opcua", "asyncua.client"))
                   and r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in client_logs] == [f"face-1201: offline: {offline.reason}"]
    assert not any(r.exc_info for r in client_logs)


async def test_clean_server_shutdown_is_not_an_error(make_face, caplog):
    face, server = await make_face()
    async with running(device(server)) as (adapter, events):
        await events.until(lambda e: e.state("online") and len(e.readings) >= 2)
        caplog.set_level(logging.INFO)
        caplog.clear()
        await server.restart(downtime=1.5)  # answers the waiting Publish requests BadSessionClosed
        mark = len(events.states)
        await events.until(lambda e: e.state("online", mark), timeout=15)
    assert server.starts == 2
    errors = [r for r in caplog.records if r.name.startswith(("adapters.opcua", "asyncua.client"))
              and r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert events.state("offline", 1).reason == f"connection to {server.url} lost"


async def test_clock_offset_of_the_server_is_in_the_inventory(make_face):
    face, server = await make_face(clock_skew=-42.5)
    async with running(device(server, clock_check_interval=1)) as (adapter, events):
        first = await events.until(lambda e: e.inventories and e.inventories[0])
        server.clock_skew = timedelta(seconds=3)  # the server's clock is set while we are connected
        moved = await events.until(lambda e: len(e.inventories) >= 2 and e.inventories[1])
        await events.until(lambda e: e.readings)
        sample = events.readings[-1].samples[0]
    assert first.online and first.clock_offset_s == pytest.approx(-42.5, abs=0.1)
    assert (first.manufacturer, first.model) == ("FreeOpcUa", "FreeOpcUa Python Server")
    assert moved.clock_offset_s == pytest.approx(3, abs=0.1)
    assert face.served_at(sample.ts) is not None  # samples carry the server's clock, not the gateway's


# -- end to end ---------------------------------------------------------------------------
async def test_gateway_publishes_roof_pressure_to_mqtt(mosquitto, tmp_path):
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    site = parse_site({
        "site": {"id": "mine"}, "areas": [{"id": "face-1201", "kind": "longwall_face"}],
        "devices": [{"id": "rp-1201", "adapter": "opcua", "area": "face-1201", "url": f"opc.tcp://127.0.0.1:{free_port()}",
                     "supports": SUPPORTS, "backoff_initial": 0.1}],
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "topic_prefix": prefix}})
    topic = f"{prefix}/mine/face-1201/rp-1201"
    async with SiteSimulator(site, seed=2, opcua_certificate_dir=tmp_path) as sims:
        face = sims.simulator("rp-1201")
        with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/#") as sub:
            async with Gateway(site, [MqttSink(site.mqtt, site)]):
                messages = await sub.until(lambda ms: [DataMessage.model_validate_json(m.payload) for m in ms
                                                       if m.topic == f"{topic}/data"][:3] or None, timeout=10)
                sims.simulator("rp-1201").set_fault("dead", signal=LEG)
                await sub.until(lambda ms: any(
                    m.topic == f"{topic}/data" and b'"bad"' in m.payload for m in ms), timeout=10)
            state = StateMessage.model_validate_json(
                next(m for m in sub.messages if m.topic == f"{topic}/state" and b"online" in m.payload).payload)
    first = messages[0]
    assert (first.kind, first.area, len(first.samples)) == ("roof_pressure", "face-1201", SIGNALS)
    for message in messages:
        for name, sample in message.samples.items():
            assert sample.quality == "good" and sample.value == face.served_at(sample.ts)[name].value
    assert first.samples[LEG].unit == "MPa" and 20 < first.samples[LEG].value < 41
    assert state.status == DeviceStatus.ONLINE and state.reason.startswith("subscribed")


async def test_clean_gateway_stop_leaves_every_device_retained_as_stopped(mosquitto, tmp_path):
    prefix = f"stop-{uuid.uuid4().hex[:8]}"
    site = parse_site({
        "site": {"id": "mine"}, "areas": [{"id": "face-1201", "kind": "longwall_face"}],
        "devices": [{"id": "rp-1201", "adapter": "opcua", "area": "face-1201", "supports": SUPPORTS,
                     "url": f"opc.tcp://127.0.0.1:{free_port()}", "backoff_initial": 0.1},
                    {"id": "shearer-1201", "adapter": "modbus", "area": "face-1201", "profile": "shearer",
                     "host": "127.0.0.1", "port": free_port(), "poll_interval": 0.5}],
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "topic_prefix": prefix}})
    states = {d.id: f"{prefix}/mine/face-1201/{d.id}/state" for d in site.devices}
    async with SiteSimulator(site, seed=2, opcua_certificate_dir=tmp_path):
        with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/#") as sub:
            async with Gateway(site, [MqttSink(site.mqtt, site)]) as gateway:
                await sub.until(lambda ms: all(any(m.topic == t and b'"online"' in m.payload for m in ms)
                                               for t in states.values()), timeout=15)
            assert {a.state.status for a in gateway.adapters.values()} == {DeviceStatus.OFFLINE}
    with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/#") as late:  # retained messages only
        retained = await late.until(lambda ms: {m.topic: m for m in ms if m.topic in states.values()}
                                    if len({m.topic for m in ms} & set(states.values())) == 2 else None)
    for topic in states.values():
        state = StateMessage.model_validate_json(retained[topic].payload)
        assert (state.status, state.reason) == (DeviceStatus.OFFLINE, "gateway stopped"), topic
    status = [m for m in sub.messages if m.topic.endswith("/status")]
    stopped = [i for i, m in enumerate(sub.messages) if m.topic in states.values() and b"gateway stopped" in m.payload]
    assert len(stopped) == 2 and max(stopped) < sub.messages.index(status[-1])  # before the gateway's own offline
    assert b'"offline"' in status[-1].payload


def test_served_history_is_keyed_by_source_timestamp():
    face = FaceSimulator("f", load_nodemap("longwall", supports=2), seed=1)
    at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    served = face.sample(at)
    assert face.served_at(at) is served and face.current_values()[LEG.replace("003", "002")] is not None


def test_face_faults_are_checked_and_injected_weighting_loads_the_supports():
    from simulators.faults import FaultError

    face = FaceSimulator("f", load_nodemap("longwall", supports=SUPPORTS), seed=4, clock=lambda: 0.0)
    with pytest.raises(FaultError, match="stuck: no signal 'support_099_front_leg_pressure'"):
        face.set_fault("stuck", signal="support_099_front_leg_pressure")
    with pytest.raises(FaultError, match="weighting: no support 11"):
        face.set_fault("weighting", first=1, last=11)
    with pytest.raises(FaultError, match="unknown fault 'flood'"):
        face.set_fault("flood")
    calm = LongwallModel(face.nodemap, seed=4)
    face.set_fault("weighting", first=1, last=SUPPORTS, factor=5, duration=3 * 3600)
    assert "weighting" not in face.faults  # an event, not a state
    later = 2 * 3600.0
    loaded = [face.model.leg_pressure(n, "front", later) for n in range(1, SUPPORTS + 1)]
    usual = [calm.leg_pressure(n, "front", later) for n in range(1, SUPPORTS + 1)]
    assert sum(loaded) > sum(usual) + 2 * SUPPORTS
