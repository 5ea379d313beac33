"""The daily report: the site's faces, machines and devices, each shift's figures from the historian, and the
files (``minegw report daily``; docs/reports.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from adapters.modbus.profile import load_profile
from adapters.opcua.nodemap import load_nodemap
from gateway.config import MAX_SILENCE_S, SiteConfig
from gateway.core.errors import UserError
from gateway.derived import processor_for
from gateway.derived.roof_pressure import RoofPressureMetrics
from gateway.derived.status import EquipmentStatus
from gateway.reports import alarms, completeness, equipment, roof
from gateway.reports.config import ShiftWindow
from gateway.reports.source import Historian
from gateway.reports.table import Table


@dataclass
class Report:
    site: SiteConfig
    day: date
    windows: list[ShiftWindow]
    generated: datetime
    tables: dict[str, Table] = field(default_factory=dict)

    @property
    def zone(self) -> str:
        return self.site.reports.timezone

    @property
    def whole_day(self) -> bool:
        return len(self.windows) == len(self.site.reports.shifts)


@dataclass(frozen=True)
class Face:
    device: str
    area: str
    supports: list[int]
    required: float


def faces(site: SiteConfig) -> list[Face]:
    """The roof-pressure devices: their area is the face; the supports are those of their node map."""
    out = []
    for d in site.devices:
        processor = processor_for(d, site.roof_pressure) if d.enabled else None
        if isinstance(processor, RoofPressureMetrics):
            required = site.reports.required_setting_mpa.get(d.area, site.roof_pressure.required_setting_mpa)
            out.append(Face(d.id, d.area, sorted({n for n, _ in processor.legs.values()}), required))
    return out


def machines(site: SiteConfig) -> list:
    """The devices with a derived status (Modbus machines with a ``running`` bit)."""
    return [d for d in site.devices if d.enabled and isinstance(processor_for(d, site.roof_pressure), EquipmentStatus)]


def expectations(site: SiteConfig) -> list[completeness.Expectation]:
    rbe = site.mqtt.report_by_exception if site.mqtt else None
    rule = rbe.max_silence if rbe and rbe.enabled else MAX_SILENCE_S
    out = []
    for d in (d for d in site.devices if d.enabled):
        event_driven = getattr(d, "mode", None) == "subscribe"
        basis = "windows" if (rbe and rbe.enabled) or event_driven else "polls"
        out.append(completeness.Expectation(d.id, d.area, d.equipment_kind, probe_signal(d), basis,
                                            d.poll_interval, rule))
    return out


def probe_signal(device) -> str | None:
    """A signal in every point of the device: the first of its profile or node map (None: not known)."""
    if getattr(device, "profile", None):
        return load_profile(device.profile).points[0].name
    if getattr(device, "nodemap", None):
        return load_nodemap(device.nodemap, device.supports).expanded[0].name
    return None


async def collect(site: SiteConfig, day: date, shift: int | None = None) -> Report:
    windows = site.reports.windows(day)
    if shift is not None:
        if not 1 <= shift <= len(windows):
            raise UserError(f"--shift {shift}: the site has shifts 1..{len(windows)}")
        windows = [windows[shift - 1]]
    report = Report(site, day, windows, datetime.now(timezone.utc))
    historian = Historian(site.historian)
    try:
        tables = {key: Table(key, columns) for key, columns in (
            ("roof_faces", roof.FACE_COLUMNS), ("roof_supports", roof.SUPPORT_COLUMNS),
            ("equipment", equipment.COLUMNS), ("alarms", alarms.COLUMNS), ("completeness", completeness.COLUMNS),
            ("gaps", completeness.GAP_COLUMNS), ("outages", completeness.OUTAGE_COLUMNS))}
        for window in windows:
            await _shift(site, historian, window, tables)
        report.tables = tables
    finally:
        await historian.close()
    return report


async def _shift(site: SiteConfig, historian: Historian, window: ShiftWindow, tables: dict[str, Table]) -> None:
    n, zone = window.number, site.reports.timezone
    allowed_s = site.reports.max_below_setting_minutes * 60
    for face in faces(site):
        cycles = await roof.leg_cycles(historian, face.device, window)
        supports = roof.figures(cycles, face.supports, face.required, window)
        tables["roof_faces"].rows.append(roof.face_row(n, face.area, face.required, supports, allowed_s))
        tables["roof_supports"].rows += [roof.support_row(n, face.area, f, allowed_s) for f in supports]
    for d in machines(site):
        points = await equipment.status_points(historian, d.equipment_kind, d.id, window)
        tables["equipment"].rows.append(equipment.machine_row(n, d.id, d.area, equipment.machine_time(points, window)))
    inside, before = await alarms.alarm_events(historian, window)
    tables["alarms"].rows += [alarms.alarm_row(n, f) for f in alarms.figures(inside, before, window)]
    spans = await completeness.outages(historian, window)
    for e in expectations(site):
        row, found = completeness.device_row(n, e, await completeness.stored_points(historian, e, window), window)
        tables["completeness"].rows.append(row)
        tables["gaps"].rows += [completeness.gap_row(n, e.device, gap, spans, zone) for gap in found]
    tables["outages"].rows += [completeness.outage_row(n, s, zone) for s in spans]
