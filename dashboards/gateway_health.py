"""Gateway health: poll latency and errors per device, the historian buffer (depth, back-fill
progress), MQTT and historian throughput, and the gateway's own alarms (data being lost)."""
from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import (ONLINE_MAPPINGS, UID_HEALTH, new_dashboard, query, state_panel, table_panel,
                               timeseries_panel, variables, where)

GATEWAY = where(area=False, device=False)


def per_device(title: str, select: str, unit: str = "", description: str = "", width: int = 12):
    text = f'SELECT {select} FROM "device_health" {where()} GROUP BY time($__interval), "device" fill(null)'
    return timeseries_panel(title, query(text, alias="$tag_device $col"), unit=unit, width=width,
                            description=description)


def per_gateway(title: str, select: str, unit: str = "", description: str = "", width: int = 12):
    text = f'SELECT {select} FROM "gateway_health" {GATEWAY} GROUP BY time($__interval), "gateway" fill(null)'
    return timeseries_panel(title, query(text, alias="$tag_gateway $col"), unit=unit, width=width,
                            description=description)


def build() -> dashboard.Dashboard:
    board = new_dashboard(UID_HEALTH, "minegw · Gateway health", "Polling, buffering and delivery of the gateways",
                          variables("device_health"))
    board.with_row(dashboard.Row("Devices"))
    board.with_panel(per_device("Poll latency", 'mean("poll_ms_mean") AS "mean", max("poll_ms_max") AS "max"', "ms",
                                "Request to last answer of a poll, averaged per health interval (10 s)"))
    board.with_panel(per_device("Poll errors", 'sum("failed_polls") AS "failed polls", '
                                               'sum("samples_not_good") AS "samples not good"', "short",
                                "Polls that failed to communicate, and samples of any quality but good"))
    board.with_panel(state_panel("Device links", query(
        f'SELECT last("status") AS "status" FROM "device_state" {where()} '
        f'GROUP BY time($__interval), "device" fill(previous)', alias="$tag_device"), mappings=ONLINE_MAPPINGS,
        height=8, description="Online / offline as the gateway saw it (points at each change)"))
    board.with_row(dashboard.Row("Historian buffer"))
    board.with_panel(per_gateway("Buffer depth", 'last("depth") AS "lines waiting", '
                                                 'last("dead_letters") AS "dead letters"', "short",
                                 "Lines in the durable buffer waiting for InfluxDB; dead letters need a replay"))
    board.with_panel(per_gateway("Back-fill progress", 'last("oldest_age_s") AS "oldest line waiting"', "s",
                                 "How far behind the historian is: falls to 0 when the back-fill is done"))
    board.with_row(dashboard.Row("Throughput"))
    board.with_panel(per_gateway("Historian throughput",
                                 'non_negative_derivative(last("written"), 1s) AS "written", '
                                 'non_negative_derivative(last("buffered"), 1s) AS "buffered"', "wps",
                                 "Lines per second into the buffer and out to InfluxDB"))
    board.with_panel(per_gateway("MQTT throughput",
                                 'non_negative_derivative(last("mqtt_published"), 1s) AS "published", '
                                 'non_negative_derivative(last("mqtt_delivered"), 1s) AS "delivered"', "cps",
                                 "Messages per second produced and acknowledged by the broker"))
    board.with_panel(per_gateway("Queues", 'last("mqtt_queued") AS "MQTT queued", last("retries") AS "historian '
                                           'retries"', "short", "Waiting for the broker; failed InfluxDB writes"))
    board.with_panel(per_gateway("Data lost", 'last("dropped") AS "historian dropped", '
                                              'last("mqtt_dropped") AS "MQTT dropped"', "short",
                                 "Should stay 0: anything here raised a gateway alarm"))
    board.with_panel(table_panel("Gateway alarms", query(
        f'SELECT "alarm", "active", "count", "message" FROM "gateway_alarm" {GATEWAY} ORDER BY time DESC LIMIT 200',
        as_table=True), height=8, description="Data loss (historian-dropping, mqtt-dropping) and broadcast nodes "
                                              "that did not confirm, raised and cleared"))
    return board
