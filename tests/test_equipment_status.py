"""The normalised equipment status (gateway/derived/status.py): its rules, and simulator → gateway → InfluxDB."""
from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from gateway.config import parse_site
from gateway.derived import processor_for
from gateway.derived.roof_pressure import RoofPressureMetrics
from gateway.derived.status import EquipmentStatus, Status, status_of
from gateway.historian.sink import HistorianSink
from gateway.core.model import Quality, Reading, Sample
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from simulators.site import SiteSimulator
from tests.mqtt_util import MqttCollector
from tests.sites import historian, make_site, modbus, mqtt
from tests.util import free_port

T0 = datetime(2025, 3, 14, 6, 0, tzinfo=timezone.utc)
GOOD, COMM_FAIL, BAD = Quality.GOOD, Quality.COMM_FAIL, Quality.BAD


def reading(at: float = 0.0, quality=GOOD, qualities: dict | None = None, **bits) -> Reading:
    """A machine's reading ``at`` seconds after T0: the status bits (running unless told otherwise) with
    ``quality``, or per bit as ``qualities`` says (not good: no value, as the adapter gives them)."""
    ts = T0 + timedelta(seconds=at)
    bits = {"running": True, "fault": False, "emergency_stop": False, **bits}
    samples = []
    for name, value in bits.items():
        q = (qualities or {}).get(name, quality)
        samples.append(Sample(signal=name, value=value if q is GOOD else None, quality=q, ts=ts))
    samples.append(Sample(signal="haulage_speed", value=6.2, unit="m/min", ts=ts))
    return Reading(device="shearer-1", ts=ts, poll_ms=12.5, samples=samples)


@pytest.mark.parametrize("r, status", [
    (reading(running=True), Status.RUNNING),
    (reading(running=False), Status.STOPPED),
    (reading(running=True, fault=True), Status.FAULT),
    (reading(running=False, emergency_stop=True), Status.FAULT),
    (reading(quality=COMM_FAIL), Status.OFFLINE),  # what the Modbus adapter emits on a failed poll
    (reading(qualities={"running": COMM_FAIL}), Status.OFFLINE),
    (reading(emergency_stop=True, qualities={"fault": COMM_FAIL}), Status.OFFLINE),  # no answer outranks e-stop
    (reading(qualities={"running": BAD}), Status.STOPPED),  # answered without the bit: not known to run
    (reading(emergency_stop=True, qualities={"running": BAD}), Status.FAULT),
])
def test_status_of_a_reading(r, status):
    assert status_of(r) is status


def test_codes_are_ordered_by_severity_so_max_is_the_area_status():
    assert [(s.label, int(s)) for s in Status] == [("stopped", 0), ("running", 1), ("offline", 2), ("fault", 3)]
    assert Status(max([Status.RUNNING, Status.STOPPED, Status.OFFLINE])) is Status.OFFLINE
    assert Status(max([Status.RUNNING, Status.FAULT, Status.OFFLINE])) is Status.FAULT


def samples_of(derived: Reading) -> dict:
    return {s.signal: (s.value, s.quality, s.ts) for s in derived.samples}


def test_emits_the_first_reading_each_change_and_a_heartbeat_otherwise():
    proc = EquipmentStatus("shearer-1")
    first = proc.process(reading(0))
    assert first.device == "shearer-1" and first.derived and first.poll_ms == 0 and first.ts == T0
    assert samples_of(first) == {"status": ("running", GOOD, T0), "status_code": (1, GOOD, T0)}
    assert type(samples_of(first)["status_code"][0]) is int  # an integer field in InfluxDB, never a float

    assert proc.process(reading(1)) is None  # unchanged
    assert proc.process(reading(29.9)) is None
    fault = proc.process(reading(30.5, emergency_stop=True))  # a change: at once, whenever it comes
    assert samples_of(fault)["status"][0] == "fault" and fault.ts == T0 + timedelta(seconds=30.5)
    assert proc.process(reading(31, emergency_stop=True)) is None
    beat = proc.process(reading(30.5 + EquipmentStatus.HEARTBEAT_S, emergency_stop=True))  # unchanged, 30 s on
    assert samples_of(beat)["status_code"][0] == 3
    assert proc.process(reading(61, emergency_stop=True)) is None  # the heartbeat counts from the last emission
    offline = proc.process(reading(62, quality=COMM_FAIL))
    assert samples_of(offline)["status"][0] == "offline"
    stopped = proc.process(reading(63, running=False))
    assert samples_of(stopped)["status"][0] == "stopped"
    assert proc.process(reading(62.5, running=False)) is not None  # clock stepped back: emit rather than go quiet


def test_processor_for_every_modbus_machine_but_not_broadcast_nodes():
    port = free_port()
    machines = {"shearer-1": "shearer", "rh-1": "roadheader", "belt-1": "belt_conveyor", "afc-1": "face_conveyor"}
    devices = [{"id": d, "area": "face", "profile": p, "host": "127.0.0.1", "port": port, "unit_id": i}
               for i, (d, p) in enumerate(machines.items(), 1)]
    devices += [{"id": "bn-1", "area": "face", "profile": "broadcast_node", "host": "127.0.0.1", "port": port,
                 "unit_id": 9},
                {"id": "roof-1", "adapter": "opcua", "area": "face", "url": "opc.tcp://127.0.0.1:4840",
                 "supports": 3}]
    site = parse_site({"site": {"id": "s1"}, "areas": [{"id": "face", "kind": "longwall_face"}],
                       "devices": devices})
    processors = {d.id: processor_for(d, site.roof_pressure) for d in site.devices}
    assert all(isinstance(processors[d], EquipmentStatus) and processors[d].device_id == d for d in machines)
    assert processors["bn-1"] is None
    assert isinstance(processors["roof-1"], RoofPressureMetrics)


def test_no_derived_status_for_a_profile_with_a_status_signal_of_its_own(tmp_path, caplog):
    from adapters.modbus.profile import PROFILE_DIR

    own = tmp_path / "own.yaml"
    own.write_text((PROFILE_DIR / "belt_conveyor.yaml").read_text()
                   + "  - {name: status, table: input_register, address: 90, type: uint16}\n")
    site = parse_site({"site": {"id": "s1"}, "areas": [{"id": "a", "kind": "belt_line"}],
                       "devices": [{"id": "b", "area": "a", "profile": str(own), "host": "127.0.0.1"}]})
    assert processor_for(site.devices[0], site.roof_pressure) is None
    assert "its profile has signal(s) status of its own" in caplog.text


async def test_status_code_goes_running_fault_running_offline_in_influxdb(mosquitto, influxdb, tmp_path, monkeypatch):
    monkeypatch.setattr(EquipmentStatus, "HEARTBEAT_S", 1.0)  # to see heartbeats within the test
    prefix = f"status-{uuid.uuid4().hex[:8]}"
    db = prefix.replace("-", "_")
    site = make_site(modbus("shearer-1", "shearer", backoff_initial=0.2, backoff_max=0.5),
                     mqtt=mqtt(mosquitto, prefix), historian=historian(influxdb, db, tmp_path / "b.sqlite3"))

    def codes() -> list[tuple[int, str, int]]:
        try:
            rows = influxdb.query('SELECT "status_code", "status" FROM "shearer" WHERE "device" = \'shearer-1\'', db)
        except RuntimeError:  # no database before the first write
            return []
        return [(r["time"], r["status"], r["status_code"]) for r in rows if r["status_code"] is not None]

    async def until_code(code: int) -> None:
        for _ in range(100):
            if (got := codes()) and got[-1][2] == code:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"status_code never became {code}: {codes()}")

    with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/#") as sub:
        async with SiteSimulator(site, seed=5) as sims:
            async with Gateway(site, [MqttSink(site.mqtt, site), HistorianSink(site.historian, site)]):
                await until_code(1)
                await asyncio.sleep(2.5)  # steady running: heartbeats only
                sims.simulator("shearer-1").set_fault("emergency_stop")
                await until_code(3)
                sims.simulator("shearer-1").clear_fault("emergency_stop")  # the machine starts again
                await until_code(1)
                sims.simulator("shearer-1").set_fault("offline")
                await until_code(2)
        rows = codes()
        polls = influxdb.query('SELECT count("position") FROM "shearer"', db)[0]["count"]
        data = [json.loads(m.payload) for m in sub.on(f"{prefix}/s1/face/shearer-1/data")]

    transitions = [code for i, (_, _, code) in enumerate(rows) if i == 0 or rows[i - 1][2] != code]
    assert transitions == [1, 3, 1, 2]
    assert {(status, code) for _, status, code in rows} == {("running", 1), ("fault", 3), ("offline", 2)}
    # not every poll: a status again only as a heartbeat, HEARTBEAT_S (1 s here) after the last one
    repeats = [b[0] - a[0] for a, b in zip(rows, rows[1:]) if a[2] == b[2]]
    assert len(repeats) >= 2 and min(repeats) >= 0.9e9 and len(rows) < polls
    # on the data topic too, as messages of their own (poll_ms 0) stamped like the poll they come from
    status_messages = [m for m in data if set(m["samples"]) == {"status", "status_code"}]
    assert [m["samples"]["status"]["value"] for m in status_messages][:1] == ["running"]
    assert {m["poll_ms"] for m in status_messages} == {0}
    polled_at = {m["ts"] for m in data if "position" in m["samples"]}
    assert all(m["ts"] in polled_at for m in status_messages)
