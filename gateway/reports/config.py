"""The site file's ``reports:`` section: shifts, the face's required setting pressure, what "too long
below setting" means (docs/reports.md). Like the other features' settings it never imports gateway.config."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ShiftConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="as the mine calls it: 0点班, night, ...")
    start: time = Field(description="local time the shift starts (HH:MM); it ends when the next one starts")


THREE_EIGHTS = [ShiftConfig(name="0点班", start=time(0)), ShiftConfig(name="8点班", start=time(8)),
                ShiftConfig(name="4点班", start=time(16))]  # 三八制, the common pattern


class ReportsConfig(BaseModel):
    """``reports:``: the daily report's settings (``minegw report daily``)."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = Field("Asia/Shanghai", description="the mine's local time: dates and shift starts")
    shifts: list[ShiftConfig] = Field(default_factory=lambda: list(THREE_EIGHTS), min_length=1,
                                      description="in order through the day; shift N ends when N+1 starts")
    required_setting_mpa: dict[str, float] = Field(
        {}, description="face (area id) -> required setting pressure, MPa; absent: roof_pressure.required_setting_mpa")
    max_below_setting_minutes: float = Field(30.0, gt=0, description="a support standing under-set longer "
                                             "than this within a shift is listed")
    keep_days: int = Field(31, ge=1, description="report folders older than this are removed (--keep-days)")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (an IANA name such as Asia/Shanghai)") from None
        return name

    @field_validator("shifts")
    @classmethod
    def _in_order(cls, shifts: list[ShiftConfig]) -> list[ShiftConfig]:
        starts = [s.start for s in shifts]
        if starts != sorted(set(starts)):
            raise ValueError("shift starts must rise through the day, each once: "
                             + ", ".join(s.start.strftime("%H:%M") for s in shifts))
        return shifts

    def windows(self, day: date) -> list["ShiftWindow"]:
        """The shifts that start on ``day`` (local), as UTC windows; the last ends at the next day's first."""
        zone = ZoneInfo(self.timezone)
        starts = [datetime.combine(day, s.start, zone) for s in self.shifts]
        starts.append(datetime.combine(day + timedelta(days=1), self.shifts[0].start, zone))
        return [ShiftWindow(day, n, s.name, starts[n - 1].astimezone(timezone.utc), starts[n].astimezone(timezone.utc))
                for n, s in enumerate(self.shifts, 1)]

    def last_ended(self, now: datetime) -> "ShiftWindow":
        """The latest shift that has ended by ``now`` (for the timer: the shift just over)."""
        local = now.astimezone(ZoneInfo(self.timezone)).date()
        ended = [w for d in (local - timedelta(days=2), local - timedelta(days=1), local)
                 for w in self.windows(d) if w.end <= now]
        return ended[-1]


@dataclass(frozen=True)
class ShiftWindow:
    day: date  # the local date the shift starts on
    number: int  # 1-based, as --shift takes it
    name: str
    start: datetime  # UTC
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()
