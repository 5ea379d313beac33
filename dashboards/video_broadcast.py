"""Video and broadcast: live tiles of the relayed cameras, stream health (relay bitrates, links,
reconnects), cameras online, their stream links and events; the emergency broadcast nodes' status and
faults, and the log of broadcasts (dispatcher commands and alarm linkages).

The live tiles are HTML text panels holding an iframe of the relay's player page
(``${relay}/player/CAMERA``, gateway/video/http.py), repeated per camera of ``$tile``. Grafana renders an
iframe in a text panel only with ``[panels] disable_sanitize_html = true`` (docs/video.md); scripts in a
text panel never run (Grafana >= 7.1), hence the iframe rather than a script.
"""
from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, text
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import text as text_model

from dashboards.common import (
    DATASOURCE,
    ONLINE_MAPPINGS,
    TRIP_MAPPINGS,
    UID_ALARMS,
    UID_VIDEO,
    link_to,
    new_dashboard,
    query,
    state_panel,
    table_panel,
    timeseries_panel,
    value_colours,
    variables,
    where,
)

PLAYING = value_colours({"0": ("idle", "transparent"), "1": ("routine", "blue"), "2": ("dispatcher", "yellow"),
                         "3": ("EMERGENCY", "red")})
NODE_FAULTS = ("amplifier_fault", "line_fault", "on_battery")
LINK_MAPPINGS = value_colours({"1": ("streaming", "green"), "0": ("no stream", "red")})
RELAY_DEFAULT = "http://minegw-gateway:8888"  # the gateway's video.relay http_port, as the operator's browser reaches it
TILE = ('<iframe src="${relay}/player/${tile}" title="${tile}" '
        'style="width:100%;height:100%;border:0;background:#000" allow="autoplay"></iframe>')


def relay_variables() -> list:
    """``relay``: the relay's HTTP base URL (a text box); ``tile``: the cameras to show live (any area: a
    dispatcher watching one area's trends may still want the transfer point's picture)."""
    relay = (dashboard.TextBoxVariable("relay").label("Video relay").default_value(RELAY_DEFAULT)
             .description("the gateway's video relay, as this browser reaches it (docs/video.md)")
             .current(model.VariableOption(selected=True, text=RELAY_DEFAULT, value=RELAY_DEFAULT)))
    tile = (dashboard.QueryVariable("tile").label("Live").datasource(DATASOURCE)
            .query('SHOW TAG VALUES FROM "camera" WITH KEY = "device" WHERE "site" =~ /^$site$/')
            .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD).sort(model.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*")
            .current(model.VariableOption(selected=True, text="All", value="$__all")))
    return [relay, tile]


def live_tile() -> text.Panel:
    return (text.Panel().title("${tile}").mode(text_model.TextMode.HTML).content(TILE).height(8).span(6)
            .repeat("tile").repeat_direction("h").max_per_row(4).transparent(True)
            .description("Live sub-stream through the gateway's relay (HLS, about one segment behind)"))


def stream_health(board: dashboard.Dashboard) -> None:
    board.with_panel(by_device_timeline("Relay: camera streams", "camera", "relay_connected", LINK_MAPPINGS))
    board.with_panel(timeseries_panel("Uplink per camera", query(
        f'SELECT mean("relay_uplink_kbps") AS "uplink", mean("relay_ingress_kbps") AS "from camera" '
        f'FROM "camera" {where()} GROUP BY time($__interval), "device" fill(null)', alias="$tag_device $col"),
        unit="Kbits", description="To the surface (RTSP to viewers and HLS served) and from the camera"))
    board.with_panel(timeseries_panel("Video uplink and budget", query(
        f'SELECT mean("uplink_kbps") AS "uplink", last("budget_kbps") AS "budget" FROM "video_relay" '
        f'{where(device=False)} GROUP BY time($__interval), "device" fill(previous)', alias="$tag_device $col"),
        unit="Kbits", description="The gateway's video uplink against video.uplink_budget_kbps"))
    board.with_panel(table_panel("Relayed streams", query(
        'SELECT last("relay_connected") AS "streaming", last("relay_main_active") AS "main stream", '
        'last("relay_viewers") AS "viewers", last("relay_uplink_kbps") AS "uplink kbit/s", '
        f'spread("relay_reconnects") AS "reconnects" FROM "camera" {where()} GROUP BY "area", "device"',
        as_table=True), width=12, height=8,
        description="Per camera, over the time range: reconnects to the camera, viewers of the relay"))


def by_device_timeline(title: str, measurement: str, signal: str, mappings, height: int = 6, width: int = 12):
    """``signal`` of each device over time; "no data" where the device's readings stopped (stale)."""
    text = (f'SELECT last("{signal}") AS "{signal}" FROM "{measurement}" {where()} '
            f'GROUP BY time($__interval), "device" fill(null)')
    return state_panel(title, query(text, alias="$tag_device"), mappings=mappings, height=height, width=width,
                       fresh=(measurement,))


def build() -> dashboard.Dashboard:
    board = new_dashboard(UID_VIDEO, "minegw · Video and broadcast", "Cameras and emergency broadcast nodes",
                          [*variables("camera", "broadcast_node"), *relay_variables()],
                          links=[link_to(UID_ALARMS, "Alarms and commands", area="${area}")])
    board.with_row(dashboard.Row("Live (video relay)"))
    board.with_panel(live_tile())
    board.with_row(dashboard.Row("Stream health"))
    stream_health(board)
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
