"""Roadway driving (掘进): the roadheader's motors, oil, pressures, boom and methane at the heading."""
from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import (UID_ROADWAY, UID_VIDEO, dashed_thresholds, limit_steps, link_to, new_dashboard,
                               status_timeline, timeseries_by_device, units_by_column, variables)
from dashboards.longwall import methane_steps, motor_temperature_steps


def build() -> dashboard.Dashboard:
    board = new_dashboard(UID_ROADWAY, "minegw · Roadway driving",
                          "Roadheaders at the heading faces", variables("roadheader"))
    board.with_panel(status_timeline("Roadheader status", UID_ROADWAY, "roadheader",
                                     links=[link_to(UID_VIDEO, "Cameras of ${area}", area="${area}")]))
    board.with_row(dashboard.Row("Motors"))
    board.with_panel(timeseries_by_device("Cutting and pump motor currents", "roadheader", "cutting_current",
                                          "pump_current", unit="amp"))
    board.with_panel(timeseries_by_device("Cutting and pump motor temperatures", "roadheader", "cutting_temperature",
                                          "pump_temperature", unit="celsius")
                     .thresholds(motor_temperature_steps("roadheader", "cutting_temperature")).thresholds_style(dashed_thresholds()))
    board.with_row(dashboard.Row("Hydraulics"))
    board.with_panel(timeseries_by_device("Oil temperature", "roadheader", "oil_temperature", unit="celsius",
                                          width=8, description="Alarm about 70 °C")
                     .thresholds(limit_steps("roadheader", "oil_temperature", 70, 80)).thresholds_style(dashed_thresholds()))
    board.with_panel(timeseries_by_device("Oil level", "roadheader", "oil_level", unit="percent", width=8))
    board.with_panel(timeseries_by_device("System and spray water pressure", "roadheader", "system_pressure",
                                          "spray_water_pressure", unit="pressurempa", width=8))
    board.with_row(dashboard.Row("Machine"))
    board.with_panel(timeseries_by_device("Methane at the heading", "roadheader", "methane", fn="max",
                                          unit="percent", width=8, description="Alarm 1.0 %, power cut 1.5 %")
                     .thresholds(methane_steps("roadheader")).thresholds_style(dashed_thresholds()))
    board.with_panel(timeseries_by_device("Boom angles", "roadheader", "boom_horizontal_angle",
                                          "boom_vertical_angle", unit="degree", width=8))
    board.with_panel(units_by_column(timeseries_by_device(
        "Travel speed and supply voltage", "roadheader", "travel_speed", "supply_voltage", unit="volt", width=8,
        description="m/min; V"), {"travel_speed$": "m/min"}))
    return board
