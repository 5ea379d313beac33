"""The console's panels as rich renderables, drawn from a :class:`~gateway.console.model.SiteModel`.

Pure functions of the model (and the width, for the face strip): the Textual app puts them in widgets,
the tests and ``docs/console.md`` read them as text.
"""
from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from gateway.console.model import GOOD, STATUS_NAMES, Device, Signal, SiteModel
from gateway.derived.roof_pressure import RoofPressureConfig

KEY_SIGNALS = {  # a few signals worth watching per equipment kind
    "shearer": ["support_number", "haulage_speed", "left_cutting_current", "methane"],
    "face_conveyor": ["head_current", "chain_speed", "chain_tension"],
    "roadheader": ["mode", "cutting_current", "oil_temperature", "methane"],
    "belt_conveyor": ["speed", "load", "motor_current"],
    "roof_pressure": ["supports_below_setting"],
    "camera": ["online", "response_ms"],
    "broadcast_node": ["playing", "playing_message", "battery_level"],
    "network_switch": ["mrp_ring_state", "uptime_s"],
    "ups": ["on_battery", "battery_charge", "runtime_min"],
}
BELT_PROTECTIONS = ("slip", "pile_up", "misalignment_trip", "tear", "smoke_trip", "over_temperature",
                    "emergency_stop", "lockout")
STATUS_STYLES = {0: "yellow", 1: "green", 2: "bold white on grey30", 3: "bold white on red"}
PRIORITY_STYLES = {1: "bold white on red", 2: "bold red", 3: "yellow", 4: "cyan"}
PRIORITY_NAMES = {1: "critical", 2: "high", 3: "medium", 4: "low"}
BROADCAST_PRIORITIES = {0: "idle", 1: "routine", 2: "dispatcher", 3: "emergency"}


# -- small formatting ------------------------------------------------------------------------------
def age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def since(ts: datetime | None, now: float | None = None) -> str:
    return "—" if ts is None else age((now or time.time()) - ts.timestamp())


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def sample_text(s: Signal | None) -> str:
    if s is None:
        return "—"
    text = fmt(s.value) + (f" {s.unit}" if s.unit and s.value is not None else "")
    return text if s.quality == GOOD else f"{text} ({s.quality})"


def sample_time(ts: str | int) -> str:
    if isinstance(ts, int):
        return datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return ts


def titled(title: str, body) -> Group:
    return Group(Text(title, style="bold underline"), body)


def grid(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold dim")
    for c in columns:
        table.add_column(c, overflow="fold")
    return table


# -- areas and machines ----------------------------------------------------------------------------
def status_text(code: int | None) -> Text:
    return Text("—" if code is None else STATUS_NAMES.get(code, str(code)), style=STATUS_STYLES.get(code, "dim"))


def areas_panel(model: SiteModel) -> Table:
    table = grid("area", "status", "devices online", "alarms")
    for area in model.areas():
        devices = [d for d in model.devices.values() if d.area == area]
        online = sum(1 for d in devices if d.online)
        alarms = len(model.active_alarms(area))
        table.add_row(area, status_text(model.area_status(area)), f"{online}/{len(devices)}",
                      Text(str(alarms), style="bold red" if alarms else "green"))
    return table


def key_signals(d: Device) -> str:
    names = KEY_SIGNALS.get(d.kind) or [n for n in d.signals if n not in ("status", "status_code")][:3]
    return "  ".join(f"{n}={sample_text(d.signals.get(n))}" for n in names if n in d.signals)


def link_text(d: Device) -> Text:
    if d.state is None:
        return Text("?", style="dim")
    if d.online:
        return Text("online", style="green")
    return Text(f"offline: {d.state.reason}"[:40], style="bold red")


def device_row(d: Device, now: float) -> tuple:
    return (d.id, d.area, d.kind or "?", link_text(d), status_text(d.status_code), key_signals(d),
            age(None if d.last_data is None else now - d.last_data))


DEVICE_COLUMNS = ("device", "area", "kind", "link", "status", "key signals", "updated")
ALARM_COLUMNS = ("P", "state", "alarm", "where", "value", "message", "since")


def alarm_row(a, now: float) -> tuple:
    return (Text(str(a.priority), style=PRIORITY_STYLES.get(a.priority, "")),
            Text(a.state, style="bold red" if a.state == "active_unack" else "yellow"),
            a.alarm, f"{a.area}/{a.device}", fmt(a.value), a.message, since(a.raised_at or a.ts, now))


# -- the longwall face ------------------------------------------------------------------------------
LEG = re.compile(r"support_(\d+)_(front|rear)_leg_pressure$")
CLASSES = {  # class -> (mark, style, rank: the worst of a group of supports drawn in one cell wins)
    "near_yield": ("▲", "bold red", 4), "below_setting": ("▒", "yellow", 3), "lowered": ("▁", "blue", 2),
    "normal": ("█", "green", 1), "unknown": ("·", "dim", 0)}


def supports(d: Device, cache: dict) -> list[tuple[int, str, str]]:
    """(support number, front leg signal, rear leg signal), in order along the face (kept per signal count)."""
    key = (d.id, len(d.signals))
    if key not in cache:
        legs: dict[int, dict[str, str]] = {}
        for name in d.signals:
            if m := LEG.match(name):
                legs.setdefault(int(m.group(1)), {})[m.group(2)] = name
        cache.clear()
        cache[key] = [(n, legs[n].get("front", ""), legs[n].get("rear", "")) for n in sorted(legs)]
    return cache[key]


def classify(pressures: list[float], cfg: RoofPressureConfig) -> str:
    if not pressures:
        return "unknown"
    if max(pressures) >= cfg.yield_open_mpa:
        return "near_yield"
    if min(pressures) < cfg.lowered_mpa:
        return "lowered"
    if min(pressures) < cfg.required_setting_mpa:
        return "below_setting"
    return "normal"


def leg_pressures(d: Device, front: str, rear: str) -> list[float]:
    out = []
    for name in (front, rear):
        s = d.signals.get(name)
        if s is not None and s.quality in (GOOD, "stale") and isinstance(s.value, (int, float)):
            out.append(float(s.value))
    return out


def shearer_support(model: SiteModel, area: str, spacing_m: float = 1.5) -> int | None:
    for shearer in model.of_kind("shearer", area=area):
        number = shearer.value("support_number")
        if isinstance(number, int) and not isinstance(number, bool):
            return number
        position = shearer.value("position")
        if isinstance(position, (int, float)):
            return int(position / spacing_m) + 1
    return None


def face_strip(model: SiteModel, d: Device, width: int, cache: dict) -> Group:
    """The supports along the face, one cell per support (or the worst of a few when the face is wider than
    the screen), coloured by leg pressure, the shearer's position above them, the counts below."""
    cfg = model.site.roof_pressure
    along = supports(d, cache)
    if not along:
        return Group(Text(f"{d.id}: no leg pressures yet", style="dim"))
    cells = max(10, min(width, len(along)))
    counts = dict.fromkeys(CLASSES, 0)
    strip = Text()
    for c in range(cells):  # cell c covers supports [c·n/cells, (c+1)·n/cells)
        worst = "unknown"
        for _, front, rear in along[c * len(along) // cells:(c + 1) * len(along) // cells]:
            k = classify(leg_pressures(d, front, rear), cfg)
            counts[k] += 1
            worst = k if CLASSES[k][2] > CLASSES[worst][2] else worst
        mark, style, _ = CLASSES[worst]
        strip.append(mark, style=style)
    first, last = along[0][0], along[-1][0]
    shearer = shearer_support(model, d.area)
    above = Text(" ")
    if shearer is not None and first <= shearer <= last:
        above = Text(" " * ((shearer - first) * cells // len(along)) + "▼", style="bold magenta")
    scale = Text(f"{first}".ljust(max(1, cells - len(str(last)))) + f"{last}", style="dim")
    gateway_count = d.value("supports_below_setting")
    summary = Text.assemble(
        (f"{d.id} ({d.area}) · {len(along)} supports"
         + (f", {len(along) / cells:.2g} per cell" if cells < len(along) else "") + " · ", ""),
        ("shearer at support " + (str(shearer) if shearer is not None else "?"), "magenta"), " · ",
        (f"below setting {fmt(gateway_count)}", "bold yellow" if gateway_count else "green"),
        f" (初撑力 < {cfg.required_setting_mpa:g} MPa) · now: {counts['below_setting']} under setting, "
        f"{counts['near_yield']} near yield (≥ {cfg.yield_open_mpa:g} MPa), {counts['lowered']} lowered")
    legend = Text.assemble(("█", "green"), " normal  ", ("▒", "yellow"), " below setting  ", ("▲", "bold red"),
                           " near yield  ", ("▁", "blue"), " lowered (advancing)  ", ("·", "dim"), " no reading  ",
                           ("▼", "bold magenta"), " shearer", style="dim")
    return Group(summary, above, strip, scale, legend)


# -- belts, cameras, broadcast, network, gateway ---------------------------------------------------
def belts_panel(model: SiteModel) -> Table:
    table = grid("belt", "speed", "load", "status", "protections tripped")
    for d in model.of_kind("belt_conveyor"):
        tripped = [p for p in BELT_PROTECTIONS if d.value(p) is True]
        table.add_row(d.id, sample_text(d.signals.get("speed")), sample_text(d.signals.get("load")),
                      status_text(d.status_code), Text(", ".join(tripped) or "none",
                                                       style="bold red" if tripped else "green"))
    return table


def cameras_panel(model: SiteModel, now: float) -> Table:
    table = grid("camera", "online", "response", "stream", "last event")
    for d in model.of_kind("camera"):
        online = d.value("online")
        if online is None and d.inventory is not None:
            online = d.inventory.online
        event = "none" if d.last_event is None else f"{d.last_event[1]} at {sample_time(d.last_event[0])[11:19]}"
        table.add_row(d.id, Text(fmt(online), style="green" if online else "bold red"),
                      sample_text(d.signals.get("response_ms")), stream_text(d), event)
    return table


def stream_text(d) -> Text:
    """The stream's health as the camera reports it (docs/video.md): picture verdict, frame and bit rate."""
    ok, picture = d.value("stream_ok"), d.value("picture")
    if ok is None and picture is None:
        return Text("—", style="dim")  # no stream health watched for this camera
    if ok is False:
        return Text(f"down: {d.value('stream_problem') or '?'}", style="bold red")
    rates = " ".join(f"{fmt(v)} {unit}" for v, unit in ((d.value("stream_fps"), "fps"), (d.value("stream_kbps"), "kbps"))
                     if v is not None)
    return Text(f"{picture or 'ok'} {rates}".strip(), style="green" if picture in (None, "ok") else "bold red")


def broadcast_zones(model: SiteModel) -> list[tuple[str, list[str]]]:
    if model.site.broadcast is not None:
        return [(z.id + (" (escape)" if z.escape_route else ""), z.nodes) for z in model.site.broadcast.zones]
    zones: dict[str, list[str]] = {}
    for d in model.of_kind("broadcast_node"):
        zones.setdefault(d.zone or d.area, []).append(d.id)
    return sorted(zones.items())


def node_text(model: SiteModel, node: str) -> Text:
    d = model.devices.get(node)
    names = {m.id: m.name for m in model.site.broadcast.messages} if model.site.broadcast else {}
    if d is None or not d.signals:
        text = Text(f"{node} ?", style="dim")
    elif d.value("playing"):
        message = d.value("playing_message")
        text = Text(f"{node} ▶ {names.get(message, message)} "
                    f"({BROADCAST_PRIORITIES.get(d.value('playing_priority'), '?')})", style="bold")
    else:
        text = Text(f"{node} idle", style="dim")
    faults = [f for f in ("amplifier_fault", "line_fault", "on_battery") if d is not None and d.value(f)]
    if faults:
        text.append(f" {','.join(faults)}", style="bold red")
    c = model.confirmations.get(node)
    if c is not None:
        text.append(f" ✔ confirmed {fmt(c.confirm_ms)} ms" if c.confirmed else f" ✘ not confirmed: {c.reason}",
                    style="green" if c.confirmed else "bold red")
    return text


def broadcast_panel(model: SiteModel, now: float) -> Group:
    table = grid("zone", "node")
    for zone, nodes in broadcast_zones(model):
        for i, node in enumerate(nodes):
            table.add_row(zone if i == 0 else "", node_text(model, node))
    lines: list = [table]
    for event in sorted(model.linkages.values(), key=lambda e: e.ts, reverse=True)[:3]:
        confirmed = sum(1 for n in event.nodes.values() if n.confirmed)
        lines.append(Text(
            f"linkage {event.alarm} → {event.message} in {', '.join(event.zones)}: {confirmed}/{len(event.nodes)} "
            f"confirmed, trigger→confirmed {fmt(event.trigger_to_confirmed_ms)} ms, {since(event.ts, now)} ago"
            + (f" ({event.error})" if event.error else ""), style="green" if event.ok else "bold red"))
    return Group(*lines)


def network_panel(model: SiteModel) -> Table:
    table = grid("ring", "state", "open links", "cut off")
    for ring, r in sorted(model.rings.items()):
        state = str(r.get("state", "?"))
        links = ", ".join(f"{x.get('a')} p{x.get('a_port')} — {x.get('b')} p{x.get('b_port')}"
                          for x in r.get("open_links") or [])
        cut = ", ".join(list(r.get("cut_off_switches") or []) + list(r.get("cut_off_devices") or []))
        table.add_row(ring, Text(state, style="green" if state == "closed" else "bold red"), links or "none",
                      cut or "none")
    return table


def gateway_panel(model: SiteModel, now: float) -> Group:
    """One block per gateway: birth/will status, the MQTT uplink, its queue and drops, the gateway alarms."""
    lines: list[Text] = []
    for gw in model.gateways.values():
        status = Text("status ?", style="dim") if gw.status is None else Text(
            gw.status.status + ("" if gw.status.reason == "connected" else f": {gw.status.reason}"),
            style="green" if gw.status.status == "online" else "bold red")
        lines.append(Text.assemble((gw.id, "bold"), "  ", status))
        h = gw.health
        if h is None:
            lines.append(Text("  no health yet", style="dim"))
        else:
            lines.append(Text.assemble(
                "  uplink ", ("connected", "green") if h.connected else ("down", "bold red"),
                f" · queued {h.queued} · dropped ", (str(h.dropped), "bold red" if h.dropped else "green"),
                f" · delivered {h.delivered}/{h.published} · reconnects {h.reconnects} · {since(h.ts, now)} ago"))
        if gw.extra:  # health fields this console does not know yet (e.g. the historian's)
            lines.append(Text("  " + "  ".join(f"{k}={fmt(v)}" for k, v in gw.extra.items()), style="dim"))
        active = [f"{a.id} ({a.message})" for a in gw.alarms.values() if a.active]
        lines.append(Text("  alarms: " + ("; ".join(active) or "none"), style="bold red" if active else "green"))
    return Group(*lines) if lines else Group(Text("no gateway has reported yet", style="dim"))


def banner(model: SiteModel, where: str, now: float) -> Text | None:
    """None while connected; else what is wrong and how old what the screen shows is."""
    link = model.link
    if link.connected:
        return None
    last = "nothing received yet" if link.last_message is None else \
        f"showing what was known {age(now - link.last_message)} ago"
    return Text(f" {link.problem or 'not connected'} ({where}), retrying for {age(now - link.since)}; {last} ",
                style="bold white on red" if link.last_message is not None or now - link.since > 3
                else "bold black on yellow")


# -- one device -----------------------------------------------------------------------------------
def device_summary(d: Device, now: float) -> Text:
    text = Text(f"{d.id}  area {d.area}  kind {d.kind or '?'}  zone {d.zone or '—'}  ", style="bold")
    text.append_text(link_text(d))
    s = d.state
    if s is not None:
        text.append(f"\nsince {s.since.isoformat(timespec='seconds')}  last good poll "
                    f"{since(s.last_good_poll, now)} ago  last poll {fmt(s.last_poll_ms)} ms\n"
                    f"polls {s.polls}  errors {s.errors} (consecutive {s.consecutive_errors})  timeouts {s.timeouts}  "
                    f"exception responses {s.exception_responses}  reconnects {s.reconnects}")
    text.append("\nno data yet" if d.last_data is None else f"\ndata {age(now - d.last_data)} ago, {len(d.signals)} signals")
    return text


SIGNAL_COLUMNS = ("signal", "value", "unit", "quality", "time")


def signal_row(name: str, s: Signal) -> tuple:
    return (name, fmt(s.value), s.unit, Text(s.quality, style="" if s.quality == GOOD else "bold red"),
            sample_time(s.ts))
