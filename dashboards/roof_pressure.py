"""Roof pressure (矿压监测): roof separation deep and shallow, bolt and cable loads, and the
supports' cycle metrics: setting load, end resistance, load-rise rate, supports below setting
pressure (docs/roof-pressure.md)."""
from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import (UID_LONGWALL, UID_ROOF, dashed_thresholds, leg_pressure_colours, link_to, new_dashboard,
                               query, support_bars, thresholds, timeseries_panel, variables, where)
from dashboards.settings import current

SEPARATION_STEPS = thresholds((None, "green"), (45, "orange"), (50, "red"))  # ≤ 45-50 mm inside the bolted zone
LOAD_RISE_STEPS = thresholds((None, "green"), (2, "orange"))  # > 2 MPa/h in the fast phase: periodic weighting


def by_gauge(title: str, pattern: str, unit: str, description: str = "", fn: str = "mean", width: int = 12):
    """Every gauge whose signal name matches ``pattern`` (a regex), one line each, named after its device
    (roof-pressure system of a face) and signal: two faces' gauge 1 stay two lines."""
    text = (f'SELECT {fn}(/{pattern}/) FROM "roof_pressure" {where()} GROUP BY time($__interval), "device" '
            'fill(null)')
    return timeseries_panel(title, query(text, alias="$tag_device $col"), unit=unit, width=width,
                            description=description)


def build() -> dashboard.Dashboard:
    board = new_dashboard(UID_ROOF, "minegw · Roof pressure", "Roof separation, anchor loads and support metrics",
                          variables("roof_pressure"))
    board.with_row(dashboard.Row("Supports"))
    board.with_panel(timeseries_panel(
        "Supports below setting pressure",
        query(f'SELECT max("supports_below_setting") AS "supports" FROM "roof_pressure" {where()} '
              f'GROUP BY time($__interval), "device" fill(previous)', alias="$tag_device"),
        unit="none", width=12,
        description=f"Supports whose latest setting load was below {current().setting_mpa:g} MPa")
        .thresholds(thresholds((None, "green"), (1, "orange"))).thresholds_style(dashed_thresholds())
        .data_links([link_to(UID_LONGWALL, "Longwall face ${area}", area="${area}")]))
    board.with_panel(by_gauge("Load-rise rate (front legs)", "^support_[0-9]+_front_leg_load_rise_rate$", "MPa/h",
                              "MPa/h over each support cycle; above 2 MPa/h signals periodic weighting", fn="max")
                     .thresholds(LOAD_RISE_STEPS).thresholds_style(dashed_thresholds()))
    board.with_panel(support_bars("Setting load by support (front legs, latest cycle)", "front_leg_setting_load",
                                  colours=leg_pressure_colours(), width=12,
                                  description=f"初撑力: below {current().setting_mpa:g} MPa the support is under-set"))
    board.with_panel(support_bars("End resistance by support (front legs, latest cycle)", "front_leg_end_resistance",
                                  colours=leg_pressure_colours(), width=12,
                                  description="末阻力: the pressure before the leg was lowered"))
    board.with_panel(support_bars("Setting load by support (front legs, mean over the time range)",
                                  "front_leg_setting_load", fn="mean", colours=leg_pressure_colours(), width=12,
                                  description="The daily report's view: choose the day as the time range"))
    board.with_panel(support_bars("Yield-valve openings by support (front legs, time range)",
                                  "front_leg_yield_openings", fn="sum", unit="short", width=12,
                                  description="Safety-valve openings counted over the support cycles"))
    board.with_row(dashboard.Row("Roof separation (离层)"))
    for depth, anchor in (("deep", "5-6 m"), ("shallow", "2-3 m")):
        board.with_panel(by_gauge(f"Roof separation, {depth} anchors", f"_roof_sep_[0-9]+_{depth}$", "lengthmm",
                                  f"Anchor {anchor} into the roof; inside the bolted zone it should stay within "
                                  f"45-50 mm").thresholds(SEPARATION_STEPS).thresholds_style(dashed_thresholds()))
    board.with_row(dashboard.Row("Anchor loads (锚杆/锚索)"))
    board.with_panel(by_gauge("Bolt loads", "_bolt_load_[0-9]+$", "kN", "Load cells 0-400/500 kN"))
    board.with_panel(by_gauge("Cable loads", "_cable_load_[0-9]+$", "kN", "Load cells 0-400/500 kN"))
    return board
