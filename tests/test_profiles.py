import pytest
from pydantic import ValidationError

from adapters.modbus.codec import DataType, Order
from adapters.modbus.plan import MAX_REGISTERS, Hole, ReadPlan, halve, plan_reads
from adapters.modbus.profile import Point, Profile, Table, available_profiles, load_profile

KINDS = ["belt_conveyor", "broadcast_node", "face_conveyor", "roadheader", "shearer"]


def test_the_four_machine_kinds_ship():
    assert available_profiles() == KINDS


def test_profiles_cover_every_type_and_every_32_and_64_bit_order():
    seen = {(p.type, p.order if p.width > 1 else None)
            for kind in KINDS for p in load_profile(kind).points}
    for dtype in (DataType.INT32, DataType.UINT32, DataType.FLOAT32, DataType.FLOAT64):
        for order in Order:
            if dtype in (DataType.FLOAT32, DataType.FLOAT64, DataType.UINT32):
                assert (dtype, order) in seen, (dtype, order)
    assert {t for t, _ in seen} == set(DataType)
    assert {o for d, o in seen if d is DataType.INT32} == set(Order)


@pytest.mark.parametrize("bad,msg", [
    ({"name": "x", "table": "coil", "address": 0, "type": "float32"}, "must be bool"),
    ({"name": "x", "table": "input_register", "address": 0, "type": "string"}, "need a length"),
    ({"name": "x", "table": "input_register", "address": 0, "writable": True}, "read-only"),
    ({"name": "x", "table": "input_register", "address": 0, "range": [5, 1]}, "range"),
    ({"name": "x", "table": "input_register", "address": 70000}, "less than or equal"),
    ({"name": "x", "table": "input_register", "address": 0, "colour": "red"}, "Extra inputs"),
])
def test_bad_points_are_refused_with_reason(bad, msg):
    with pytest.raises(ValidationError, match=msg):
        Point.model_validate(bad)


def test_overlapping_points_are_refused():
    with pytest.raises(ValidationError, match="overlaps"):
        Profile(kind="x", points=[
            Point(name="a", table=Table.INPUT_REGISTER, address=0, type=DataType.FLOAT32),
            Point(name="b", table=Table.INPUT_REGISTER, address=1)])


def ir(name, address, dtype=DataType.UINT16):
    return Point(name=name, table=Table.INPUT_REGISTER, address=address, type=dtype)


def test_plan_merges_small_gaps_and_splits_large_ones():
    pts = [ir("a", 0), ir("b", 1, DataType.FLOAT32), ir("c", 10), ir("d", 40)]
    blocks = plan_reads(pts, max_gap_registers=8)
    assert [(b.address, b.count, [p.name for p in b.points]) for b in blocks] == [
        (0, 11, ["a", "b", "c"]), (40, 1, ["d"])]


def test_plan_never_exceeds_protocol_limits():
    pts = [ir(f"r{i}", i * 2, DataType.FLOAT32) for i in range(200)]  # 400 registers
    blocks = plan_reads(pts)
    assert all(b.count <= MAX_REGISTERS for b in blocks)
    assert sum(len(b.points) for b in blocks) == 200
    assert len(blocks) == 4  # 400 / 124 rounded up: fewest requests
    bits = [Point(name=f"b{i}", table=Table.COIL, address=i, type=DataType.BOOL) for i in range(4500)]
    assert [b.count for b in plan_reads(bits)] == [2000, 2000, 500]


def test_plan_keeps_tables_apart_and_halve_splits_a_block_by_its_points():
    pts = [ir("a", 0), Point(name="h", table=Table.HOLDING_REGISTER, address=1)]
    blocks = plan_reads(pts)
    assert {b.table for b in blocks} == {Table.INPUT_REGISTER, Table.HOLDING_REGISTER}
    merged = plan_reads([ir("a", 0), ir("b", 5), ir("c", 6, DataType.FLOAT32)])[0]
    assert [(b.address, b.count) for b in halve(merged)] == [(0, 1), (5, 3)]


def span(blocks):
    return [(b.address, b.count) for b in blocks]


def test_plan_reads_no_block_across_a_cut():
    pts = [ir("a", 0), ir("b", 2), ir("c", 4), ir("d", 6)]
    assert span(plan_reads(pts, cuts=[(Table.INPUT_REGISTER, 3)])) == [(0, 3), (4, 3)]
    assert span(plan_reads(pts, cuts=[(Table.HOLDING_REGISTER, 3)])) == [(0, 7)]  # another table's cut


def test_read_plan_learns_holes_and_retries_the_oldest_when_due():
    now = [0.0]
    pts = [ir("a", 0), ir("b", 2), ir("c", 4), ir("d", 6)]
    plan = ReadPlan(pts, retry_after=60, clock=lambda: now[0])
    plan.learn(Hole(Table.INPUT_REGISTER, 4))
    now[0] = 10
    plan.learn(Hole(Table.INPUT_REGISTER, 2, "b"))  # b alone is refused: not asked for
    assert span(plan.blocks) == [(0, 1), (4, 3)] and [p.name for p in plan.unreadable] == ["b"]
    now[0] = 59
    assert plan.retry_oldest() is None
    now[0] = 60
    assert plan.retry_oldest() == Hole(Table.INPUT_REGISTER, 4)
    assert span(plan.blocks) == [(0, 1), (4, 3)]  # b's hole still cuts at 2
    assert plan.retry_oldest() is None  # b's is not due until 70
    now[0] = 70
    assert plan.retry_oldest() == Hole(Table.INPUT_REGISTER, 2, "b")
    assert span(plan.blocks) == [(0, 7)] and plan.unreadable == []


@pytest.mark.parametrize("kind", KINDS)
def test_each_profile_reads_in_few_requests(kind):
    # at most one request per table: these maps are compact
    assert len(plan_reads(load_profile(kind).points)) <= 4
