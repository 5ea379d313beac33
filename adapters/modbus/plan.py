"""Coalesce a profile's points into the fewest Modbus read requests, and re-plan them
around the ranges a device refuses."""
from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from .decoder import BlockDecoder
from .profile import Point, Table

MAX_REGISTERS = 125  # per read request (Modbus spec, FC 3/4)
MAX_BITS = 2000  # per read request (FC 1/2)


@dataclass(frozen=True)
class Block:
    """One read request and the points it carries; ``decoder`` its answer's compiled decoder
    (set by :meth:`ReadPlan.plan`, see :meth:`ReadPlan.compiled`)."""

    table: Table
    address: int
    count: int
    points: tuple[Point, ...]
    decoder: BlockDecoder | None = field(default=None, compare=False, repr=False)


def block_of(table: Table, points: Collection[Point]) -> Block:
    """The one request that reads these points (sorted by address) and what lies between them."""
    points = tuple(points)
    start = points[0].address
    return Block(table, start, max(p.address + p.width for p in points) - start, points)


def plan_reads(points: list[Point], max_gap_registers: int = 8, max_gap_bits: int = 64,
               max_registers: int = MAX_REGISTERS, max_bits: int = MAX_BITS,
               cuts: Collection[tuple[Table, int]] = ()) -> list[Block]:
    """Group points per table into requests no longer than the protocol allows.

    Neighbouring points are merged when the hole between them is at most the gap
    limit: reading a few unused registers is cheaper than another round trip. A cut
    ``(table, address)`` keeps the points below the address and those at or above it
    in different requests (the device refuses a read across it).
    """
    blocks: list[Block] = []
    for table in Table:
        pts = sorted((p for p in points if p.table is table), key=lambda p: p.address)
        table_cuts = [a for t, a in cuts if t is table]
        limit, gap = (max_bits, max_gap_bits) if table.is_bit else (max_registers, max_gap_registers)
        current: list[Point] = []
        start = end = 0
        for p in pts:
            p_end = p.address + p.width
            if (current and p.address - end <= gap and max(end, p_end) - start <= limit
                    and not any(start < cut <= p.address for cut in table_cuts)):
                current.append(p)
                end = max(end, p_end)
                continue
            if current:
                blocks.append(block_of(table, current))
            current, start, end = [p], p.address, p_end
        if current:
            blocks.append(block_of(table, current))
    return blocks


def halve(block: Block) -> tuple[Block, Block]:
    """A block of two or more points as two requests, half of its points each."""
    middle = len(block.points) // 2
    return block_of(block.table, block.points[:middle]), block_of(block.table, block.points[middle:])


class Hole(NamedTuple):
    """What a device refused (exception 2, illegal data address): a read across ``address``
    of ``table``, or, with ``point``, that point even alone."""

    table: Table
    address: int
    point: str = ""

    def within(self, block: Block) -> bool:
        """Whether reading ``block`` runs into this hole."""
        if self.table is not block.table:
            return False
        if self.point:
            return any(p.name == self.point for p in block.points)
        return block.address < self.address < block.address + block.count


class ReadPlan:
    """The requests of one device's poll, re-planned around the holes it has refused.

    Holes are learned as polls find them; every ``retry_after`` seconds the oldest one is
    forgotten, so its range is tried again (a device whose map was updated reads in
    fewer requests again; one that still refuses teaches the hole anew).
    """

    def __init__(self, points: list[Point], max_gap_registers: int = 8, retry_after: float = 600.0,
                 clock: Callable[[], float] = time.monotonic):
        self.points = points
        self.slots = {p.name: i for i, p in enumerate(points)}  # where each point goes in a reading
        self.max_gap_registers = max_gap_registers
        self.retry_after = retry_after
        self.clock = clock
        self.holes: dict[Hole, float] = {}  # hole -> when learned, oldest first
        self.ever_learned: set[Hole] = set()  # including holes since retried
        self.blocks: list[Block] = []
        self.unreadable: list[Point] = []  # not requested: they come out bad
        self._replan()

    def learn(self, hole: Hole) -> None:
        self.holes.pop(hole, None)
        self.holes[hole] = self.clock()
        self.ever_learned.add(hole)
        self._replan()

    def retry_oldest(self) -> Hole | None:
        """Forget the oldest hole if it is due for a retry; return it."""
        oldest = next(iter(self.holes.items()), None)
        if oldest is None or self.clock() - oldest[1] < self.retry_after:
            return None
        del self.holes[oldest[0]]
        self._replan()
        return oldest[0]

    def plan(self, points: Collection[Point]) -> tuple[list[Block], list[Point]]:
        """The requests that read ``points`` around the known holes, and the points not to ask for."""
        skipped = {h.point for h in self.holes if h.point}
        blocks = plan_reads([p for p in points if p.name not in skipped], max_gap_registers=self.max_gap_registers,
                            cuts={(h.table, h.address) for h in self.holes})
        return [self.compiled(b) for b in blocks], [p for p in points if p.name in skipped]

    def compiled(self, block: Block) -> Block:
        """The block with its decoder, compiled for readings in the order of this plan's points."""
        if block.decoder is not None:
            return block
        return replace(block, decoder=BlockDecoder(block.table.is_bit, block.address, block.count,
                                                   block.points, self.slots))

    def _replan(self) -> None:
        self.blocks, self.unreadable = self.plan(self.points)
