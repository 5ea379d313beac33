"""``minegw demo``: the demo mine's simulators, the gateway and an MQTT broker on this machine, the console
on top, and the story (gateway/demo/story.py).

Needs nothing installed but minegw: a Mosquitto of this machine when there is one (MQTT 5), amqtt
in-process otherwise. Without ``--influx`` the historian buffers to a file in the demo's directory.
``--headless`` runs without a screen and prints a summary of what a subscriber of the broker saw.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import signing
from gateway.config import MqttConfig, SiteConfig
from gateway.core.errors import UserError
from gateway.demo.broker import Broker, start_broker
from gateway.demo.site import OPERATOR, demo_site
from gateway.demo.story import Action, Story
from gateway.demo.watch import DemoWatch, Summary
from gateway.historian.errors import RetryableError
from gateway.historian.sink import HistorianSink
from gateway.mqtt import MqttSink
from gateway.operator import Operator
from gateway.runtime import Gateway

if TYPE_CHECKING:
    from simulators.site import SiteSimulator

log = logging.getLogger(__name__)
PORT_TRIES = 3


@dataclass
class DemoOptions:
    seconds: float | None = None  # stop after; None: until Ctrl-C (or the console quits)
    headless: bool = False
    story_at: float | None = 30.0  # s after the start; None: only by key
    influx: str | None = None  # InfluxDB URL; None: the historian only buffers
    broker: tuple[str, int] | None = None  # an external broker; None: embedded
    embedded: str = "auto"  # auto, mosquitto, amqtt
    seed: int = 1
    state_dir: Path | None = None  # kept; None: a temporary directory, removed at the end
    summary_json: Path | None = None
    face_time_scale: float = 5.0  # the OPC UA face runs this much faster than life
    video: bool = False  # the cameras stream over RTSP (encoders cost CPU: counted apart, off unless asked)


class BufferOnly:
    """The historian writer of a demo without InfluxDB: nothing is written, the lines stay in the buffer file."""

    MESSAGE = "no InfluxDB in this demo (minegw demo --influx URL writes there)"

    async def write(self, lines: list[str]) -> None:
        raise RetryableError(self.MESSAGE, retry_after=3600.0)  # no probing either: there is nothing to find

    async def ping(self) -> str:
        raise RetryableError(self.MESSAGE)

    async def close(self) -> None:
        pass


def host_port(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def historian_note(sink: HistorianSink, influx: str | None) -> str:
    path = sink.cfg.buffer.path
    if influx is None:
        return f"no InfluxDB: {sink.buffered} lines buffered in {path} (--influx URL writes them to InfluxDB)"
    return f"{sink.written} lines written to {influx}, {sink.buffered} buffered in {path}"


def make_operator_key(state_dir: Path) -> tuple[Path, str]:
    """A fresh demo operator key: its file (for the console's acknowledgements) and its public text."""
    key = signing.new_private_key()
    path = state_dir / f"{OPERATOR}.key"
    path.write_bytes(signing.private_pem(key))
    os.chmod(path, 0o600)
    return path, signing.public_text(key)


async def run_demo(opts: DemoOptions) -> Summary:
    async with AsyncExitStack() as stack:
        state_dir = opts.state_dir or Path(tempfile.mkdtemp(prefix="minegw-demo-"))
        state_dir.mkdir(parents=True, exist_ok=True)
        if opts.state_dir is None:
            stack.callback(shutil.rmtree, state_dir, ignore_errors=True)
        log_to_file(stack, state_dir / "demo.log")
        if opts.broker:
            broker = Broker("external", MqttConfig(host=opts.broker[0], port=opts.broker[1]))
        else:
            broker = await start_broker(stack, state_dir, opts.embedded)
        key_file, public = make_operator_key(state_dir)
        site, sims = await start_simulators(opts, state_dir, partial(demo_site, broker.mqtt, state_dir, public,
                                                                      opts.influx))
        stack.push_async_callback(sims.stop)
        historian = HistorianSink(site.historian, site, writer=None if opts.influx else BufferOnly())
        await stack.enter_async_context(Gateway(site, [MqttSink(site.mqtt, site), historian]))
        watch = DemoWatch(site.mqtt, site, broker.describe())
        stack.callback(watch.close)
        operator = Operator(key_file, OPERATOR)
        story = Story(sims.control_address, watch, site, operator, auto_ack=opts.headless)
        stack.push_async_callback(story.stop)
        if opts.story_at is not None:
            starting = asyncio.create_task(story.start_at(opts.story_at), name="demo-story-start")
            stack.callback(starting.cancel)
        intro = [f"MQTT broker: {broker.describe()}; watch it: {broker.tail_hint()}",
                 f"faults by hand: minegw sim-fault --control {host_port(sims.control_address)} belt-main-1 slip",
                 f"historian: {historian_note(historian, opts.influx)}",
                 f"demo operator key: {key_file}; logs: {state_dir / 'demo.log'}"]
        if opts.headless:
            await run_headless(opts, intro, story)
        else:
            await show(site, operator, story, intro, opts.seconds, [historian_note(historian, opts.influx)])
        summary = watch.summary(historian_note(historian, opts.influx), story.log)
    if opts.summary_json:
        opts.summary_json.write_text(json.dumps(summary.as_dict(), indent=1))
    return summary


async def start_simulators(opts: DemoOptions, state_dir: Path,
                           site_on_free_ports: Callable[[], SiteConfig]) -> tuple[SiteConfig, SiteSimulator]:
    """The demo site and its simulators, serving. A port found free can be taken by another program before
    its simulator binds it: the demo then takes another set of free ports, up to PORT_TRIES times."""
    from simulators.site import SiteSimulator

    for attempt in range(1, PORT_TRIES + 1):
        site = site_on_free_ports()
        sims = SiteSimulator(site, seed=opts.seed, control_port=0, onvif_discovery_port=None,
                             opcua_time_scale=opts.face_time_scale, opcua_certificate_dir=state_dir / "opcua-pki",
                             rtsp_port=0 if opts.video else None)
        try:
            await sims.start()
            return site, sims
        except OSError as exc:
            if attempt == PORT_TRIES:
                raise UserError(f"the demo's simulators cannot start ({PORT_TRIES} sets of ports tried): "
                                f"{exc}") from None
            log.warning("%s: taking other free ports", exc)


def log_to_file(stack: AsyncExitStack, path: Path) -> None:
    """Everything logged goes to the demo's log file, never over the screen."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old = root.level, root.handlers[:]
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("amqtt", "transitions", "httpx", "asyncua", "pysnmp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stack.callback(_restore_logging, root, old, handler)


def _restore_logging(root: logging.Logger, old, handler: logging.Handler) -> None:
    root.setLevel(old[0])
    root.handlers[:] = old[1]
    handler.close()


async def run_headless(opts: DemoOptions, intro: list[str], story: Story) -> None:
    for line in intro:
        print(line, flush=True)
    story.on_note = lambda line: print(f"story {line}", flush=True)
    try:
        await asyncio.sleep(opts.seconds if opts.seconds else math.inf)
    except asyncio.CancelledError:  # Ctrl-C: the end of the demo, with its summary
        pass


async def show(site: SiteConfig, operator: Operator, story: Story, intro: list[str], seconds: float | None,
               notes: list[str]) -> None:
    """The console with the story's keys; without gateway/console, a plain live view of the summary."""
    try:
        import gateway.console.app  # noqa: F401 - only to know whether it is there
    except ImportError:
        await live_summary(story, intro, seconds)
        return
    await run_console(site, operator, story.actions(), seconds, notes)
    for line in intro:  # the screen is gone: what it could not say
        print(line)


async def run_console(site: SiteConfig, operator: Operator, actions: list[Action], seconds: float | None,
                      notes: list[str] = ()) -> None:
    """The glue to the console (gateway/console): the demo's site, its operator (acknowledgements are signed
    with the demo's key) and the story's keys."""
    from gateway.console.app import ConsoleApp

    app = ConsoleApp(site, operator=operator, actions=actions, notes=notes)
    if seconds:
        asyncio.get_running_loop().call_later(seconds, app.exit)
    await app.run_async()


async def live_summary(story: Story, intro: list[str], seconds: float | None) -> None:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    console = Console()
    story.auto_ack = True  # no console to acknowledge with: the story does it

    def frame() -> Group:
        summary = story.watch.summary(story=story.log[-8:])
        return Group(*(Text(line) for line in [*intro, "", *summary.lines()]))

    deadline = asyncio.get_running_loop().time() + seconds if seconds else math.inf
    with Live(frame(), console=console, refresh_per_second=1) as live:
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(1.0)
            live.update(frame())
