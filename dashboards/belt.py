"""Belt line (带式输送机): speed and load of every belt, and its MT 872 protections (slip,
misalignment, tear, pile-up, smoke, over-temperature, emergency stop) as state timelines."""
from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import (TRIP_MAPPINGS, UID_BELT, UID_VIDEO, dashed_thresholds, limit_steps, link_to,
                               new_dashboard, query, state_panel, status_timeline, timeseries_by_device, variables,
                               where)

PROTECTIONS = ("slip", "misalignment_trip", "tear", "pile_up", "smoke_trip", "over_temperature", "emergency_stop",
               "lockout")


def protection_timeline(protection: str):
    text = (f'SELECT last("{protection}") AS "{protection}" FROM "belt_conveyor" {where()} '
            f'GROUP BY time($__interval), "device" fill(null)')
    return state_panel(protection.replace("_", " ").capitalize(), query(text, alias="$tag_device"),
                       mappings=TRIP_MAPPINGS, height=5, width=12, fresh=("belt_conveyor",))


def build() -> dashboard.Dashboard:
    board = new_dashboard(UID_BELT, "minegw · Belt line", "Belt conveyors: speed, load and protections",
                          variables("belt_conveyor"))
    board.with_panel(status_timeline("Belt status", UID_BELT, "belt_conveyor",
                                     links=[link_to(UID_VIDEO, "Cameras of ${area}", area="${area}")]))
    board.with_row(dashboard.Row("Transport"))
    board.with_panel(timeseries_by_device("Belt speed", "belt_conveyor", "speed", unit="velocityms",
                                          description="Belts run 3.5-4.5 m/s; slip below 70 % of rated speed"))
    board.with_panel(timeseries_by_device("Load", "belt_conveyor", "load", unit="t/h",
                                          description="Belt scale, t/h"))
    board.with_panel(timeseries_by_device("Motor current", "belt_conveyor", "motor_current", unit="amp", width=8))
    board.with_panel(timeseries_by_device("Belt tension", "belt_conveyor", "tension", unit="kN", width=8))
    board.with_panel(timeseries_by_device("Supply voltage", "belt_conveyor", "supply_voltage", unit="volt",
                                          width=8, description="Stop below 65 % of nominal"))
    board.with_row(dashboard.Row("Protections (MT 872)"))
    board.with_panel(timeseries_by_device("Misalignment", "belt_conveyor", "misalignment", fn="max",
                                          unit="lengthmm", width=8, description="Alarm at 20 mm past the idler edge")
                     .thresholds(limit_steps("belt_conveyor", "misalignment", 20, 20)).thresholds_style(dashed_thresholds()))
    board.with_panel(timeseries_by_device("Smoke", "belt_conveyor", "smoke", fn="max", unit="percent", width=8,
                                          description="Stop at 1.5 % for 2 s")
                     .thresholds(limit_steps("belt_conveyor", "smoke", 1.5, 1.5)).thresholds_style(dashed_thresholds()))
    board.with_panel(timeseries_by_device("Drive drum temperature", "belt_conveyor", "drive_drum_temperature",
                                          fn="max", unit="celsius", width=8, description="Sprinkler at about 60 °C")
                     .thresholds(limit_steps("belt_conveyor", "drive_drum_temperature", 60, 60)).thresholds_style(dashed_thresholds()))
    for protection in PROTECTIONS:
        board.with_panel(protection_timeline(protection))
    return board
