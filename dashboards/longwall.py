"""Longwall face: the signature views (shearer position along the face against time, leg
pressure of every support as a bar chart coloured against setting and yield pressure), the
shearer's motors, hydraulics and methane, and the armoured face conveyor."""
from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import (UID_LONGWALL, UID_ROOF, dashed_thresholds, leg_pressure_colours, limit_steps, link_to,
                               new_dashboard, query, stat_panel, status_timeline, support_bars, thresholds,
                               timeseries_by_device, units_by_column, variables, where)
from dashboards.settings import current


def methane_steps(kind: str):
    return limit_steps(kind, "methane", 1.0, 1.5)  # alarm / power cut (AQ 1029)


def motor_temperature_steps(kind: str, signal: str):
    return limit_steps(kind, signal, 135, 155)  # alarm / trip


def leg_pressure_bars(leg: str):
    """The latest pressure of every support's ``leg`` leg, coloured against setting and yield pressure."""
    s = current()
    return (support_bars(f"{leg.capitalize()} leg pressure by support", f"{leg}_leg_pressure",
                         colours=leg_pressure_colours(),
                         description=f"Grey: lowered to advance; orange: below the setting pressure "
                                     f"({s.setting_mpa:g} MPa); green: set; red: at the yield valve "
                                     f"({s.yield_mpa:g} MPa and over)")
            .min(0).max(max(60.0, 1.5 * s.yield_mpa))
            .data_links([link_to(UID_ROOF, "Roof pressure of ${area}", area="${area}")]))


def build() -> dashboard.Dashboard:
    board = new_dashboard(UID_LONGWALL, "minegw · Longwall face",
                          "Shearer, supports and face conveyor of a longwall face", variables("shearer", "face_conveyor"))
    board.with_row(dashboard.Row("Face"))
    board.with_panel(timeseries_by_device("Shearer position (support number)", "shearer", "support_number",
                                          fn="last", width=16, height=9,
                                          description="Where the shearer cuts along the face: the position curve")
                     .min(0).line_width(2).fill_opacity(0))
    board.with_panel(stat_panel("Supports below setting pressure",
                                query(f'SELECT last("supports_below_setting") AS "supports" FROM "roof_pressure" '
                                      f'{where(device=False)} GROUP BY "device"', alias="$tag_device"),
                                unit="none", width=8, height=9,
                                description=f"Per roof-pressure device (one per face): supports whose latest "
                                            f"setting load was below {current().setting_mpa:g} MPa")
                     .thresholds(thresholds((None, "green"), (1, "orange"), (5, "red"))).graph_mode("area")
                     .data_links([link_to(UID_ROOF, "Roof pressure of ${area}", area="${area}")]))
    board.with_panel(leg_pressure_bars("front"))
    board.with_panel(leg_pressure_bars("rear"))
    board.with_panel(status_timeline("Equipment status", UID_LONGWALL, "shearer", "face_conveyor"))

    board.with_row(dashboard.Row("Shearer"))
    board.with_panel(timeseries_by_device("Cutting and haulage motor currents", "shearer", "left_cutting_current",
                                          "right_cutting_current", "haulage_current", unit="amp"))
    board.with_panel(timeseries_by_device("Motor temperatures", "shearer", "left_cutting_temperature",
                                          "right_cutting_temperature", "haulage_temperature", unit="celsius", description="Alarm about 135 °C, trip about 155 °C")
                     .thresholds(motor_temperature_steps("shearer", "left_cutting_temperature")).thresholds_style(dashed_thresholds()))
    board.with_panel(units_by_column(timeseries_by_device(
        "Haulage speed and drum heights", "shearer", "haulage_speed", "left_drum_height", "right_drum_height",
        unit="lengthcm", description="Haulage speed in m/min, drum heights in cm"), {"haulage_speed$": "m/min"}))
    board.with_panel(units_by_column(timeseries_by_device(
        "Hydraulics and cooling water", "shearer", "hydraulic_pressure", "cooling_water_pressure",
        "cooling_water_flow", unit="pressurempa", description="Pressures in MPa, flow in L/min"),
        {"cooling_water_flow$": "flowlpm"}))
    board.with_panel(timeseries_by_device("Methane on the shearer", "shearer", "methane", fn="max",
                                          unit="percent",
                                          description="Alarm 1.0 %, power cut 1.5 % (AQ 1029)")
                     .thresholds(methane_steps("shearer")).thresholds_style(dashed_thresholds()))
    board.with_panel(timeseries_by_device("Pitch and roll", "shearer", "pitch", "roll", unit="degree"))

    board.with_row(dashboard.Row("Face conveyor"))
    board.with_panel(timeseries_by_device("Drive currents", "face_conveyor", "head_current", "tail_current",
                                          unit="amp"))
    board.with_panel(timeseries_by_device("Drive power", "face_conveyor", "head_power", "tail_power",
                                          unit="kwatt"))
    board.with_panel(units_by_column(timeseries_by_device(
        "Chain speed and tension", "face_conveyor", "chain_speed", "chain_tension", unit="velocityms",
        description="Speed in m/s, tension in kN"), {"chain_tension$": "kN"}))
    board.with_panel(timeseries_by_device("Gearbox oil and bearing temperatures", "face_conveyor",
                                          "gearbox_oil_temperature", "bearing_temperature", unit="celsius"))
    board.with_panel(timeseries_by_device("Crusher vibration", "face_conveyor", "crusher_vibration",
                                          unit="velocitymms", fn="max"))
    return board

