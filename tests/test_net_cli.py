"""``minegw net ring`` / ``net reach`` rendering and ``config check`` of the rings (no SNMP agent: readings are built
as the adapter makes them; reach against real TCP listeners)."""
from __future__ import annotations

import asyncio

import typer
import yaml
from rich.console import Console
from typer.testing import CliRunner

from gateway.cli import app
from gateway.cli.net_ring import paper_check, reach_rows, reach_table, register, ring_picture
from gateway.config import parse_site
from gateway.network.diagnosis import diagnose_ring, view_of
from tests.network_site import SWITCHES, ring_site_dict, switch_reading
from tests.sites import modbus, site_dict
from tests.util import free_port


def plain(lines: list[str]) -> str:
    console = Console(width=200, record=True, color_system=None)
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)
    return console.export_text()


def test_ring_picture_of_a_cut_ring():
    site = parse_site(ring_site_dict())
    ring = site.network.rings[0]
    readings = {sw: switch_reading(sw, down={"sw2": (2,), "sw5": (1,)}.get(sw, ())) for sw in SWITCHES}
    views = {sw: view_of(readings[sw], sw not in ("sw3", "sw4")) for sw in SWITCHES}
    attachments = {d.id: (d.network.switch, d.network.port) for d in site.devices if d.network}
    d = diagnose_ring(ring, views, "sw1", attachments)
    text = plain(ring_picture(ring, views, d, {"sw3": "timeout", "sw4": "timeout"}))
    assert "ring ring-1 (main ring): SEGMENTED" in text
    assert "sw2 p2 down ─╳─ ? p1 sw3" in text
    assert "sw1 p2 up ━━━ up p1 sw2" in text
    assert "sw3 does not answer: timeout" in text
    assert "islands: sw3 sw4 | sw5 sw6 sw1 sw2" in text
    assert "devices cut off: pump, shearer" in text


def test_ring_picture_names_a_miswired_end():
    site = parse_site(ring_site_dict())
    ring = site.network.rings[0]
    views = {sw: view_of(switch_reading(sw), True) for sw in SWITCHES}
    views["sw4"].neighbor[1] = ("sw6", "2")
    text = plain(ring_picture(ring, views, diagnose_ring(ring, views, "sw1")))
    assert "CLOSED" in text
    assert "miswired: sw4 port 1 sees sw6 port 2, on paper sw3 port 2" in text


def test_paper_check_says_closed_and_warns_of_a_ring_of_two():
    data = ring_site_dict()
    data["network"]["rings"].append({"id": "pair", "switches": [{"device": "sw1", "ports": [3, 4]},
                                                                 {"device": "sw2", "ports": [3, 4]}]})
    text = plain(paper_check(parse_site(data).network))
    assert "ring ring-1: closed on paper" in text and "6 switches, 6 links" in text
    assert "sw6 port 2 — sw1 port 1" in text
    assert "warning: ring pair has 2 switches" in text


async def test_reach_rows_and_table():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        site = parse_site(site_dict(modbus("plc", "belt_conveyor", port=port),
                                    modbus("gone", "belt_conveyor", port=free_port())))
        rows = await reach_rows(site.devices, 1.0)
    finally:
        server.close()
    assert [(r[0], r[1], r[2]) for r in rows] == [("plc", f"tcp 127.0.0.1:{port}", True),
                                                  ("gone", f"tcp 127.0.0.1:{site.devices[1].port}", False)]
    text = plain(reach_table(rows))
    assert "plc" in text and " ms" in text and "no answer" in text and "1 of 2 devices answer" in text


def test_config_check_prints_the_rings(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(ring_site_dict()))
    result = CliRunner().invoke(app, ["config", "check", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "ring ring-1: closed on paper" in result.output


def test_register_adds_ring_and_reach(tmp_path):
    net = typer.Typer()
    register(net)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site_dict(modbus("gone", "belt_conveyor", port=free_port()))))
    result = CliRunner().invoke(net, ["reach", "-c", str(path), "--timeout", "0.5"], terminal_width=200)
    assert result.exit_code == 1 and "0 of 1 devices answer" in result.output, result.output
    result = CliRunner().invoke(net, ["ring", "-c", str(path)], terminal_width=200)
    assert result.exit_code == 1 and "no network.rings" in result.output
