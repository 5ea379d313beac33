"""``minegw video relay status -c SITE``: what the running gateway's video relay pulls and serves.

Asks the relay's ``/status`` (HTTP, ``video.relay.http_port``) at ``--host`` (default: the site's
``video.relay.public_host``, else this machine). ``register(app)`` adds the ``relay`` group to the
``video`` group of gateway/cli/video.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import typer
from rich.table import Table

from gateway.cli.common import fail, load, out

relay_app = typer.Typer(no_args_is_help=True, help="the underground video relay (docs/video.md)")


def register(app: typer.Typer) -> None:
    app.add_typer(relay_app, name="relay")


@relay_app.command("status")
def relay_status(config: Path = typer.Option(..., "-c", "--config", help="the site file"),
                 host: str | None = typer.Option(None, help="the gateway (default: video.relay.public_host)"),
                 as_json: bool = typer.Option(False, "--json", help="the relay's answer as JSON")) -> None:
    """Each camera's streams: pulling, connected, sessions at the camera, reconnects, viewers; the URLs."""
    site = load(config)
    if site.video is None or not site.video.cameras:
        fail(f"{config}: no video: section with cameras")
    relay = site.video.relay
    host = host or relay.public_host or ("127.0.0.1" if relay.bind in ("0.0.0.0", "::") else relay.bind)
    url = f"http://{host}:{relay.http_port}/status"
    try:
        status = httpx.get(url, timeout=5).raise_for_status().json()
    except httpx.HTTPError as exc:
        fail(f"no video relay answers at {url}: {exc} (is `minegw run -c {config}` running?)")
    if as_json:
        out.print_json(json.dumps(status))
        return
    out.print(table(status))


def table(status: dict) -> Table:
    budget = status.get("budget_kbps")
    caption = f"uplink budget {budget:g} kbit/s{' (OVER)' if status.get('over_budget') else ''}" if budget else \
        "no uplink budget"
    grid = Table("camera", "stream", "pulling", "connected", "sessions", "reconnects", "viewers", "MB in",
                 "last error", "RTSP / HLS", caption=caption)
    for camera, cam in status["cameras"].items():
        for name, s in cam["streams"].items():
            grid.add_row(camera, name, _yes(s["pulling"]), _yes(s["connected"]), str(s["sessions"]),
                         str(s["reconnects"]), str(s["viewers"]), f"{s['bytes'] / 1e6:.1f}", s["last_error"] or "",
                         cam[f"rtsp_{name}"] + (f"\n{cam['hls']}" if name == "sub" else ""))
    return grid


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
