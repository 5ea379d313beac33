"""Emergency broadcast: profile, node simulator, and the controller against real Modbus simulators."""
from __future__ import annotations


import pytest
from pymodbus.client import AsyncModbusTcpClient

from adapters.modbus.plan import plan_reads
from adapters.modbus.profile import Table, load_profile
from gateway.broadcast import BroadcastPriority
from gateway.config import parse_site
from gateway.runtime import Gateway
from simulators.modbus.machines import MODELS, BroadcastNodeModel, make_model
from simulators.modbus.server import DeviceSimulator, ModbusSimServer
from simulators.site import SiteSimulator
from tests.sites import modbus, site_dict
from tests.util import RecordingSink, free_port

HOST = "127.0.0.1"
NODES = ["bn-1", "bn-2", "bn-3", "bn-4"]


def broadcast_site(port: int, site_id: str = "test-mine", **sections) -> dict:
    """Four broadcast nodes on one simulator port, two in face-1, two in main; zones face, belt, escape-intake."""
    nodes = [modbus(node, "broadcast_node", "face-1" if i < 2 else "main", port=port, unit_id=i + 1, timeout=1.0,
                    retries=1) for i, node in enumerate(NODES)]
    return site_dict(*nodes, site_id=site_id, areas={"face-1": "longwall_face", "main": "roadway"}, broadcast={
        "zones": [{"id": "face", "nodes": ["bn-1", "bn-2"]},
                  {"id": "belt", "nodes": ["bn-3"]},
                  {"id": "escape-intake", "nodes": ["bn-4"], "escape_route": True}],
        "escape_routes": {"face-1": ["escape-intake"]},
        "confirm_timeout": 2.0}, **sections)


@pytest.fixture
async def mine():
    site = parse_site(broadcast_site(free_port()))
    recorder = RecordingSink()
    async with SiteSimulator(site, onvif_discovery_port=None) as sim:
        async with Gateway(site, [recorder]) as gw:
            yield sim, gw, gw.broadcast, recorder


def test_profile_validates_and_reads_in_few_requests():
    profile = load_profile("broadcast_node")
    assert profile.kind == "broadcast_node" and "broadcast_node" in MODELS
    writable = {p.name for p in profile.points if p.writable}
    assert writable == {"message_id", "zone", "priority", "volume_setpoint", "play_command", "stop_command"}
    status = {"online", "on_battery", "battery_level", "amplifier_fault", "line_fault", "volume",
              "playing", "playing_message", "playing_zone", "playing_priority"}
    assert status <= {p.name for p in profile.points}
    assert len(plan_reads(profile.points)) == 4


def test_model_priorities_faults_and_battery():
    m = make_model("broadcast_node")
    assert isinstance(m, BroadcastNodeModel)

    def play(msg, prio, t):
        m.command("message_id", msg, t=t)
        m.command("priority", prio, t=t)
        m.command("play_command", True, t=t)

    play(4, 1, 1.0)
    assert m.values(1.5)["playing_message"] == 4
    play(1, 3, 2.0)  # emergency pre-empts routine
    assert (m.values(2.5)["playing_message"], m.values(2.5)["playing_priority"]) == (1, 3)
    play(4, 2, 3.0)  # dispatcher does not pre-empt emergency
    assert m.values(3.5)["playing_message"] == 1
    m.set_fault("mains_loss", t=4.0)
    v = m.values(604.0)
    assert v["on_battery"] and v["battery_level"] < 90 and v["playing"]
    m.set_fault("amplifier_fault", t=605.0)
    assert not m.values(606.0)["playing"] and m.values(606.0)["amplifier_fault"]
    play(2, 3, 607.0)  # a faulty amplifier plays nothing
    assert not m.values(608.0)["playing"]


async def test_simulator_serves_the_profile_and_takes_commands():
    clock = [10.0]
    sim = DeviceSimulator("bn", "broadcast_node", unit_id=1, clock=lambda: clock[0])
    server = ModbusSimServer(HOST, free_port(), [sim])
    await server.start()
    client = AsyncModbusTcpClient(HOST, port=server.port, timeout=2, retries=0)
    try:
        assert await client.connect()
        assert not (await client.write_registers(0, [2, 5, 3], device_id=1)).isError()
        assert not (await client.write_coil(0, True, device_id=1)).isError()
        clock[0] = 11.0
        ir = (await client.read_input_registers(0, count=5, device_id=1)).registers
        di = (await client.read_discrete_inputs(0, count=5, device_id=1)).bits[:5]
        assert ir[2:5] == [2, 5, 3] and di == [True, False, False, False, True]
        assert (await client.write_register(2, 7, device_id=1)).isError()  # priority 1..3 only
        assert load_profile("broadcast_node").point("playing").table is Table.DISCRETE_INPUT
    finally:
        client.close()
        await server.stop()


async def test_play_in_two_zones_confirms_every_node_with_its_time(mine):
    sim, gw, bc, recorder = mine
    result = await bc.play("evacuation", ["face", "belt"], BroadcastPriority.EMERGENCY)
    assert result.ok, result.failed
    assert set(result.nodes) == {"bn-1", "bn-2", "bn-3"}
    assert 0 < result.elapsed_ms < 2000
    assert all(0 < n.confirm_ms <= result.elapsed_ms for n in result.nodes.values())
    for node, zone in (("bn-1", 1), ("bn-2", 1), ("bn-3", 2)):
        v = sim.simulator(node).current_values()
        assert (v["playing"], v["playing_message"], v["playing_priority"], v["playing_zone"]) == (True, 1, 3, zone)
    assert not sim.simulator("bn-4").current_values()["playing"]  # not in those zones
    assert recorder.alarms == []
    print(f"confirmation time for 3 nodes: {result.elapsed_ms} ms")
    assert bc.emergency_zones("face-1") == ["face", "escape-intake"]


async def test_emergency_preempts_routine_and_stop_works(mine):
    sim, gw, bc, _ = mine
    assert (await bc.play("all_clear", ["belt"], "routine")).ok
    assert sim.simulator("bn-3").current_values()["playing_message"] == 4
    result = await bc.play("gas", ["belt"], BroadcastPriority.EMERGENCY)
    assert result.ok
    assert sim.simulator("bn-3").current_values()["playing_message"] == 2
    routine = await bc.play("all_clear", ["belt"], BroadcastPriority.ROUTINE)  # does not pre-empt
    assert not routine.ok and "playing message 2 at priority 3" in routine.nodes["bn-3"].reason
    stopped = await bc.stop(["belt"])
    assert stopped.ok and not sim.simulator("bn-3").current_values()["playing"]


async def test_a_node_with_a_line_fault_is_reported_and_alarmed(mine):
    sim, gw, bc, recorder = mine
    sim.simulator("bn-2").set_fault("line_fault")
    result = await bc.play("fire", ["face"], BroadcastPriority.EMERGENCY)
    assert not result.ok and result.elapsed_ms is None
    assert result.nodes["bn-1"].confirmed
    failed = result.nodes["bn-2"]
    assert not failed.confirmed and "line fault" in failed.reason
    assert [(a.id, a.active) for a in recorder.alarms] == [("broadcast-node-bn-2", True)]
    assert "line fault" in recorder.alarms[0].message
    sim.simulator("bn-2").clear_fault("line_fault")
    assert (await bc.play("fire", ["face"], BroadcastPriority.EMERGENCY)).ok
    assert [(a.id, a.active) for a in recorder.alarms][-1] == ("broadcast-node-bn-2", False)
