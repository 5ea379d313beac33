"""The numbers the dispatcher sees, with two gateways and two faces (issue 20): each panel's query runs on
a real InfluxDB filled with known values (tests/two_gateway_site.py), and what Grafana does with the rows
(merge, group by, reduce, value mappings, as written in the panel's JSON) is done here to the result."""
from __future__ import annotations

import re

import dashboards
from dashboards import common
from tests.grafana_util import InfluxQuery, Variables, panel_queries, panels
from tests import two_gateway_site as fill
from tests.two_gateway_site import (EXPECTED_AREAS, EXPECTED_GATEWAYS, EXPECTED_UPLINKS, HEALTH, LEGS, LOAD_RISE, SITE,
                                    STALE_DEVICES, STALE_SINCE_S, STATUS_HISTORY,
                                    two_gateway_site)  # noqa: F401 - the fixture

BUILT = dashboards.build_all()
REDUCERS = {"max": max, "min": min, "lastNotNull": lambda v: v[-1], "last": lambda v: v[-1],
            "first": lambda v: v[0], "firstNotNull": lambda v: v[0]}


def everything(interval: str = "5s") -> Variables:
    """Site chosen, area and device on "All", the last hour: what a dashboard opens with."""
    return Variables({"site": [SITE], "area": None, "device": None}, {"area": ".*", "device": ".*"},
                     interval=interval)


def panel(uid: str, title: str) -> dict:
    return next(p for p in panels(BUILT[uid]) if p.get("title") == title)


def run(site, uid: str, title: str, interval: str = "5s", ref: str = "A") -> list[dict]:
    [q] = [q for q in panel_queries(BUILT[uid]) if q.panel == title and q.ref_id == ref]
    return InfluxQuery(site.url, site.database).series(everything(interval).interpolate(q.text))


def by_tag(series: list[dict], tag: str, column: str | None = None) -> dict[str, object]:
    """tag value -> the (only) row's ``column`` (default: the first value column)."""
    out = {}
    for s in series:
        [row] = s["values"]
        i = s["columns"].index(column) if column else 1
        out[s["tags"][tag]] = row[i]
    return out


def mapped(p: dict, value) -> str:
    """The text Grafana shows for ``value`` through the panel's value mappings."""
    for m in p["fieldConfig"]["defaults"].get("mappings", []):
        if m["type"] == "value" and str(value) in m["options"]:
            return m["options"][str(value)]["text"]
        if m["type"] == "range" and m["options"]["from"] <= value <= m["options"]["to"]:
            return m["options"]["result"]["text"]
    return str(value)


# ---- the overview ----

def area_tiles(site, title: str) -> dict[str, float]:
    """What the tile shows per area: the query's rows merged, grouped by area with the aggregation the panel's
    groupBy transformation names, then its reducer: Grafana's pipeline as the JSON configures it."""
    p = panel(common.UID_OVERVIEW, title)
    steps = {t["id"]: t["options"] for t in p["transformations"]}
    assert set(steps) == {"merge", "groupBy"}, steps
    [aggregation] = steps["groupBy"]["fields"]["code"]["aggregations"]
    [reducer] = p["options"]["reduceOptions"]["calcs"]
    rows: dict[str, list[float]] = {}
    for s in run(site, common.UID_OVERVIEW, title):
        [row] = s["values"]  # one row per device: its latest (or stale) status
        rows.setdefault(s["tags"]["area"], []).append(row[s["columns"].index("code")])
    return {area: REDUCERS[reducer]([REDUCERS[aggregation](codes)]) for area, codes in rows.items()}


def test_area_tiles_give_each_area_its_worst_latest_status_and_stale_as_no_data(two_gateway_site):  # noqa: F811
    """Each area's tile is the worst of its devices' latest statuses; a device whose readings stopped
    (its gateway crashed) is "no data". belt-a (latest: fault and stopped; first: running and stopped) and
    face-1201 (latest: running and stopped; first: fault and running) tell every other rule apart."""
    shown = {}
    for title, _, _ in (("Longwall faces", 0, 0), ("Headings", 0, 0), ("Belt lines", 0, 0)):
        shown.update(area_tiles(two_gateway_site, title))
    assert shown == EXPECTED_AREAS
    p = panel(common.UID_OVERVIEW, "Belt lines")
    assert [mapped(p, shown[a]) for a in ("belt-a", "belt-b")] == ["fault", "stopped"]
    assert mapped(p, shown["face-1203"]) == "no data" and mapped(p, shown["face-1201"]) == "running"


def test_gateways_and_uplinks_show_up_and_down(two_gateway_site):  # noqa: F811
    gateways = by_tag(run(two_gateway_site, common.UID_OVERVIEW, "Gateways"), "gateway")
    assert gateways == EXPECTED_GATEWAYS  # gw-south crashed: status still online, health stopped
    p = panel(common.UID_OVERVIEW, "Gateways")
    assert {g: mapped(p, v) for g, v in gateways.items()} == {"gw-north": "up", "gw-south": "down", "gw-west": "up"}
    uplinks = by_tag(run(two_gateway_site, common.UID_OVERVIEW, "Uplinks"), "district")
    assert uplinks == EXPECTED_UPLINKS


def test_data_dropped_and_mqtt_uplink_per_gateway(two_gateway_site):  # noqa: F811
    dropped = run(two_gateway_site, common.UID_OVERVIEW, "Data dropped")
    assert by_tag(dropped, "gateway", "historian") == {g: c["dropped"] for g, c in HEALTH.items()}
    assert by_tag(dropped, "gateway", "mqtt") == {g: c["mqtt_dropped"] for g, c in HEALTH.items()}
    queued = by_tag(run(two_gateway_site, common.UID_OVERVIEW, "MQTT uplink"), "gateway")
    assert queued == {g: c["mqtt_queued"] for g, c in HEALTH.items()}
    buffer = by_tag(run(two_gateway_site, common.UID_OVERVIEW, "Historian buffer"), "gateway")
    assert buffer == {g: c["depth"] for g, c in HEALTH.items()}


def test_active_alarms_whatever_their_age(two_gateway_site):  # noqa: F811
    [count] = run(two_gateway_site, common.UID_OVERVIEW, "Active alarms")
    assert count["values"][0][1] == 1  # the 10-day-old one; belt-a-1-hot went back to normal
    [table] = run(two_gateway_site, common.UID_OVERVIEW, "Active alarms by priority")
    assert [row[table["columns"].index("device")] for row in table["values"]] == ["shearer-1201"]


def test_no_data_since_lists_the_stale_machines_with_their_last_reading(two_gateway_site):  # noqa: F811
    """Query A (status, STALE + it when stale) joined by device with query B (the last reading's time), kept
    where the status is stale: the crashed gateway's machines, since their last reading."""
    p = panel(common.UID_OVERVIEW, "No data since")
    steps = {t["id"]: t["options"] for t in p["transformations"]}
    assert steps["joinByField"]["byField"] == "device"
    [rule] = steps["filterByValue"]["filters"]
    assert rule["fieldName"] == "code" and rule["config"]["id"] == "greaterOrEqual"
    codes = {s["tags"]["device"]: s["values"][0][1] for s in run(two_gateway_site, common.UID_OVERVIEW,
                                                                 "No data since")}
    seen = {s["tags"]["device"]: s["values"][0][0] for s in run(two_gateway_site, common.UID_OVERVIEW,
                                                                "No data since", ref="B")}
    shown = {d: seen[d] for d, code in codes.items() if code >= rule["config"]["options"]["value"]}
    assert set(shown) == STALE_DEVICES
    assert all(abs(t - (fill.NOW_S - STALE_SINCE_S - 1) * 1000) < 1 for t in shown.values()), shown


# ---- the longwall faces ----

def test_supports_below_setting_per_face(two_gateway_site):  # noqa: F811
    shown = by_tag(run(two_gateway_site, common.UID_LONGWALL, "Supports below setting pressure"), "device")
    assert shown == {device: below for device, (_, _, _, below) in LEGS.items()}


def test_leg_pressure_bars_keep_the_faces_apart(two_gateway_site):  # noqa: F811
    """Face 1203's support 1 (2 MPa) does not replace face 1201's (30.1 MPa): a chart per face (the panel
    repeats over the areas) and a row per roof-pressure device."""
    assert panel(common.UID_LONGWALL, "Front leg pressure by support")["repeat"] == "area"
    series = run(two_gateway_site, common.UID_LONGWALL, "Front leg pressure by support")
    got = {s["tags"]["device"]: dict(zip(s["columns"], s["values"][0])) for s in series}
    for device, (_, _, legs, _) in LEGS.items():
        assert {n: got[device][f"last_support_{n:03d}_front_leg_pressure"] for n in legs} == legs


def test_roof_pressure_gauges_per_face(two_gateway_site):  # noqa: F811
    series = run(two_gateway_site, common.UID_ROOF, "Load-rise rate (front legs)")
    got = {s["tags"]["device"]: max(v for _, v in s["values"] if v is not None) for s in series}
    assert got == LOAD_RISE


def test_status_timeline_turns_to_no_data_when_readings_stop(two_gateway_site):  # noqa: F811
    """The equipment timeline, bucketed by the panel's interval (the staleness window): fresh devices end on
    their latest status; the crashed gateway's devices end on "no data" (STALE + their last status)."""
    p = panel(common.UID_LONGWALL, "Equipment status")
    interval = p["interval"]
    assert interval == "25s"  # no site: the mine's polling rule
    series = run(two_gateway_site, common.UID_LONGWALL, "Equipment status", interval=interval)
    filled = (fill.NOW_S - 1) * 1000  # the bucket of the fill's last reading: whole for the crashed gateway's
    last = {s["tags"]["device"]: [v for t, v in s["values"] if t <= filled][-1] for s in series}
    assert last == {d: STATUS_HISTORY[d][-1][1] + (common.STALE if d.endswith("1203") else 0)
                    for d in ("shearer-1201", "afc-1201", "shearer-1203", "afc-1203")}
    assert {d: mapped(p, v) for d, v in last.items()} == {"shearer-1201": "running", "afc-1201": "stopped",
                                                          "shearer-1203": "no data", "afc-1203": "no data"}


# ---- every panel has a unit ----

def test_every_panel_has_a_unit():
    for uid, model in BUILT.items():
        for p in panels(model):
            if p["type"] not in ("row", "text"):  # text: the live video tiles, no data
                assert p["fieldConfig"]["defaults"].get("unit"), f"{uid} / {p['title']}: no unit"
            if re.search(r"\b(kN|MPa/h)\b", p.get("description", "")):  # said in words: also the unit
                assert p["fieldConfig"]["defaults"]["unit"] != "none", f"{uid} / {p['title']}"
