"""How the durable buffer stores a block of lines: ids, sample times and lines in one zstd frame.

Two codecs:

- ``TEXT``: the lines as they are (what a commit writes: ~5 µs a line, ~5 bytes per tag with
  100-field lines of scaled registers).
- ``COLUMNS``: line protocol taken apart. Lines with the same field keys form a group; in a group,
  rows are ordered by series (measurement and tags), so a column holds each series' values over
  time; numeric columns are stored as integers (``12i``, ``true``, and floats that are an integer
  times a power of ten, such as a register × 0.1), delta-coded down the column, zig-zagged, in
  the narrowest width, bytes shuffled; zstd does the rest (~1.65 bytes per tag for the
  simulators' registers, bench/bench_buffer.py). Every column is
  decoded again and compared with its text before it is kept: a value the codec cannot give back
  byte for byte keeps its text (so do lines it cannot take apart: strings, escapes). The buffer
  uses it when it compacts blocks that wait (gateway/buffer.py).

A frame that does not decode raises :class:`CorruptBlock`.
"""
from __future__ import annotations

import functools
import json
import struct
import threading
from array import array
from itertools import accumulate, pairwise

import zstandard

TEXT, COLUMNS = 1, 2
LEVEL = 3  # zstd level: 1 is not faster here, 9 and up cost 5-10× the CPU for a few per cent
_WIDTHS = {1: "B", 2: "H", 4: "I", 8: "Q"}
_HEADER = struct.Struct("<II")  # rows, length of the JSON description (COLUMNS)
_MAX_EXPONENT = 6
_POW10 = [10 ** e for e in range(_MAX_EXPONENT + 1)]
_INV10 = [float(f"1e-{e}") for e in range(_MAX_EXPONENT + 1)]  # 0.1 as the gateway multiplies by it

_local = threading.local()  # zstandard's (de)compressors are not thread-safe: one pair per thread


def _zstd() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    pair = getattr(_local, "pair", None)
    if pair is None:
        pair = _local.pair = (zstandard.ZstdCompressor(level=LEVEL), zstandard.ZstdDecompressor())
    return pair


class CorruptBlock(ValueError):
    """The stored bytes of a block do not decode."""


def pack(codec: int, ids: list[int], stamps: list[float], lines: list[str]) -> bytes:
    """One zstd frame holding the rows; ``ids`` ascending."""
    head = _HEADER.pack(len(ids), 0)
    parts = [head, _ints(_deltas(ids)), array("d", stamps).tobytes()]
    parts += _text_part(lines) if codec == TEXT else _columns_part(lines)
    return _zstd()[0].compress(b"".join(parts))


def unpack(codec: int, data: bytes) -> tuple[list[int], list[float], list[str]]:
    """(ids, sample times, lines) of a block; CorruptBlock when the bytes do not decode."""
    try:
        raw = memoryview(_zstd()[1].decompress(data))
        rows = _HEADER.unpack_from(raw)[0]
        reader = _Reader(raw, _HEADER.size)
        ids = _undelta(reader.ints(rows))
        stamps = reader.array("d", rows).tolist()
        lines = _read_text(reader, rows) if codec == TEXT else _read_columns(reader, rows)
    except (zstandard.ZstdError, struct.error, ValueError, KeyError, IndexError, TypeError) as exc:
        raise CorruptBlock(f"{type(exc).__name__}: {exc}") from None
    if len(ids) != rows or len(lines) != rows or len(stamps) != rows:
        raise CorruptBlock(f"{rows} rows announced, {len(ids)} ids, {len(lines)} lines")
    return ids, stamps, lines


# ---- integers: delta, zig-zag, narrowest width, shuffled bytes ----

def _deltas(values: list[int]) -> list[int]:
    return [values[0], *(b - a for a, b in pairwise(values))] if values else []


def _undelta(deltas: list[int]) -> list[int]:
    return list(accumulate(deltas))


def _ints(values: list[int]) -> bytes:
    """Signed integers (each within 64 bits): a width byte, then the zig-zagged values (the sign in the
    lowest bit: small negative deltas have zero high bytes) in the narrowest width, bytes shuffled."""
    zigzag = [(v << 1) ^ (v >> 63) for v in values]
    top = max(zigzag, default=0)
    width = next(w for w in (1, 2, 4, 8) if top < 1 << (8 * w))
    packed = array(_WIDTHS[width], zigzag).tobytes()
    return bytes([width]) + b"".join(packed[i::width] for i in range(width))


def _fits_64(values: list[int]) -> bool:
    return not values or (-(1 << 62) < min(values) and max(values) < 1 << 62)  # deltas stay within 64 bits


class _Reader:
    def __init__(self, raw: memoryview, offset: int):
        self.raw, self.at = raw, offset

    def take(self, n: int) -> memoryview:
        if self.at + n > len(self.raw):
            raise ValueError("block ends early")
        part = self.raw[self.at:self.at + n]
        self.at += n
        return part

    def array(self, code: str, count: int) -> array:
        out = array(code)
        out.frombytes(self.take(out.itemsize * count))
        return out

    def ints(self, count: int) -> list[int]:
        width = self.take(1)[0]
        shuffled = self.take(width * count)
        packed = bytearray(width * count)
        for i in range(width):
            packed[i::width] = shuffled[i * count:(i + 1) * count]
        return [(z >> 1) ^ -(z & 1) for z in array(_WIDTHS[width], bytes(packed)).tolist()]

    def texts(self, count: int) -> list[str]:
        lengths = self.array("I", count)
        blob = bytes(self.take(sum(lengths)))
        out, at = [], 0
        for n in lengths:
            out.append(blob[at:at + n].decode())
            at += n
        return out


def _text_part(lines: list[str]) -> list[bytes]:
    encoded = [line.encode() for line in lines]
    return [array("I", map(len, encoded)).tobytes(), *encoded]


def _read_text(reader: _Reader, rows: int) -> list[str]:
    return reader.texts(rows)


# ---- COLUMNS ----

def _split(line: str) -> tuple[str, tuple[str, ...], list[str], str] | None:
    """(series, field keys, value texts, timestamp text) of a plain line; None for what needs escapes or quotes."""
    if '"' in line or "\\" in line:
        return None
    parts = line.split(" ")
    if len(parts) != 3:
        return None
    head, fields, stamp = parts
    tokens = fields.replace("=", ",").split(",")
    if len(tokens) % 2 or not stamp.isdigit() or str(int(stamp)) != stamp:
        return None
    return head, tuple(tokens[0::2]), tokens[1::2], stamp


def _columns_part(lines: list[str]) -> list[bytes]:
    groups: dict[tuple[str, ...], list[tuple[str, int, list[str], str]]] = {}
    plain: list[int] = []
    for i, line in enumerate(lines):
        split = _split(line)
        if split is None:
            plain.append(i)
        else:
            head, keys, values, stamp = split
            groups.setdefault(keys, []).append((head, i, values, stamp))
    desc: dict = {"plain": len(plain), "groups": []}
    parts = [_ints(plain), *_text_part([lines[i] for i in plain])]
    for keys, rows in groups.items():
        rows.sort()  # by series, then position: each column runs through a series' values over time
        heads = sorted({row[0] for row in rows})
        index = {h: n for n, h in enumerate(heads)}
        kinds = []
        group_parts = [_ints([row[1] for row in rows]), _ints(_deltas([index[row[0]] for row in rows])),
                       _ints(_deltas([int(row[3]) for row in rows]))]
        for column in zip(*(row[2] for row in rows)):
            kind, data = _column(list(column))
            kinds.append(kind)
            group_parts.append(data)
        desc["groups"].append({"keys": list(keys), "rows": len(rows), "heads": heads, "kinds": kinds})
        parts += group_parts
    head = json.dumps(desc, separators=(",", ":")).encode()
    return [struct.pack("<I", len(head)), head, *parts]


def _column(texts: list[str]) -> tuple[str, bytes]:
    """The column's kind and bytes: integers when they give its texts back exactly, else the texts."""
    for kind, numbers in _numeric_candidates(texts):
        if _fits_64(numbers) and _render(kind, numbers) == texts:
            return kind, _ints(_deltas(numbers))
    return "s", b"".join(_text_part(texts))


def _numeric_candidates(texts: list[str]):
    first = texts[0]
    try:
        if first.endswith("i"):
            yield "i", [int(t[:-1]) for t in texts]
            return
        if first in ("true", "false"):
            yield "b", [int(t == "true") for t in texts]
            return
        values = list(map(float, texts))
    except ValueError:
        return
    kinds = {_float_kind(v) for v in values[::max(1, len(values) // 16)]}  # a sample: the column's decimals
    if None in kinds:
        return
    for kind in sorted(kinds, key=lambda k: int(k[1:]), reverse=True):  # the most decimals first: fits them all
        e = int(kind[1:])
        try:
            yield kind, list(map(round, map(float(_POW10[e]).__mul__, values)))
        except (OverflowError, ValueError):  # infinity, NaN
            return


def _float_kind(value: float) -> str | None:
    """The fewest decimals (and how to apply them) that give ``value`` back from an integer."""
    for e in range(_MAX_EXPONENT + 1):
        try:
            n = round(value * _POW10[e])
        except (OverflowError, ValueError):
            return None
        if n * _INV10[e] == value:
            return f"m{e}"  # multiplied, as a register × scale
        if n / _POW10[e] == value:
            return f"d{e}"  # divided: the value as written in decimal
    return None


_TABLE_LOW, _TABLE_HIGH = -32768, 65536  # int16 and uint16 registers: a table of their texts per kind


def _text_of(kind: str):
    if kind == "i":
        return "{}i".format
    if kind == "b":
        return lambda n: "true" if n else "false"
    e = int(kind[1:])
    value = _INV10[e].__mul__ if kind[0] == "m" else float(_POW10[e]).__rtruediv__
    return lambda n: repr(value(n))


@functools.cache
def _table(kind: str) -> list[str]:
    """The texts of -32768..65535 of a kind (a negative index counts from the end, as the numbers do):
    a list look-up costs ~40 ns where a float's repr costs ~300 (decoding is most of a back-fill's CPU).
    Built once per kind, ~30 ms; ~6 MB."""
    text = _text_of(kind)
    return [text(n) for n in range(_TABLE_HIGH)] + [text(n) for n in range(_TABLE_LOW, 0)]


def _render(kind: str, numbers: list[int]) -> list[str]:
    if kind == "b":
        return ["true" if n else "false" for n in numbers]
    if numbers and _TABLE_LOW <= min(numbers) and max(numbers) < _TABLE_HIGH:
        return list(map(_table(kind).__getitem__, numbers))
    return list(map(_text_of(kind), numbers))


def _read_columns(reader: _Reader, rows: int) -> list[str]:
    size = struct.unpack("<I", reader.take(4))[0]
    desc = json.loads(bytes(reader.take(size)))
    out: list[str | None] = [None] * rows
    plain = desc["plain"]
    for i, line in zip(reader.ints(plain), reader.texts(plain)):
        out[i] = line
    for group in desc["groups"]:
        n, heads = group["rows"], group["heads"]
        positions = reader.ints(n)
        series = [heads[h] for h in _undelta(reader.ints(n))]
        stamps = _undelta(reader.ints(n))
        columns = [reader.texts(n) if kind == "s" else _render(kind, _undelta(reader.ints(n)))
                   for kind in group["kinds"]]
        fields = ",".join(f"{key.replace('%', '%%')}=%s" for key in group["keys"])
        template = f"%s {fields} %d"
        for i, line in zip(positions, map(template.__mod__, zip(series, *columns, stamps))):
            out[i] = line
    if any(line is None for line in out):
        raise ValueError("rows missing from the block")
    return out
