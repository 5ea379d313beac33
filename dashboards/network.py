"""Network: the ring networks (state, the open link, islands, what is cut off), link status history, error
rates, the switches as a status grid, and the UPS. Data: ``network_ring`` (the gateway's diagnosis),
``network_switch`` and ``ups`` (the SNMP readings), ``device_state``; see docs/network.md."""
from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models.common import VisibilityMode

from dashboards.common import (ONLINE_MAPPINGS, RING_MAPPINGS, TRIP_MAPPINGS, UID_NETWORK, new_dashboard, query,
                               state_panel, state_tiles, table_panel, thresholds, timeseries_panel, units_by_column,
                               variables, where)

HIDE = VisibilityMode.NEVER
FIXED_BY_THRESHOLDS = dashboard.FieldColor().mode("thresholds")

RINGS = where(area=False, device=False)  # network_ring: tags site and ring only


def ring_tiles():
    """One tile per ring: its latest state, coloured (closed green, open yellow, segmented red)."""
    text = f'SELECT last("state_code") AS "state" FROM "network_ring" {RINGS} GROUP BY "ring"'
    return state_tiles("Rings", query(text, alias="$tag_ring"), RING_MAPPINGS, height=6,
                       description="Each ring's latest diagnosis: closed, open (redundancy lost), segmented "
                                   "(switches and devices cut off)")


def ring_table():
    text = ('SELECT last("state") AS "state", last("open_links") AS "open links", last("islands") AS "islands", '
            'last("cut_off_switches") AS "switches cut off", last("cut_off_devices") AS "devices cut off", '
            'last("unreachable_switches") AS "unreachable", last("degraded_links") AS "degraded links", '
            f'last("miswired") AS "miswired ends" FROM "network_ring" {RINGS} GROUP BY "ring"')
    return table_panel("Where the ring is broken", query(text, as_table=True), width=16, height=6,
                       description="The open link(s) by switch and port, the islands, what is cut off behind them")


def build() -> dashboard.Dashboard:
    board = new_dashboard(UID_NETWORK, "minegw · Network", "Ring networks, switches, links and UPS",
                          variables("network_switch", "ups"))
    board.with_row(dashboard.Row("Rings"))
    board.with_panel(ring_tiles())
    board.with_panel(ring_table())
    board.with_panel(state_panel("Ring state history", query(
        f'SELECT last("state_code") AS "state" FROM "network_ring" {RINGS} GROUP BY time($__interval), "ring" '
        'fill(previous)', alias="$tag_ring"), mappings=RING_MAPPINGS, height=6,
        description="Closed, open, segmented over time (a point at each change of the diagnosis)"))
    board.with_row(dashboard.Row("Switches and links"))
    board.with_panel(state_panel("Switches", query(
        f'SELECT count("uptime_s") AS "answers" FROM "network_switch" {where()} '
        'GROUP BY time($__interval), "device" fill(0)', alias="$tag_device"), height=6,
        description="Topology as a status grid: SNMP answers per interval of each switch (red: none)")
        .thresholds(thresholds((None, "red"), (1, "green"))).color_scheme(FIXED_BY_THRESHOLDS).show_value(HIDE))
    board.with_panel(state_panel("Link status", query(
        f'SELECT last(/^port[0-9]+_oper_up$/) FROM "network_switch" {where()} '
        'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device $col"),
        mappings=ONLINE_MAPPINGS, height=10, fresh=("network_switch",),
        description="ifOperStatus of every port read (port N = ifIndex N): up / down over time"))
    board.with_panel(timeseries_panel("Input errors", query(
        f'SELECT max(/^port[0-9]+_in_errors_ps$/) FROM "network_switch" {where()} '
        'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device $col"), unit="short",
        description="ifInErrors per second per port: a rising line is a failing cable or connector"))
    board.with_panel(timeseries_panel("Traffic", query(
        f'SELECT mean(/^port[0-9]+_(in|out)_bps$/) FROM "network_switch" {where()} '
        'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device $col"), unit="bps",
        description="ifHCIn/OutOctets as bits per second per port"))
    board.with_panel(timeseries_panel("Switch uptime", query(
        f'SELECT last("uptime_s") AS "uptime" FROM "network_switch" {where()} '
        'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device"), unit="s",
        description="sysUpTime: a drop to 0 is a restart"))
    board.with_row(dashboard.Row("UPS"))
    board.with_panel(state_panel("On battery", query(
        f'SELECT last("on_battery") AS "on battery" FROM "ups" {where()} GROUP BY time($__interval), "device" '
        'fill(null)', alias="$tag_device"), mappings=TRIP_MAPPINGS, height=5, fresh=("ups",),
        description="Output source battery (mains lost): the ups_on_battery alarm"))
    board.with_panel(units_by_column(timeseries_panel("Battery", query(
        f'SELECT last("minutes_remaining") AS "minutes left", last("charge_percent") AS "charge %" FROM "ups" '
        f'{where()} GROUP BY time($__interval), "device" fill(null)', alias="$tag_device $col"), unit="m",
        description="Estimated minutes remaining and charge"), {"charge %$": "percent"}))
    board.with_panel(units_by_column(timeseries_panel("Mains and load", query(
        f'SELECT last("input_voltage") AS "input V", last("output_load") AS "load %" FROM "ups" {where()} '
        'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device $col"), unit="volt",
        description="Input voltage (0 on battery) and output load"), {"load %$": "percent"}))
    return board
