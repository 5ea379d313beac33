"""Dashboards as code (issue 7): the JSON is sound, committed as built, and every panel's every
query returns data of the expected shape from a real InfluxDB filled by the simulators and the gateway."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import dashboards
from dashboards import common
from tests.dashboard_site import filled_historian  # noqa: F401 - the module's fixture
from tests.grafana_util import InfluxQuery, panel_queries, panels, resolve_variables, single_value_choices

ROOT = Path(__file__).resolve().parent.parent
DATASOURCES = ROOT / "deploy/grafana/provisioning/datasources/influxdb.yaml"
EXPECTED_UIDS = {common.UID_OVERVIEW, common.UID_LONGWALL, common.UID_ROADWAY, common.UID_BELT, common.UID_ROOF,
                 common.UID_VIDEO, common.UID_ALARMS, common.UID_HEALTH,
                 common.UID_NETWORK}
BUILT = dashboards.build_all()
VAR_REF = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
GRAFANA_VARS = {"timeFilter", "__interval", "__url_time_range"}


def used_variables(text: str) -> set[str]:
    return {a or b for a, b in VAR_REF.findall(text)} - GRAFANA_VARS - {"__field", "__data", "tag_device", "tag_area",
                                                                        "tag_alarm", "tag_gateway", "tag_district", "col"}


# ---- the JSON ----

def test_every_dashboard_builds_with_a_stable_unique_uid():
    assert set(BUILT) == EXPECTED_UIDS
    again = dashboards.build_all()
    assert again == BUILT, "two builds differ: the JSON must be deterministic"
    for uid, model in BUILT.items():
        assert model["schemaVersion"] == 41 and model["uid"] == uid and model["title"].startswith("minegw · ")
        assert "id" not in model or model["id"] is None, "provisioned dashboards carry no database id"
        assert common.TAG in model["tags"]


def test_panels_have_unique_ids_fit_the_grid_and_unique_ref_ids():
    for uid, model in BUILT.items():
        ids = [p["id"] for p in panels(model)]
        assert len(ids) == len(set(ids)), uid
        for p in panels(model):
            pos = p["gridPos"]
            assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, (uid, p["title"])
            refs = [t["refId"] for t in p.get("targets", [])]
            assert len(refs) == len(set(refs)), (uid, p["title"])
            if p["type"] not in ("row", "text"):  # text: the video relay's live tiles (HTML)
                assert p.get("targets"), f"{uid} / {p['title']}: a panel without a query"


def test_every_datasource_reference_resolves_to_the_provisioned_data_source():
    provisioned = {d["uid"]: d["type"] for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    refs = [(uid, p.get("title"), ref) for uid, model in BUILT.items()
            for p in panels(model) for ref in [p.get("datasource"), *(t.get("datasource") for t in p.get("targets", []))]
            if ref is not None]
    refs += [(uid, v["name"], v["datasource"]) for uid, m in BUILT.items() for v in m["templating"]["list"]
             if v["type"] != "textbox"]
    assert refs
    for uid, where, ref in refs:
        assert provisioned.get(ref["uid"]) == ref["type"] == "influxdb", (uid, where, ref)


def test_variables_are_defined_before_they_are_used():
    for uid, model in BUILT.items():
        defined: set[str] = set()
        for var in model["templating"]["list"]:
            assert used_variables(var["query"]) <= defined, (uid, var["name"])
            defined.add(var["name"])
        assert [v["name"] for v in model["templating"]["list"]][:1] == ["site"]
        for q in panel_queries(model):
            assert used_variables(q.text) <= defined, q
        for p in panels(model):
            for link in p.get("fieldConfig", {}).get("defaults", {}).get("links", []):
                assert used_variables(link["url"]) <= defined, (uid, p["title"], link["url"])


def test_links_lead_to_existing_dashboards():
    targets = set()
    for model in BUILT.values():
        urls = [link.get("url", "") for link in model.get("links", [])]
        urls += [link["url"] for p in panels(model) for link in p.get("fieldConfig", {}).get("defaults", {})
                 .get("links", [])]
        targets |= {m.group(1) for u in urls if (m := re.match(r"/d/([\w-]+)\?", u))}
    assert targets <= set(BUILT)
    # overview → face → equipment
    assert {common.UID_LONGWALL, common.UID_ROADWAY, common.UID_BELT} <= _link_targets(common.UID_OVERVIEW)
    assert common.UID_ROOF in _link_targets(common.UID_LONGWALL)
    for area_uid in (common.UID_LONGWALL, common.UID_ROADWAY, common.UID_BELT):  # a machine alone, its alarms
        urls = [link["url"] for p in panels(BUILT[area_uid])
                for link in p.get("fieldConfig", {}).get("defaults", {}).get("links", [])]
        for uid in (area_uid, common.UID_ALARMS):
            assert any(u.startswith(f"/d/{uid}?") and "var-device=${__field.labels.device}" in u for u in urls), uid


def _link_targets(uid: str) -> set[str]:
    model = BUILT[uid]
    urls = [link["url"] for p in panels(model) for link in p.get("fieldConfig", {}).get("defaults", {})
            .get("links", [])]
    return {re.match(r"/d/([\w-]+)\?", u).group(1) for u in urls}


def test_the_committed_json_is_what_build_writes(tmp_path):
    assert dashboards.differences() == [], "run: minegw dashboards build"
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "dashboards", "build", "--dir", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == sorted(BUILT)
    (tmp_path / f"{common.UID_BELT}.json").write_text("{}")
    (tmp_path / "minegw-old.json").write_text("{}")
    narrow = os.environ | {"COLUMNS": "40"}  # each problem stays one line, a path longer than the terminal too
    check = subprocess.run([sys.executable, "-m", "gateway.cli", "dashboards", "build", "--dir", str(tmp_path),
                            "--check"], capture_output=True, text=True, cwd=ROOT, env=narrow)
    assert check.returncode == 1
    said = check.stderr.splitlines()
    assert f"{tmp_path}/{common.UID_BELT}.json: differs from the build" in said
    assert f"{tmp_path}/minegw-old.json: no such dashboard in the code" in said


# ---- every query against the real historian ----

def _columns(text: str) -> tuple[list[str], bool]:
    """The column names a query's SELECT asks for (its AS names), and whether it selects fields by regex."""
    outer = text.split(" FROM (")[0] if text.startswith("SELECT") else text
    return re.findall(r' AS "([^"]+)"', outer.split(" FROM ")[0]), "(/" in outer.split(" FROM ")[0]


def check_shape(q, series: list[dict]) -> None:
    """Data, in the shape the panel expects: rows; the tags its legend names; each named column filled."""
    assert series, f"{q}: no data\n{q.text}"
    assert any(row for s in series for row in s["values"]), f"{q}: no rows"
    alias_tags = set(re.findall(r"\$tag_(\w+)", q.alias or ""))
    for s in series:
        assert alias_tags <= set(s.get("tags", {})), f"{q}: series without tags {alias_tags}: {s.get('tags')}"
    names, by_regex = _columns(q.text)
    columns = series[0]["columns"]
    for name in names:
        assert name in columns, f"{q}: column {name!r} missing from {columns}"
        i = columns.index(name)
        assert any(row[i] is not None for s in series for row in s["values"]), f"{q}: column {name!r} is empty"
    if by_regex:
        filled = {c for s in series for row in s["values"] for c, v in zip(s["columns"], row) if v is not None}
        assert filled - {"time"}, f"{q}: every column is empty"


@pytest.fixture(scope="module")
def historian(filled_historian):  # noqa: F811
    return InfluxQuery(filled_historian.url, filled_historian.database)


@pytest.mark.parametrize("uid", sorted(EXPECTED_UIDS))
def test_every_panel_query_returns_data_for_all(historian, uid):
    """Variables on "All" (what a dashboard opens with): every query returns data of its shape."""
    chosen = resolve_variables(BUILT[uid], historian)
    queries = panel_queries(BUILT[uid])
    assert queries
    for q in queries:
        check_shape(q, historian.series(chosen.interpolate(q.text)))


@pytest.mark.parametrize("uid", sorted(EXPECTED_UIDS))
def test_every_panel_query_returns_data_for_a_single_area_and_device(historian, uid):
    """One area, one device chosen (values regex-escaped as Grafana does): every query shows data
    for some choice, and no query fails for any choice."""
    choices = single_value_choices(BUILT[uid], historian)
    for q in panel_queries(BUILT[uid]):
        problems = []
        for chosen in choices:
            try:
                check_shape(q, historian.series(chosen.interpolate(q.text)))
                break
            except AssertionError as exc:
                problems.append(f"{chosen.values}: {str(exc).splitlines()[0]}")
                if "InfluxDB" in str(exc):
                    raise
        else:
            raise AssertionError(f"{q}: no data for any single choice:\n" + "\n".join(problems))


def test_area_tiles_list_every_device_of_each_area(historian):
    """The rows Grafana merges and reduces per area: one per device, each a status code (fresh) or
    STALE + it (the fill is over: stale by now). The worst-status rule itself, with values that tell every
    other rule apart, is tested in tests/test_dashboards_numbers.py."""
    chosen = resolve_variables(BUILT[common.UID_OVERVIEW], historian)
    tiles = {q.panel: q for q in panel_queries(BUILT[common.UID_OVERVIEW])}
    expected = {"Longwall faces": ("face-1201", {"shearer-1201", "afc-1201"}),
                "Headings": ("heading-1302", {"roadheader-1302"}), "Belt lines": ("belt-main", {"belt-main-1", "belt-main-2"})}
    for title, (area, devices) in expected.items():
        series = historian.series(chosen.interpolate(tiles[title].text))
        assert {s["tags"]["area"] for s in series} == {area}, title
        assert {s["tags"]["device"] for s in series} == devices, title
        assert all(s["values"][0][1] % common.STALE in common.STATUS for s in series), title


def test_leg_pressure_bars_have_one_value_per_support(historian, filled_historian):  # noqa: F811
    chosen = resolve_variables(BUILT[common.UID_LONGWALL], historian)
    bars = next(q for q in panel_queries(BUILT[common.UID_LONGWALL]) if q.panel == "Front leg pressure by support")
    [series] = historian.series(chosen.interpolate(bars.text))
    values = dict(zip(series["columns"], series["values"][0]))
    supports = [c for c in values if re.fullmatch(r"last_support_\d{3}_front_leg_pressure", c)]
    assert len(supports) == filled_historian.supports
    assert all(0 <= values[c] <= 60 for c in supports)


def test_push_without_the_grafana_extra_says_how_to_install_it():
    try:  # the test venv never has grafana-client (tests/test_dashboards_push.py gives it a venv of its own)
        import grafana_client  # noqa: F401
        pytest.skip("grafana-client is installed here; tests/test_dashboards_push.py covers pushing")
    except ImportError:
        pass
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "dashboards", "push", "--url", "http://127.0.0.1:9",
                          "--token", "t"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1
    assert "pip install 'minegw[grafana]'" in " ".join(out.stderr.split())
