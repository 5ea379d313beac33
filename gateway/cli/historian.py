"""``minegw historian`` and ``minegw buffer``: the historian (InfluxDB, or the surface broker) and the durable buffer in front of it."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

import typer

from gateway.cli.common import fail, load, out

historian_app = typer.Typer(no_args_is_help=True, help="The historian: InfluxDB, or the surface broker (api mqtt).")
buffer_app = typer.Typer(no_args_is_help=True, help="The durable buffer in front of the historian.")


@historian_app.command("check")
def historian_check(url: Optional[str] = typer.Argument(None, help="e.g. https://10.1.0.6:8086; none: the site file's"),
                    config: Optional[Path] = typer.Option(
                        None, "--config", "-c", help="site file: its historian: section (needed for api mqtt: "
                                                     "the historian topic)"),
                    api: str = typer.Option("v1", help="v1 (InfluxDB 1.x), v2 (2.x, 3.x, 1.8+) or mqtt"),
                    database: str = typer.Option("minegw", help="v1 database"),
                    username: Optional[str] = typer.Option(None), password: Optional[str] = typer.Option(
                        None, envvar="MINEGW_HISTORIAN_PASSWORD", help="or $MINEGW_HISTORIAN_PASSWORD"),
                    token: Optional[str] = typer.Option(None, envvar="MINEGW_HISTORIAN_TOKEN",
                                                        help="v2 token, or $MINEGW_HISTORIAN_TOKEN"),
                    org: Optional[str] = typer.Option(None), bucket: Optional[str] = typer.Option(None),
                    timeout: float = typer.Option(5.0)) -> None:
    """Ping the historian, check credentials, write a probe point (api mqtt: connect, and a probe
    message on the gateway's historian topic acknowledged by the broker)."""
    from pydantic import ValidationError

    from gateway.config import HistorianConfig
    from gateway.historian.influx import check_historian

    site = load(config) if config else None
    if site is not None and url is None:
        if site.historian is None:
            fail(f"{config}: no historian: section")
        cfg = site.historian.model_copy(update={"timeout": timeout})
    elif url is None:
        fail("name the historian: URL, or --config SITE.yaml")
    else:
        try:
            cfg = HistorianConfig(url=url, api=api, database=database, username=username, password=password,
                                  token=token, org=org, bucket=bucket, timeout=timeout)
        except ValidationError as exc:
            fail("; ".join(f"--{'.'.join(map(str, e['loc'])) or 'api'}: {e['msg']}" for e in exc.errors()))
    if cfg.api == "mqtt" and site is None:
        fail("api mqtt: give the gateway's site file with --config (the historian topic is its gateway's)")
    results = asyncio.run(check_historian(cfg, site))
    for r in results:
        out.print(f"[{'green' if r.ok else 'red'}]{r}[/]", highlight=False)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def _buffer_path(config: Optional[Path], path: Optional[Path]) -> Path:
    if path:
        return path
    if config:
        site = load(config)
        if site.historian is None:
            fail(f"{config}: no historian: section, so no buffer")
        return site.historian.buffer.path
    fail("name the buffer: --config SITE.yaml or --path FILE")


_CONFIG_OPT = typer.Option(None, "--config", "-c", help="site file (its historian.buffer.path)")
_PATH_OPT = typer.Option(None, "--path", help="buffer file")


def _on_buffer(fn, *args):
    import sqlite3

    try:
        return fn(*args)
    except (FileNotFoundError, sqlite3.Error) as exc:
        fail(str(exc))


@buffer_app.command("status")
def buffer_status(config: Optional[Path] = _CONFIG_OPT, path: Optional[Path] = _PATH_OPT) -> None:
    """Depth, oldest sample's age, in/out rates, drops and dead letters."""
    from gateway.historian.sink import buffer_status as status

    where = _buffer_path(config, path)
    s = _on_buffer(status, where)
    age = "-" if s["oldest_age_s"] is None else f"{s['oldest_age_s']:.1f} s"
    out.print(f"buffer {where}\n  depth {s['depth']} lines, {s['bytes'] / 1e6:.1f} MB, oldest {age}\n"
              f"  in {s['in_per_s']:.1f}/s, out {s['out_per_s']:.1f}/s\n"
              f"  dropped (disk budget) {s['dropped']}, dead letters {s['dead_letters']}", highlight=False)


@buffer_app.command("dead")
def buffer_dead(config: Optional[Path] = _CONFIG_OPT, path: Optional[Path] = _PATH_OPT,
                limit: int = typer.Option(20, help="show at most N")) -> None:
    """List dead letters: lines InfluxDB refused, with its message."""
    from gateway.historian.sink import list_dead

    dead = _on_buffer(list_dead, _buffer_path(config, path), limit)
    for d in dead:
        out.print(f"[bold]{d['id']}[/] {d['error']}\n    {d['line'][:200]}", highlight=False)
    out.print(f"{len(dead)} shown")


@buffer_app.command("replay")
def buffer_replay(ids: list[int] = typer.Argument(None, help="dead-letter ids; none: all"),
                  config: Optional[Path] = _CONFIG_OPT, path: Optional[Path] = _PATH_OPT) -> None:
    """Put dead letters back into the queue (after fixing the cause)."""
    from gateway.historian.sink import replay_dead

    out.print(f"replayed {_on_buffer(replay_dead, _buffer_path(config, path), ids or None)} dead letter(s)")


@buffer_app.command("purge")
def buffer_purge(ids: list[int] = typer.Argument(None, help="dead-letter ids; none: all"),
                 config: Optional[Path] = _CONFIG_OPT, path: Optional[Path] = _PATH_OPT) -> None:
    """Delete dead letters for good."""
    from gateway.historian.sink import purge_dead

    out.print(f"purged {_on_buffer(purge_dead, _buffer_path(config, path), ids or None)} dead letter(s)")


