"""The simulated mine behind the dashboard tests fills every historian measurement (docs/historian.md)
with what the dashboards' queries look for: real simulators → gateway → Mosquitto and InfluxDB."""
from __future__ import annotations

import json

import pytest

from tests.dashboard_site import BELT, FACE, HEADING, KINDS, SITE_ID, SUPPORTS
from tests.dashboard_site import filled_historian  # noqa: F401 - the module's fixture

EQUIPMENT = sorted(set(KINDS.values()))
from tests.network_fill import AREA as NETWORK_AREA, SWITCHES  # noqa: E402

NETWORK_DEVICES = (*SWITCHES, "ups-belt")
MEASUREMENTS = {*EQUIPMENT, "network_ring", "network_switch", "ups", "device_state", "device_inventory", "device_health", "gateway_health", "alarm_event",
                "linkage_event", "command_audit", "gateway_alarm"}
AREAS = {"shearer-1201": FACE, "afc-1201": FACE, "rp-1201": FACE, "bn-1201-1": FACE, "bn-1201-2": FACE,
         "roadheader-1302": HEADING, "cam-1302": HEADING, "bn-1302": HEADING,
         "belt-main-1": BELT, "belt-main-2": BELT, "belt-transfer-cam": BELT, "bn-belt-main": BELT}
AREAS.update(dict.fromkeys(NETWORK_DEVICES, NETWORK_AREA))  # tests/network_fill.py: ring switches and UPS
MACHINES = {"shearer-1201": "shearer", "afc-1201": "face_conveyor", "roadheader-1302": "roadheader",
            "belt-main-1": "belt_conveyor", "belt-main-2": "belt_conveyor"}


def q(filled, text: str) -> list[dict]:
    return filled.query(text)


def tag_values(filled, measurement: str, key: str) -> set[str]:
    return {r["value"] for r in q(filled, f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{key}"')}


def field_keys(filled, measurement: str) -> dict[str, str]:
    return {r["fieldKey"]: r["fieldType"] for r in q(filled, f'SHOW FIELD KEYS FROM "{measurement}"')}


def test_every_measurement_is_there_and_nothing_was_refused(filled_historian):  # noqa: F811
    names = {r["name"] for r in q(filled_historian, "SHOW MEASUREMENTS")}
    assert MEASUREMENTS <= names, MEASUREMENTS - names
    report = filled_historian.report
    assert report.dead_letters == 0  # no field type conflicts, nothing InfluxDB refused
    assert report.seconds < 60, report.steps
    assert tag_values(filled_historian, "device_state", "site") == {SITE_ID}


@pytest.mark.parametrize("measurement", EQUIPMENT)
def test_readings_of_every_device_with_site_area_device_tags(filled_historian, measurement):  # noqa: F811
    devices = {d for d, kind in KINDS.items() if kind == measurement}
    rows = q(filled_historian, f'SELECT count(*) FROM "{measurement}" GROUP BY "site", "area", "device"')
    got = {r["device"]: r for r in rows}
    assert set(got) == devices
    for device, row in got.items():
        assert (row["site"], row["area"]) == (SITE_ID, AREAS[device])
        assert max(v or 0 for k, v in row.items() if k.startswith("count_")) >= 3, device


def test_two_belts_on_the_belt_line(filled_historian):  # noqa: F811
    rows = q(filled_historian, f"""SELECT last("speed"), max("drive_drum_temperature__value"), max("motor_current")
             FROM "belt_conveyor" WHERE "area" = '{BELT}' GROUP BY "device" """)
    assert [r["device"] for r in rows] == ["belt-main-1", "belt-main-2"]
    hot = next(r for r in rows if r["device"] == "belt-main-1")
    assert hot["max"] == pytest.approx(65.0)  # the injected out-of-range drum temperature
    slips = q(filled_historian, """SELECT "slip" FROM "belt_conveyor" WHERE "device" = 'belt-main-2'""")
    assert {r["slip"] for r in slips} == {False, True}


def test_shearer_methane_good_and_out_of_range(filled_historian):  # noqa: F811
    [good] = q(filled_historian, 'SELECT max("methane"), count("methane") FROM "shearer"')
    assert 0 < good["max"] < 1.0 and good["count"] >= 3
    bad = q(filled_historian, 'SELECT "methane__quality", "methane__value" FROM "shearer" '
                              "WHERE \"methane__quality\" = 'out-of-range'")
    assert bad and all(r["methane__value"] == pytest.approx(4.4) for r in bad)
    keys = field_keys(filled_historian, "shearer")
    assert keys["methane"] == "float" and keys["running"] == "boolean" and keys["model"] == "string"


def test_roof_pressure_legs_and_derived_cycle_figures(filled_historian):  # noqa: F811
    keys = field_keys(filled_historian, "roof_pressure")
    legs = [k for k in keys if k.endswith("_leg_pressure")]
    assert len(legs) == 2 * SUPPORTS and "headgate_roof_sep_01_deep" in keys and "tailgate_cable_load_12" in keys
    for figure in ("setting_load", "end_resistance", "load_rise_rate", "yield_openings"):
        assert any(k.endswith(f"_leg_{figure}") for k in keys), figure
    assert keys["supports_below_setting"] == "integer"
    rows = q(filled_historian, """SELECT * FROM "roof_pressure" WHERE "device" = 'rp-1201' """
                               'AND "supports_below_setting" >= 0')
    settings = [v for r in rows for k, v in r.items() if k.endswith("_setting_load") and v is not None]
    assert settings and all(20 < v < 40 for v in settings)
    [last] = q(filled_historian, 'SELECT last(/_leg_pressure$/) FROM "roof_pressure"')
    assert len([k for k in last if k.startswith("last_")]) == 2 * SUPPORTS


def test_cameras_health_and_motion_events(filled_historian):  # noqa: F811
    keys = field_keys(filled_historian, "camera")
    assert {"online", "response_ms", "motion"} <= set(keys)
    rows = q(filled_historian, 'SELECT count("response_ms"), min("online"), max("online") FROM "camera" '
                               'GROUP BY "area", "device"')
    assert {(r["area"], r["device"]) for r in rows} == {(HEADING, "cam-1302"), (BELT, "belt-transfer-cam")}
    assert all(r["count"] >= 3 for r in rows)
    motion = q(filled_historian, 'SELECT "motion" FROM "camera" WHERE "motion" = true OR "motion" = false '
                                 'GROUP BY "device"')
    for cam in ("cam-1302", "belt-transfer-cam"):
        assert {r["motion"] for r in motion if r["device"] == cam} == {True, False}, cam


def test_broadcast_nodes_played_the_evacuation(filled_historian):  # noqa: F811
    rows = q(filled_historian, 'SELECT max("playing_priority"), last("battery_level") FROM "broadcast_node" '
                               'GROUP BY "device"')
    got = {r["device"]: r for r in rows}
    assert set(got) == {"bn-1201-1", "bn-1201-2", "bn-1302", "bn-belt-main"}
    assert all(got[n]["max"] == 3 for n in ("bn-1201-1", "bn-1201-2", "bn-belt-main"))  # evacuation: emergency
    assert got["bn-1302"]["max"] == 2  # the dispatcher's gas message
    faults = q(filled_historian, """SELECT "amplifier_fault" FROM "broadcast_node" WHERE "device" = 'bn-belt-main'""")
    assert {r["amplifier_fault"] for r in faults} == {False, True}


def test_device_state_online_everywhere_and_the_roadheader_offline_and_back(filled_historian):  # noqa: F811
    rows = q(filled_historian, 'SELECT "status", "reason", "polls", "errors" FROM "device_state" GROUP BY "device"')
    online = {r["device"] for r in rows if r["status"] == "online"}
    assert online == set(KINDS)
    stopped = [r for r in rows if r["reason"] == "gateway stopped"]  # the fill ends with a clean stop
    assert {r["device"] for r in stopped} == set(KINDS) and all(r["status"] == "offline" for r in stopped)
    roadheader = [r for r in rows if r["device"] == "roadheader-1302" and r["reason"] != "gateway stopped"]
    statuses = [r["status"] for r in roadheader]
    assert "offline" in statuses and statuses[-1] == "online"
    down = next(r for r in roadheader if r["status"] == "offline")
    assert down["reason"].startswith("cannot connect") or "no answer" in down["reason"], down
    assert roadheader[-1]["errors"] >= 1
    [last] = q(filled_historian, 'SELECT last("reason") FROM "device_state" WHERE "device" = \'roadheader-1302\'')
    assert last["last"] == "gateway stopped"


def test_device_inventory_of_both_cameras_and_the_opc_ua_server(filled_historian):  # noqa: F811
    rows = q(filled_historian, 'SELECT last("online"), last("model"), last("profiles") FROM "device_inventory" '
                               'GROUP BY "area", "device"')
    assert {(r["area"], r["device"]) for r in rows} == {(HEADING, "cam-1302"), (BELT, "belt-transfer-cam"),
                                                        (FACE, "rp-1201")}
    for r in rows:
        if r["device"] == "rp-1201":  # what the roof-pressure server says it is (clock offset on MQTT)
            assert r["last_1"] and r["last_2"] in (None, "[]")
            continue
        assert r["last"] is True and r["last_1"] == "SIM-IPC-2M"
        assert json.loads(r["last_2"])[0]["stream_uri"].startswith("rtsp://")


def test_gateway_health_every_two_seconds(filled_historian):  # noqa: F811
    rows = q(filled_historian, 'SELECT "written", "buffered", "connected", "dropped" FROM "gateway_health" '
                               'GROUP BY "site", "gateway"')
    assert len(rows) >= 4 and {(r["site"], r["gateway"]) for r in rows} == {(SITE_ID, "gateway-1")}
    assert rows[-1]["connected"] is True and rows[-1]["written"] > 100 and rows[-1]["dropped"] == 0


def test_gateway_health_has_the_mqtt_counters(filled_historian):  # noqa: F811
    keys = field_keys(filled_historian, "gateway_health")
    assert {"mqtt_connected", "mqtt_published", "mqtt_delivered", "mqtt_dropped", "mqtt_queued"} <= set(keys)
    [last] = q(filled_historian, 'SELECT last("mqtt_published"), last("mqtt_connected") FROM "gateway_health"')
    assert last["last"] > 100 and last["last_1"] is True


def test_alarm_events_through_their_lifecycle(filled_historian):  # noqa: F811
    rows = q(filled_historian, 'SELECT "state", "priority", "value", "kind", "acked_by", "message" FROM "alarm_event" '
                               'GROUP BY "area", "device", "alarm"')
    states = {}
    for r in rows:
        states.setdefault(r["alarm"], []).append(r["state"])
        assert r["area"] == AREAS[r["device"]]
    assert states["shearer-ch4"] == ["active_unack", "active_ack", "normal"]
    assert states["shearer-ch4-cut"] == ["active_unack", "active_ack", "normal"]
    assert states["roadheader-link"] == ["active_unack", "cleared_unack", "normal"]
    assert states["belt-1-drum-hot"] == ["active_unack", "cleared_unack"]
    assert states["belt-2-slip"] == ["active_unack"]
    assert states["belt-1-smoke"] == ["active_unack", "cleared_unack"]
    ch4 = [r for r in rows if r["alarm"] == "shearer-ch4"]
    assert ch4[0]["value"] == pytest.approx(4.4) and ch4[0]["priority"] == 2 and ch4[0]["kind"] == "methane"
    assert ch4[1]["acked_by"] == "zhang.wei"
    assert {r["area"] for r in rows} == {FACE, HEADING, BELT}


def test_linkage_events_of_the_methane_and_smoke_alarms(filled_historian):  # noqa: F811
    rows = q(filled_historian, 'SELECT "ok", "trigger_to_confirmed_ms", "zones", "message", "failed_nodes" '
                               'FROM "linkage_event" GROUP BY "area", "alarm"')
    assert sorted((r["area"], r["alarm"]) for r in rows) == [(BELT, "belt-1-smoke"), (FACE, "shearer-ch4"),
                                                             (FACE, "shearer-ch4-cut")]
    for r in rows:
        assert r["ok"] is True and 0 < r["trigger_to_confirmed_ms"] < 10_000
        assert r["failed_nodes"] in (None, "")
    zones = {r["alarm"]: (r["zones"], r["message"]) for r in rows}
    assert zones["shearer-ch4"] == ("face-1201,escape-main", "evacuation")
    assert zones["belt-1-smoke"] == ("belt-main,escape-main", "fire")


def test_command_audit_accepted_and_refused(filled_historian):  # noqa: F811
    rows = q(filled_historian, 'SELECT "ok", "device", "signal", "value", "by", "error", "request_id" '
                               'FROM "command_audit" GROUP BY "result"')
    got = {r["request_id"]: r for r in rows}
    assert {r for r, row in got.items() if row["result"] == "accepted"} == {
        "dash-write-1", "dash-write-2", "dash-bc-play", "dash-bc-stop", "dash-ack-1", "dash-ack-2", "dash-ack-3"}
    assert {r for r, row in got.items() if row["result"] == "refused"} == {"dash-write-3", "dash-write-4"}
    assert got["dash-write-1"]["value"] == "-4.5" and got["dash-write-1"]["by"] == "alice"
    assert got["dash-write-3"]["error"].startswith("out of range") and got["dash-write-3"]["ok"] is False
    assert got["dash-write-4"]["error"].startswith("unauthorised") and got["dash-write-4"]["by"] == "mallory"
    assert (got["dash-bc-play"]["device"], got["dash-bc-play"]["signal"]) == ("broadcast", "play")
    assert (got["dash-ack-1"]["device"], got["dash-ack-1"]["signal"], got["dash-ack-1"]["value"]) == (
        "alarm", "ack", '"shearer-ch4"')


def test_gateway_alarm_of_a_broadcast_node_raised_and_cleared(filled_historian):  # noqa: F811
    rows = q(filled_historian, 'SELECT "active", "count", "message" FROM "gateway_alarm" GROUP BY "gateway", "alarm"')
    node = [r for r in rows if r["alarm"] == "broadcast-node-bn-belt-main"]
    assert [r["active"] for r in node] == [True, False]
    assert "amplifier fault" in node[0]["message"] and node[0]["count"] == 1


def test_equipment_status_of_every_machine(filled_historian):  # noqa: F811
    for device, measurement in MACHINES.items():
        rows = q(filled_historian, f'SELECT last("status_code"), last("status") FROM "{measurement}" '
                                   f"WHERE \"device\" = '{device}'")
        assert rows and rows[0]["last"] in (0, 1, 2, 3), device
    offline = q(filled_historian, 'SELECT "status", "status_code" FROM "roadheader" WHERE "status" = \'offline\'')
    assert offline and {r["status_code"] for r in offline} == {2}
    [last] = q(filled_historian, 'SELECT last("status") FROM "roadheader"')
    assert last["last"] != "offline"


def test_device_health_per_device(filled_historian):  # noqa: F811
    rows = q(filled_historian, 'SELECT last("poll_ms_mean"), sum("polls"), sum("failed_polls") FROM "device_health" '
                               'GROUP BY "area", "device"')
    got = {r["device"]: r for r in rows}
    assert set(got) == set(KINDS) | set(NETWORK_DEVICES)
    for device in MACHINES:
        assert got[device]["last"] > 0 and got[device]["sum"] >= 3, device
        assert got[device]["area"] == AREAS[device]
    assert got["roadheader-1302"]["sum_1"] >= 1  # its polls failed while it was offline
