"""The encoded register and bit image of one simulated device, kept up to date by change.

A :class:`TableImage` holds what one table serves, from address 0: registers (or bools
for a bit table), plus the bits packed 16 to a register as pymodbus stores them. It is
compiled once from the profile: one ``struct.Struct`` for the whole table (every point's
type in address order, gaps as pad bytes, big-endian) and one per point, a generated
function that turns the table's values into what they pack (scale, offset, rounding), and
the word and byte orders folded in as fix-ups of the few points that need them. ``update``
re-encodes only the points whose value changed: one by one when they are few, the whole
table in one ``pack`` when they are many. The result is exactly what
:meth:`adapters.modbus.profile.Point.encode` gives point by point (the tests compare).
"""
from __future__ import annotations

import functools
import operator
import struct
from collections.abc import Callable, Iterable
from typing import Any

from pymodbus.simulator.simutils import SimUtils

from adapters.modbus.codec import DataType
from adapters.modbus.profile import Point, Table

_CODE = {DataType.INT16: "h", DataType.UINT16: "H", DataType.INT32: "i", DataType.UINT32: "I",
         DataType.FLOAT32: "f", DataType.FLOAT64: "d", DataType.BOOL: "H"}
_INTEGER = frozenset("hHiI")


def _conversion(dtype: DataType, i: int) -> str:
    """The expression that turns value ``v{i}`` into the argument ``struct.pack`` takes for the
    point, as codec.encode makes it; its constants are the names ``s{i}``, ``o{i}``, ``n{i}``."""
    if dtype is DataType.STRING:
        return f"str(v{i}).encode('ascii')[:n{i}]"
    if dtype is DataType.BOOL:
        return f"(1 if v{i} else 0)"
    if _CODE[dtype] in _INTEGER:
        return f"round((v{i} - o{i}) / s{i})"  # an int, as int(round(...)) in codec.encode
    return f"(v{i} - o{i}) / s{i}"


def _converter(points: list[Point]) -> Callable[..., tuple]:
    """(value, value, ...) of the points -> the arguments of their ``struct.pack``.

    Generated like dataclasses' ``__init__``, so a table's full re-encode is one call with one
    expression per point rather than a call per point; shared by every device (and point) of the
    same types and scales. The generated text holds none of the profile's text: only v0, s0, o0, n0..."""
    return _compiled(tuple((p.type, repr(p.scale), repr(p.offset), p.length) for p in points))


@functools.lru_cache(maxsize=256)
def _compiled(conversions: tuple[tuple[DataType, str, str, int], ...]) -> Callable[..., tuple]:
    namespace: dict[str, Any] = {}
    for i, (_, scale, offset, length) in enumerate(conversions):  # repr: 0.0 and -0.0 are two keys
        namespace.update({f"s{i}": float(scale), f"o{i}": float(offset), f"n{i}": length})
    arguments = ", ".join(f"v{i}" for i in range(len(conversions)))
    expressions = "".join(f"{_conversion(dtype, i)}, " for i, (dtype, *_) in enumerate(conversions))
    exec(f"def convert({arguments}):\n    return ({expressions})\n", namespace)
    return namespace["convert"]


def _code(p: Point) -> str:
    return f"{2 * p.width}s" if p.type is DataType.STRING else _CODE[p.type]


def _swap(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


class _Slot:
    """One register point: where it sits, how to convert and pack it, which fix-up its order needs."""

    __slots__ = ("name", "address", "end", "convert", "pack", "unpack", "word_swap", "byte_swap")

    def __init__(self, p: Point):
        self.name, self.address, self.end = p.name, p.address, p.address + p.width
        self.convert = _converter([p])  # value -> (the argument of pack,)
        self.pack = struct.Struct(">" + _code(p)).pack
        self.unpack = struct.Struct(f">{p.width}H").unpack
        self.byte_swap = p.order.byte_swap and p.type is not DataType.BOOL
        self.word_swap = p.order.word_swap and p.width > 1 and p.type is not DataType.STRING

    def fix(self, words: list[int]) -> None:
        """Apply the point's word and byte order to its registers in ``words`` (big-endian before)."""
        a, e = self.address, self.end
        if self.word_swap:
            words[a:e] = words[a:e][::-1]
        if self.byte_swap:
            words[a:e] = [_swap(w) for w in words[a:e]]


class TableImage:
    """What one table of one device serves; see the module docstring."""

    def __init__(self, table: Table, points: Iterable[Point], size: int):
        self.table = table
        self.size = size
        points = sorted((p for p in points if p.table is table), key=lambda p: p.address)
        self.names = [p.name for p in points]
        self._known = frozenset(self.names)
        self.is_bit = table.is_bit
        if self.is_bit:
            self.words: list = [False] * size
            self._bits = {p.name: p.address for p in points}
            self.packed = self._pack_bits()
            return
        self.words = [0] * size
        self.packed = self.words
        self._slots = {p.name: _Slot(p) for p in points}
        fmt, at = ">", 0
        for p in points:
            fmt += f"{2 * (p.address - at)}x" * (p.address > at) + _code(p)
            at = p.address + p.width
        fmt += f"{2 * (size - at)}x" * (size > at)
        self._pack = struct.Struct(fmt).pack
        self._convert = _converter(points)
        names = self.names  # the values in address order, as a tuple (itemgetter of one name gives no tuple)
        self._values = operator.itemgetter(*names) if len(names) > 1 else lambda v: tuple(v[n] for n in names)
        self._unpack = struct.Struct(f">{size}H").unpack
        self._fixups = [s for s in self._slots.values() if s.word_swap or s.byte_swap]

    def _pack_bits(self) -> list[int]:
        return SimUtils.bitsToRegisters(self.words + [False] * (-len(self.words) % 16))

    def update(self, values: dict[str, Any], changed: Iterable[str] | None = None) -> None:
        """Re-encode the points named in ``changed`` (default: all) from ``values``.

        Raises struct.error or OverflowError (the image unchanged) when a value does not fit its type."""
        if not self.names:
            return
        names = self.names if changed is None else [n for n in changed if n in self._known]
        if not names:
            return
        if self.is_bit:
            for name in names:
                self.words[self._bits[name]] = bool(values[name])
            self.packed = self._pack_bits()
        elif 4 * len(names) < len(self.names):
            self._update_points(values, names)
        else:
            words = list(self._unpack(self._pack(*self._convert(*self._values(values)))))
            for slot in self._fixups:
                slot.fix(words)
            self.words[:] = words

    def _update_points(self, values: dict[str, Any], names: list[str]) -> None:
        encoded = []
        for name in names:  # all encoded before any is stored: a value that does not fit changes nothing
            slot = self._slots[name]
            encoded.append((slot, slot.unpack(slot.pack(*slot.convert(values[name])))))
        for slot, words in encoded:
            self.words[slot.address:slot.end] = words
            slot.fix(self.words)
