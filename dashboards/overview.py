"""Mine overview: the dispatcher's first screen. Per area a status tile (running, stopped,
fault, offline) linking to that area's dashboard, the active alarms by priority, and the
gateway's health (devices reporting, buffer depth, data dropped)."""
from __future__ import annotations

from grafana_foundation_sdk.builders import common, dashboard
from grafana_foundation_sdk.models import dashboard as model

from dashboards.common import RING_MAPPINGS, UID_NETWORK
from dashboards.common import (ACTIVE_ALARMS, STATUS_MAPPINGS, UID_ALARMS, UID_BELT, UID_HEALTH, UID_LONGWALL, UID_OVERVIEW,
                               UID_ROADWAY, link_to, new_dashboard, priority_column, query, stat_panel, table_panel, thresholds,
                               variables, where)

AREA_GROUPS = (  # (tile title, equipment measurements, the area's dashboard)
    ("Longwall faces", ('"shearer"', '"face_conveyor"'), UID_LONGWALL),
    ("Headings", ('"roadheader"',), UID_ROADWAY),
    ("Belt lines", ('"belt_conveyor"',), UID_BELT),
)


def area_status_tile(title: str, measurements: tuple[str, ...], uid: str):
    """The worst status of each area's equipment, one value per area.

    InfluxQL keeps measurements apart even in a subquery, so the query gives each device's
    latest status code as rows and Grafana merges them and takes the max per area (codes are
    ordered by severity).
    """
    text = (f'SELECT last("status_code") AS "code" FROM {", ".join(measurements)} '
            f'{where(device=False)} GROUP BY "area", "device"')
    merge = model.DataTransformerConfig(id_val="merge", options={})
    worst = model.DataTransformerConfig(id_val="groupBy", options={"fields": {
        "area": {"operation": "groupby"}, "code": {"operation": "aggregate", "aggregations": ["max"]}}})
    return (stat_panel(title, query(text, as_table=True), width=8,
                       description="Worst status of the area's equipment; click for the area's dashboard")
            .transformations([merge, worst]).display_name("${__data.fields.area}")
            .reduce_options(common.ReduceDataOptions().values(True).calcs(["lastNotNull"]).fields("/^code/"))
            .mappings(STATUS_MAPPINGS).color_mode("background").graph_mode("none").text_mode("value_and_name")
            .data_links([link_to(uid, "Open ${__data.fields.area}", area="${__data.fields.area}")]))


def network_tile():
    """The worst ring state of the site (closed, open, segmented), linking to the network dashboard."""
    text = (f'SELECT last("state_code") AS "code" FROM "network_ring" {where(area=False, device=False)} '
            'GROUP BY "ring"')
    return (stat_panel("Network", query(text, as_table=True), width=8,
                       description="Worst state of the site's rings: closed, open (redundancy lost), segmented "
                                   "(devices cut off); click for the network dashboard")
            .transformations([model.DataTransformerConfig(id_val="merge", options={})])
            .reduce_options(common.ReduceDataOptions().values(False).calcs(["max"]).fields("/^code/"))
            .mappings(RING_MAPPINGS).color_mode("background").graph_mode("none").text_mode("value_and_name")
            .data_links([link_to(UID_NETWORK, "Open the network dashboard")]))


def devices_reporting():
    """Devices whose latest health interval (10 s) had a good poll, of the devices reporting."""
    per_device = ('SELECT last("polls") - last("failed_polls") AS "ok", last("polls") AS "polls" '
                  'FROM "device_health" WHERE "site" =~ /^$site$/ AND "area" =~ /^$area$/ AND $timeFilter '
                  'GROUP BY "device"')
    return (stat_panel("Devices online", query(f'SELECT count("ok") AS "online" FROM ({per_device}) WHERE "ok" > 0'),
                       query(f'SELECT count("polls") AS "reporting" FROM ({per_device})', ref="B"),
                       width=6, description="Devices whose latest health interval had a good poll, "
                                            "of the devices reporting")
            .graph_mode("none").text_mode("value_and_name"))


def build() -> dashboard.Dashboard:
    health = where(area=False, device=False)
    board = new_dashboard(UID_OVERVIEW, "minegw · Mine overview",
                          "Areas, active alarms and gateway health of one mine", variables("device_state", device=False))
    board.with_row(dashboard.Row("Areas"))
    for title, measurements, uid in AREA_GROUPS:
        board.with_panel(area_status_tile(title, measurements, uid))
    board.with_panel(network_tile())
    board.with_row(dashboard.Row("Alarms"))
    board.with_panel(stat_panel("Active alarms", query(f'SELECT count("state") AS "active" FROM ({ACTIVE_ALARMS})'
                                                       ' WHERE "state" =~ /^active/'),
                                width=6, description="Alarms raised and not cleared (last 7 days)")
                     .thresholds(thresholds((None, "green"), (1, "red"))).color_mode("background").graph_mode("none")
                     .no_value("0").data_links([link_to(UID_ALARMS, "Alarm history", area="${area}")]))
    board.with_panel(priority_column(table_panel("Active alarms by priority",
                                 query(f'SELECT "priority", "state", "device", "kind", "message" FROM ({ACTIVE_ALARMS})'
                                       ' WHERE "state" =~ /^active/', as_table=True),
                                 width=18, height=8, description="Most urgent first: 1 critical … 4 low")))
    board.with_row(dashboard.Row("Gateway"))
    board.with_panel(devices_reporting())
    board.with_panel(stat_panel("Historian buffer", query(f'SELECT last("depth") AS "depth" FROM "gateway_health" '
                                                          f'{health} GROUP BY "gateway"', alias="$tag_gateway"),
                                unit="short", width=6, description="Lines waiting for InfluxDB")
                     .thresholds(thresholds((None, "green"), (10000, "orange"), (1000000, "red")))
                     .data_links([link_to(UID_HEALTH, "Gateway health")]))
    board.with_panel(stat_panel("Data dropped", query(
        f'SELECT last("dropped") AS "historian", last("mqtt_dropped") AS "mqtt" FROM "gateway_health" {health}'),
        unit="short", width=6, description="Lines or messages lost since the gateway started (should be 0)")
        .thresholds(thresholds((None, "green"), (1, "red"))).text_mode("value_and_name"))
    board.with_panel(stat_panel("MQTT uplink", query(
        f'SELECT last("mqtt_queued") AS "queued" FROM "gateway_health" {health}'), unit="short", width=6,
        description="Messages waiting for the broker").thresholds(thresholds((None, "green"), (1000, "orange"))))
    return board
