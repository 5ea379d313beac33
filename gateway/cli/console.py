"""``minegw console``: the live view of a site, over its broker (docs/console.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gateway.cli.common import fail, load

commands = typer.Typer()


@commands.command("console")
def console(config: Path = typer.Option(..., "--config", "-c", help="site YAML file (broker, areas, devices)"),
            key: Optional[Path] = typer.Option(None, "--key", envvar="MINEGW_KEY",
                                               help="the operator's private key file: signs acknowledgements"),
            key_id: Optional[str] = typer.Option(None, "--key-id", help="operator name (default: the key file's name)"),
            refresh: float = typer.Option(1.0, min=0.1, max=10, help="seconds between redraws")) -> None:
    """Full-screen live view of a site: areas, machines, the face, belts, cameras, broadcast, alarms, health."""
    from gateway.console.app import ConsoleApp
    from gateway.operator import CommandRefused, Operator

    site = load(config)
    if site.mqtt is None:
        fail(f"{config}: no mqtt: section (the console reads the site's broker)")
    try:
        operator = Operator(key, key_id) if key is not None else None
    except CommandRefused as exc:
        fail(str(exc))
    ConsoleApp(site, operator=operator, refresh=refresh).run()
