"""Modbus device simulators: dynamics, faults and the site simulator, over real TCP."""
from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

import pytest
from pymodbus.client import AsyncModbusTcpClient

from adapters.modbus import codec
from adapters.modbus.adapter import ModbusAdapter, decode_point
from adapters.modbus.config import ModbusDeviceConfig
from adapters.modbus.profile import Point, Table, load_profile
from gateway.config import load_site, parse_site
from gateway.core.model import Quality
from simulators.modbus.machines import BeltConveyorModel, make_model
from simulators.modbus.scenario import Scenario, ScenarioError
from simulators.faults import FaultError
from simulators.modbus.server import DeviceSimulator, ModbusSimServer
from simulators.site import ControlError, SiteSimulator, send_fault
from tests.util import free_port

KINDS = ["shearer", "roadheader", "belt_conveyor", "face_conveyor"]
HOST = "127.0.0.1"


class ManualClock:
    """Model time that moves only when the test says so."""

    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@asynccontextmanager
async def served(*sims: DeviceSimulator):
    """Serve the simulators on a free loopback port; yields (server, connected client)."""
    server = ModbusSimServer(HOST, free_port(), list(sims))
    await server.start()
    client = AsyncModbusTcpClient(HOST, port=server.port, timeout=2, retries=0)
    assert await client.connect()
    try:
        yield server, client
    finally:
        client.close()
        await server.stop()


async def request(client: AsyncModbusTcpClient, unit: int, table: Table, address: int, count: int):
    read = {Table.COIL: client.read_coils, Table.DISCRETE_INPUT: client.read_discrete_inputs,
            Table.HOLDING_REGISTER: client.read_holding_registers,
            Table.INPUT_REGISTER: client.read_input_registers}[table]
    return await read(address, count=count, device_id=unit)


async def read(client, unit: int, table: Table, address: int, count: int) -> list:
    rr = await request(client, unit, table, address, count)
    assert not rr.isError(), rr
    return rr.bits[:count] if table.is_bit else rr.registers


def decode(point: Point, words: list):
    """What the gateway makes of a point's registers."""
    if point.table.is_bit:
        return bool(words[0])
    raw = codec.decode(list(words), point.type, point.order)
    return point.to_engineering(raw) if point.is_numeric else raw


async def read_point(client, unit: int, point: Point):
    return decode(point, await read(client, unit, point.table, point.address, point.width))


def belt_site(belt_port: int, shearer_port: int):
    device = {"adapter": "modbus", "area": "main", "host": HOST}
    return parse_site({
        "site": {"id": "test-mine"},
        "areas": [{"id": "main", "kind": "belt_line"}],
        "devices": [
            {**device, "id": "belt-1", "profile": "belt_conveyor", "port": belt_port, "unit_id": 1},
            {**device, "id": "belt-2", "profile": "belt_conveyor", "port": belt_port, "unit_id": 2},
            {**device, "id": "shearer-1", "profile": "shearer", "port": shearer_port, "unit_id": 1},
        ]})


# -- the wire -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
async def test_every_point_read_over_the_wire_matches_current_values(kind):
    clock = ManualClock(37.3)
    sim = DeviceSimulator("dev", kind, unit_id=3, seed=11, clock=clock)
    model_values = sim.model.values(37.3)
    sim.set_fault("stuck")
    clock.t = 400.0  # the model moves on; a stuck device keeps serving what it had
    async with served(sim) as (_, client):
        current = sim.current_values()
        for p in sim.profile.points:
            value = await read_point(client, 3, p)
            assert value == current[p.name], p.name
            if p.is_numeric:  # encoded right: equal to the model's value up to quantisation
                assert value == pytest.approx(model_values[p.name], rel=1e-6, abs=p.scale / 2 + 1e-9), p.name
            else:
                assert value == model_values[p.name], p.name
        moving = sim.served_values(400.0)
        assert any(moving[p.name] != model_values[p.name] for p in sim.profile.points if p.is_numeric)
        sim.clear_fault("stuck")
        assert sim.current_values() != current


@pytest.mark.parametrize("kind", KINDS)
async def test_whole_tables_read_in_one_request_with_unused_addresses_as_zero(kind):
    sim = DeviceSimulator("dev", kind, seed=2, clock=ManualClock(12.0))
    async with served(sim) as (_, client):
        current = sim.current_values()
        for table in Table:
            points = [p for p in sim.profile.points if p.table is table]
            size = sim.sizes[table]
            if not points:
                rr = await request(client, 1, table, 0, 1)
                assert rr.isError() and rr.exception_code == 2, table  # illegal address
                continue
            words = await read(client, 1, table, 0, size)
            used = {a for p in points for a in range(p.address, p.address + p.width)}
            assert not any(words[a] for a in range(size) if a not in used), table
            for p in points:
                assert decode(p, words[p.address:p.address + p.width]) == current[p.name], p.name
            if not table.is_bit:
                rr = await request(client, 1, table, size, 1)
                assert rr.isError() and rr.exception_code == 2, table


async def test_coils_and_discrete_inputs_read_back_bit_by_bit():
    clock = ManualClock(5.0)
    belt = DeviceSimulator("belt", "belt_conveyor", seed=3, clock=clock)
    async with served(belt) as (_, client):
        assert await read(client, 1, Table.COIL, 0, 3) == [True, False, False]
        assert not (await client.write_coil(2, True, device_id=1)).isError()  # lockout_command
        belt.set_fault("tear")
        clock.t = 6.0
        # running fault slip pile_up misalignment_trip tear smoke_trip over_temp e-stop lockout
        expected = [False, True, False, False, False, True, False, False, False, True]
        assert await read(client, 1, Table.DISCRETE_INPUT, 0, 10) == expected
        assert await read(client, 1, Table.DISCRETE_INPUT, 5, 5) == expected[5:]
        assert await read(client, 1, Table.DISCRETE_INPUT, 9, 1) == [True]
        assert await read(client, 1, Table.COIL, 0, 3) == [False, False, True]
        current = belt.current_values()
        di = [p for p in belt.profile.points if p.table is Table.DISCRETE_INPUT]
        assert [current[p.name] for p in sorted(di, key=lambda p: p.address)] == expected
        assert not (await client.write_coils(1, [True, False], device_id=1)).isError()  # reset, unlock
        clock.t = 7.0
        assert await read(client, 1, Table.COIL, 0, 3) == [False, False, False]
        assert (await read(client, 1, Table.DISCRETE_INPUT, 5, 1)) == [True]  # the tear is still there
        rr = await client.write_coil(7, True, device_id=1)  # no coil there
        assert rr.isError() and rr.exception_code == 2


async def test_gateway_adapter_poll_decodes_what_the_simulator_serves():
    sim = DeviceSimulator("shearer", "shearer", unit_id=4, seed=8, clock=ManualClock(321.0))
    async with served(sim) as (server, _):
        adapter = ModbusAdapter(ModbusDeviceConfig(id="shearer", area="face", host=HOST, port=server.port,
                                                   unit_id=4, profile="shearer"))
        assert await adapter.client.connect()
        reading = await adapter.poll_once()
        adapter.client.close()
    current = sim.current_values()
    assert {s.signal: s.value for s in reading.samples} == current
    assert {s.quality for s in reading.samples} == {Quality.GOOD}


# -- dynamics -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_and_time_give_same_values(kind):
    walked, direct, other = make_model(kind, 5), make_model(kind, 5), make_model(kind, 6)
    for t in (0.0, 1.3, 250.0, 599.9):
        walked.values(t)
    assert walked.values(600.7) == direct.values(600.7)
    assert walked.values(600.7) != other.values(600.7)
    assert walked.values(250.0) == make_model(kind, 5).values(250.0)  # asking about the past replays
    a = DeviceSimulator("x", kind, seed=5, clock=ManualClock(42.0))
    b = DeviceSimulator("y", kind, seed=5, clock=ManualClock(42.0))
    assert a.current_values() == b.current_values()


def test_same_commands_give_same_values():
    a, b = make_model("belt_conveyor", 1), make_model("belt_conveyor", 1)
    a.values(30.0)  # a's command comes live, b's is logged up front
    a.command("run_command", False, t=31.0)
    b.command("run_command", False, t=31.0)
    assert a.values(33.0) == b.values(33.0)


@pytest.mark.parametrize("kind", KINDS)
def test_values_cover_the_profile_and_stay_in_range(kind):
    model, profile = make_model(kind, 9), load_profile(kind)
    names = {p.name for p in profile.points}
    for t in range(0, 6000, 7):
        values = model.values(float(t))
        assert set(values) == names
        for p in profile.points:
            if p.range:
                assert p.range[0] <= values[p.name] <= p.range[1], (t, p.name, values[p.name])


def test_shearer_travels_the_face_both_ways():
    model = make_model("shearer", 2)
    samples = [model.values(float(t)) for t in range(0, 9000, 5)]
    positions = [s["position"] for s in samples]
    assert min(positions) < 1 and max(positions) > 199  # reached both gates
    assert all(s["model"] == "MG300/700-WD" for s in samples)
    mid_face = [s for s in samples if 15 < s["position"] < 185 and abs(s["haulage_speed"]) > 0.1]
    assert {s["haulage_speed"] > 0 for s in mid_face} == {True, False}
    for s in mid_face:
        assert 3 <= abs(s["haulage_speed"]) <= 8
        assert s["support_number"] == int(s["position"] / 1.5) + 1
        lead, trail = ("right", "left") if s["haulage_speed"] > 0 else ("left", "right")
        assert s[f"{lead}_drum_height"] > 250 > s[f"{trail}_drum_height"]  # leading drum on the roof
        assert s[f"{lead}_cutting_current"] > s[f"{trail}_cutting_current"]
    assert samples[-1]["shear_cycles"] > samples[0]["shear_cycles"]
    assert samples[-1]["cut_distance_total"] > samples[0]["cut_distance_total"]


def test_roadheader_cycles_between_cutting_and_tramming():
    model = make_model("roadheader", 4)
    samples = [model.values(float(t)) for t in range(0, 1500, 2)]
    cutting = [s for s in samples if s["mode"] == 1]
    tramming = [s for s in samples if s["mode"] == 2]
    assert cutting and tramming and samples[0]["model"] == "EBZ160TY"
    assert min(s["cutting_current"] for s in cutting) > 50
    assert all(s["cutting_current"] == 0 for s in tramming)
    assert max(s["travel_speed"] for s in tramming) > 2
    assert samples[-1]["advance_total"] > samples[0]["advance_total"]


def test_face_conveyor_runs_at_chain_speed():
    model = make_model("face_conveyor", 6)
    for t in range(0, 3000, 11):
        v = model.values(float(t))
        assert 1.1 <= v["chain_speed"] <= 1.3
        assert v["head_current"] > v["tail_current"] > 0 and v["head_power"] > 0


def test_belt_run_command_ramps_the_speed():
    model = make_model("belt_conveyor", 1)
    rated = model.values(50.0)["rated_speed"]
    model.command("run_command", False, t=50.0)
    assert 0 < model.values(52.0)["speed"] < rated
    stopped = model.values(56.0)
    assert stopped["speed"] == 0 and not stopped["running"] and stopped["load"] == 0
    model.command("run_command", True, t=60.0)
    assert 0 < model.values(63.0)["speed"] < 0.7 * rated
    started = model.values(68.0)
    assert started["speed"] == pytest.approx(rated, abs=0.02) and started["running"]
    assert started["start_count"] == stopped["start_count"] + 1


# MT 872: each fault trips its protection after its delay, latches, and stops the belt.
@pytest.mark.parametrize("fault, params, still_running_at, tripped_by, bit", [
    ("slip", {"ratio": 0.6}, 9.0, 11.5, "slip"),  # 50-70 % of rated for 10 s
    ("slip", {"ratio": 0.45}, None, 2.0, "slip"),  # <= 50 %: at once
    ("pile_up", {}, 1.5, 2.5, "pile_up"),  # 2 s
    ("misalignment", {"mm": -20}, 5.0, 11.0, "misalignment_trip"),  # drifts out, then 5 s
    ("smoke", {}, 4.0, 6.0, "smoke_trip"),  # rises to 1.5 %, then 2 s
    ("tear", {}, None, 0.5, "tear"),
    ("emergency_stop", {}, None, 0.5, "emergency_stop"),
])
def test_belt_protections_trip_after_their_delays(fault, params, still_running_at, tripped_by, bit):
    model = make_model("belt_conveyor", 4)
    rated = model.values(100.0)["rated_speed"]
    model.set_fault(fault, t=100.0, **params)
    if still_running_at is not None:
        v = model.values(100.0 + still_running_at)
        assert v["running"] and not v[bit] and not v["fault"]
    v = model.values(100.0 + tripped_by)
    assert v[bit] and v["fault"] and not v["running"] and not v["run_command"]
    if fault == "slip":
        assert v["speed"] < 0.7 * rated
    assert model.values(100.0 + tripped_by + BeltConveyorModel.STOP_TIME + 0.5)["speed"] == 0
    model.clear_fault(fault, t=130.0)  # fixed, reset and restarted
    v = model.values(140.0)
    assert v["running"] and not v[bit] and not v["fault"] and v["speed"] == pytest.approx(rated, abs=0.02)


def test_belt_reset_command_resets_only_trips_whose_cause_is_gone():
    model = make_model("belt_conveyor", 4)
    model.set_fault("slip", t=10.0, ratio=0.45)
    model.set_fault("tear", t=13.0)
    v = model.values(13.5)
    assert v["slip"] and v["tear"]
    model.command("reset_command", True, t=14.0)
    v = model.values(14.5)  # the tear is still there; slip is judged again on the next run
    assert v["tear"] and not v["slip"] and not v["running"] and not v["reset_command"]


# -- faults over the wire -----------------------------------------------------------------
async def test_slow_fault_delays_every_response():
    sim = DeviceSimulator("belt", "belt_conveyor")
    async with served(sim) as (_, client):
        sim.set_fault("slow", delay=0.3)
        started = time.monotonic()
        await read(client, 1, Table.INPUT_REGISTER, 0, 2)
        assert time.monotonic() - started >= 0.3
        sim.clear_fault("slow")
        started = time.monotonic()
        await read(client, 1, Table.INPUT_REGISTER, 0, 2)
        assert time.monotonic() - started < 0.2


async def test_a_slow_unit_does_not_hold_up_another_on_the_same_port():
    """Every request is a task of its own: one unit's slow answer leaves the port's other units answering."""
    slow, quick = DeviceSimulator("belt-1", "belt_conveyor", 1), DeviceSimulator("belt-2", "belt_conveyor", 2)
    async with served(slow, quick) as (server, client):
        other = AsyncModbusTcpClient(HOST, port=server.port, timeout=2, retries=0)
        assert await other.connect()
        try:
            slow.set_fault("slow", delay=1.5)
            waiting = asyncio.create_task(read(client, 1, Table.INPUT_REGISTER, 0, 2))
            await asyncio.sleep(0.1)
            for _ in range(3):
                await read(other, 2, Table.INPUT_REGISTER, 0, 2)
            assert not waiting.done()  # answered three times while unit 1's first answer waits
            assert len(await waiting) == 2
        finally:
            other.close()


async def test_exception_fault_answers_with_its_code():
    sim = DeviceSimulator("afc", "face_conveyor")
    async with served(sim) as (_, client):
        sim.set_fault("exception", code=4, table="input_register")
        rr = await request(client, 1, Table.INPUT_REGISTER, 0, 2)
        assert rr.isError() and rr.exception_code == 4
        await read(client, 1, Table.DISCRETE_INPUT, 0, 5)  # other tables still answer
        sim.set_fault("exception", code=6)  # every table: device busy
        rr = await request(client, 1, Table.COIL, 0, 1)
        assert rr.isError() and rr.exception_code == 6
        sim.clear_fault()
        await read(client, 1, Table.INPUT_REGISTER, 0, 2)
    with pytest.raises(FaultError, match="code"):
        sim.set_fault("exception", code=9)


async def test_offline_refuses_connections_until_cleared():
    sim = DeviceSimulator("shearer", "shearer")
    async with served(sim) as (server, client):
        sim.set_fault("offline")
        await server.settled()
        late = AsyncModbusTcpClient(HOST, port=server.port, timeout=1, retries=0)
        assert not await late.connect()  # connection refused
        sim.clear_fault("offline")
        await server.settled()
        assert await late.connect()  # the same port again
        await read(late, 1, Table.INPUT_REGISTER, 0, 2)
        late.close()


async def test_offline_unit_on_a_shared_port_answers_gateway_no_response():
    one = DeviceSimulator("belt-1", "belt_conveyor", 1, seed=1)
    two = DeviceSimulator("belt-2", "belt_conveyor", 2, seed=2)
    async with served(one, two) as (server, client):
        two.set_fault("offline")
        await server.settled()
        assert server.listening
        await read(client, 1, Table.INPUT_REGISTER, 0, 2)
        for unit in (2, 9):  # offline, and never configured
            rr = await request(client, unit, Table.INPUT_REGISTER, 0, 2)
            assert rr.isError() and rr.exception_code == 0x0B, unit


async def test_out_of_range_fault_serves_a_value_outside_the_range():
    sim = DeviceSimulator("belt", "belt_conveyor", clock=ManualClock(10.0))
    speed, misalignment = sim.profile.point("speed"), sim.profile.point("misalignment")
    async with served(sim) as (_, client):
        sim.set_fault("out_of_range", signal="speed")
        words = await read(client, 1, Table.INPUT_REGISTER, speed.address, speed.width)
        value, quality = decode_point(speed, words)
        assert value == pytest.approx(5.5) and quality is Quality.OUT_OF_RANGE  # 10 % above 0..5
        sim.set_fault("out_of_range", signal="misalignment", value=-31)
        assert await read_point(client, 1, misalignment) == -31
        assert sim.current_values()["misalignment"] == -31
    for bad in ({"signal": "running"}, {"signal": "speed", "value": 2.0}, {"signal": "nope"},
                {"signal": "smoke", "value": -1}):
        with pytest.raises(FaultError):
            sim.set_fault("out_of_range", **bad)


async def test_belt_slip_sets_the_slip_bit_and_drops_the_speed():
    clock = ManualClock(10.0)
    belt = DeviceSimulator("belt", "belt_conveyor", seed=7, clock=clock)
    p = belt.profile.point
    async with served(belt) as (_, client):
        rated = await read_point(client, 1, p("rated_speed"))
        assert await read_point(client, 1, p("speed")) > 0.95 * rated
        belt.set_fault("slip", ratio=0.45)
        clock.t = 12.0
        assert await read_point(client, 1, p("slip")) is True
        assert await read_point(client, 1, p("speed")) < 0.7 * rated
        assert await read_point(client, 1, p("running")) is False
        assert belt.faults == {"slip": {"ratio": 0.45}}


async def test_coil_write_reaches_the_model():
    clock = ManualClock(10.0)
    belt = DeviceSimulator("belt", "belt_conveyor", seed=7, clock=clock)
    speed = belt.profile.point("speed")
    async with served(belt) as (_, client):
        before = await read_point(client, 1, speed)
        assert not (await client.write_coil(0, False, device_id=1)).isError()  # run_command = 0
        clock.t = 11.5
        ramping = await read_point(client, 1, speed)
        clock.t = 16.0
        assert 0 < ramping < before and await read_point(client, 1, speed) == 0
        assert await read(client, 1, Table.COIL, 0, 1) == [False]


async def test_set_point_write_reaches_the_model_and_out_of_range_is_refused():
    clock = ManualClock(10.0)
    sim = DeviceSimulator("shearer", "shearer", seed=3, clock=clock)
    async with served(sim) as (server, client):
        adapter = ModbusAdapter(ModbusDeviceConfig(id="shearer", area="face", host=HOST, port=server.port,
                                                   profile="shearer"))
        result = await adapter.write("haulage_speed_setpoint", -2.5)
        adapter.client.close()
        assert result.ok, result.error
        clock.t = 20.0
        assert sim.current_values()["haulage_speed"] == pytest.approx(-2.5, abs=0.06)
        rr = await client.write_register(0, 2000, device_id=1)  # 20 m/min: outside -15..15
        assert rr.isError() and rr.exception_code == 3


# -- scenario -----------------------------------------------------------------------------
async def test_scenario_applies_a_fault_at_its_time(tmp_path):
    site = belt_site(free_port(), free_port())
    path = tmp_path / "scenario.yaml"
    path.write_text("- {at: 0.4, device: belt-2, fault: exception, code: 4, duration: 0.5}\n")
    async with SiteSimulator(site, seed=1, scenario=path) as sim:
        client = AsyncModbusTcpClient(HOST, port=site.devices[0].port, timeout=2, retries=0)
        assert await client.connect()

        async def answer_at(t: float):
            await asyncio.sleep(t - sim.clock())
            return await request(client, 2, Table.INPUT_REGISTER, 0, 2)

        assert not (await answer_at(0.1)).isError()
        during = await answer_at(0.65)
        assert during.isError() and during.exception_code == 4
        assert sim.simulator("belt-2").faults == {"exception": {"code": 4, "table": None}}
        assert not (await request(client, 1, Table.INPUT_REGISTER, 0, 2)).isError()  # only belt-2
        assert not (await answer_at(1.2)).isError()
        assert sim.scenario_done and sim.simulator("belt-2").faults == {}
        client.close()


def test_scenario_problems_are_reported_with_their_step():
    site = belt_site(free_port(), free_port())
    bad = Scenario.parse([
        {"at": 1, "device": "belt-9", "fault": "slip"},
        {"at": 2, "device": "shearer-1", "fault": "slip"},
        {"at": 3, "device": "belt-1", "fault": "slip", "ratio": 3},
        {"at": 4, "device": "belt-1", "fault": "slow", "params": {"delay": 0.5}},
    ])
    with pytest.raises(ScenarioError) as err:
        SiteSimulator(site, scenario=bad)
    problems = err.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("[0].device: 'belt-9' is not simulated")
    assert problems[1].startswith("[1]: shearer-1: unknown fault 'slip'")
    assert problems[2].startswith("[2]: belt-1: slip: ratio:")
    with pytest.raises(ScenarioError, match=r"\[0\]\.at: Input should be greater than or equal to 0"):
        Scenario.parse([{"at": -1, "device": "belt-1", "fault": "slip"}])
    with pytest.raises(ScenarioError, match="list of steps"):
        Scenario.parse({"at": 1})


def test_shipped_scenario_fits_the_example_site():
    sim = SiteSimulator(load_site("deploy/site.example.yaml"), scenario="simulators/scenarios/belt_faults.yaml")
    assert len(sim.scenario.steps) >= 5
    assert {len(s.simulators) for s in sim.servers if isinstance(s, ModbusSimServer)} == {1, 2}  # the two belts share a port


# -- control endpoint ---------------------------------------------------------------------
async def test_control_endpoint_sets_and_clears_faults():
    site = belt_site(free_port(), free_port())
    async with SiteSimulator(site, seed=3, control_port=0) as sim:
        host, port = sim.control_address
        reply = await send_fault(host, port, "belt-1", "slip", {"ratio": 0.45})
        assert reply == {"ok": True, "device": "belt-1", "faults": {"slip": {"ratio": 0.45}}}
        assert sim.simulator("belt-1").faults == {"slip": {"ratio": 0.45}}
        with pytest.raises(ControlError, match="no simulated device 'belt-9'"):
            await send_fault(host, port, "belt-9", "slip")
        with pytest.raises(ControlError, match="ratio"):
            await send_fault(host, port, "belt-1", "slip", {"ratio": "fast"})
        reader, writer = await asyncio.open_connection(host, port)  # the raw protocol
        writer.write(b"not json\n" + json.dumps({"device": "belt-1", "clear": True}).encode() + b"\n")
        assert json.loads(await reader.readline())["ok"] is False
        assert json.loads(await reader.readline()) == {"ok": True, "device": "belt-1", "faults": {}}
        writer.close()
        await send_fault(host, port, "shearer-1", "offline")  # answered once the port is closed
        shearer_port = site.devices[2].port
        with pytest.raises(OSError):
            await asyncio.open_connection(HOST, shearer_port)
        await send_fault(host, port, "shearer-1", "offline", clear=True)
        _, writer = await asyncio.open_connection(HOST, shearer_port)
        writer.close()


async def test_a_custom_profile_gets_a_generic_model_inside_its_ranges(tmp_path):

    from adapters.modbus.profile import Profile
    from simulators.modbus.machines import GenericModel

    profile = Profile.model_validate({"kind": "pump_station", "points": [
        {"name": "flow", "unit": "m3/h", "table": "input_register", "address": 0, "type": "float32",
         "range": [0, 500]},
        {"name": "level", "table": "input_register", "address": 2, "type": "uint16", "scale": 0.1, "range": [0, 10]},
        {"name": "running", "table": "discrete_input", "address": 0, "type": "bool"},
        {"name": "tag", "table": "holding_register", "address": 0, "type": "string", "length": 4}]})
    model = make_model(profile, 3)
    assert isinstance(model, GenericModel)
    seen = [model.values(t) for t in range(0, 300, 7)]
    assert all(0 <= v["flow"] <= 500 and 0 <= v["level"] <= 10 for v in seen)
    assert len({round(v["flow"], 3) for v in seen}) > 10  # it moves
    assert seen[0]["running"] is False and seen[0]["tag"] == "pump"
    assert make_model(profile, 3).values(42.0) == make_model(profile, 3).values(42.0)
