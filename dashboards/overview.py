"""Mine overview: the dispatcher's first screen. Per area a status tile (running, stopped,
fault, offline) linking to that area's dashboard, the active alarms by priority, and the
gateway's health (devices reporting, buffer depth, data dropped)."""
from __future__ import annotations

from grafana_foundation_sdk.builders import common, dashboard
from grafana_foundation_sdk.models import dashboard as model

from dashboards.common import (EQUIPMENT, FRESHNESS_SIGNAL, STALE, ACTIVE_ALARMS, RING_MAPPINGS, STALE_LOOKBACK, STATUS_MAPPINGS, UID_ALARMS, UID_BELT,
                               UID_HEALTH, UID_LONGWALL, UID_NETWORK, UID_OVERVIEW, UID_ROADWAY, fresh_status, link_to,
                               matching, new_dashboard, priority_column, query, stat_panel, state_tiles, table_panel,
                               thresholds, value_colours, variables, where)
from dashboards.settings import HEALTH_INTERVAL_S

AREA_GROUPS = (  # (tile title, equipment measurements, the area's dashboard)
    ("Longwall faces", ("shearer", "face_conveyor"), UID_LONGWALL),
    ("Headings", ("roadheader",), UID_ROADWAY),
    ("Belt lines", ("belt_conveyor",), UID_BELT),
)
UP_DOWN = [*value_colours({"1": ("up", "green")}),
           model.RangeMap(options=model.DashboardRangeMapOptions(
               from_val=-2, to=0, result=model.ValueMappingResult(text="down", color="red")))]
SITE_ONLY = '"site" =~ /^$site$/'


def area_status_tile(title: str, measurements: tuple[str, ...], uid: str):
    """The worst status of each area's equipment, one value per area.

    InfluxQL keeps measurements apart even in a subquery, so the query gives each device's
    latest status code (or STALE + it: "no data") as rows and Grafana merges them and takes the
    max per area (codes are ordered by severity; stale above all).
    """
    text = fresh_status(measurements, matching(device=False), '"area", "device"', timeline=False)
    merge = model.DataTransformerConfig(id_val="merge", options={})
    worst = model.DataTransformerConfig(id_val="groupBy", options={"fields": {
        "area": {"operation": "groupby"}, "code": {"operation": "aggregate", "aggregations": ["max"]}}})
    return (stat_panel(title, query(text, as_table=True), width=8,
                       description="Worst status of the area's equipment; click for the area's dashboard")
            .transformations([merge, worst]).display_name("${__data.fields.area}")
            .reduce_options(common.ReduceDataOptions().values(True).calcs(["lastNotNull"]).fields("/^code/"))
            .mappings(STATUS_MAPPINGS).color_mode("background").graph_mode("none").text_mode("value_and_name")
            .data_links([link_to(uid, "Open ${__data.fields.area}", area="${__data.fields.area}")]))


def gateways_tile():
    """Each gateway up or down, from ``gateway_status``: its last ``up`` - 1 (0 online, -1 offline), plus its
    heartbeats (-1 when it ever sent one, +1 more when one came within two health intervals), plus 1:
    1 up; 0 or less down. A gateway stored through ingest only (no heartbeats) is its last status.
    (One measurement: InfluxQL keeps the subqueries of different measurements apart.)"""
    status = f'SELECT last("up") - 1 AS "up" FROM "gateway_status" WHERE {SITE_ONLY} GROUP BY "gateway"'
    known = (f'SELECT last("heartbeat") * 0 - 1 AS "up" FROM "gateway_status" WHERE {SITE_ONLY} AND '
             f'time > now() - {STALE_LOOKBACK} GROUP BY "gateway"')
    fresh = (f'SELECT count("heartbeat") * 0 + 1 AS "up" FROM "gateway_status" WHERE {SITE_ONLY} AND '
             f'time > now() - {2 * HEALTH_INTERVAL_S:g}s GROUP BY "gateway"')
    text = f'SELECT sum("up") + 1 AS "up" FROM ({status}), ({known}), ({fresh}) GROUP BY "gateway"'
    return state_tiles("Gateways", query(text, alias="$tag_gateway"), UP_DOWN,
                       description=f"Down: stopped (its last status), or no health point for "
                                   f"{2 * HEALTH_INTERVAL_S:g} s (crashed, cut off); click for gateway health") \
        .data_links([link_to(UID_HEALTH, "Gateway health")])


def uplinks_tile():
    """Each district's uplink (its MQTT bridge to the surface): its last notification, 1 up, 0 down."""
    text = f'SELECT last("up") AS "up" FROM "uplink_status" WHERE {SITE_ONLY} GROUP BY "district"'
    return state_tiles("Uplinks", query(text, alias="$tag_district"), UP_DOWN,
                       description="Each district broker's bridge to the surface (its notification; the surface "
                                   "broker's last will when it is cut)")


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


def no_data_since():
    """The machines whose readings stopped, and since when: each machine's status (A: fresh or STALE + it)
    joined by device with the time of its last reading (B), keeping the stale ones."""
    kinds = EQUIPMENT
    status = fresh_status(kinds, matching(device=False), '"area", "device"', timeline=False)
    sources = ", ".join(f'"{k}"' for k in kinds)
    seen = (f'SELECT last("{FRESHNESS_SIGNAL}") AS "seen" FROM {sources} WHERE {matching(device=False)} AND '
            f'time > now() - {STALE_LOOKBACK} GROUP BY "area", "device"')
    steps = [model.DataTransformerConfig(id_val="joinByField", options={"byField": "device", "mode": "outer"}),
             model.DataTransformerConfig(id_val="filterByValue", options={
                 "type": "include", "match": "any",
                 "filters": [{"fieldName": "code", "config": {"id": "greaterOrEqual", "options": {"value": STALE}}}]}),
             model.DataTransformerConfig(id_val="organize", options={
                 "excludeByName": {"Time 1": True, "seen": True, "area 2": True},
                 "renameByName": {"Time 2": "last reading", "area 1": "area", "code": "status"}})]
    return (table_panel("No data since", query(status, as_table=True), query(seen, "B", as_table=True), width=24,
                        height=6, description="Machines whose readings stopped (their gateway or the uplink is "
                                              "down, or the machine's link): the time of their last reading")
            .transformations(steps).mappings(STATUS_MAPPINGS))


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
    board.with_panel(gateways_tile())
    board.with_panel(uplinks_tile())
    board.with_panel(no_data_since())
    board.with_row(dashboard.Row("Alarms"))
    board.with_panel(stat_panel("Active alarms", query(f'SELECT count("state") AS "active" FROM ({ACTIVE_ALARMS})'
                                                       ' WHERE "state" =~ /^active/'),
                                width=6, description="Alarms raised and not cleared, whatever their age")
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
        f'SELECT last("dropped") AS "historian", last("mqtt_dropped") AS "mqtt" FROM "gateway_health" {health} '
        'GROUP BY "gateway"', alias="$tag_gateway $col"),
        unit="short", width=6, description="Per gateway: lines or messages lost since it started (should be 0)")
        .thresholds(thresholds((None, "green"), (1, "red"))).text_mode("value_and_name"))
    board.with_panel(stat_panel("MQTT uplink", query(
        f'SELECT last("mqtt_queued") AS "queued" FROM "gateway_health" {health} GROUP BY "gateway"',
        alias="$tag_gateway"), unit="short", width=6,
        description="Per gateway: messages waiting for the broker")
        .thresholds(thresholds((None, "green"), (1000, "orange"))).text_mode("value_and_name"))
    return board
