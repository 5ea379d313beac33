"""``minegw report daily`` against a real InfluxDB filled with a known shift, written through the project's own
line protocol and derived processors: the report's CSV, HTML and PDF (pdftotext) show the story's figures."""
from __future__ import annotations

import csv
import shutil
import subprocess
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gateway.alarms import AlarmEvent, AlarmKind, AlarmState, Priority
from gateway.cli import app
from gateway.cli.reports import prune
from gateway.core.model import DeviceState, DeviceStatus, Quality, Reading, Sample
from gateway.derived.status import EquipmentStatus
from gateway.historian.lineprotocol import ReadingLines, alarm_event_line, health_line, state_line
from gateway.reports.config import ReportsConfig
from gateway.reports.terms import column, word
from tests.sites import site_dict

DAY = date(2026, 3, 10)
T0 = datetime(2026, 3, 10, tzinfo=timezone.utc)  # shift 1 of DAY: 00:00-08:00 (UTC site)
SITE, AREA = "s1", "face-1201"
REQUIRED = 24.0


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# support -> leg -> [(cycle ended at (h), setting load, end resistance, yield openings)]
CYCLES = {
    1: {"front": [(2, 25.0, 38.0, 0), (5, 26.0, 40.0, 3)], "rear": [(2, 25.5, 39.0, 0), (5, 24.5, 41.0, 0)]},
    2: {"front": [(2, 20.0, 30.0, 0), (5, 21.0, 31.0, 0)], "rear": [(2, 22.0, 32.0, 0), (5, 19.0, 29.0, 0)]},
    3: {"front": [(0.5, 22.0, 33.0, 0), (5, 25.0, 36.0, 0)], "rear": [(2, 25.0, 35.0, 0), (5, 26.0, 37.0, 0)]},
    4: {"front": [(2, 24.0, 36.0, 0), (5, 24.0, 36.0, 0)], "rear": [(2, 24.0, 38.0, 1), (5, 24.0, 36.0, 0)]},
    5: {"front": [(2, 23.9, 30.0, 0), (5, 18.0, 28.0, 0)], "rear": [(2, 20.0, 30.0, 0), (5, 20.0, 30.0, 0)]},
}  # support 6 never cycles; 2 and 5 never reach 24 MPa; 3 is under-set for 30 min only


def shearer_state(t: datetime) -> str:
    """running 01:00-03:30 and 05:00-06:00, fault 06:00-06:20, comm-fail 04:00-04:05, else stopped."""
    h = (t - T0).total_seconds() / 3600
    if 4 <= h < 4 + 5 / 60:
        return "comm-fail"
    if 1 <= h < 3.5 or 5 <= h < 6:
        return "running"
    return "fault" if 6 <= h < 6 + 20 / 60 else "stopped"


def gateway_silent(t: datetime) -> bool:  # 00:20-00:30: no health, no shearer polls
    return at(20 / 60) <= t < at(0.5)


def polls(step_s: int = 10):
    t = T0
    while t < at(8):
        yield t
        t += timedelta(seconds=step_s)


def shearer_lines() -> list[str]:
    lines, status, writer = [], EquipmentStatus("shearer-1201"), ReadingLines(SITE, AREA, "shearer")
    for t in polls():
        if gateway_silent(t):
            continue
        state = shearer_state(t)
        quality = Quality.COMM_FAIL if state == "comm-fail" else Quality.GOOD
        good = quality is Quality.GOOD
        reading = Reading("shearer-1201", t, 12.0, [
            Sample(signal="position", value=80.0 if good else None, unit="m", quality=quality, ts=t),
            Sample(signal="running", value=state == "running" if good else None, unit="", quality=quality, ts=t),
            Sample(signal="fault", value=state == "fault" if good else None, unit="", quality=quality, ts=t)])
        lines += writer.lines(reading)
        if derived := status.process(reading):
            lines += writer.lines(derived)
    return lines


def roof_lines() -> list[str]:
    writer = ReadingLines(SITE, AREA, "roof_pressure")
    legs = [f"support_{n:03d}_{leg}_leg_pressure" for n in range(1, 7) for leg in ("front", "rear")]
    lines = []
    for t in polls():
        lines += writer.lines(Reading("rp-1201", t, 30.0, [Sample(signal=s, value=30.0, unit="MPa", ts=t)
                                                           for s in legs]))
    for support, legs_ in CYCLES.items():
        for leg, cycles in legs_.items():
            for ended, setting, end, yields in cycles:
                p = f"support_{support:03d}_{leg}_leg_"
                ts = at(ended)
                lines += writer.lines(Reading("rp-1201", ts, 0.0, [
                    Sample(signal=p + "setting_load", value=setting, unit="MPa", ts=ts),
                    Sample(signal=p + "end_resistance", value=end, unit="MPa", ts=ts),
                    Sample(signal=p + "yield_openings", value=yields, unit="", ts=ts)]))
    return lines


def alarm(alarm_id: str, state: AlarmState, t: datetime, **extra) -> str:
    return alarm_event_line(SITE, AlarmEvent(alarm=alarm_id, device=extra.pop("device", "shearer-1201"),
                                             signal=None, area=AREA, kind=AlarmKind.HIGH, priority=Priority.HIGH,
                                             state=state, ts=t, message=alarm_id, **extra))


def event_lines() -> list[str]:
    lines = [health_line(SITE, "gateway-1", {"connected": not at(3) <= t < at(3 + 5 / 60), "mqtt_connected": True,
                                             "depth": 0}, t) for t in polls() if not gateway_silent(t)]
    lines += [
        alarm("rp-pressure-loss", AlarmState.ACTIVE_UNACK, T0 - timedelta(minutes=10), device="rp-1201"),
        alarm("rp-pressure-loss", AlarmState.ACTIVE_ACK, at(5 / 60), device="rp-1201", acked_by="li.na"),
        alarm("rp-pressure-loss", AlarmState.NORMAL, at(15 / 60), device="rp-1201", acked_by="li.na"),
        alarm("shearer-ch4", AlarmState.ACTIVE_UNACK, at(1 + 10 / 60)),
        alarm("shearer-ch4", AlarmState.ACTIVE_ACK, at(1 + 12 / 60), acked_by="zhang.wei"),
        alarm("shearer-ch4", AlarmState.NORMAL, at(1 + 20 / 60), acked_by="zhang.wei"),
        alarm("shearer-fault", AlarmState.ACTIVE_UNACK, at(6)),
        alarm("shearer-fault", AlarmState.CLEARED_UNACK, at(6 + 20 / 60)),
        state_line(SITE, AREA, DeviceState(device="shearer-1201", status=DeviceStatus.OFFLINE, reason="timeout",
                                           since=at(4))),
        state_line(SITE, AREA, DeviceState(device="shearer-1201", status=DeviceStatus.ONLINE, reason="polling",
                                           since=at(4 + 5 / 60))),
    ]
    return lines


@pytest.fixture(scope="module")
def story(tmp_path_factory, influxdb):
    database = influxdb.create_database("reports")
    body = "\n".join(shearer_lines() + roof_lines() + event_lines()).encode()
    status, answer = influxdb.request("POST", "/write", {"db": database, "precision": "ns"}, body)
    assert status == 204, answer
    folder = tmp_path_factory.mktemp("reports")
    site = site_dict(
        {"id": "rp-1201", "adapter": "opcua", "area": AREA, "url": "opc.tcp://127.0.0.1:4840", "supports": 6,
         "mode": "poll", "poll_interval": 10},
        {"id": "shearer-1201", "adapter": "modbus", "area": AREA, "profile": "shearer", "host": "127.0.0.1",
         "poll_interval": 10},
        site_id=SITE, areas={AREA: "longwall_face"},
        historian={"url": influxdb.url, "database": database, "buffer": {"path": str(folder / "buffer.sqlite3")}},
        reports={"timezone": "UTC", "required_setting_mpa": {AREA: REQUIRED}, "max_below_setting_minutes": 60})
    (folder / "site.yaml").write_text(yaml.safe_dump(site, allow_unicode=True))
    result = CliRunner().invoke(app, ["report", "daily", "-c", str(folder / "site.yaml"), "--date", DAY.isoformat(),
                                      "--shift", "1", "--lang", "zh", "--lang", "en", "--out", str(folder / "out")])
    assert result.exit_code == 0, result.output
    whole_day = CliRunner().invoke(app, ["report", "daily", "-c", str(folder / "site.yaml"), "--date", DAY.isoformat(),
                                         "--lang", "en", "--out", str(folder / "out")])
    assert whole_day.exit_code == 0, whole_day.output
    return folder / "out" / DAY.isoformat()


def table(story: Path, lang: str, key: str) -> list[dict]:
    """The CSV's rows, keyed by column key (the header is in the report's language)."""
    with open(story / f"shift1-{lang}" / f"{key}.csv", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    names = {column(k, lang): k for k in _columns(key)}
    return [dict(zip([names[h] for h in rows[0]], row)) for row in rows[1:]]


def _columns(key: str) -> list[str]:
    from gateway.reports import alarms, completeness, equipment, roof
    return {"roof_faces": roof.FACE_COLUMNS, "roof_supports": roof.SUPPORT_COLUMNS, "equipment": equipment.COLUMNS,
            "alarms": alarms.COLUMNS, "completeness": completeness.COLUMNS, "gaps": completeness.GAP_COLUMNS,
            "outages": completeness.OUTAGE_COLUMNS}[key]


def truth_support(n: int) -> dict:
    cycles = [c for leg in CYCLES.get(n, {}).values() for c in leg]
    settings, ends = [c[1] for c in cycles], [c[2] for c in cycles]
    passed = sum(1 for s in settings if s >= REQUIRED)
    return {"leg_cycles": str(len(cycles)),
            "setting_mean": str(round(sum(settings) / len(settings), 2)) if cycles else "-",
            "end_max": str(max(ends)) if cycles else "-",
            "pass_rate": str(round(100 * passed / len(cycles), 1)) if cycles else "-",
            "yields": str(sum(c[3] for c in cycles))}


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_roof_pressure_figures_equal_the_story(story, lang):
    yes, no = word("yes", lang), word("no", lang)
    supports = {int(r["support"]): r for r in table(story, lang, "roof_supports")}
    assert sorted(supports) == [1, 2, 3, 4, 5, 6]
    for n, row in supports.items():
        assert {k: row[k] for k in truth_support(n)} == truth_support(n), n
    assert [n for n, r in supports.items() if r["never_set"] == yes] == [2, 5]
    assert [n for n, r in supports.items() if r["under_too_long"] == yes] == [2, 5]  # 180 min > 60
    assert supports[3]["longest_under_min"] == "30.0" and supports[3]["under_too_long"] == no
    assert supports[2]["longest_under_min"] == "180.0"
    (face,) = table(story, lang, "roof_faces")
    assert face["face"] == AREA and face["required_mpa"] == "24.0" and face["leg_cycles"] == "20"
    assert face["pass_rate"] == "55.0"  # 11 of 20 leg cycles at or above 24 MPa
    assert face["yields"] == "4" and face["never_set_list"] == "002 005" and face["under_too_long_list"] == "002 005"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_equipment_alarms_and_completeness_equal_the_story(story, lang):
    (shearer,) = table(story, lang, "equipment")
    assert shearer["machine"] == "shearer-1201"
    assert (shearer["running_h"], shearer["fault_h"], shearer["offline_h"]) == ("3.5", "0.33", "0.08")
    assert shearer["no_data_h"] == str(round(630 / 3600, 2))  # last heartbeat 00:19:30, next status 00:30:00
    assert (shearer["stops"], shearer["faults"]) == ("2", "1")
    alarms = {r["alarm"]: r for r in table(story, lang, "alarms")}
    assert sorted(alarms) == ["rp-pressure-loss", "shearer-ch4", "shearer-fault"]
    got = {a: (r["raised"], r["acknowledged"], r["longest_active_min"], r["unacked_at_end"])
           for a, r in alarms.items()}
    yes, no = word("yes", lang), word("no", lang)
    assert got == {"rp-pressure-loss": ("0", "1", "15.0", no),  # raised in the shift before, active from 00:00
                   "shearer-ch4": ("1", "1", "10.0", no), "shearer-fault": ("1", "0", "20.0", yes)}
    assert alarms["shearer-fault"]["state_at_end"] == word("cleared_unack", lang)
    devices = {r["device"]: r for r in table(story, lang, "completeness")}
    assert {k: devices["shearer-1201"][k] for k in ("expected", "stored", "completeness", "gaps", "longest_gap_s",
                                                    "comm_fail_share")} == {
        "expected": "2880", "stored": "2820", "completeness": "97.9", "gaps": "1", "longest_gap_s": "610.0",
        "comm_fail_share": "1.1"}  # 60 polls missing; 30 of 2820 comm-fail
    assert (devices["rp-1201"]["stored"], devices["rp-1201"]["gaps"]) == ("2880", "0")
    (gap,) = table(story, lang, "gaps")
    assert (gap["device"], gap["gap_start"], gap["gap_end"]) == ("shearer-1201", "2026-03-10 00:19:50",
                                                                "2026-03-10 00:30:00")
    assert gap["explained_by"] == word("gateway_silent", lang)
    outages = {(r["outage"], r["subject"]): r for r in table(story, lang, "outages")}
    assert outages[word("gateway_silent", lang), "gateway-1"]["outage_s"] == "610.0"
    assert outages[word("historian_down", lang), "gateway-1"]["outage_s"] == "300.0"
    assert outages[word("device_offline", lang), "shearer-1201"]["outage_start"] == "2026-03-10 04:00:00"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_html_and_pdf_show_the_figures(story, lang):
    page = (story / f"shift1-{lang}" / "report.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 3  # the face's bar chart, machine hours, completeness
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.skip("pdftotext is not installed (apt-get install poppler-utils, or run scripts/test.sh)")
    text = subprocess.run([pdftotext, "-layout", str(story / f"shift1-{lang}" / "report.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    fonts = subprocess.run(["pdffonts", str(story / f"shift1-{lang}" / "report.pdf")], capture_output=True,
                           text=True).stdout
    for expected in (word("pass_rate", lang), word("roof_faces", lang), "55.0", "002 005", "3.5", "97.9", "610.0",
                     "shearer-ch4", word("gateway_silent", lang), word("cleared_unack", lang)):
        assert expected in page, expected
        assert expected in text, expected
    if lang == "zh":
        assert "初撑力" in text and "末阻力" in text
        assert "NotoSansCJK" in fonts and " no " not in fonts.split("\n", 2)[-1]  # embedded


def test_a_whole_day_has_a_row_per_shift(story):
    with open(story / "day-en" / "roof_faces.csv", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))[1:]
    assert [(r[0], r[4]) for r in rows] == [("1", "20"), ("2", "0"), ("3", "0")]  # shift, leg cycles
    assert (story / "day-en" / "report.pdf").stat().st_size > 0


def test_shift_windows_and_the_timer_choice():
    cfg = ReportsConfig(timezone="Asia/Shanghai")
    first, second, third = cfg.windows(DAY)
    assert first.start == datetime(2026, 3, 9, 16, tzinfo=timezone.utc)  # 00:00 in Beijing
    assert third.end == datetime(2026, 3, 10, 16, tzinfo=timezone.utc)
    just_after = cfg.last_ended(datetime(2026, 3, 10, 0, 15, tzinfo=timezone.utc))  # 08:15 local
    assert (just_after.day, just_after.number) == (DAY, 1)
    with pytest.raises(ValueError, match="rise through the day"):
        ReportsConfig(shifts=[{"name": "a", "start": "08:00"}, {"name": "b", "start": "00:00"}])


def test_prune_keeps_the_last_days_and_nothing_else(tmp_path):
    for name in ("2026-03-01", "2026-03-09", "2026-03-10", "notes"):
        (tmp_path / name).mkdir()
    assert [p.name for p in prune(tmp_path, date(2026, 3, 9))] == ["2026-03-01"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2026-03-09", "2026-03-10", "notes"]


def test_report_errors_are_one_line(tmp_path):
    site = site_dict(site_id=SITE, areas={AREA: "longwall_face"})
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
    result = CliRunner().invoke(app, ["report", "daily", "-c", str(tmp_path / "site.yaml"), "--date", "2026-03-10"])
    assert result.exit_code == 1 and "no historian: section" in result.output
    result = CliRunner().invoke(app, ["report", "daily", "-c", str(tmp_path / "site.yaml"), "--date", "10.3.2026"])
    assert result.exit_code == 1 and "expected YYYY-MM-DD" in result.output


def test_the_report_timer_and_service_pass_systemd_analyze(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    surface = Path(__file__).resolve().parent.parent / "deploy" / "surface"
    for unit in ("minegw-report.service", "minegw-report.timer"):
        text = (surface / unit).read_text()
        (tmp_path / unit).write_text(text.replace("/opt/minegw/bin/minegw", "/bin/true"))
    assert "--last" in (surface / "minegw-report.service").read_text()
    out = subprocess.run([analyze, "verify", str(tmp_path / "minegw-report.timer"),
                          str(tmp_path / "minegw-report.service")], capture_output=True, text=True)
    problems = [line for line in out.stderr.splitlines() if "/bin/true" not in line and line.strip()]
    assert out.returncode == 0 and not problems, problems
    calendar = subprocess.run([analyze, "calendar", "*-*-* 00,08,16:20:00 Asia/Shanghai"], capture_output=True,
                              text=True)
    assert calendar.returncode == 0, calendar.stderr
