"""One read request's answer -> every point's engineering value and quality, in one pass.

A :class:`BlockDecoder` is compiled once per :class:`~adapters.modbus.plan.Block` (when the
plan is made): the points' types and word/byte orders are folded into at most four
``struct.Struct`` formats over the answer's data bytes (registers big-endian, as on the
wire), so one ``unpack_from`` per format yields every raw value of the block. The orders
reduce to two choices, made at compile time:

- which bytes: the answer as received, or with the bytes of every register swapped
  (two slice assignments per block, only when one of its points needs it);
- which end: ``>`` or ``<``.

For a value of two or more registers, ABCD is ``>`` as received, DCBA ``<`` as received,
BADC ``>`` byte-swapped, CDAB ``<`` byte-swapped (the byte-swapped words in reverse are
the little-endian value); a 16-bit value is ``<`` as received when its order swaps bytes.
Strings take the bytes as received (or byte-swapped for BADC/DCBA), like
:func:`codec.decode`. The values are then scaled, checked for NaN/infinity (bad) and
against the range (out-of-range) in one loop: the same results as ``decode_point``.
"""
from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence

from gateway.core.model import Quality, Value

from .codec import DataType, register_count
from .profile import Point

_CODE = {DataType.INT16: "h", DataType.UINT16: "H", DataType.INT32: "i", DataType.UINT32: "I",
         DataType.FLOAT32: "f", DataType.FLOAT64: "d", DataType.BOOL: "H"}

# What the loop does with a raw value (small ints: one comparison each).
_PLAIN, _BOOL, _TEXT, _NUMBER, _RATIO = range(5)

BAD, OUT_OF_RANGE = Quality.BAD, Quality.OUT_OF_RANGE
_isfinite = math.isfinite


def swap_bytes(data: bytes) -> bytes:
    """Swap the two bytes of every register."""
    out = bytearray(data)
    out[0::2], out[1::2] = data[1::2], data[0::2]
    return bytes(out)


def _layout(point: Point) -> tuple[bool, str]:
    """(bytes swapped, end) that read this point's raw value with one struct code."""
    order = point.order
    if point.type is DataType.STRING:
        return order.byte_swap, ">"
    if register_count(point.type) == 1:
        return False, "<" if order.byte_swap and point.type is not DataType.BOOL else ">"
    return order.byte_swap != order.word_swap, "<" if order.word_swap else ">"


class BlockDecoder:
    """The compiled decoder of one block of registers or bits.

    ``slots`` maps each point's name to its position in the reading (the device's schema);
    :meth:`decode` writes the block's values there and returns the non-good (slot, quality).
    """

    __slots__ = ("is_bit", "size", "slots", "_groups", "_ops", "_bits", "_swap")

    def __init__(self, is_bit: bool, address: int, count: int, points: Sequence[Point],
                 slots: Mapping[str, int]):
        self.is_bit = is_bit
        self.size = (count + 7) // 8 if is_bit else 2 * count  # data bytes the answer must carry
        self.slots = tuple(slots[p.name] for p in points)
        self._groups: list[tuple[bool, struct.Struct]] = []
        self._ops: list[tuple] = []
        self._bits: tuple[tuple[int, int, int], ...] = ()
        self._swap = False
        if is_bit:
            self._bits = tuple((slots[p.name], (p.address - address) >> 3, 1 << ((p.address - address) & 7))
                               for p in points)
            return
        groups: dict[tuple[bool, str], list[Point]] = {}
        for p in points:
            groups.setdefault(_layout(p), []).append(p)
        for (swapped, end), members in groups.items():
            fmt, at = [end], 0
            for p in sorted(members, key=lambda p: p.address):
                offset = 2 * (p.address - address)
                if offset > at:
                    fmt.append(f"{offset - at}x")
                width = 2 * p.width
                fmt.append(f"{width}s" if p.type is DataType.STRING else _CODE[p.type])
                at = offset + width
                self._ops.append(self._op(p, slots[p.name]))
            self._groups.append((swapped, struct.Struct("".join(fmt))))
            self._swap |= swapped

    @staticmethod
    def _op(p: Point, slot: int) -> tuple:
        if p.type is DataType.STRING:
            return slot, _TEXT, 1.0, 0.0, None, False
        if p.type is DataType.BOOL:
            return slot, _BOOL, 1.0, 0.0, None, False
        scaled = not (p.scale == 1 and p.offset == 0)  # as Point.to_engineering: integers stay integers
        # Only floats, or integers scaled by a factor that could take them to infinity, need the check.
        floating = p.type in (DataType.FLOAT32, DataType.FLOAT64) or (
            scaled and not math.isfinite(abs(p.scale) * 2.0 ** 32 + abs(p.offset)))
        if not scaled and not floating and p.range is None:  # counters, enumerations
            return slot, _PLAIN, 1.0, 0.0, None, False
        if scaled and (ratio := p.ratio) is not None:  # (raw + shift) / divisor: no binary noise, never infinite
            return slot, _RATIO, ratio[0], ratio[1], p.range, False
        return slot, _NUMBER, p.scale if scaled else None, p.offset, p.range, floating

    def decode(self, data: bytes, values: list[Value]) -> list[tuple[int, Quality]]:
        """Write the block's values into ``values`` at their slots; the non-good ones' (slot, quality)."""
        marks: list[tuple[int, Quality]] = []
        if self.is_bit:
            for slot, at, mask in self._bits:
                values[slot] = bool(data[at] & mask)
            return marks
        swapped = swap_bytes(data) if self._swap else data
        raws: list = []
        for is_swapped, layout in self._groups:
            raws.extend(layout.unpack_from(swapped if is_swapped else data))
        for (slot, op, scale, offset, bounds, floating), raw in zip(self._ops, raws):
            if op == _PLAIN:
                values[slot] = raw
            elif op == _RATIO:
                values[slot] = value = (raw + offset) / scale
                if bounds is not None and not bounds[0] <= value <= bounds[1]:
                    marks.append((slot, OUT_OF_RANGE))
            elif op == _NUMBER:
                value = raw if scale is None else raw * scale + offset
                if floating and not _isfinite(value):
                    values[slot] = None
                    marks.append((slot, BAD))
                    continue
                values[slot] = value
                if bounds is not None and not bounds[0] <= value <= bounds[1]:
                    marks.append((slot, OUT_OF_RANGE))
            elif op == _BOOL:
                values[slot] = bool(raw)
            else:
                text = raw.split(b"\x00", 1)[0]
                try:
                    values[slot] = text.decode("ascii").rstrip()
                except UnicodeDecodeError:
                    values[slot] = None
                    marks.append((slot, BAD))
        return marks
