"""Ring diagnosis (gateway/network/diagnosis.py): pure functions over switch views, table-driven, no network."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gateway.core.model import Quality, Reading, Schema
from gateway.network.config import Ring
from gateway.network.diagnosis import (DiagnosisSettings, Link, SwitchView, degraded, diagnose_ring, ring_links,
                                       view_of)

RING = Ring(id="ring-1", switches=[{"device": f"sw{i}", "ports": [1, 2]} for i in range(1, 7)])
SWITCHES = [f"sw{i}" for i in range(1, 7)]
ATTACHED = {"belt-1": ("sw1", 5), "shearer": ("sw3", 5), "pump": ("sw4", 6), "fan": ("sw5", None)}
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def healthy() -> dict[str, SwitchView]:
    """Every switch answers, every port up, LLDP as cabled on paper."""
    views = {s: SwitchView(answering=True, oper_up={1: True, 2: True, 5: True, 6: True}) for s in SWITCHES}
    for x in ring_links(RING):
        views[x.a].neighbor[x.a_port] = (x.b, str(x.b_port))
        views[x.b].neighbor[x.b_port] = (x.a, str(x.a_port))
    return views


def cut(views, *links: int, silent: tuple[str, ...] = ()) -> dict[str, SwitchView]:
    """Links (by index: link i joins sw{i+1} port 2 and sw{i+2} port 1) down at both ends; ``silent`` stop answering."""
    for i in links:
        x = ring_links(RING)[i]
        views[x.a].oper_up[x.a_port] = views[x.b].oper_up[x.b_port] = False
        views[x.a].neighbor.pop(x.a_port, None)
        views[x.b].neighbor.pop(x.b_port, None)
    for s in silent:
        views[s] = SwitchView(answering=False)
    return views


def test_links_on_paper_close_the_ring():
    assert [str(x) for x in ring_links(RING)] == [
        "sw1 port 2 — sw2 port 1", "sw2 port 2 — sw3 port 1", "sw3 port 2 — sw4 port 1",
        "sw4 port 2 — sw5 port 1", "sw5 port 2 — sw6 port 1", "sw6 port 2 — sw1 port 1"]


CASES = {
    # name: (views, state, open links, islands, cut-off switches, cut-off devices, unreachable)
    "closed": (healthy(), "closed", [], [], [], [], []),
    "nothing answered yet": ({}, "unknown", [], [SWITCHES], [], [], []),
    "one cut: open at that link": (cut(healthy(), 2), "open", [Link("sw3", 2, "sw4", 1)], [], [], [], []),
    "one cut seen from one end only (the other silent but reachable)": (
        cut(healthy(), 2, silent=("sw4",)), "open", [Link("sw3", 2, "sw4", 1)], [], [], [], ["sw4"]),
    "two cuts: two islands, the far one cut off with its devices": (
        cut(healthy(), 1, 3, silent=("sw3", "sw4")), "segmented",
        [Link("sw2", 2, "sw3", 1), Link("sw4", 2, "sw5", 1)],
        [["sw3", "sw4"], ["sw5", "sw6", "sw1", "sw2"]], ["sw3", "sw4"], ["pump", "shearer"], []),
    "three cuts, each end answering: three islands": (
        cut(healthy(), 0, 2, 4), "segmented",
        [Link("sw1", 2, "sw2", 1), Link("sw3", 2, "sw4", 1), Link("sw5", 2, "sw6", 1)],
        [["sw2", "sw3"], ["sw4", "sw5"], ["sw6", "sw1"]], ["sw2", "sw3", "sw4", "sw5"],
        ["fan", "pump", "shearer"], []),
    "three cuts, the far switches silent: the cut between them cannot be seen": (
        cut(healthy(), 1, 3, 5, silent=("sw3", "sw4", "sw5", "sw6")), "segmented",
        [Link("sw2", 2, "sw3", 1), Link("sw6", 2, "sw1", 1)],
        [["sw3", "sw4", "sw5", "sw6"], ["sw1", "sw2"]], ["sw3", "sw4", "sw5", "sw6"],
        ["fan", "pump", "shearer"], []),
    "a dead switch: its two links open, it alone is cut off": (
        cut(healthy(), 2, 3, silent=("sw4",)), "segmented",
        [Link("sw3", 2, "sw4", 1), Link("sw4", 2, "sw5", 1)], [["sw4"], ["sw5", "sw6", "sw1", "sw2", "sw3"]],
        ["sw4"], ["pump"], []),
    "a silent switch with its links up: unreachable, not cut off": (
        cut(healthy(), silent=("sw5",)), "closed", [], [], [], [], ["sw5"]),
}


@pytest.mark.parametrize("name", CASES)
def test_ring_state(name):
    views, state, open_links, islands, cut_off, devices, unreachable = CASES[name]
    d = diagnose_ring(RING, views, gateway_switch="sw1", attachments=ATTACHED)
    assert (d.state, d.open_links, d.islands, d.cut_off_switches, d.cut_off_devices, d.unreachable_switches) == (
        state, open_links, islands, cut_off, devices, unreachable)


def test_cut_off_is_seen_from_the_gateway_switch():
    views = cut(healthy(), 1, 3, silent=("sw1", "sw2", "sw5", "sw6"))  # the gateway hangs on sw4
    d = diagnose_ring(RING, views, gateway_switch="sw4", attachments=ATTACHED)
    assert d.cut_off_switches == ["sw1", "sw2", "sw5", "sw6"]
    assert d.cut_off_devices == ["belt-1", "fan"]


def test_gateway_switch_outside_the_ring_reaches_the_islands_that_answer():
    views = cut(healthy(), 1, 3, silent=("sw3", "sw4"))
    d = diagnose_ring(RING, views, gateway_switch="core-1", attachments=ATTACHED)
    assert d.cut_off_switches == ["sw3", "sw4"]


def test_mrp_manager_saying_open_opens_the_ring_without_a_known_link():
    views = healthy()
    views["sw1"].mrp_state = "open"
    d = diagnose_ring(RING, views, "sw1")
    assert (d.state, d.open_links) == ("open", [])


def test_device_access_port_down():
    views = healthy()
    views["sw3"].oper_up[5] = False
    d = diagnose_ring(RING, views, "sw1", ATTACHED)
    assert d.state == "closed"
    assert d.devices_link_down == [{"device": "shearer", "switch": "sw3", "port": 5}]


@pytest.mark.parametrize("series, expected", [
    ([], False),
    ([0.0, 0.0, 0.0], False),
    ([2.0, 2.0, 2.0], True),  # sustained
    ([2.0, 2.0], False),  # not yet three polls, and not rising
    ([0.1, 0.4, 1.2], True),  # rising at each poll, now over
    ([0.1, 0.4, 0.9], False),  # rising, still under
    ([5.0, 0.0, 1.5], False),  # a spike, then down: not a trend
    ([9.0, 9.0, 9.0, 0.5], False),  # recovered
])
def test_error_rate_trend(series, expected):
    assert degraded(series, DiagnosisSettings(errors_ps=1.0, polls=3)) is expected


def test_degraded_links_name_both_ends_or_the_device():
    views = healthy()
    views["sw4"].errors_ps = {1: [1.0, 2.0, 4.0], 6: [3.0, 3.0, 3.0], 2: [0.0, 0.0, 0.0]}
    d = diagnose_ring(RING, views, "sw1", ATTACHED)
    assert d.degraded_links == [{"a": "sw4", "a_port": 1, "b": "sw3", "b_port": 2, "errors_ps": 4.0},
                                {"a": "sw4", "a_port": 6, "b": "pump", "b_port": None, "errors_ps": 3.0}]


def test_restarted_switches():
    views = healthy()
    views["sw2"].restarted = True
    assert diagnose_ring(RING, views, "sw1").restarted_switches == ["sw2"]


def test_miswired_ring_reported_with_both_ends():
    views = healthy()
    # sw2 port 2 and sw3 port 2 swapped at sw3: sw3's port 1 sees sw4, its port 2 sees sw2
    views["sw3"].neighbor[1], views["sw3"].neighbor[2] = ("sw4", "1"), ("sw2", "2")
    views["sw2"].neighbor[2] = ("sw3", "2")
    views["sw4"].neighbor[1] = ("sw3", "1")
    wrong = diagnose_ring(RING, views, "sw1").miswired
    assert {(w["switch"], w["port"], w["found"], w["found_port"]) for w in wrong} == {
        ("sw2", 2, "sw3", "2"), ("sw3", 1, "sw4", "1"), ("sw3", 2, "sw2", "2"), ("sw4", 1, "sw3", "1")}
    assert {"switch": "sw2", "port": 2, "expected": "sw3", "expected_port": "1", "found": "sw3",
            "found_port": "2"} in wrong


def switch_reading(device: str, ports: dict[int, tuple[bool, str, str, float | None]],
                   mrp: str | None = None) -> Reading:
    """A ``network_switch`` reading as the SNMP adapter makes it (signals of docs/network.md)."""
    signals, units, values, qualities = ["uptime_s"], ["s"], [1000.0], [Quality.GOOD]
    for port, (up, neighbor, neighbor_port, errors) in ports.items():
        signals += [f"port{port}_oper_up", f"port{port}_neighbor", f"port{port}_neighbor_port",
                    f"port{port}_in_errors_ps"]
        units += ["", "", "", "1/s"]
        values += [up, neighbor, neighbor_port, errors]
        qualities += [Quality.GOOD] * 3 + [Quality.GOOD if errors is not None else Quality.BAD]
    signals.append("mrp_ring_state")
    units.append("")
    values.append(mrp)
    qualities.append(Quality.GOOD if mrp is not None else Quality.BAD)
    return Reading(device, T0, 5.0, schema=Schema(signals, units), values=values, qualities=qualities)


def test_view_from_a_reading():
    reading = switch_reading("sw1", {1: (True, "sw6", "2", 0.0), 2: (False, "", "", None)}, mrp="open")
    view = view_of(reading, answering=True)
    assert view.answering and view.oper_up == {1: True, 2: False}
    assert view.neighbor == {1: ("sw6", "2")}
    assert view.errors_ps == {1: [0.0]}  # the first rate after a start is bad: left out
    assert view.mrp_state == "open"
    assert view_of(reading, answering=False) == SwitchView(answering=False)
    assert view_of(None, answering=True).answering is False
