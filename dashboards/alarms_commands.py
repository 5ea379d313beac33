"""Alarms and commands: alarms now and their history with the lifecycle (raised, acknowledged
by whom, cleared; docs/alarms.md), and the audit log of every command (docs/mqtt.md)."""
from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import (ACTIVE_ALARMS, UID_ALARMS, UID_OVERVIEW, link_to, new_dashboard, priority_column, query,
                               state_panel, table_panel, value_colours, variables, where)

ALARM_STATES = value_colours({"active_unack": ("ACTIVE, not acknowledged", "red"),
                              "active_ack": ("active, acknowledged", "orange"),
                              "cleared_unack": ("cleared, not acknowledged", "yellow"),
                              "normal": ("normal", "green")})


def build() -> dashboard.Dashboard:
    board = new_dashboard(UID_ALARMS, "minegw · Alarms and commands", "Alarm list, alarm history, command audit",
                          variables("alarm_event"),
                          links=[link_to(UID_OVERVIEW, "Mine overview", area="${area}")])
    board.with_panel(priority_column(table_panel(
        "Alarms needing attention",
        query(f'SELECT "priority", "state", "device", "kind", "message" FROM ({ACTIVE_ALARMS}) '
              "WHERE \"state\" != 'normal' AND \"device\" =~ /^$device$/", as_table=True), height=8,
        description="Active, or cleared but not acknowledged; acknowledge with `minegw alarm ack`")))
    board.with_panel(state_panel("Alarm lifecycle", query(
        f'SELECT last("state") AS "state" FROM "alarm_event" {where()} '
        f'GROUP BY time($__interval), "alarm" fill(previous)', alias="$tag_alarm"),
        mappings=ALARM_STATES, height=8))
    board.with_panel(priority_column(table_panel("Alarm history", query(
        'SELECT "alarm", "device", "state", "priority", "kind", "signal", "value", "message", "acked_by" '
        f'FROM "alarm_event" {where()} ORDER BY time DESC LIMIT 1000', as_table=True), height=12,
        description="Every transition of every alarm in the time range, newest first")))
    board.with_panel(table_panel("Command audit", query(
        'SELECT "device", "signal", "value", "result", "by", "reason", "error", "source", "request_id" '
        'FROM "command_audit" WHERE "site" =~ /^$site$/ AND $timeFilter ORDER BY time DESC LIMIT 1000',
        as_table=True), height=12,
        description="Every write and broadcast command, accepted or refused: who, what, why, and the result"))
    return board
