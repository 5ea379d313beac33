import math
import struct

import pytest

from adapters.modbus.codec import DataType, DecodeError, Order, decode, encode

# 0x11223344 as it travels on the wire in each order, as registers.
WIRE_32 = {
    Order.ABCD: [0x1122, 0x3344],
    Order.CDAB: [0x3344, 0x1122],
    Order.BADC: [0x2211, 0x4433],
    Order.DCBA: [0x4433, 0x2211],
}


@pytest.mark.parametrize("order", list(Order))
def test_32bit_orders_match_the_wire_layout(order):
    assert decode(WIRE_32[order], DataType.UINT32, order) == 0x11223344
    assert encode(0x11223344, DataType.UINT32, order) == WIRE_32[order]


def test_64bit_word_and_byte_swap():
    value = 0x0102030405060708
    big = [0x0102, 0x0304, 0x0506, 0x0708]
    assert encode(value, DataType.FLOAT64, Order.ABCD) != big  # float, not int: sanity below
    raw = struct.unpack(">d", bytes.fromhex("0102030405060708"))[0]
    assert encode(raw, DataType.FLOAT64, Order.ABCD) == big
    assert encode(raw, DataType.FLOAT64, Order.CDAB) == big[::-1]
    assert encode(raw, DataType.FLOAT64, Order.BADC) == [0x0201, 0x0403, 0x0605, 0x0807]
    assert encode(raw, DataType.FLOAT64, Order.DCBA) == [0x0807, 0x0605, 0x0403, 0x0201]


CASES = [
    (DataType.INT16, -1234), (DataType.UINT16, 65535), (DataType.INT32, -2_000_000_123),
    (DataType.UINT32, 4_000_000_123), (DataType.FLOAT32, -12.5), (DataType.FLOAT64, 1e300 / 3),
]


@pytest.mark.parametrize("order", list(Order))
@pytest.mark.parametrize("dtype,value", CASES)
def test_round_trip_every_type_and_order(dtype, value, order):
    assert decode(encode(value, dtype, order), dtype, order) == value


def test_float32_known_pattern():
    # 123.456 = 0x42F6E979
    assert decode([0x42F6, 0xE979], DataType.FLOAT32, Order.ABCD) == pytest.approx(123.456, rel=1e-6)
    assert decode([0xE979, 0x42F6], DataType.FLOAT32, Order.CDAB) == pytest.approx(123.456, rel=1e-6)


@pytest.mark.parametrize("order", [Order.ABCD, Order.BADC])
def test_strings_round_trip_and_strip_padding(order):
    regs = encode("MG300/700-WD", DataType.STRING, order, length=16)
    assert len(regs) == 8
    assert decode(regs, DataType.STRING, order) == "MG300/700-WD"


def test_string_bytes_follow_byte_swap():
    assert encode("AB", DataType.STRING, Order.ABCD, 2) == [0x4142]
    assert encode("AB", DataType.STRING, Order.BADC, 2) == [0x4241]


def test_nan_decodes_as_nan_not_error():
    assert math.isnan(decode([0x7FC0, 0x0000], DataType.FLOAT32))


def test_wrong_register_count_and_garbage_text_are_errors():
    with pytest.raises(DecodeError):
        decode([1], DataType.FLOAT32)
    with pytest.raises(DecodeError):
        decode([0xFFFE], DataType.STRING)
