"""Register <-> value conversion for every type and word/byte order.

Shared by the Modbus adapter (decode) and the Modbus simulator (encode), so the
two cannot disagree. Orders name the byte sequence of a 32-bit value as sent on
the wire, A being the most significant byte:

- ABCD: big-endian (Modbus default)
- CDAB: words swapped (pymodbus ``word_order=little``)
- BADC: bytes swapped inside each word
- DCBA: little-endian (both)

64-bit values follow the same rule: word swap reverses all four words, byte swap
swaps inside each word.
"""
from __future__ import annotations

import struct
from enum import Enum


class DataType(str, Enum):
    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"


class Order(str, Enum):
    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"

    @property
    def word_swap(self) -> bool:
        return self in (Order.CDAB, Order.DCBA)

    @property
    def byte_swap(self) -> bool:
        return self in (Order.BADC, Order.DCBA)


_STRUCT = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}
_WORDS = {DataType.BOOL: 1, DataType.INT16: 1, DataType.UINT16: 1, DataType.INT32: 2,
          DataType.UINT32: 2, DataType.FLOAT32: 2, DataType.FLOAT64: 4}


class DecodeError(ValueError):
    """Registers that cannot be a value of the declared type."""


def register_count(dtype: DataType, length: int = 0) -> int:
    """Registers a value occupies; ``length`` is the string length in characters."""
    if dtype is DataType.STRING:
        return (length + 1) // 2
    return _WORDS[dtype]


def _swap_bytes(raw: bytes) -> bytes:
    out = bytearray(raw)
    out[0::2], out[1::2] = raw[1::2], raw[0::2]
    return bytes(out)


def _to_wire(words: list[int], order: Order) -> bytes:
    """Registers as received -> bytes in big-endian value order."""
    if order.word_swap:
        words = words[::-1]
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    return _swap_bytes(raw) if order.byte_swap else raw


def _from_wire(raw: bytes, order: Order) -> list[int]:
    if order.byte_swap:
        raw = _swap_bytes(raw)
    words = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    return words[::-1] if order.word_swap else words


def decode(words: list[int], dtype: DataType, order: Order = Order.ABCD) -> int | float | str:
    """Decode the registers of one value. 16-bit values ignore the word swap."""
    if dtype is DataType.STRING:
        raw = _to_wire(words, Order.BADC if order.byte_swap else Order.ABCD)
        text = raw.split(b"\x00", 1)[0]
        try:
            return text.decode("ascii").rstrip()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"not ASCII text: {text!r}") from exc
    if len(words) != _WORDS[dtype]:
        raise DecodeError(f"{dtype.value} needs {_WORDS[dtype]} registers, got {len(words)}")
    if dtype is DataType.BOOL:
        return bool(words[0])
    return struct.unpack(">" + _STRUCT[dtype], _to_wire(words, order))[0]


def encode(value: int | float | str | bool, dtype: DataType, order: Order = Order.ABCD,
           length: int = 0) -> list[int]:
    """Encode one value into registers (the inverse of :func:`decode`)."""
    if dtype is DataType.STRING:
        raw = str(value).encode("ascii")[:length].ljust(register_count(dtype, length) * 2, b"\x00")
        return _from_wire(raw, Order.BADC if order.byte_swap else Order.ABCD)
    if dtype is DataType.BOOL:
        return [1 if value else 0]
    code = _STRUCT[dtype]
    if code in "hHiI":
        value = int(round(value))
    return _from_wire(struct.pack(">" + code, value), order)
