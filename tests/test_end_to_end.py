"""Simulators → gateway → real Mosquitto → a subscriber: the documented payloads, end to end."""
import asyncio
import json
import time
import uuid
from datetime import datetime

import pytest

from gateway.config import parse_site
from gateway.contract import DataMessage, StateMessage
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from simulators.site import SiteSimulator
from tests.mqtt_util import MqttCollector
from tests.util import free_port

KINDS = {"shearer-1": "shearer", "afc-1": "face_conveyor", "roadheader-1": "roadheader",
         "belt-1": "belt_conveyor", "belt-2": "belt_conveyor"}


def e2e_site(broker, prefix):
    belt_port = free_port()
    devices = []
    for dev_id, profile in KINDS.items():
        shared = dev_id.startswith("belt")
        devices.append({"id": dev_id, "adapter": "modbus", "area": "face" if not shared else "belt",
                        "profile": profile, "host": "127.0.0.1", "port": belt_port if shared else free_port(),
                        "unit_id": 2 if dev_id == "belt-2" else 1, "poll_interval": 0.5, "timeout": 0.5,
                        "retries": 0, "backoff_initial": 0.2, "backoff_max": 1})
    return parse_site({
        "site": {"id": "e2e"},
        "areas": [{"id": "face", "kind": "longwall_face"}, {"id": "belt", "kind": "belt_line"}],
        "devices": devices,
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix},
    })


@pytest.fixture
async def running(mosquitto):
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    site = e2e_site(mosquitto, prefix)
    sims = SiteSimulator(site, seed=7)
    await sims.start()
    with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/#") as sub:
        gateway = Gateway(site, [MqttSink(site.mqtt, site)])
        await gateway.start()
        yield site, sims, sub, prefix
        await gateway.stop()
    await sims.stop()


def data_after(prefix, device, area, since: float):
    """A predicate: the first data message of ``device`` from a poll that started after ``since``."""
    topic = f"{prefix}/e2e/{area}/{device}/data"

    def find(messages):
        for m in messages:
            if m.topic == topic:
                msg = DataMessage.model_validate_json(m.payload)
                if msg.ts.timestamp() > since:
                    return msg
    return find


def latest_state(prefix, device, area):
    topic = f"{prefix}/e2e/{area}/{device}/state"

    def find(status):
        def check(messages):
            states = [StateMessage.model_validate_json(m.payload) for m in messages if m.topic == topic]
            return states[-1] if states and states[-1].status == status else None
        return check
    return find


async def test_subscriber_receives_correct_values_for_all_four_machine_kinds(running):
    site, sims, sub, prefix = running
    for d in site.devices:
        sims.simulator(d.id).set_fault("stuck")  # freeze, so what is served can be compared
    frozen_at = time.time()
    for d in site.devices:
        msg = await sub.until(data_after(prefix, d.id, d.area, frozen_at + 0.3), timeout=10)
        served = sims.simulator(d.id).current_values()
        assert msg.kind == KINDS[d.id] and msg.site == "e2e" and msg.area == d.area
        assert set(msg.samples) == set(served), d.id
        for signal, sample in msg.samples.items():
            assert sample.quality == "good", (d.id, signal, sample)
            expected = served[signal]
            if isinstance(expected, float):
                assert sample.value == pytest.approx(expected, rel=1e-12, abs=1e-12), (d.id, signal)
            else:
                assert sample.value == expected, (d.id, signal)
            assert sample.ts.tzinfo is not None
    shearer = (await sub.until(data_after(prefix, "shearer-1", "face", frozen_at), timeout=5))
    assert shearer.samples["model"].value == "MG300/700-WD"
    assert shearer.samples["left_cutting_current"].unit == "A"


async def test_raw_payload_follows_the_documented_shape(running):
    site, sims, sub, prefix = running
    topic = f"{prefix}/e2e/face/shearer-1/data"
    raw = await sub.until(lambda ms: next((m for m in ms if m.topic == topic), None), timeout=10)
    assert not raw.retain and raw.qos == 1
    body = json.loads(raw.payload)
    assert set(body) >= {"site", "area", "zone", "device", "kind", "ts", "poll_ms", "samples"}
    sample = body["samples"]["position"]
    assert set(sample) == {"value", "unit", "quality", "ts"}
    assert sample["ts"].endswith("Z") and datetime.fromisoformat(sample["ts"].replace("Z", "+00:00"))
    status = f"{prefix}/e2e/gateway/gateway-1/status"
    await sub.until(lambda ms: next((m for m in ms if m.topic == status), None), timeout=5)
    # A subscriber arriving later still finds the gateway's birth and every device state, retained.
    with MqttCollector(sub.client.host, sub.client.port, f"{prefix}/#") as late:
        birth = await late.until(lambda ms: next((m for m in ms if m.topic == status), None), timeout=5)
        assert birth.retain and json.loads(birth.payload)["status"] == "online"
        states = await late.until(lambda ms: [m for m in ms if m.topic.endswith("/state")]
                                  if sum(m.topic.endswith("/state") for m in ms) == len(KINDS) else None)
        assert all(m.retain for m in states)


async def test_device_goes_offline_and_comes_back(running):
    site, sims, sub, prefix = running
    state = latest_state(prefix, "shearer-1", "face")
    await sub.until(state("online"), timeout=10)

    sims.simulator("shearer-1").set_fault("offline")
    cut_at = time.time()
    offline = await sub.until(state("offline"), timeout=10)
    assert "127.0.0.1" in offline.reason
    failed = await sub.until(data_after(prefix, "shearer-1", "face", cut_at), timeout=10)
    assert {s.quality for s in failed.samples.values()} == {"comm-fail"}
    assert all(s.value is None for s in failed.samples.values())

    sims.simulator("shearer-1").clear_fault("offline")
    online = await sub.until(state("online"), timeout=15)
    assert online.last_good_poll is not None and online.errors >= 1


async def test_unit_behind_a_shared_port_going_silent_is_offline_and_its_neighbour_is_not(running):
    site, sims, sub, prefix = running
    await sub.until(latest_state(prefix, "belt-2", "belt")("online"), timeout=10)
    sims.simulator("belt-2").set_fault("offline")  # the port stays open for belt-1
    offline = await sub.until(latest_state(prefix, "belt-2", "belt")("offline"), timeout=10)
    assert "target failed to respond" in offline.reason
    after = time.time()
    neighbour = await sub.until(data_after(prefix, "belt-1", "belt", after), timeout=5)
    assert {s.quality for s in neighbour.samples.values()} <= {"good", "out-of-range"}
    sims.simulator("belt-2").clear_fault()
    await sub.until(latest_state(prefix, "belt-2", "belt")("online"), timeout=10)


async def test_gateway_writes_every_machine_kind_to_the_historian(mosquitto, influxdb, tmp_path):
    from gateway.service import build_sinks

    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    data = e2e_site(mosquitto, prefix).model_dump(mode="json")
    data["historian"] = {"url": f"http://{influxdb.host}:{influxdb.port}", "database": prefix.replace("-", "_"),
                         "flush_interval": 0.2, "buffer": {"path": str(tmp_path / "buffer.sqlite3")}}
    data["mqtt"]["password"] = None
    site = parse_site(data)
    async with SiteSimulator(site, seed=3) as sims:
        for d in site.devices:
            sims.simulator(d.id).set_fault("stuck")
        async with Gateway(site, build_sinks(site)):
            latest = {}
            deadline = time.monotonic() + 15
            while len(latest) < len(KINDS) and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
                for d in site.devices:
                    rows = _query_or_empty(influxdb, f'SELECT * FROM "{KINDS[d.id]}" WHERE "device" = \'{d.id}\' '
                                           'ORDER BY time DESC LIMIT 1', site.historian.database)
                    if rows:
                        latest[d.id] = rows[0]
        assert set(latest) == set(KINDS)
        for d in site.devices:
            served, row = sims.simulator(d.id).current_values(), latest[d.id]
            assert (row["site"], row["area"]) == ("e2e", d.area)
            for signal, value in served.items():
                assert row[signal] == (pytest.approx(value) if isinstance(value, float) else value), (d.id, signal)
        states = influxdb.query('SELECT last("status") FROM "device_state" GROUP BY "device"', site.historian.database)
        assert {r["device"] for r in states} == set(KINDS)


def _query_or_empty(influxdb, q, db):
    try:
        return influxdb.query(q, db)
    except RuntimeError:  # database not created yet by the first write
        return []
