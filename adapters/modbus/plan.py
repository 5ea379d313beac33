"""Coalesce a profile's points into the fewest Modbus read requests."""
from __future__ import annotations

from dataclasses import dataclass

from .profile import Point, Table

MAX_REGISTERS = 125  # per read request (Modbus spec, FC 3/4)
MAX_BITS = 2000  # per read request (FC 1/2)


@dataclass(frozen=True)
class Block:
    """One read request and the points it carries."""

    table: Table
    address: int
    count: int
    points: tuple[Point, ...]


def plan_reads(points: list[Point], max_gap_registers: int = 8, max_gap_bits: int = 64,
               max_registers: int = MAX_REGISTERS, max_bits: int = MAX_BITS) -> list[Block]:
    """Group points per table into requests no longer than the protocol allows.

    Neighbouring points are merged when the hole between them is at most the gap
    limit: reading a few unused registers is cheaper than another round trip.
    """
    blocks: list[Block] = []
    for table in Table:
        pts = sorted((p for p in points if p.table is table), key=lambda p: p.address)
        limit, gap = (max_bits, max_gap_bits) if table.is_bit else (max_registers, max_gap_registers)
        current: list[Point] = []
        start = end = 0
        for p in pts:
            p_end = p.address + p.width
            if current and p.address - end <= gap and max(end, p_end) - start <= limit:
                current.append(p)
                end = max(end, p_end)
                continue
            if current:
                blocks.append(Block(table, start, end - start, tuple(current)))
            current, start, end = [p], p.address, p_end
        if current:
            blocks.append(Block(table, start, end - start, tuple(current)))
    return blocks


def split(block: Block) -> list[Block]:
    """One request per point: the fallback when a device refuses a merged range."""
    return [Block(block.table, p.address, p.width, (p,)) for p in block.points]
