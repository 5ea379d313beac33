"""The compiled block decoder against codec.encode and decode_point: every type and order."""
import math
import struct

import pytest

from adapters.modbus.adapter import decode_point
from adapters.modbus.codec import DataType, Order, encode
from adapters.modbus.decoder import BlockDecoder
from adapters.modbus.plan import ReadPlan
from adapters.modbus.profile import Point, Table
from gateway.core.model import Quality

VALUES = {
    DataType.INT16: -1234, DataType.UINT16: 65535, DataType.INT32: -2_000_000_123,
    DataType.UINT32: 4_000_000_123, DataType.FLOAT32: -12.5, DataType.FLOAT64: 1e300 / 3,
    DataType.STRING: "MG300/700-WD", DataType.BOOL: True,
}


def point(name, address, dtype, order=Order.ABCD, **kw):
    length = 13 if dtype is DataType.STRING else 0  # odd: a padding byte in the last register
    return Point(name=name, table=Table.INPUT_REGISTER, address=address, type=dtype, order=order,
                 length=length, **kw)


def image(points, values, size):
    words = [0] * size
    for p in points:
        raw = values[p.name]
        words[p.address:p.address + p.width] = (
            encode(raw, p.type, p.order, p.length) if not p.is_numeric else encode(p.to_raw(raw), p.type, p.order))
    return words


def as_bytes(words):
    return struct.pack(f">{len(words)}H", *words)


def decode_block(points, words, address=0):
    slots = {p.name: i for i, p in enumerate(points)}
    decoder = BlockDecoder(False, address, len(words), points, slots)
    values = [None] * len(points)
    marks = dict(decoder.decode(as_bytes(words), values))
    return values, [marks.get(i, Quality.GOOD) for i in range(len(points))]


@pytest.mark.parametrize("order", list(Order))
def test_every_type_and_order_in_one_block_as_codec_and_decode_point_read_it(order):
    points, address = [], 3  # gaps between points, and points in every layout group
    for dtype in VALUES:
        points.append(point(f"{dtype.value}_{order.value}", address, dtype, order))
        points.append(point(f"{dtype.value}_abcd", address + 10, dtype))
        address += 20
    values = {p.name: VALUES[p.type] for p in points}
    words = image(points, values, address)
    got, qualities = decode_block(points, words)
    assert got == [values[p.name] for p in points]
    assert set(qualities) == {Quality.GOOD}
    assert [(v, q) for v, q in zip(got, qualities)] == [
        decode_point(p, words[p.address:p.address + p.width]) for p in points]
    assert all(type(v) is type(values[p.name]) for v, p in zip(got, points))


def test_scale_offset_range_nan_and_text_grade_like_decode_point():
    points = [
        point("temp", 0, DataType.INT16, scale=0.1, range=(-20, 155)),
        point("flow", 1, DataType.FLOAT32, Order.CDAB, offset=10, range=(0, 200)),
        point("pressure", 3, DataType.FLOAT32, range=(0, 25)),
        point("current", 5, DataType.UINT16, range=(0, 400)),
        point("count", 6, DataType.UINT32, Order.DCBA),
        point("hours", 8, DataType.UINT32, Order.BADC, scale=0.1),
        point("plate", 10, DataType.STRING, Order.BADC),
        point("huge", 17, DataType.FLOAT64, Order.CDAB, scale=1e300),
    ]
    words = ([0xFF9C] + encode(32.5, DataType.FLOAT32, Order.CDAB) + encode(math.nan, DataType.FLOAT32)
             + [450] + encode(70000, DataType.UINT32, Order.DCBA) + encode(1234, DataType.UINT32, Order.BADC)
             + [0xFFFE] * 7 + encode(1e300, DataType.FLOAT64, Order.CDAB))
    values, qualities = decode_block(points, words)
    expected = [decode_point(p, words[p.address:p.address + p.width]) for p in points]
    assert list(zip(values, qualities)) == expected
    assert values[:2] == [pytest.approx(-10.0), pytest.approx(42.5)] and type(values[4]) is int
    assert qualities == [Quality.GOOD, Quality.GOOD, Quality.BAD, Quality.OUT_OF_RANGE, Quality.GOOD,
                         Quality.GOOD, Quality.BAD, Quality.BAD]  # NaN, 450 > 400, not ASCII, scaled to inf
    assert values[2] is None and values[6] is None and values[7] is None and values[5] == pytest.approx(123.4)


@pytest.mark.parametrize("garbage", [math.inf, -math.inf])
@pytest.mark.parametrize("order", list(Order))
def test_infinite_floats_are_bad(garbage, order):
    points = [point("f", 0, DataType.FLOAT32, order), point("d", 2, DataType.FLOAT64, order)]
    values, qualities = decode_block(points, encode(garbage, DataType.FLOAT32, order)
                                     + encode(garbage, DataType.FLOAT64, order))
    assert values == [None, None] and qualities == [Quality.BAD, Quality.BAD]


def test_bits_packed_as_modbus_packs_them():
    points = [Point(name=f"b{a}", table=Table.DISCRETE_INPUT, address=a, type=DataType.BOOL) for a in (2, 3, 9, 12)]
    decoder = BlockDecoder(True, 2, 11, points, {p.name: i for i, p in enumerate(points)})
    assert decoder.size == 2
    values = [None] * 4
    # bit i of the answer is address 2 + i: addresses 3 and 12 set (bits 1 and 10)
    assert decoder.decode(bytes([0b0000_0010, 0b0000_0100]), values) == []
    assert values == [False, True, False, True]


def test_the_plan_compiles_each_block_once_for_the_reading_order():
    points = [point("late", 40, DataType.UINT16), point("early", 0, DataType.FLOAT32, Order.CDAB)]
    plan = ReadPlan(points)
    assert [b.address for b in plan.blocks] == [0, 40] and all(b.decoder for b in plan.blocks)
    assert [b.decoder.slots for b in plan.blocks] == [(1,), (0,)]  # profile order, not address order
    assert plan.compiled(plan.blocks[0]) is plan.blocks[0]


def test_an_integer_scaled_by_one_nth_reads_as_its_decimal_value_not_binary_noise():
    points = [point("speed", 0, DataType.UINT16, scale=0.1), point("temp", 1, DataType.INT16, scale=0.01, offset=-40),
              point("third", 2, DataType.UINT16, scale=0.3), point("half", 3, DataType.UINT16, scale=0.5, range=(0, 10))]
    words = [474, 0xFFFF & -3, 7, 21]
    values, qualities = decode_block(points, words)
    assert values == [47.4, -40.03, 7 * 0.3, 10.5] and 474 * 0.1 != 47.4  # what raw * scale would have said
    assert qualities == [Quality.GOOD, Quality.GOOD, Quality.GOOD, Quality.OUT_OF_RANGE]
    assert [decode_point(p, words[p.address:p.address + p.width]) for p in points] == list(zip(values, qualities))
    assert [p.ratio for p in points] == [(10, 0), (100, -4000), None, (2, 0)]
