"""``minegw config``, ``run``, ``sim``, ``sim-fault``, ``demo``, ``ingest``: site files and the long-running services."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gateway.cli.common import fail, host_port, load, number, out, print_problems, run, setup_logging
from gateway.config import ConfigError

commands = typer.Typer()
config_app = typer.Typer(no_args_is_help=True, help="Site configuration files.")


# -- config ----------------------------------------------------------------------------
@config_app.command("check")
def config_check(file: Path = typer.Argument(..., help="site YAML file"),
                 live: bool = typer.Option(False, "--live", help="also read the ring switches: LLDP neighbours "
                                           "against the cabling on paper")) -> None:
    """Validate a site file; print every problem with its location."""
    from gateway.cli.net_ring import live_cabling, paper_check

    site = load(file)
    out.print(f"[green]ok[/] {file}: site {site.site.id}, {len(site.areas)} areas, "
              f"{len(site.devices)} devices", highlight=False)
    for line in paper_check(site.network):
        out.print(line, highlight=False)
    if live and site.network.rings:
        import asyncio

        from rich.markup import escape
        problems = asyncio.run(live_cabling(site))
        for p in problems:
            out.print(f"[red]live:[/] {escape(p)}", highlight=False)
        if problems:
            raise typer.Exit(1)
        out.print("[green]live:[/] every ring port sees the neighbour on paper", highlight=False)


# -- run / sim / demo ------------------------------------------------------------------
@commands.command("run")
def run_gateway_command(config: Path = typer.Argument(..., help="site YAML file"),
        verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run the gateway for a site: poll every device, publish to MQTT."""
    from gateway.service import run_gateway

    site = load(config)
    if site.mqtt is None:
        fail(f"{config}: no mqtt: section (only `minegw demo` embeds a broker)")
    setup_logging(verbose)
    run(run_gateway(site))


@commands.command()
def sim(config: Path = typer.Argument(..., help="site YAML file"),
        scenario: Optional[Path] = typer.Option(None, help="fault scenario YAML"),
        seed: int = typer.Option(1, help="random seed: same seed, same behaviour"),
        control: str = typer.Option("127.0.0.1:15099", help="host:port of the fault-injection endpoint"),
        procs: int = typer.Option(1, min=1, max=64, help="processes to spread the Modbus devices over "
                                  "(OPC UA, ONVIF and the fault endpoint stay in the first; sim-fault reaches all)"),
        rtsp_port: int = typer.Option(8554, min=0, max=65535, help="where the cameras stream (RTSP; 0: any free port)"),
        verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Start a simulator for every device the site file names."""
    from gateway.service import run_simulators

    site = load(config)
    setup_logging(verbose)
    run(run_simulators(site, scenario=scenario, seed=seed, control=host_port(control), procs=procs,
                       rtsp_port=rtsp_port))


@commands.command("sim-fault")
def sim_fault(device: str = typer.Argument(..., help="device id in the site file"),
              fault: Optional[str] = typer.Argument(None, help="fault name (omit with --clear)"),
              param: list[str] = typer.Option([], "--param", "-p", help="fault parameter NAME=VALUE"),
              clear: bool = typer.Option(False, help="clear this fault (or all faults without a name)"),
              control: str = typer.Option("127.0.0.1:15099", help="host:port of the running `minegw sim`")) -> None:
    """Inject or clear a fault in a running `minegw sim`."""
    from gateway.service import inject_fault

    if not fault and not clear:
        fail("name a fault, or pass --clear")
    params = {}
    for p in param:
        name, sep, value = p.partition("=")
        if not sep:
            fail(f"--param {p!r}: expected NAME=VALUE")
        params[name] = number(value)
    run(inject_fault(host_port(control), device, fault, params, clear))


@commands.command()
def demo(seconds: Optional[float] = typer.Option(None, "--seconds", "--duration", help="stop after this many seconds"),
         headless: bool = typer.Option(False, help="no screen: print the story as it goes and a summary at the end"),
         story_at: Optional[float] = typer.Option(30.0, help="start the story this many seconds in"),
         no_story: bool = typer.Option(False, "--no-story", help="no story unless a key starts it"),
         influx: Optional[str] = typer.Option(None, help="InfluxDB URL for the historian; default: it only buffers"),
         broker: Optional[str] = typer.Option(None, help="host:port of an MQTT broker; default: embedded"),
         embedded: str = typer.Option("auto", help="embedded broker: auto (mosquitto if found), mosquitto, amqtt"),
         state_dir: Optional[Path] = typer.Option(None, help="keep the buffers, keys and logs here; "
                                                  "default: a temporary directory, removed at the end"),
         summary_json: Optional[Path] = typer.Option(None, help="also write the summary here, as JSON"),
         seed: int = typer.Option(1),
         video: bool = typer.Option(False, "--video", help="the cameras stream H.264 over RTSP (GStreamer; "
                                    "costs CPU: off unless asked)")) -> None:
    """A whole demo mine on this machine: simulators, gateway, MQTT broker, the console, and a story."""
    from gateway.demo import DemoOptions, run_demo

    if embedded not in ("auto", "mosquitto", "amqtt"):
        fail(f"--embedded {embedded!r}: expected auto, mosquitto or amqtt")
    opts = DemoOptions(seconds=seconds, headless=headless, story_at=None if no_story else story_at, influx=influx,
                       broker=host_port(broker) if broker else None, embedded=embedded, seed=seed,
                       state_dir=state_dir, summary_json=summary_json, video=video)
    summary = []
    run(_collect(run_demo(opts), summary))
    if summary and headless:
        out.print("\n".join(summary[0].lines()), highlight=False, markup=False)


async def _collect(coro, into: list) -> None:
    into.append(await coro)


@commands.command()
def ingest(config: Path = typer.Argument(..., help="ingest YAML file (ingest:, mqtt:, historian:)"),
           verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Historian ingest worker: MQTT shared subscription → durable buffer → InfluxDB."""
    from gateway.surface.ingest import load_ingest, run_ingest

    try:
        cfg = load_ingest(config)
    except ConfigError as exc:
        print_problems(exc)
    setup_logging(verbose)
    run(run_ingest(cfg))


