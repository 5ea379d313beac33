"""``minegw net ring`` and ``minegw net reach``: the ring picture and who answers, for the engineer underground.

The switches are read once through their adapters (``gateway.network.live.read_once``), so whatever the SNMP
adapter reads, this reads. :func:`register` adds the commands to the ``net`` group (gateway/cli/net.py).
Also what ``minegw config check`` says of the rings: on paper, and ``--live`` against the switches' LLDP.
"""
from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from gateway.cli.common import fail, load, out
from gateway.network.config import NetworkConfig, Ring
from gateway.network.diagnosis import (RingDiagnosis, SwitchView, diagnose_ring, link_open, miswired_ends,
                                       ring_links, view_of)

CONFIG = typer.Option(..., "--config", "-c", help="site YAML file")


def register(app: typer.Typer) -> None:
    """Add ``ring`` and ``reach`` to the ``net`` command group."""
    app.command("ring")(ring_command)
    app.command("reach")(reach_command)


def ring_command(config: Path = CONFIG,
                 ring: str = typer.Option(None, help="only this ring id"),
                 timeout: float = typer.Option(None, help="seconds to wait for each switch (default: its poll "
                                                          "interval and timeouts)")) -> None:
    """Read the ring switches once and show each ring: its links, what is open, cut off, degraded, miswired."""
    import asyncio

    from gateway.network.live import read_once

    site = load(config)
    rings = [r for r in site.network.rings if ring in (None, r.id)]
    if not rings:
        fail(f"{config}: no ring {ring!r}" if ring else f"{config}: no network.rings")
    by_id = {d.id: d for d in site.devices}
    switches = list(dict.fromkeys(s.device for r in rings for s in r.switches))
    answers = asyncio.run(read_once([by_id[s] for s in switches], timeout))
    views = {s: view_of(a.reading, a.answered) for s, a in answers.items()}
    attachments = {d.id: (d.network.switch, d.network.port) for d in site.devices if d.network}
    states = []
    for r in rings:
        diagnosis = diagnose_ring(r, views, site.network.gateway_switch, attachments)
        states.append(diagnosis.state)
        for line in ring_picture(r, views, diagnosis, {s: a.state.reason for s, a in answers.items()}):
            out.print(line, highlight=False)
    if any(state != "closed" for state in states):
        raise typer.Exit(1)  # scripts can tell a healthy ring


def reach_command(config: Path = CONFIG,
                  timeout: float = typer.Option(2.0, help="seconds per TCP connect")) -> None:
    """Which of the site's devices answer from here, and how fast (TCP connect; SNMP: one poll)."""
    import asyncio

    site = load(config)
    devices = [d for d in site.devices if d.enabled]
    rows = asyncio.run(reach_rows(devices, timeout))
    for line in reach_table(rows):
        out.print(line, highlight=False)
    if any(not ok for _, _, ok, _, _ in rows):
        raise typer.Exit(1)


async def reach_rows(devices, timeout: float) -> list[tuple[str, str, bool, float | None, str]]:
    """(device, endpoint, answered, ms, why not) per device: TCP ones connected to, SNMP ones polled once."""
    from gateway.network.live import read_once
    from gateway.network.reach import reach_all, service_endpoint

    tcp = await reach_all(devices, timeout)
    udp = [d for d in devices if d.id not in tcp]
    polled = await read_once(udp) if udp else {}
    rows = []
    for d in devices:
        if d.id in tcp:
            host, port = service_endpoint(d)
            r = tcp[d.id]
            rows.append((d.id, f"tcp {host}:{port}", r.reachable, r.ms, r.error))
        else:
            a = polled[d.id]
            ms = a.reading.poll_ms if a.reading is not None else None
            rows.append((d.id, f"{d.adapter} {getattr(d, 'host', '?')}:{getattr(d, 'port', '?')}", a.answered, ms,
                         "" if a.answered else a.state.reason))
    return rows


def reach_table(rows) -> list[str]:
    width = max((len(r[0]) for r in rows), default=6)
    lines = []
    for device, endpoint, ok, ms, why in rows:
        verdict = f"[green]answers[/] {ms:7.1f} ms" if ok else f"[red]no answer[/] ({escape(why)})"
        lines.append(f"{escape(device):<{width}}  {escape(endpoint):<28} {verdict}")
    answered = sum(1 for r in rows if r[2])
    lines.append(f"{answered} of {len(rows)} devices answer")
    return lines


STATE_STYLE = {"closed": "green", "open": "yellow", "segmented": "bold red", "unknown": "red"}


def ring_picture(ring: Ring, views: dict[str, SwitchView], d: RingDiagnosis,
                 reasons: dict[str, str] | None = None) -> list[str]:
    """The ring as lines of rich markup: one per link, then what the diagnosis found."""
    reasons = reasons or {}
    style = STATE_STYLE[d.state]
    where = f" at {', '.join(map(str, d.open_links))}" if d.state == "open" and d.open_links else ""
    lines = [f"[bold]ring {escape(ring.id)}[/]{' (' + escape(ring.name) + ')' if ring.name else ''}: "
             f"[{style}]{d.state.upper()}[/]{escape(where)}"]
    for link in ring_links(ring):
        a, b = views.get(link.a, SwitchView()), views.get(link.b, SwitchView())
        mark = "[red]─╳─[/]" if link_open(link, views) else "━━━"
        lines.append(f"  {escape(link.a):>10} p{link.a_port} {_port(a, link.a_port)} {mark} "
                     f"{_port(b, link.b_port)} p{link.b_port} {escape(link.b)}")
    for sw in (s.device for s in ring.switches):
        if not views.get(sw, SwitchView()).answering:
            lines.append(f"  [red]{escape(sw)} does not answer[/]: {escape(reasons.get(sw, 'no reading'))}")
    if d.islands:
        lines.append("  islands: " + " | ".join(" ".join(i) for i in d.islands))
    for label, items in (("cut off", d.cut_off_switches), ("devices cut off", d.cut_off_devices),
                         ("unreachable (reachable on paper)", d.unreachable_switches),
                         ("restarted", d.restarted_switches)):
        if items:
            lines.append(f"  [red]{label}:[/] {escape(', '.join(items))}")
    for x in d.degraded_links:
        lines.append(f"  [yellow]errors:[/] {escape(x['a'])} port {x['a_port']}: {x['errors_ps']:g}/s")
    for x in d.devices_link_down:
        lines.append(f"  [yellow]device link down:[/] {escape(x['device'])} at {escape(x['switch'])} port {x['port']}")
    lines += ["  [red]miswired:[/] " + escape(miswired_text(x)) for x in d.miswired]
    return lines


def _port(view: SwitchView, port: int) -> str:
    if not view.answering:
        return "[dim]?[/]"
    up = view.oper_up.get(port)
    return "[green]up[/]" if up else "[red]down[/]" if up is False else "[dim]?[/]"


def miswired_text(end: dict) -> str:
    return (f"{end['switch']} port {end['port']} sees {end['found'] or '?'} port {end['found_port'] or '?'}, "
            f"on paper {end['expected']} port {end['expected_port']}")


# -- config check ------------------------------------------------------------------------

def paper_check(network: NetworkConfig) -> list[str]:
    """What ``config check`` says of each ring on paper (rich markup lines)."""
    lines = []
    for ring in network.rings:
        links = ring_links(ring)
        lines.append(f"ring {escape(ring.id)}: closed on paper (by construction: the last switch's second port "
                     f"joins the first's first), {len(ring.switches)} switches, {len(links)} links: "
                     + escape(", ".join(map(str, links))))
        if len(ring.switches) < 3:
            lines.append(f"[yellow]warning:[/] ring {escape(ring.id)} has {len(ring.switches)} switches: a ring of "
                         "two is two cables between the same pair; MRP needs 3 or more to be worth it")
    return lines


async def live_cabling(site, timeout: float | None = None) -> list[str]:
    """Each ring link's two ends: LLDP neighbour as read from the switches against the cabling on paper."""
    from gateway.network.live import read_once

    by_id = {d.id: d for d in site.devices}
    switches = list(dict.fromkeys(s.device for r in site.network.rings for s in r.switches))
    answers = await read_once([by_id[s] for s in switches], timeout)
    views = {s: view_of(a.reading, a.answered) for s, a in answers.items()}
    problems = [f"{s}: does not answer ({answers[s].state.reason}): its ends not checked"
                for s in switches if not answers[s].answered]
    for ring in site.network.rings:
        for link in ring_links(ring):
            wrong = miswired_ends(link, views)
            if wrong:
                problems.append(f"ring {ring.id}, link {link}: miswired: " + "; ".join(map(miswired_text, wrong)))
    return problems
