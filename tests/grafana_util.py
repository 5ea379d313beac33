"""What Grafana does with a dashboard's InfluxQL before it reaches InfluxDB, for tests that run
every panel's query against a real influxd (no Grafana server can be installed here).

Interpolation follows Grafana's InfluxDB data source (raw InfluxQL mode): ``$timeFilter``
becomes a time condition, ``$__interval`` an interval, a variable in a regular expression
its value regex-escaped, several values ``(a|b)``, and "All" the variable's ``allValue``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import httpx

TIME_FILTER = "time > now() - 1h"
INTERVAL = "5s"
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_REGEX_META = re.compile(r"[\\^$*+?.()|{}\[\]/]")


@dataclass
class PanelQuery:
    dashboard: str
    panel: str
    panel_type: str
    ref_id: str
    text: str
    result_format: str
    alias: str | None = None

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel!r} / {self.ref_id}"


@dataclass
class Variables:
    """Chosen values: name -> list of values, or None for "All"."""
    values: dict[str, list[str] | None] = field(default_factory=dict)
    all_values: dict[str, str] = field(default_factory=dict)
    time_filter: str = TIME_FILTER  # the dashboard's time range
    interval: str = INTERVAL  # what Grafana makes $__interval of the range and the panel width

    def interpolate(self, text: str) -> str:
        def replace(m: re.Match) -> str:
            name = m.group(1) or m.group(2)
            if name == "timeFilter":
                return self.time_filter
            if name in ("__interval", "interval"):
                return self.interval
            if name not in self.values:
                raise KeyError(f"variable ${name} is used but not defined (before this point)")
            chosen = self.values[name]
            if chosen is None:
                return self.all_values[name]
            escaped = [_REGEX_META.sub(lambda c: "\\" + c.group(0), v) for v in chosen]
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        return _VAR.sub(replace, text)


def panels(model: dict):
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(model: dict) -> list[PanelQuery]:
    return [PanelQuery(model["uid"], p.get("title", ""), p["type"], t["refId"], t["query"],
                       t.get("resultFormat", "time_series"), t.get("alias"))
            for p in panels(model) for t in p.get("targets", [])]


class InfluxQuery:
    """Runs InfluxQL on a real InfluxDB 1.x and returns the series, or raises with the server's error."""

    def __init__(self, url: str, database: str):
        self.url, self.database = url, database
        self._client = httpx.Client(timeout=30)  # one connection: a new client costs ~50 ms a query

    def series(self, text: str) -> list[dict]:
        # POST, as the provisioned data source sends queries (httpMode: POST)
        answer = self._client.post(f"{self.url}/query", data={"db": self.database, "q": text, "epoch": "ms"})
        body = answer.json()
        if answer.status_code != 200 or "error" in body:
            raise AssertionError(f"InfluxDB refused the query: {body.get('error')}\n{text}")
        results = body["results"]
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            raise AssertionError(f"InfluxDB: {errors[0]}\n{text}")
        return [s for r in results for s in r.get("series", [])]

    def tag_values(self, text: str) -> list[str]:
        return sorted({row[1] for s in self.series(text) for row in s["values"]})


def resolve_variables(model: dict, influx: InfluxQuery) -> Variables:
    """Run each variable's query in order (later ones see earlier choices), as Grafana does on load,
    taking "All" for multi-value variables and the first value of the others.

    A variable whose query finds nothing fails: the dashboard would show nothing either.
    """
    return next(_choices(model, influx, model.get("templating", {}).get("list", []), Variables(), pick_all=True))


def single_value_choices(model: dict, influx: InfluxQuery, most: int = 4) -> list[Variables]:
    """Every combination of single values (up to ``most`` per variable), each variable's options
    found with the earlier ones chosen: what a dispatcher picking one area, one device sees."""
    return list(_choices(model, influx, model.get("templating", {}).get("list", []), Variables(), pick_all=False,
                         most=most))


def _choices(model, influx, remaining, chosen: Variables, *, pick_all: bool, most: int = 1):
    if not remaining:
        yield chosen
        return
    var, rest = remaining[0], remaining[1:]
    name = var["name"]
    if var.get("type") == "textbox":  # a value typed in (the video relay's URL): its default
        options = [var["query"]]
    else:
        options = influx.tag_values(chosen.interpolate(var["query"]))
    if not options:
        raise AssertionError(f"{model['uid']}: variable ${name} has no values: {chosen.interpolate(var['query'])}")
    if var.get("includeAll") and pick_all:
        picks = [None]
    else:
        picks = [[o] for o in (options[:1] if pick_all else options[:most])]
    for pick in picks:
        nxt = Variables(dict(chosen.values), dict(chosen.all_values))
        nxt.values[name] = pick
        if pick is None:
            nxt.all_values[name] = var.get("allValue") or "(" + "|".join(options) + ")"
        yield from _choices(model, influx, rest, nxt, pick_all=pick_all, most=most)
