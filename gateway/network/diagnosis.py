"""Diagnosis of a ring network from what its switches last said: pure functions, no network.

Inputs are :class:`SwitchView` objects (one per switch: does its SNMP answer, which ports are up,
who its LLDP neighbours are, its recent error rates, whether it restarted), built from the readings
of ``network_switch`` devices (signals in docs/network.md) by :func:`view_of` or, with history, by
gateway/network/watch.py. :func:`diagnose_ring` says whether the ring is closed, open at which link,
or segmented into islands; which switches and devices are cut off as seen from the gateway's switch;
which links are degraded, which switches restarted or are miswired. See docs/network.md, "Diagnosis".
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from gateway.core.model import Quality, Reading, Schema
from gateway.network.config import Ring

_PORT_SIGNAL = re.compile(r"port(\d+)_(oper_up|neighbor|neighbor_port|in_errors_ps)")


@dataclass(frozen=True)
class Link:
    """A ring link on paper: switch ``a`` port ``a_port`` cabled to switch ``b`` port ``b_port``."""

    a: str
    a_port: int
    b: str
    b_port: int

    def as_dict(self) -> dict:
        return {"a": self.a, "a_port": self.a_port, "b": self.b, "b_port": self.b_port}

    def __str__(self) -> str:
        return f"{self.a} port {self.a_port} — {self.b} port {self.b_port}"


def ring_links(ring: Ring) -> list[Link]:
    """The ring's links in order: switch *i*'s second port to switch *i+1*'s first, the last back to the first."""
    sw = ring.switches
    return [Link(s.device, s.ports[1], sw[(i + 1) % len(sw)].device, sw[(i + 1) % len(sw)].ports[0])
            for i, s in enumerate(sw)]


@dataclass
class SwitchView:
    """What is known of one switch now. A switch that does not answer says nothing of its ports."""

    answering: bool = False
    polled: bool = True  # False: not asked yet (the gateway just started), so not "unreachable" either
    oper_up: dict[int, bool] = field(default_factory=dict)  # port -> link up; absent: unknown
    neighbor: dict[int, tuple[str, str]] = field(default_factory=dict)  # port -> (LLDP sysName, port id)
    errors_ps: dict[int, list[float]] = field(default_factory=dict)  # port -> recent in-error rates, oldest first
    restarted: bool = False
    mrp_state: str | None = None  # closed | open | disabled, None: not reported


@dataclass(frozen=True)
class DiagnosisSettings:
    """When a link counts as degraded: its in-error rate is at least ``errors_ps`` on the latest poll,
    and was on each of the last ``polls`` polls or rose at each of them."""

    errors_ps: float = 1.0
    polls: int = 3


@dataclass
class RingDiagnosis:
    ring: str
    state: str  # closed | open | segmented | unknown
    open_links: list[Link] = field(default_factory=list)
    islands: list[list[str]] = field(default_factory=list)
    cut_off_switches: list[str] = field(default_factory=list)
    cut_off_devices: list[str] = field(default_factory=list)
    unreachable_switches: list[str] = field(default_factory=list)  # not answering, yet reachable on paper
    degraded_links: list[dict] = field(default_factory=list)
    restarted_switches: list[str] = field(default_factory=list)
    miswired: list[dict] = field(default_factory=list)
    devices_link_down: list[dict] = field(default_factory=list)  # {device, switch, port}: access port down

    def as_dict(self) -> dict:
        return {"ring": self.ring, "state": self.state, "open_links": [x.as_dict() for x in self.open_links],
                "islands": self.islands, "cut_off_switches": self.cut_off_switches,
                "cut_off_devices": self.cut_off_devices, "unreachable_switches": self.unreachable_switches,
                "degraded_links": self.degraded_links, "restarted_switches": self.restarted_switches,
                "miswired": self.miswired, "devices_link_down": self.devices_link_down}


# ---- from readings ---------------------------------------------------------------------------

@lru_cache(maxsize=256)
def port_signals(schema: Schema) -> tuple[tuple[int, int, str], ...]:
    """(index in the reading, port, what) of every per-port signal the diagnosis reads."""
    found = []
    for i, name in enumerate(schema.signals):
        if m := _PORT_SIGNAL.fullmatch(name):
            found.append((i, int(m[1]), m[2]))
    return tuple(found)


def view_of(reading: Reading | None, answering: bool, restarted: bool = False) -> SwitchView:
    """A switch's view from its latest reading alone (no error history beyond this poll)."""
    view = SwitchView(answering=answering and reading is not None, restarted=restarted)
    if not view.answering:
        return view
    names: dict[int, str] = {}
    ports: dict[int, str] = {}
    for i, port, what in port_signals(reading.schema):
        value = reading.values[i]
        if value is None or reading.quality(i) in (Quality.BAD, Quality.COMM_FAIL):
            continue
        if what == "oper_up":
            view.oper_up[port] = bool(value)
        elif what == "in_errors_ps":
            view.errors_ps[port] = [float(value)]
        elif what == "neighbor":
            names[port] = str(value)
        else:
            ports[port] = str(value)
    view.neighbor = {p: (name, ports.get(p, "")) for p, name in names.items() if name}
    i = reading.schema.index.get("mrp_ring_state")
    if i is not None and reading.values[i] is not None and reading.quality(i) is Quality.GOOD:
        view.mrp_state = str(reading.values[i])
    return view


# ---- the diagnosis ---------------------------------------------------------------------------

def link_open(link: Link, views: Mapping[str, SwitchView]) -> bool:
    """Open when an end that answers reports its port down; unknown ends count as up (on paper)."""
    a, b = views.get(link.a), views.get(link.b)
    return bool((a and a.answering and a.oper_up.get(link.a_port) is False)
                or (b and b.answering and b.oper_up.get(link.b_port) is False))


def islands(switches: Sequence[str], links: Sequence[Link], open_links: Iterable[Link]) -> list[list[str]]:
    """The ring's connected pieces once the open links are taken out, each in ring order."""
    cut = set(open_links)
    if len(cut) <= 1:
        return [list(switches)]
    start = next(i for i, x in enumerate(links) if x in cut) + 1  # an island begins after a cut
    pieces, piece = [], []
    for k in range(len(switches)):
        i = (start + k) % len(switches)
        piece.append(switches[i])
        if links[i] in cut:
            pieces.append(piece)
            piece = []
    return pieces


def reachable_island(pieces: list[list[str]], gateway_switch: str | None,
                     views: Mapping[str, SwitchView]) -> set[str]:
    """Switches the gateway reaches: its own switch's island, or (its switch elsewhere) every island with a switch
    that answers."""
    for piece in pieces:
        if gateway_switch in piece:
            return set(piece)
    return {s for piece in pieces if any(views.get(x, SwitchView()).answering for x in piece) for s in piece}


def degraded(series: Sequence[float], settings: DiagnosisSettings) -> bool:
    """At or above the threshold now, and on each of the last polls or rising at each of them."""
    if not series or series[-1] < settings.errors_ps:  # the common case, cheap: called for every port
        return False
    last = list(series)[-settings.polls:]
    sustained = len(last) == settings.polls and all(x >= settings.errors_ps for x in last)
    rising = len(last) >= 2 and all(b > a for a, b in zip(last, last[1:]))
    return sustained or rising


def miswired_ends(link: Link, views: Mapping[str, SwitchView]) -> list[dict]:
    """Each end of ``link`` whose LLDP neighbour is not the other end on paper (ends without a neighbour: skipped)."""
    wrong = []
    for here, port, there, there_port in ((link.a, link.a_port, link.b, link.b_port),
                                          (link.b, link.b_port, link.a, link.a_port)):
        view = views.get(here)
        found = view.neighbor.get(port) if view and view.answering else None
        if found and found != (there, str(there_port)):
            wrong.append({"switch": here, "port": port, "expected": there, "expected_port": str(there_port),
                          "found": found[0], "found_port": found[1]})
    return wrong


def diagnose_ring(ring: Ring, views: Mapping[str, SwitchView], gateway_switch: str | None = None,
                  attachments: Mapping[str, tuple[str, int | None]] | None = None,
                  settings: DiagnosisSettings = DiagnosisSettings()) -> RingDiagnosis:
    """The ring's state from its switches' views; ``attachments``: device id -> (switch, port) from the site file."""
    switches = [s.device for s in ring.switches]
    if not any(views.get(s, SwitchView()).answering for s in switches):
        return RingDiagnosis(ring.id, "unknown", islands=[switches])
    links = ring_links(ring)
    opened = [x for x in links if link_open(x, views)]
    pieces = islands(switches, links, opened)
    reached = reachable_island(pieces, gateway_switch, views)
    cut_off = [s for s in switches if s not in reached]
    mrp_open = any(views.get(s, SwitchView()).mrp_state == "open" for s in switches)
    state = "closed" if not opened and not mrp_open else "open" if len(opened) <= 1 else "segmented"
    result = RingDiagnosis(ring.id, state, open_links=opened, islands=pieces if len(pieces) > 1 else [],
                           cut_off_switches=cut_off)
    result.unreachable_switches = [s for s in switches if s in reached and not views.get(s, SwitchView()).answering
                                   and views.get(s, SwitchView()).polled]
    result.restarted_switches = [s for s in switches if views.get(s, SwitchView()).restarted]
    result.miswired = [end for x in links for end in miswired_ends(x, views)]
    attachments = attachments or {}
    ring_ports = {(x.a, x.a_port): x for x in links} | {(x.b, x.b_port): x for x in links}
    result.cut_off_devices = sorted(d for d, (sw, _) in attachments.items() if sw in cut_off)
    result.devices_link_down = _devices_link_down(attachments, views, set(cut_off))
    result.degraded_links = _degraded_links(switches, views, ring_ports, attachments, settings)
    return result


def _devices_link_down(attachments: Mapping[str, tuple[str, int | None]], views: Mapping[str, SwitchView],
                       cut_off: set[str]) -> list[dict]:
    down = []
    for device, (switch, port) in sorted(attachments.items()):
        view = views.get(switch)
        if port is not None and switch not in cut_off and view and view.answering and view.oper_up.get(port) is False:
            down.append({"device": device, "switch": switch, "port": port})
    return down


def _degraded_links(switches: list[str], views: Mapping[str, SwitchView], ring_ports: Mapping[tuple, Link],
                    attachments: Mapping[str, tuple[str, int | None]], settings: DiagnosisSettings) -> list[dict]:
    on_port = {(sw, port): device for device, (sw, port) in attachments.items() if port is not None}
    found = []
    for switch in switches:
        view = views.get(switch)
        if not view or not view.answering:
            continue
        for port, series in sorted(view.errors_ps.items()):
            if not degraded(series, settings):
                continue
            link = ring_ports.get((switch, port))
            if link is not None:
                entry = link.as_dict() if link.a == switch else {"a": link.b, "a_port": link.b_port,
                                                                 "b": link.a, "b_port": link.a_port}
            else:
                entry = {"a": switch, "a_port": port, "b": on_port.get((switch, port), ""), "b_port": None}
            found.append(entry | {"errors_ps": round(series[-1], 3)})
    return found
