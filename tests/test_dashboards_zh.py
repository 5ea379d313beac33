"""The dashboards in Chinese (issue 20): the same dashboards as in English, every user-visible text in
Chinese but for the allow-list (units, product and protocol names, SNMP object names, ids), their own uids,
tag and links, committed in dashboards/json-zh/ and provisioned in a folder of their own."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

import dashboards
from dashboards.i18n import ALLOWED, visible_texts
from tests.grafana_util import panel_queries, panels

ROOT = Path(__file__).resolve().parent.parent
EN = dashboards.build_all()
ZH = dashboards.build_all(lang="zh")
LATIN = re.compile(r"[A-Za-z]{2,}|\b[B-UW-Zb-gi-z]\b")  # words; single letters beyond the unit ones


def test_no_english_is_left_in_zh_beyond_the_allow_list():
    left = [(uid, where, text) for uid, model in ZH.items() for where, text in visible_texts(model)
            if LATIN.search(ALLOWED.sub("", text))]
    assert not left, "\n".join(f"{uid} {where}: {text!r}" for uid, where, text in left)


def test_zh_is_the_same_dashboards_with_their_own_uids_tags_and_links():
    assert list(ZH) == [f"{uid}-zh" for uid in EN]
    for uid, model in EN.items():
        zh = ZH[f"{uid}-zh"]
        assert [q.text for q in panel_queries(zh)] == [q.text for q in panel_queries(model)]
        assert [p["gridPos"] for p in panels(zh)] == [p["gridPos"] for p in panels(model)]
        assert zh["tags"] == ["minegw-zh"] and zh["links"][0]["tags"] == ["minegw-zh"]
        urls = re.findall(r'"/d/([\w-]+)\?', str(zh).replace("'", '"'))
        assert all(u.endswith("-zh") and u in ZH for u in urls), uid
    overview = ZH["minegw-overview-zh"]
    titles = {p["title"] for p in panels(overview)}
    assert {"综采工作面", "网关", "上行链路", "当前报警"} <= titles
    mappings = str(overview)
    assert "停机" in mappings and "运行" in mappings and "无数据" in mappings


def test_both_sets_are_committed_and_provisioned_in_their_own_folders(tmp_path):
    assert dashboards.differences(dashboards.JSON_DIRS["zh"], ZH) == [], "run: minegw dashboards build --lang zh"
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "dashboards", "build", "--lang", "zh", "--dir",
                          str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == sorted(ZH)
    providers = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/minegw.yaml").read_text())["providers"]
    paths = {p["folderUid"]: p["options"]["path"] for p in providers}
    assert len(set(paths.values())) == len(paths) == 2, providers
    compose = (ROOT / "deploy/surface/docker-compose.yml").read_text()
    for folder, path in paths.items():
        source = "json-zh" if folder.endswith("zh") else "json"
        assert f"../../dashboards/{source}:{path}:ro" in compose, (folder, path)
