"""``minegw console``: the live view of a site, over its broker (docs/console.md)."""
from __future__ import annotations

from pathlib import Path

import typer

from gateway.cli.common import fail, load

commands = typer.Typer()


_CONFIG = typer.Option(..., "--config", "-c", help="site YAML file (broker, areas, devices)")
_KEY = typer.Option(None, "--key", envvar="MINEGW_KEY", help="the operator's private key file: signs acknowledgements")
_KEY_ID = typer.Option(None, "--key-id", help="operator name (default: the key file's name)")
_REFRESH = typer.Option(1.0, min=0.1, max=10, help="seconds between redraws")


@commands.command("console")
def console(config: Path = _CONFIG, key: Path | None = _KEY, key_id: str | None = _KEY_ID,
            refresh: float = _REFRESH) -> None:
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
