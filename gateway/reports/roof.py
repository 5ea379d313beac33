"""Roof pressure per face, support and shift, from the derived cycle metrics the gateway historises
(``support_NNN_{front,rear}_leg_{setting_load,end_resistance,yield_openings}`` in ``roof_pressure``,
docs/roof-pressure.md): one leg cycle per set of those fields, stamped when the leg was lowered again."""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from statistics import mean

from gateway.reports.config import ShiftWindow
from gateway.reports.source import Historian, between, ident, literal
from gateway.reports.table import minutes, percent

FIELDS = re.compile(r"^support_(\d+)_(front|rear)_leg_(setting_load|end_resistance|yield_openings)$")
SELECT = "/^support_[0-9]+_(front|rear)_leg_(setting_load|end_resistance|yield_openings)$/"
SUPPORT_COLUMNS = ["shift", "face", "support", "leg_cycles", "setting_mean", "setting_min", "end_mean", "end_max",
                   "pass_rate", "yields", "longest_under_min", "never_set", "under_too_long"]
FACE_COLUMNS = ["shift", "face", "required_mpa", "supports", "leg_cycles", "pass_rate", "setting_mean", "end_mean",
                "yields", "never_set_list", "under_too_long_list"]


@dataclass
class LegCycle:
    support: int
    leg: str
    ended: datetime
    setting: float | None = None
    end: float | None = None
    yields: int = 0


@dataclass
class SupportFigures:
    support: int
    cycles: list[LegCycle]
    required: float
    longest_under_s: float

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cycles if c.setting >= self.required)

    @property
    def never_set(self) -> bool:
        return bool(self.cycles) and self.passed == 0


async def leg_cycles(historian: Historian, device: str, window: ShiftWindow) -> list[LegCycle]:
    rows = await historian.rows(f"SELECT {SELECT} FROM {historian.measurement('roof_pressure')} "
                                f"WHERE {ident('device')} = {literal(device)} AND {between(window.start, window.end)}")
    return cycles_of(rows)


def cycles_of(rows: list[dict]) -> list[LegCycle]:
    """One :class:`LegCycle` per leg and timestamp holding a setting load."""
    found: dict[tuple, LegCycle] = {}
    for row in rows:
        for name, value in row.items():
            match = FIELDS.match(name)
            if match is None or value is None:
                continue
            support, leg, what = int(match[1]), match[2], match[3]
            cycle = found.setdefault((support, leg, row["time"]), LegCycle(support, leg, row["time"]))
            if what == "yield_openings":
                cycle.yields = int(value)
            else:
                setattr(cycle, "setting" if what == "setting_load" else "end", float(value))
    return sorted((c for c in found.values() if c.setting is not None), key=lambda c: c.ended)


def longest_under_set(cycles: list[LegCycle], required: float, window: ShiftWindow) -> float:
    """Seconds of the longest stretch a leg stood under-set within the shift: an under-set cycle counts from the
    leg's previous lowering (or the shift's start) to its own lowering."""
    longest, previous = 0.0, {}
    for c in cycles:
        begun = max(previous.get(c.leg, window.start), window.start)
        if c.setting < required:
            longest = max(longest, (c.ended - begun).total_seconds())
        previous[c.leg] = c.ended
    return longest


def figures(cycles: list[LegCycle], supports: list[int], required: float,
            window: ShiftWindow) -> list[SupportFigures]:
    by_support: dict[int, list[LegCycle]] = defaultdict(list)
    for c in cycles:
        by_support[c.support].append(c)
    return [SupportFigures(n, by_support[n], required, longest_under_set(by_support[n], required, window))
            for n in sorted(set(supports) | set(by_support))]


def support_row(shift: int, face: str, f: SupportFigures, allowed_s: float) -> list:
    settings = [c.setting for c in f.cycles]
    ends = [c.end for c in f.cycles if c.end is not None]
    return [shift, face, f.support, len(f.cycles), _mpa(mean(settings)) if settings else None,
            _mpa(min(settings)) if settings else None, _mpa(mean(ends)) if ends else None,
            _mpa(max(ends)) if ends else None, percent(f.passed, len(f.cycles)),
            sum(c.yields for c in f.cycles), minutes(f.longest_under_s), f.never_set, f.longest_under_s > allowed_s]


def face_row(shift: int, face: str, required: float, supports: list[SupportFigures], allowed_s: float) -> list:
    cycles = [c for f in supports for c in f.cycles]
    settings = [c.setting for c in cycles]
    ends = [c.end for c in cycles if c.end is not None]
    return [shift, face, required, len(supports), len(cycles), percent(sum(f.passed for f in supports), len(cycles)),
            _mpa(mean(settings)) if settings else None, _mpa(mean(ends)) if ends else None,
            sum(c.yields for c in cycles), _numbers(f.support for f in supports if f.never_set),
            _numbers(f.support for f in supports if f.longest_under_s > allowed_s)]


def _mpa(value: float) -> float:
    return round(value, 2)


def _numbers(supports) -> str:
    return " ".join(f"{n:03d}" for n in supports)
