"""What every minegw dashboard shares: the data source, the site/area/device variables,
the links between dashboards, the WHERE clause, and panel builders with the house defaults.

Queries follow the historian schema (docs/historian.md): a measurement per equipment kind,
tags ``site``/``area``/``device``, a field per good signal. Variables are matched as
regular expressions (``"area" =~ /^$area$/``) so that "All" (``.*``) and several values
(Grafana writes ``(a|b)``) work in the same query.
"""
from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, common, dashboard, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as model

from dashboards.influxql import InfluxQL
from dashboards.settings import current

DATASOURCE = model.DataSourceRef(type_val="influxdb", uid="minegw-influxdb")
TAG = "minegw"  # every dashboard carries it; the dashboard links list dashboards by it
EQUIPMENT = ("shearer", "face_conveyor", "roadheader", "belt_conveyor")  # kinds with a derived status

# Equipment status (gateway/derived/status.py): codes ordered by severity, so that an area's
# status is the max() of its devices'.
STATUS = {0: ("stopped", "blue"), 1: ("running", "green"), 2: ("offline", "#8e8e8e"), 3: ("fault", "red")}
# A device whose readings stopped for longer than its staleness window (dashboards/settings.py) shows
# STALE + its last status (10-13, "no data"): worse than any live status, so the worst-of-area max()
# shows it. STALE_LOOKBACK: how far back a device's last status is looked for.
STALE = 10
STALE_LOOKBACK = "30d"
# The freshness signal of each equipment kind: read with every poll (every max_silence with report
# by exception), unlike status_code (written on change and as a 30 s heartbeat).
FRESHNESS_SIGNAL = "running"

# UIDs of the dashboards that link to one another (stable: Grafana URLs and links use them).
UID_OVERVIEW = "minegw-overview"
UID_LONGWALL = "minegw-longwall"
UID_ROADWAY = "minegw-roadway"
UID_BELT = "minegw-belt"
UID_ROOF = "minegw-roof-pressure"
UID_VIDEO = "minegw-video-broadcast"
UID_ALARMS = "minegw-alarms-commands"
UID_HEALTH = "minegw-gateway-health"
UID_NETWORK = "minegw-network"


# ---- queries ----

def matching(*conditions: str, area: bool = True, device: bool = True) -> str:
    """The selected site (and area, device) and ``conditions``, AND-ed (no time)."""
    parts = ['"site" =~ /^$site$/']
    if area:
        parts.append('"area" =~ /^$area$/')
    if device:
        parts.append('"device" =~ /^$device$/')
    return " AND ".join([*parts, *conditions])


def where(*conditions: str, area: bool = True, device: bool = True) -> str:
    """``WHERE`` the selected site (and area, device) and the dashboard's time range."""
    return f"WHERE {matching(*conditions, area=area, device=device)} AND $timeFilter"


def window(*measurements: str) -> str:
    """The staleness window of ``measurements`` as an InfluxQL duration (``25s``)."""
    return f"{current().window(*measurements):g}s"


def query(text: str, ref: str = "A", *, alias: str | None = None, as_table: bool = False) -> InfluxQL:
    q = InfluxQL(text).ref_id(ref).datasource(DATASOURCE)
    if alias:
        q.alias(alias)
    if as_table:
        q.table()
    return q


def field_list(*fields: str, fn: str = "mean") -> str:
    """``mean("a") AS "a", mean("b") AS "b"``: one column per signal, named after it."""
    return ", ".join(f'{fn}("{f}") AS "{f}"' for f in fields)


# ---- variables ----

def _tag_values(name: str, label: str, measurements: tuple[str, ...], key: str, condition: str | None,
                include_all: bool) -> dashboard.QueryVariable:
    sources = ", ".join(f'"{m}"' for m in measurements)
    text = f'SHOW TAG VALUES FROM {sources} WITH KEY = "{key}"'
    if condition:
        text += f" WHERE {condition}"
    var = (dashboard.QueryVariable(name).label(label).query(text).datasource(DATASOURCE)
           .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD).sort(model.VariableSort.ALPHABETICAL_ASC))
    if include_all:
        var.multi(True).include_all(True).all_value(".*").current(
            model.VariableOption(selected=True, text="All", value="$__all"))
    return var


def variables(*measurements: str, device: bool = True) -> list[dashboard.QueryVariable]:
    """site, area (areas that have one of ``measurements``) and device (of those), in that order."""
    result = [_tag_values("site", "Site", ("device_state",), "site", None, include_all=False),
              _tag_values("area", "Area", measurements, "area", '"site" =~ /^$site$/', include_all=True)]
    if device:
        result.append(_tag_values("device", "Device", measurements, "device",
                                  '"site" =~ /^$site$/ AND "area" =~ /^$area$/', include_all=True))
    return result


# ---- dashboards and links ----

def new_dashboard(uid: str, title: str, description: str, variables_: list,
                  links: list[dashboard.DashboardLink] = ()) -> dashboard.Dashboard:
    """A minegw dashboard: last hour, 10 s refresh, read-only (provisioned from code), with a
    drop-down of every minegw dashboard (keeping variables and time range), then ``links``."""
    all_dashboards = dashboard.DashboardLink("minegw").type(model.DashboardLinkType.DASHBOARDS).tags([TAG]) \
        .as_dropdown(True).include_vars(True).keep_time(True)
    return (dashboard.Dashboard(title).uid(uid).description(description).tags([TAG])
            .time("now-1h", "now").refresh("10s").timezone("browser").readonly()
            .tooltip(model.DashboardCursorSync.CROSSHAIR).variables(variables_).links([all_dashboards, *links]))


def link_to(uid: str, title: str, **vars_: str) -> dashboard.DashboardLink:
    """A data link to another dashboard with this one's site, the given variables, and the time range."""
    params = "&".join(["var-site=${site}", *(f"var-{k}={v}" for k, v in vars_.items()), "${__url_time_range}"])
    return dashboard.DashboardLink(title).type(model.DashboardLinkType.LINK).url(f"/d/{uid}?{params}")


# ---- panels ----

def _steps(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return dashboard.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=v, color=c) for v, c in steps])


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    """``thresholds((None, "green"), (24, "yellow"))``: the base colour, then the colour from each value up."""
    return _steps(*steps)


def dashed_thresholds() -> common.GraphThresholdsStyleConfig:
    """Draw a time series' thresholds as dashed lines (alarm and trip levels)."""
    return common.GraphThresholdsStyleConfig().mode(common_model.GraphThresholdsStyleMode.DASHED)


def value_colours(mapping: dict[str, tuple[str, str]]) -> list[model.ValueMap]:
    """Value → (text, colour) mappings: status codes, booleans."""
    return [model.ValueMap(options={value: model.ValueMappingResult(text=text, color=colour, index=i)
                                    for i, (value, (text, colour)) in enumerate(mapping.items())})]


NO_DATA = ("no data", "#5a5a5a")  # stale: the device (or its gateway, or the uplink) stopped sending


def stale_mappings(mappings: list | None = None) -> list:
    """``mappings`` and null shown as "no data" (a state timeline's empty bucket: the device is stale)."""
    null = model.SpecialValueMap(options=model.DashboardSpecialValueMapOptions(
        match=model.SpecialValueMatch.NULL, result=model.ValueMappingResult(text=NO_DATA[0], color=NO_DATA[1])))
    return [*(mappings or []), null]


STATUS_MAPPINGS = [
    *value_colours({str(code): (text, colour) for code, (text, colour) in STATUS.items()}),
    model.RangeMap(options=model.DashboardRangeMapOptions(
        from_val=STALE, to=STALE + max(STATUS), result=model.ValueMappingResult(text=NO_DATA[0], color=NO_DATA[1]))),
    model.RangeMap(options=model.DashboardRangeMapOptions(
        from_val=-STALE, to=-STALE + max(STATUS), result=model.ValueMappingResult(text="no status yet",
                                                                                   color=NO_DATA[1]))),
]
TRIP_MAPPINGS = value_colours({"false": ("ok", "green"), "true": ("TRIP", "red"),
                               "0": ("ok", "green"), "1": ("TRIP", "red")})
RING_STATES = {0: ("closed", "green"), 1: ("open", "yellow"), 2: ("segmented", "red"), 3: ("unknown", "#8e8e8e")}
RING_MAPPINGS = value_colours({**{str(code): (text, colour) for code, (text, colour) in RING_STATES.items()},
                               **{text: (text, colour) for text, colour in RING_STATES.values()}})
ONLINE_MAPPINGS = value_colours({"true": ("online", "green"), "false": ("offline", "red"),
                                 "online": ("online", "green"), "offline": ("offline", "red")})


def _panel(builder, title: str, queries: tuple[InfluxQL, ...], height: int, width: int, unit: str = "",
           description: str = ""):
    """A panel of the given SDK builder class reading the historian, with the house defaults."""
    panel = builder().title(title).datasource(DATASOURCE).height(height).span(width).targets(list(queries))
    panel.unit(unit or "none")  # every panel has a unit; "none": counts, states, text
    if description:
        panel.description(description)
    return panel


def timeseries_panel(title: str, *queries: InfluxQL, unit: str = "", height: int = 8, width: int = 12,
                     description: str = "") -> timeseries.Panel:
    return _panel(timeseries.Panel, title, queries, height, width, unit, description) \
        .line_width(1).fill_opacity(10).span_nulls(True)


def stat_panel(title: str, *queries: InfluxQL, unit: str = "", height: int = 4, width: int = 6,
               description: str = "") -> stat.Panel:
    return _panel(stat.Panel, title, queries, height, width, unit, description)


def state_tiles(title: str, q: InfluxQL, mappings: list, *, width: int = 8, height: int = 4,
                description: str = "") -> stat.Panel:
    """A coloured tile per series: its latest value through ``mappings`` (up / down, ring states)."""
    return (stat_panel(title, q, width=width, height=height, description=description)
            .mappings(mappings).color_mode("background").graph_mode("none").text_mode("value_and_name")
            .reduce_options(common.ReduceDataOptions().values(False).calcs(["lastNotNull"])))


def state_panel(title: str, *queries: InfluxQL, mappings=None, height: int = 8, width: int = 24,
                description: str = "", fresh: tuple[str, ...] = ()) -> statetimeline.Panel:
    """A state timeline. With ``fresh`` (the measurements read), its buckets are at least their staleness
    window long (``$__interval``, queries with ``fill(null)``): an empty bucket is shown as "no data"."""
    panel = _panel(statetimeline.Panel, title, queries, height, width, description=description) \
        .merge_values(True).show_value(common_model.VisibilityMode.AUTO).fill_opacity(80)
    if fresh:
        return panel.interval(window(*fresh)).mappings(stale_mappings(mappings))
    return panel.mappings(mappings or [])


def units_by_column(panel, units: dict[str, str]):
    """Per-column units of a panel mixing signals: ``{"speed$": "velocityms", ...}`` (regex on the name)."""
    for regex, unit in units.items():
        panel.override_by_regexp(regex, [model.DynamicConfigValue(id_val="unit", value=unit)])
    return panel


def table_panel(title: str, *queries: InfluxQL, height: int = 10, width: int = 24,
                description: str = "") -> table.Panel:
    return _panel(table.Panel, title, queries, height, width, description=description).filterable(True)


def bar_panel(title: str, *queries: InfluxQL, unit: str = "", height: int = 9, width: int = 24,
              description: str = "") -> barchart.Panel:
    return _panel(barchart.Panel, title, queries, height, width, unit, description)


# ---- alarms (docs/alarms.md: measurement alarm_event, one point per transition) ----

PRIORITIES = {1: ("critical", "red"), 2: ("high", "orange"), 3: ("medium", "yellow"), 4: ("low", "blue")}
PRIORITY_MAPPINGS = value_colours({str(p): (f"{p} {text}", colour) for p, (text, colour) in PRIORITIES.items()})

# Each alarm's latest transition, whatever its age (an alarm raised long before the dashboard's time
# range and still active is active: no time condition); the outer query picks the states it wants.
ACTIVE_ALARMS = ('SELECT last("state") AS "state", last("priority") AS "priority", last("kind") AS "kind", '
                 'last("message") AS "message" FROM "alarm_event" '
                 'WHERE "site" =~ /^$site$/ AND "area" =~ /^$area$/ GROUP BY "alarm", "device"')


def priority_column(panel: table.Panel) -> table.Panel:
    """Sort a table by its ``priority`` column, most urgent first, shown as coloured text."""
    return panel.sort_by([common.TableSortByFieldState().display_name("priority").desc(False)]).override_by_name(
        "priority", [model.DynamicConfigValue(id_val="mappings", value=[m.to_json() for m in PRIORITY_MAPPINGS]),
                     model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"})])


# ---- roof pressure (docs/roof-pressure.md) ----

def leg_pressure_colours() -> dashboard.ThresholdsConfig:
    """Grey lowered (advancing), orange below the setting pressure, green set, red at the yield valve (the site's)."""
    s = current()
    return thresholds((None, "#8e8e8e"), (s.lowered_mpa, "orange"), (s.setting_mpa, "green"), (s.yield_mpa, "red"))


def limit_steps(kind: str, signal: str, alarm: float, trip: float) -> dashboard.ThresholdsConfig:
    """Green, orange from the alarm limit, red from the trip limit: the site's alarm rules where it has them."""
    alarm, trip = current().limit_pair(kind, signal, alarm, trip)
    return thresholds((None, "green"), (alarm, "orange"), (trip, "red"))


def timeseries_by_device(title: str, measurement: str, *fields: str, unit: str = "", fn: str = "mean",
                         width: int = 12, height: int = 8, description: str = "", conditions: tuple[str, ...] = (),
                         device: bool = True) -> timeseries.Panel:
    """One line per device and signal: ``<device> <signal>``."""
    text = (f'SELECT {field_list(*fields, fn=fn)} FROM "{measurement}" {where(*conditions, device=device)} '
            f'GROUP BY time($__interval), "device" fill(null)')
    return timeseries_panel(title, query(text, alias="$tag_device $col"), unit=unit, width=width, height=height,
                            description=description)


def fresh_status(measurements: tuple[str, ...], conditions: str, group: str, *, timeline: bool) -> str:
    """Each device's status code, or STALE + it when its readings stopped for longer than the window.

    Two subqueries summed per device: the last status + STALE (carried forward), and -STALE where
    readings (``FRESHNESS_SIGNAL``) came within the window: fresh gives the status, stale STALE + it.
    ``timeline``: per ``$__interval`` bucket of the time range (the panel's interval is the window);
    else now, the status looked for over ``STALE_LOOKBACK`` and the readings over the window.
    """
    sources = ", ".join(f'"{m}"' for m in measurements)
    if timeline:
        by, status_time, fresh_time = f"time($__interval), {group}", "$timeFilter", "$timeFilter"
        last, seen = " fill(previous)", " fill(none)"
    else:
        by, status_time, fresh_time = group, f"time > now() - {STALE_LOOKBACK}", f"time > now() - {window(*measurements)}"
        last = seen = ""
    status = (f'SELECT last("status_code") + {STALE} AS "code" FROM {sources} WHERE {conditions} AND {status_time} '
              f'GROUP BY {by}{last}')
    fresh = (f'SELECT count("{FRESHNESS_SIGNAL}") * 0 - {STALE} AS "code" FROM {sources} WHERE {conditions} AND '
             f'{fresh_time} GROUP BY {by}{seen}')
    outer = " WHERE $timeFilter" if timeline else ""
    return f'SELECT sum("code") AS "code" FROM ({status}), ({fresh}){outer} GROUP BY {by}' + (
        " fill(null)" if timeline else "")


def status_timeline(title: str, uid: str, *measurements: str, links=(), height: int = 6) -> statetimeline.Panel:
    """Running / stopped / fault / offline of each device over time (gateway/derived/status.py), "no data"
    where its readings stopped for longer than the staleness window (the panel's minimum interval).

    A click on a machine opens this dashboard (``uid``) for that machine alone, or its alarms.
    """
    text = fresh_status(measurements, matching(), '"device"', timeline=True)
    machine = "${__field.labels.device}"
    return state_panel(title, query(text, alias="$tag_device"), mappings=STATUS_MAPPINGS, height=height) \
        .interval(window(*measurements)) \
        .data_links([link_to(uid, f"Only {machine}", area="${area}", device=machine),
                     link_to(UID_ALARMS, f"Alarms of {machine}", area="${area}", device=machine), *links])


def support_bars(title: str, signal: str, *, fn: str = "last", unit: str = "pressurempa", colours=None,
                 description: str = "", width: int = 24, height: int = 9) -> barchart.Panel:
    """One bar per support, left to right along the face: ``fn`` of ``support_NNN_<signal>``; a chart per
    face (repeated for each selected area, the query keeping roof-pressure devices apart).

    InfluxQL gives one row with a column per support (``last_support_001_…``); Grafana renames
    the columns to the support number and turns them into rows, one bar each.
    """
    text = f'SELECT {fn}(/^support_[0-9]+_{signal}$/) FROM "roof_pressure" {where(device=False)} GROUP BY "device"'
    rename = model.DataTransformerConfig(id_val="renameByRegex", options={
        "regex": f"{fn}_support_0*([0-9]+)_{signal}", "renamePattern": "$1"})
    to_rows = model.DataTransformerConfig(id_val="reduce", options={
        "mode": "seriesToRows", "reducers": ["lastNotNull"], "includeTimeField": False})
    panel = (bar_panel(title, query(text, as_table=True), unit=unit, height=height, width=width,
                       description=description)
             .repeat("area").repeat_direction("v")  # a chart per face: never two faces' support 1 in one bar
             .transformations([rename, to_rows]).x_tick_label_rotation(-90)
             .show_value(common_model.VisibilityMode.NEVER))
    if colours is not None:
        panel.thresholds(colours).color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
    return panel
