"""Video and broadcast: cameras online, their stream links and events; the emergency broadcast
nodes' status and faults, and the log of broadcasts (dispatcher commands and alarm linkages)."""
from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import (ONLINE_MAPPINGS, TRIP_MAPPINGS, UID_ALARMS, UID_VIDEO, link_to, new_dashboard, query,
                               state_panel, table_panel, timeseries_panel, value_colours, variables, where)

PLAYING = value_colours({"0": ("idle", "transparent"), "1": ("routine", "blue"), "2": ("dispatcher", "yellow"),
                         "3": ("EMERGENCY", "red")})
NODE_FAULTS = ("amplifier_fault", "line_fault", "on_battery")


def by_device_timeline(title: str, measurement: str, signal: str, mappings, height: int = 6, width: int = 12):
    """``signal`` of each device over time; "no data" where the device's readings stopped (stale)."""
    text = (f'SELECT last("{signal}") AS "{signal}" FROM "{measurement}" {where()} '
            f'GROUP BY time($__interval), "device" fill(null)')
    return state_panel(title, query(text, alias="$tag_device"), mappings=mappings, height=height, width=width,
                       fresh=(measurement,))


def build() -> dashboard.Dashboard:
    board = new_dashboard(UID_VIDEO, "minegw · Video and broadcast", "Cameras and emergency broadcast nodes",
                          variables("camera", "broadcast_node"),
                          links=[link_to(UID_ALARMS, "Alarms and commands", area="${area}")])
    board.with_row(dashboard.Row("Cameras"))
    board.with_panel(by_device_timeline("Cameras online", "camera", "online", ONLINE_MAPPINGS))
    board.with_panel(timeseries_panel("Camera response time", query(
        f'SELECT mean("response_ms") AS "response" FROM "camera" {where()} '
        f'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device"), unit="ms",
        description="ONVIF round trip of the periodic check"))
    board.with_panel(table_panel("Cameras and stream links", query(
        'SELECT last("online") AS "online", last("manufacturer") AS "manufacturer", last("model") AS "model", '
        'last("firmware") AS "firmware", last("profiles") AS "profiles (stream URIs without credentials)" '
        'FROM "device_inventory" WHERE "site" =~ /^$site$/ AND "area" =~ /^$area$/ AND "device" =~ /^$device$/ '
        'AND time > now() - 30d '
        'GROUP BY "area", "device"', as_table=True), height=8,
        description="What each camera is and offers (latest inventory, last 30 days)"))
    board.with_panel(by_device_timeline("Camera events: motion", "camera", "motion", TRIP_MAPPINGS, width=24))

    board.with_row(dashboard.Row("Emergency broadcast"))
    board.with_panel(by_device_timeline("Broadcast nodes online", "broadcast_node", "online", ONLINE_MAPPINGS))
    board.with_panel(by_device_timeline("Playing", "broadcast_node", "playing_priority", PLAYING))
    board.with_panel(timeseries_panel("Battery level", query(
        f'SELECT min("battery_level") AS "battery" FROM "broadcast_node" {where()} '
        f'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device"), unit="percent", width=12))
    board.with_panel(state_panel("Node faults", *(query(
        f'SELECT last("{fault}") AS "{fault}" FROM "broadcast_node" {where()} '
        f'GROUP BY time($__interval), "device" fill(null)', ref=ref, alias=f"$tag_device {fault}")
        for ref, fault in zip("ABC", NODE_FAULTS)), mappings=TRIP_MAPPINGS, width=12, fresh=("broadcast_node",)))
    board.with_panel(table_panel("Broadcasts by the dispatch (command log)", query(
        'SELECT "signal" AS "action", "value" AS "what", "by", "reason", "result", "error" FROM "command_audit" '
        'WHERE "site" =~ /^$site$/ AND "device" = \'broadcast\' AND $timeFilter ORDER BY time DESC LIMIT 200',
        as_table=True), width=12, description="Play, stop and volume commands; refused ones with the reason"))
    board.with_panel(table_panel("Broadcasts started by alarms (linkage)", query(
        f'SELECT "alarm", "device", "message", "priority", "zones", "ok", "trigger_to_confirmed_ms", "failed_nodes" '
        f'FROM "linkage_event" {where(device=False)} ORDER BY time DESC LIMIT 200', as_table=True), width=12,
        description="Alarm → evacuation message in the area's zones and escape routes; time to every node's "
                    "confirmation"))
    return board
