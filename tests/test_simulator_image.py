"""The Modbus simulator's kept register image: encoded once per change, always equal to a full re-encode."""
from __future__ import annotations

import pytest

from adapters.modbus.profile import Point, Profile, Table
from simulators.modbus.image import TableImage
from simulators.modbus.server import DeviceSimulator
from tests.test_simulator import ManualClock, read, served

KINDS = ["shearer", "roadheader", "belt_conveyor", "face_conveyor", "broadcast_node"]

# Every type and order a profile can name, with gaps between points: the generic model drives it.
EVERY_TYPE = Profile.model_validate({"kind": "every_type", "points": [
    {"name": "u16", "table": "input_register", "address": 0, "type": "uint16", "scale": 0.1, "range": [0, 500]},
    {"name": "i16_badc", "table": "input_register", "address": 1, "type": "int16", "order": "BADC",
     "scale": 0.01, "offset": -5, "range": [-100, 100]},
    {"name": "i32_cdab", "table": "input_register", "address": 4, "type": "int32", "order": "CDAB",
     "range": [-70000, 70000]},
    {"name": "u32_dcba", "table": "input_register", "address": 6, "type": "uint32", "order": "DCBA",
     "range": [0, 4e9]},
    {"name": "f32_badc", "table": "input_register", "address": 8, "type": "float32", "order": "BADC",
     "scale": 0.5, "range": [-1e6, 1e6]},
    {"name": "f64_cdab", "table": "input_register", "address": 10, "type": "float64", "order": "CDAB",
     "range": [-1e9, 1e9]},
    {"name": "text", "table": "input_register", "address": 20, "type": "string", "length": 7, "order": "BADC"},
    {"name": "flag_word", "table": "input_register", "address": 25, "type": "bool"},
    {"name": "setpoint", "table": "holding_register", "address": 2, "type": "float32", "order": "DCBA",
     "range": [0, 100], "writable": True},
    {"name": "limit", "table": "holding_register", "address": 5, "type": "uint16", "scale": 0.1,
     "range": [0, 1000], "writable": True},
    {"name": "ready", "table": "discrete_input", "address": 3, "type": "bool"},
    {"name": "enable", "table": "coil", "address": 17, "type": "bool", "writable": True},
]})


def check(sim: DeviceSimulator, clock: ManualClock) -> None:
    """The kept image is what encoding every point afresh at the sampled model time gives."""
    assert sim.image() == sim.full_image(sim.model_time(clock.t))


@pytest.mark.parametrize("profile", [*KINDS, EVERY_TYPE], ids=[*KINDS, "every_type"])
def test_the_kept_image_equals_a_full_re_encode_as_the_model_steps(profile):
    clock = ManualClock(0.0)
    sim = DeviceSimulator("dev", profile, seed=4, clock=clock)
    for t in [0.0, 0.05, 0.1, 0.37, 1.0, 7.3, 7.31, 60.0, 61.25, 300.0, 300.1, 1800.0]:
        clock.t = t
        check(sim, clock)


def test_the_model_is_sampled_once_per_tick_however_many_reads():
    clock = ManualClock(10.0)
    sim = DeviceSimulator("dev", "belt_conveyor", seed=1, clock=clock)
    sampled = []
    served_values = sim.served_values
    sim.served_values = lambda t: sampled.append(t) or served_values(t)
    for t in (10.0, 10.02, 10.09, 10.1, 10.15, 10.3):
        clock.t = t
        sim.image()
    assert sampled == [10.0, 10.1, 10.3]
    sim.set_fault("slip", ratio=0.3)  # a fault change samples again at the next read, same tick or not
    sim.image()
    assert sampled[-1] == 10.3 and len(sampled) == 4
    untick = DeviceSimulator("dev", "belt_conveyor", seed=1, clock=clock, tick=0)
    assert untick.model_time(10.37) == 10.37


@pytest.mark.parametrize("profile", ["belt_conveyor", "broadcast_node", EVERY_TYPE], ids=["belt", "broadcast", "every"])
async def test_the_image_stays_right_after_writes_and_faults(profile):
    clock = ManualClock(20.0)
    sim = DeviceSimulator("dev", profile, unit_id=2, seed=9, clock=clock)
    writable = [p for p in sim.profile.points if p.writable]
    numeric = [p for p in sim.profile.points if p.is_numeric and p.range]
    async with served(sim) as (_, client):
        for step, p in enumerate(writable):
            clock.t += 0.5
            if p.table is Table.COIL:
                assert not (await client.write_coil(p.address, True, device_id=2)).isError()
            else:
                low, high = p.range
                words = p.encode(low + (high - low) / (3 + step))
                assert not (await client.write_registers(p.address, words, device_id=2)).isError()
            check(sim, clock)
            clock.t += 0.5
            check(sim, clock)
        sim.set_fault("out_of_range", signal=numeric[0].name)
        check(sim, clock)
        assert sim.current_values()[numeric[0].name] > numeric[0].range[1]
        clock.t += 0.04  # same tick: still the fault's value, from the kept image
        check(sim, clock)
        sim.clear_fault("out_of_range")
        check(sim, clock)
        sim.set_fault("stuck")
        frozen = sim.image()
        clock.t += 30
        assert sim.image() == frozen
        for table in Table:
            if sim.sizes[table]:
                words = await read(client, 2, table, 0, sim.sizes[table])
                assert words[:sim.sizes[table]] == frozen[table], table
        sim.clear_fault("stuck")
        check(sim, clock)
        for table in Table:
            if sim.sizes[table]:
                words = await read(client, 2, table, 0, sim.sizes[table])
                assert words[:sim.sizes[table]] == sim.full_image(sim.model_time(clock.t))[table], table
        for kind in sim.model.FAULTS:  # every machine fault, with its default parameters where it has them
            try:
                sim.set_fault(kind)
            except Exception:
                continue
            clock.t += 2
            check(sim, clock)
            sim.clear_fault(kind)
            clock.t += 2
            check(sim, clock)


async def test_a_read_of_part_of_a_table_gets_those_registers():
    clock = ManualClock(3.0)
    sim = DeviceSimulator("dev", "shearer", seed=2, clock=clock)
    async with served(sim) as (_, client):
        whole = sim.full_image(3.0)[Table.INPUT_REGISTER]
        assert await read(client, 1, Table.INPUT_REGISTER, 5, 7) == whole[5:12]
        assert await read(client, 1, Table.INPUT_REGISTER, 0, len(whole)) == whole


def test_an_offset_of_minus_zero_is_not_taken_for_zero_by_the_shared_conversions():
    """The generated conversions are shared by equal points, but 0.0 and -0.0 are not equal there:
    -0.0 - 0.0 is -0.0 and -0.0 - -0.0 is 0.0, which a float32 register tells apart."""
    def image(offset: float) -> tuple[Point, TableImage]:
        point = Point(name="p", table=Table.INPUT_REGISTER, address=0, type="float32", offset=offset)
        return point, TableImage(Table.INPUT_REGISTER, [point], 2)

    for offset, zero in ((0.0, [0x8000, 0]), (-0.0, [0, 0]), (0.0, [0x8000, 0])):
        point, table = image(offset)
        table.update({"p": -0.0})  # the whole table
        assert table.words == point.encode(-0.0) == zero
        table.update({"p": 2.5}, ["p"])  # one point
        table.update({"p": -0.0}, ["p"])
        assert table.words == zero
