"""Grafana dashboards of the dispatch centre, as code (grafana-foundation-sdk).

One module per dashboard, each with ``build()`` returning the SDK's builder.
``build_all()`` turns them into Grafana's JSON model, with the thresholds of a site
(``dashboards/settings.py``) and in English or Chinese (``dashboards/i18n.py``);
``minegw dashboards build`` writes that JSON into ``dashboards/json/`` (zh: ``dashboards/json-zh/``;
committed: Grafana's file provisioning reads it and needs no Python), ``minegw dashboards push``
sends it to a Grafana server.
"""
from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path

MODULES = ("overview", "longwall", "roadway", "belt", "roof_pressure", "video_broadcast", "alarms_commands",
           "gateway_health", "network")
JSON_DIR = Path(__file__).parent / "json"
JSON_DIRS = {"en": JSON_DIR, "zh": Path(__file__).parent / "json-zh"}  # each provisioned in its own folder


def build_all(settings=None, lang: str = "en") -> dict[str, dict]:
    """uid → the dashboard's JSON model, in the order of ``MODULES``: with ``settings`` (a
    :class:`dashboards.settings.BuildSettings`; default: the reference values) and in ``lang``."""
    # Imported here: pushing the committed JSON (extra ``grafana``) needs no SDK.
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    from dashboards.i18n import localise
    from dashboards.settings import BuildSettings, using

    built: dict[str, dict] = {}
    with using(settings or BuildSettings()):
        for name in MODULES:
            model = json.loads(json.dumps(import_module(f"dashboards.{name}").build().build(), cls=JSONEncoder))
            _number_panels(model)
            if model["uid"] in built:
                raise ValueError(f"dashboards.{name}: uid {model['uid']!r} is used twice")
            built[model["uid"]] = model
    uids = set(built)
    return {model["uid"]: model for model in (localise(m, lang, uids) for m in built.values())}


def _number_panels(model: dict) -> None:
    """Panel ids, unique within the dashboard and stable from build to build (their order)."""
    next_id = 1
    for panel in model.get("panels", []):
        for p in [panel, *panel.get("panels", [])]:
            p["id"] = next_id
            next_id += 1


def render(model: dict) -> str:
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def write(directory: Path = JSON_DIR, built: dict[str, dict] | None = None) -> list[Path]:
    """Write every dashboard as ``<uid>.json`` and remove JSON files of dashboards that no longer exist."""
    directory.mkdir(parents=True, exist_ok=True)
    built = built if built is not None else build_all()
    written = []
    for uid, model in built.items():
        path = directory / f"{uid}.json"
        path.write_text(render(model), encoding="utf-8")
        written.append(path)
    for old in directory.glob("*.json"):
        if old.stem not in built:
            old.unlink()
    return written


def differences(directory: Path = JSON_DIR, built: dict[str, dict] | None = None) -> list[str]:
    """What differs between the JSON files in ``directory`` and a fresh build (empty: up to date)."""
    built = built if built is not None else build_all()
    problems = [f"{uid}.json: missing" for uid in built if not (directory / f"{uid}.json").exists()]
    problems += [f"{uid}.json: differs from the build" for uid, model in built.items()
                 if (directory / f"{uid}.json").exists()
                 and (directory / f"{uid}.json").read_text(encoding="utf-8") != render(model)]
    problems += [f"{p.name}: no such dashboard in the code" for p in sorted(directory.glob("*.json"))
                 if p.stem not in built]
    return problems
