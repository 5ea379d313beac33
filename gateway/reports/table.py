"""A report's table: column keys (words in :mod:`.terms`) and rows of plain values, written as they are to
CSV and formatted for HTML and PDF."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo


@dataclass
class Table:
    key: str  # the CSV file's name and the title's term
    columns: list[str]  # terms
    rows: list[list] = field(default_factory=list)


def hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


def minutes(seconds: float) -> float:
    return round(seconds / 60, 1)


def percent(part: float, whole: float) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def clock(ts: datetime, zone: str) -> str:
    """A time of the report in the mine's local time, to the second."""
    return ts.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")
