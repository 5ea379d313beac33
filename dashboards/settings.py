"""What a dashboard build takes from the site: ``minegw dashboards build -c SITE``.

Without a site the dashboards use the reference values (mine-domain.md; the gateway's defaults):
setting pressure 24 MPa, yield valve 38 MPa, the alarm and trip lines of each panel, and a
staleness window of 25 s (the mine's polling rule, and ``max_silence`` of report by exception).
With a site: its ``roof_pressure`` settings, the limits of its ``high`` / ``high_high`` alarm
rules, and per measurement a window of twice the slowest poll interval of its devices (at least
``max_silence`` when report by exception is on), never more than 25 s.

The build runs with one :class:`BuildSettings` at a time (:func:`using`); panel builders read it
with :func:`current`.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from gateway.derived.roof_pressure import RoofPressureConfig

MAX_SILENCE_S = 25.0  # the mine's polling rule: every signal at the surface at least this often
HEALTH_INTERVAL_S = 10.0  # gateway_health / device_health: one point per gateway / device every 10 s
YIELD_MPA = 38.0  # the yield valve opens at 38-40 MPa (mine-domain.md)


@dataclass(frozen=True)
class BuildSettings:
    setting_mpa: float = RoofPressureConfig().required_setting_mpa
    lowered_mpa: float = RoofPressureConfig().lowered_mpa
    yield_mpa: float = YIELD_MPA
    limits: dict[tuple[str, str], tuple[float | None, float | None]] = field(default_factory=dict)
    fresh_s: dict[str, float] = field(default_factory=dict)  # measurement -> staleness window, s
    site: str | None = None

    def window(self, *measurements: str) -> float:
        """Seconds without data after which a panel over ``measurements`` shows them as stale."""
        known = [self.fresh_s[m] for m in measurements if m in self.fresh_s]  # kinds the site has devices of
        return min(MAX_SILENCE_S, max(known, default=MAX_SILENCE_S))

    def limit_pair(self, kind: str, signal: str, alarm: float, trip: float) -> tuple[float, float]:
        """(alarm, trip) lines of ``signal`` on ``kind``: the site's rules where it has them."""
        site_alarm, site_trip = self.limits.get((kind, signal), (None, None))
        return (alarm if site_alarm is None else site_alarm), (trip if site_trip is None else site_trip)


_CURRENT: list[BuildSettings] = [BuildSettings()]


def current() -> BuildSettings:
    return _CURRENT[-1]


@contextmanager
def using(settings: BuildSettings) -> Iterator[BuildSettings]:
    _CURRENT.append(settings)
    try:
        yield settings
    finally:
        _CURRENT.pop()


def _poll_s(device) -> float | None:
    for name in ("poll_interval", "sampling_interval"):
        value = getattr(device, name, None)
        if value:
            return float(value)
    return None


def from_site(site) -> BuildSettings:
    """The settings of a :class:`gateway.config.SiteConfig`."""
    rp = site.roof_pressure
    kinds = {d.id: d.equipment_kind for d in site.devices}
    limits: dict[tuple[str, str], list[float | None]] = {}
    for rule in site.alarms:
        if rule.signal and rule.limit is not None and rule.kind.value in ("high", "high_high") and rule.device in kinds:
            pair = limits.setdefault((kinds[rule.device], rule.signal), [None, None])
            i = 0 if rule.kind.value == "high" else 1
            pair[i] = rule.limit if pair[i] is None else min(pair[i], rule.limit)
    rbe = site.mqtt.report_by_exception if site.mqtt else None
    floor = rbe.max_silence if rbe is not None and rbe.enabled else 0.0
    fresh: dict[str, float] = {}
    for device in site.devices:
        if (poll := _poll_s(device)) is not None:
            kind = device.equipment_kind
            fresh[kind] = min(MAX_SILENCE_S, max(fresh.get(kind, 0.0), 2 * poll, floor))
    return BuildSettings(setting_mpa=rp.required_setting_mpa, lowered_mpa=rp.lowered_mpa,
                         yield_mpa=rp.yield_open_mpa if "yield_open_mpa" in rp.model_fields_set else YIELD_MPA,
                         limits={k: (a, t) for k, (a, t) in limits.items()}, fresh_s=fresh, site=site.site.id)
