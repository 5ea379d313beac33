"""What every command group of ``minegw`` shares: the consoles, failing with one line, loading a site file,
logging, running a coroutine, the broker options."""
from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from gateway.config import ConfigError, load_site
from gateway.core.errors import UserError

# Lines are never cut at the width: a path or a key must stay one string to copy and to grep.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    raise typer.Exit(1)


LIBRARY_LOG_ENV = "MINEGW_PYMODBUS_LOG"  # e.g. DEBUG: every Modbus frame in hex, every timeout


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)
    asked = os.environ.get(LIBRARY_LOG_ENV, "WARNING")
    if asked.strip().upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail(f"{LIBRARY_LOG_ENV}={asked!r}: expected DEBUG, INFO, WARNING or ERROR")
    logging.getLogger("pymodbus").setLevel(asked.strip().upper())


def load(path: Path):
    try:
        return load_site(path)
    except ConfigError as exc:
        print_problems(exc)


def print_problems(exc: ConfigError) -> None:
    err.print(f"[bold red]{escape(exc.path)}[/]: {len(exc.problems)} problem(s)", highlight=False)
    for p in exc.problems:
        err.print(f"  {p}", highlight=False, markup=False)
    raise typer.Exit(1)


def run(coro) -> None:
    try:
        asyncio.run(coro)
    except KeyboardInterrupt:
        pass
    except UserError as exc:
        fail(str(exc))


def broker(config: Optional[Path], **options):
    """The broker settings and the site: the site file's ``mqtt:`` section (when given) with the options
    given on the command line (``--host``, ``--port``, ...; None when not given) on top."""
    from pydantic import ValidationError

    from gateway.config import MqttConfig

    site = load(config) if config else None
    if site and site.mqtt is None:
        fail(f"{config}: no mqtt: section")
    given = {name: value for name, value in options.items() if value is not None}
    try:
        return MqttConfig.model_validate((site.mqtt.model_dump() if site else {}) | given), site
    except ValidationError as exc:
        fail("; ".join(f"--{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                       for e in exc.errors()))


HOST_OPT = typer.Option(None, help="broker host [default: the site file's, else 127.0.0.1]")
PORT_OPT = typer.Option(None, help="broker port [default: the site file's, else 1883]")


def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        fail(f"{text!r}: expected HOST:PORT")
    return host, int(port)


def number(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)
