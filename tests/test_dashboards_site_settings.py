"""Dashboards built for a site (``minegw dashboards build -c SITE``, issue 20): thresholds from its roof-pressure
settings and alarm rules, staleness windows from its poll intervals (report by exception: at least
``max_silence``; never above 25 s); the reference values without a site."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from dashboards.settings import BuildSettings, from_site
from gateway.config import parse_site
from tests.sites import modbus, site_dict

ROOT = Path(__file__).resolve().parent.parent


def a_site(**mqtt) -> dict:
    return site_dict(
        modbus("shearer-1", "shearer", poll_interval=2.0), modbus("belt-1", "belt_conveyor", area="belt",
                                                                   poll_interval=10.0),
        areas={"face": "longwall_face", "belt": "belt_line"},
        mqtt={"host": "127.0.0.1", "port": 1883, **mqtt} if mqtt else None,
        roof_pressure={"required_setting_mpa": 26.0, "yield_open_mpa": 40.0},
        alarms=[{"id": "ch4", "device": "shearer-1", "signal": "methane", "kind": "high", "limit": 0.8},
                {"id": "ch4-cut", "device": "shearer-1", "signal": "methane", "kind": "high_high", "limit": 1.2}])


def test_settings_from_the_site():
    s = from_site(parse_site(a_site()))
    assert (s.setting_mpa, s.yield_mpa) == (26.0, 40.0)
    assert s.limit_pair("shearer", "methane", 1.0, 1.5) == (0.8, 1.2)
    assert s.limit_pair("roadheader", "methane", 1.0, 1.5) == (1.0, 1.5)  # no rule: the reference values
    assert (s.window("shearer"), s.window("belt_conveyor")) == (4.0, 20.0)  # 2 x poll interval
    rbe = from_site(parse_site(a_site(report_by_exception={"enabled": True, "max_silence": 15})))
    assert (rbe.window("shearer"), rbe.window("belt_conveyor")) == (15.0, 20.0)  # max_silence at least
    assert BuildSettings().window("shearer") == 25.0  # no site: the mine's polling rule


def panel(model: dict, title: str) -> dict:
    return next(p for p in model["panels"] if p.get("title") == title)


def steps(p: dict) -> list:
    return [s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_build_with_a_site_takes_its_thresholds_and_windows(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(a_site()))
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "dashboards", "build", "-c", str(site), "--dir",
                          str(tmp_path / "json")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    longwall = json.loads((tmp_path / "json/minegw-longwall.json").read_text())
    legs = panel(longwall, "Front leg pressure by support")
    assert steps(legs) == [None, 5.0, 26.0, 40.0] and "(26 MPa)" in legs["description"]
    assert steps(panel(longwall, "Methane on the shearer")) == [None, 0.8, 1.2]
    assert panel(longwall, "Equipment status")["interval"] == "4s"
    overview = json.loads((tmp_path / "json/minegw-overview.json").read_text())
    assert "time > now() - 20s" in panel(overview, "Belt lines")["targets"][0]["query"]
    default = json.loads((ROOT / "dashboards/json/minegw-longwall.json").read_text())  # committed: no site
    assert steps(panel(default, "Front leg pressure by support")) == [None, 5.0, 24.0, 38.0]
    assert steps(panel(default, "Methane on the shearer")) == [None, 1.0, 1.5]


def test_a_bad_site_or_language_is_a_clear_error(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({**a_site(), "roof_pressure": {"required_setting_mpa": -1}}))
    bad = subprocess.run([sys.executable, "-m", "gateway.cli", "dashboards", "build", "-c", str(site), "--dir",
                          str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "roof_pressure.required_setting_mpa" in " ".join(bad.stderr.split())
    lang = subprocess.run([sys.executable, "-m", "gateway.cli", "dashboards", "build", "--lang", "fr", "--dir",
                           str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert lang.returncode != 0 and "en, zh" in lang.stderr
    assert not (tmp_path / "out").exists()
