"""``minegw``: the field engineer's command line."""
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

from adapters.modbus.codec import DataType, Order
from adapters.modbus.profile import Table
from gateway.config import ConfigError, load_site
from gateway.core.errors import UserError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="minegw: underground mine gateway (Modbus, OPC UA, ONVIF, broadcast → MQTT, InfluxDB)")
config_app = typer.Typer(no_args_is_help=True, help="Site configuration files.")
modbus_app = typer.Typer(no_args_is_help=True, help="Probe Modbus TCP devices.")
mqtt_app = typer.Typer(no_args_is_help=True, help="Look at an MQTT broker.")
onvif_app = typer.Typer(no_args_is_help=True, help="Find and probe ONVIF cameras.")
historian_app = typer.Typer(no_args_is_help=True, help="The InfluxDB historian.")
app.add_typer(config_app, name="config")
buffer_app = typer.Typer(no_args_is_help=True, help="The durable buffer in front of the historian.")
app.add_typer(historian_app, name="historian")
app.add_typer(buffer_app, name="buffer")
opcua_app = typer.Typer(no_args_is_help=True, help="Browse and read OPC UA servers.")
app.add_typer(opcua_app, name="opcua")
app.add_typer(modbus_app, name="modbus")
app.add_typer(mqtt_app, name="mqtt")
app.add_typer(onvif_app, name="onvif")
alarm_app = typer.Typer(no_args_is_help=True, help="Device alarms: list and acknowledge (through the broker).")
app.add_typer(alarm_app, name="alarm")
broadcast_app = typer.Typer(no_args_is_help=True, help="Emergency broadcast: play, stop, status (through the broker).")
app.add_typer(broadcast_app, name="broadcast")
dashboards_app = typer.Typer(no_args_is_help=True, help="Grafana dashboards of the dispatch centre: build, push.")
app.add_typer(dashboards_app, name="dashboards")
keys_app = typer.Typer(no_args_is_help=True, help="Operators' signing keys for commands (docs/mqtt.md#commands).")
app.add_typer(keys_app, name="keys")

out = Console()
err = Console(stderr=True)


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(1)


LIBRARY_LOG_ENV = "MINEGW_PYMODBUS_LOG"  # e.g. DEBUG: every Modbus frame in hex, every timeout


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)
    asked = os.environ.get(LIBRARY_LOG_ENV, "WARNING")
    if asked.strip().upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail(f"{LIBRARY_LOG_ENV}={asked!r}: expected DEBUG, INFO, WARNING or ERROR")
    logging.getLogger("pymodbus").setLevel(asked.strip().upper())


def _load(path: Path):
    try:
        return load_site(path)
    except ConfigError as exc:
        _print_problems(exc)


def _print_problems(exc: ConfigError) -> None:
    err.print(f"[bold red]{escape(exc.path)}[/]: {len(exc.problems)} problem(s)", highlight=False, soft_wrap=True)
    for p in exc.problems:
        err.print(f"  {p}", highlight=False, markup=False, soft_wrap=True)  # one line each, whatever the width
    raise typer.Exit(1)


def _run(coro) -> None:
    try:
        asyncio.run(coro)
    except KeyboardInterrupt:
        pass
    except UserError as exc:
        fail(str(exc))


# -- config ----------------------------------------------------------------------------
@config_app.command("check")
def config_check(file: Path = typer.Argument(..., help="site YAML file")) -> None:
    """Validate a site file; print every problem with its location."""
    site = _load(file)
    out.print(f"[green]ok[/] {file}: site {site.site.id}, {len(site.areas)} areas, "
              f"{len(site.devices)} devices", highlight=False)


# -- run / sim / demo ------------------------------------------------------------------
@app.command()
def run(config: Path = typer.Argument(..., help="site YAML file"),
        verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run the gateway for a site: poll every device, publish to MQTT."""
    from gateway.service import run_gateway

    site = _load(config)
    if site.mqtt is None:
        fail(f"{config}: no mqtt: section (only `minegw demo` embeds a broker)")
    _setup_logging(verbose)
    _run(run_gateway(site))


@app.command()
def sim(config: Path = typer.Argument(..., help="site YAML file"),
        scenario: Optional[Path] = typer.Option(None, help="fault scenario YAML"),
        seed: int = typer.Option(1, help="random seed: same seed, same behaviour"),
        control: str = typer.Option("127.0.0.1:15099", help="host:port of the fault-injection endpoint"),
        verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Start a simulator for every device the site file names."""
    from gateway.service import run_simulators

    site = _load(config)
    _setup_logging(verbose)
    _run(run_simulators(site, scenario=scenario, seed=seed, control=_host_port(control)))


@app.command("sim-fault")
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
        params[name] = _number(value)
    _run(inject_fault(_host_port(control), device, fault, params, clear))


@app.command()
def demo(duration: Optional[float] = typer.Option(None, help="stop after this many seconds"),
         broker: Optional[str] = typer.Option(None, help="host:port of an MQTT broker; default: embedded"),
         seed: int = typer.Option(1)) -> None:
    """Simulators + gateway + MQTT broker on this machine, with a live view."""
    from gateway.demo import run_demo

    _run(run_demo(duration=duration, broker=_host_port(broker) if broker else None, seed=seed))


@app.command()
def ingest(config: Path = typer.Argument(..., help="ingest YAML file (ingest:, mqtt:, historian:)"),
           verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Historian ingest worker: MQTT shared subscription → durable buffer → InfluxDB."""
    from gateway.surface.ingest import load_ingest, run_ingest

    try:
        cfg = load_ingest(config)
    except ConfigError as exc:
        _print_problems(exc)
    _setup_logging(verbose)
    _run(run_ingest(cfg))


# -- probes ----------------------------------------------------------------------------
def _broker(config: Optional[Path], **options):
    """The broker settings and the site: the site file's ``mqtt:`` section (when given) with the options
    given on the command line (``--host``, ``--port``, ...; None when not given) on top."""
    from pydantic import ValidationError

    from gateway.config import MqttConfig

    site = _load(config) if config else None
    if site and site.mqtt is None:
        fail(f"{config}: no mqtt: section")
    given = {name: value for name, value in options.items() if value is not None}
    try:
        return MqttConfig.model_validate((site.mqtt.model_dump() if site else {}) | given), site
    except ValidationError as exc:
        fail("; ".join(f"--{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                       for e in exc.errors()))


_HOST_OPT = typer.Option(None, help="broker host [default: the site file's, else 127.0.0.1]")
_PORT_OPT = typer.Option(None, help="broker port [default: the site file's, else 1883]")


@modbus_app.command("read")
def modbus_read(host: str = typer.Argument(...),
                address: int = typer.Argument(..., min=0, max=65535),
                port: int = typer.Option(502, min=1, max=65535),
                unit: int = typer.Option(1, min=0, max=255, help="unit (slave) id"),
                table: Table = typer.Option(Table.HOLDING_REGISTER),
                count: int = typer.Option(1, min=1, max=125, help="values to read"),
                type: DataType = typer.Option(DataType.UINT16, "--type"),
                order: Order = typer.Option(Order.ABCD, help="word/byte order of 32/64-bit values"),
                length: int = typer.Option(0, help="characters, for --type string"),
                timeout: float = typer.Option(2.0)) -> None:
    """Read and decode values from a Modbus TCP device."""
    from gateway.probes import modbus_read as probe

    _run(probe(out, host, port, unit, table, address, count, type, order, length, timeout))


@mqtt_app.command("tail")
def mqtt_tail(topic: str = typer.Argument("minegw/#"),
              host: Optional[str] = _HOST_OPT, port: Optional[int] = _PORT_OPT,
              protocol: Optional[str] = typer.Option(
                  None, help="MQTT version, 5 or 3.1.1 (the demo's embedded broker) [default: the site file's, else 5]"),
              config: Optional[Path] = typer.Option(None, help="take broker settings from a site file"),
              count: Optional[int] = typer.Option(None, help="stop after N messages"),
              timeout: Optional[float] = typer.Option(None, help="stop after N seconds")) -> None:
    """Print messages from the broker as they arrive."""
    from gateway.probes import mqtt_tail as probe

    cfg, _ = _broker(config, host=host, port=port, protocol=protocol)
    try:
        probe(out, cfg, topic, count, timeout)
    except UserError as exc:
        fail(str(exc))


@onvif_app.command("discover")
def onvif_discover(addresses: list[str] = typer.Argument(None, help="HOST[:PORT] to probe by unicast too"),
                   timeout: float = typer.Option(3.0, help="seconds to wait for answers"),
                   multicast: bool = typer.Option(True, help="probe 239.255.255.250:3702 on every interface")) -> None:
    """Send a WS-Discovery probe (UDP 3702) and list the ONVIF devices that answer."""
    from adapters.onvif.tools import discover_command

    _run(discover_command(out, addresses or [], timeout, multicast))


@onvif_app.command("info")
def onvif_info(url: str = typer.Argument(..., help="http://HOST[:PORT] or HOST[:PORT]"),
               user: Optional[str] = typer.Option(None, "--user", "-u"),
               password: Optional[str] = typer.Option(None, envvar="MINEGW_ONVIF_PASSWORD",
                                                      help="or $MINEGW_ONVIF_PASSWORD"),
               timeout: float = typer.Option(5.0)) -> None:
    """Print what the gateway reads from one camera: device, services, profiles, stream URIs."""
    from adapters.onvif.tools import info_command

    _run(info_command(out, url, user, password, timeout))


@onvif_app.command("snapshot")
def onvif_snapshot(camera: str = typer.Argument(..., help="camera id in the site file"),
                   config: Path = typer.Option(..., "--config", "-c", help="site file"),
                   directory: Optional[Path] = typer.Option(None, "--dir", help="default: the site's snapshots.directory")
                   ) -> None:
    """Take a JPEG snapshot into the snapshot store; print its reference."""
    from adapters.onvif.tools import snapshot_command

    _run(snapshot_command(out, _load(config), camera, directory))


@historian_app.command("check")
def historian_check(url: str = typer.Argument(..., help="e.g. http://10.1.0.6:8086"),
                    api: str = typer.Option("v1", help="v1 (InfluxDB 1.x) or v2 (2.x, 3.x, 1.8+)"),
                    database: str = typer.Option("minegw", help="v1 database"),
                    username: Optional[str] = typer.Option(None), password: Optional[str] = typer.Option(
                        None, envvar="MINEGW_HISTORIAN_PASSWORD", help="or $MINEGW_HISTORIAN_PASSWORD"),
                    token: Optional[str] = typer.Option(None, envvar="MINEGW_HISTORIAN_TOKEN",
                                                        help="v2 token, or $MINEGW_HISTORIAN_TOKEN"),
                    org: Optional[str] = typer.Option(None), bucket: Optional[str] = typer.Option(None),
                    timeout: float = typer.Option(5.0)) -> None:
    """Ping the historian, check credentials, write a probe point."""
    from pydantic import ValidationError

    from gateway.config import HistorianConfig
    from gateway.historian.influx import check_historian

    try:
        cfg = HistorianConfig(url=url, api=api, database=database, username=username, password=password,
                              token=token, org=org, bucket=bucket, timeout=timeout)
    except ValidationError as exc:
        fail("; ".join(f"--{'.'.join(map(str, e['loc'])) or 'api'}: {e['msg']}" for e in exc.errors()))
    results = asyncio.run(check_historian(cfg))
    for r in results:
        out.print(f"[{'green' if r.ok else 'red'}]{r}[/]", highlight=False)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


_USER_OPT = typer.Option(None, "--user", help="username (default: anonymous)")
_PASSWORD_OPT = typer.Option(None, "--password", envvar="MINEGW_OPCUA_PASSWORD", help="or $MINEGW_OPCUA_PASSWORD")


async def _opcua(call, url: str, *args, user: Optional[str], password: Optional[str]):
    from adapters.opcua.client import Security

    try:
        return await call(url, *args, security=Security(username=user, password=password))
    except Exception as exc:  # asyncua raises many kinds; each is one line for a field engineer
        name = type(exc).__name__
        raise UserError(f"{url}: {name}: {exc}" if str(exc) else f"{url}: {name}") from None


@opcua_app.command("browse")
def opcua_browse(url: str = typer.Argument(..., help="opc.tcp://host:port"),
                 node: Optional[str] = typer.Argument(None, help="start node id (default: Objects)"),
                 depth: int = typer.Option(3, min=0, max=10), user: Optional[str] = _USER_OPT,
                 password: Optional[str] = _PASSWORD_OPT) -> None:
    """Print the address space tree with node ids, data types and current values."""
    from adapters.opcua.tools import browse

    async def go():
        rows = await _opcua(browse, url, node, depth, user=user, password=password)
        for r in rows:
            value = "" if r.node_class != "Variable" else f" = {r.value!r} [{r.data_type}, {r.status}]"
            out.print(f"{'  ' * r.depth}{r.browse_name}  [dim]{r.node_id}[/]{value}", highlight=False)
    _run(go())


@opcua_app.command("read")
def opcua_read(url: str = typer.Argument(..., help="opc.tcp://host:port"),
               node: str = typer.Argument(..., help="node id, e.g. ns=2;s=Longwall.Support001.FrontLegPressure"),
               user: Optional[str] = _USER_OPT, password: Optional[str] = _PASSWORD_OPT) -> None:
    """Read one node: value, status, source timestamp."""
    from adapters.opcua.tools import read

    async def go():
        value, status, ts = await _opcua(read, url, node, user=user, password=password)
        out.print(f"{node} = {value!r}  status {status}  source {ts.isoformat() if ts else '-'}", highlight=False)
    _run(go())


@opcua_app.command("cert")
def opcua_cert(directory: Path = typer.Argument(..., help="where to write the certificate and key"),
               name: str = typer.Option("minegw", help="common name; URI urn:minegw:gateway:NAME")) -> None:
    """Create this gateway's OPC UA client certificate and private key."""
    from adapters.opcua.tools import make_client_certificate

    cert, key = make_client_certificate(directory, name)
    out.print(f"certificate {cert}\nprivate key {key} (keep it private: mode 0600)\n"
              "set them as certificate: and private_key: of the device, and trust the certificate on the server")


def _buffer_path(config: Optional[Path], path: Optional[Path]) -> Path:
    if path:
        return path
    if config:
        site = _load(config)
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


# -- alarms ----------------------------------------------------------------------------
def _alarm_broker(config: Optional[Path], host: str, port: int, prefix: str, site: Optional[str]):
    from gateway.contract import Topics

    cfg, loaded = _broker(config, host=host, port=port)
    if loaded:
        return cfg, Topics(cfg.topic_prefix, site or loaded.site.id)
    return cfg, Topics(prefix, site or "+")


_A_CONFIG = typer.Option(None, "--config", "-c", help="site file (broker, prefix, site id)")
_A_HOST, _A_PORT = _HOST_OPT, _PORT_OPT
_A_PREFIX = typer.Option("minegw", help="topic prefix (without --config)")
_A_SITE = typer.Option(None, help="site id (default: the site file's; for list without it: every site)")


@alarm_app.command("list")
def alarm_list(config: Optional[Path] = _A_CONFIG, host: str = _A_HOST, port: int = _A_PORT,
               prefix: str = _A_PREFIX, site: Optional[str] = _A_SITE,
               wait: float = typer.Option(1.0, help="seconds to collect the retained alarms")) -> None:
    """List the alarms not normal (the broker's retained alarm topics)."""
    from pydantic import ValidationError

    from gateway.contract import AlarmMessage
    from gateway.mqtt import MqttError, tail

    cfg, topics = _alarm_broker(config, host, port, prefix, site)
    found: dict[str, AlarmMessage] = {}

    def keep(message) -> None:
        if message.topic.split("/")[-4] == "gateway" or not message.payload:
            return  # gateway alarms have their own model; empty: cleared
        try:
            found[message.topic] = AlarmMessage.model_validate_json(message.payload)
        except ValidationError:
            pass

    try:
        tail(cfg, topics.alarms(), None, wait, keep)
    except MqttError as exc:
        fail(str(exc))
    for a in sorted(found.values(), key=lambda a: (a.priority, a.raised_at or a.ts)):
        since = (a.raised_at or a.ts).isoformat(timespec="seconds")
        out.print(f"P{a.priority} {a.state:<13} {a.alarm:<20} {a.area}/{a.device} value={a.value!r} since {since}"
                  f"  {a.message}" + (f" (ack {a.acked_by})" if a.acked_by else ""), highlight=False, markup=False)
    out.print(f"{len(found)} alarm(s)")


_A_KEY = typer.Option(None, "--key", envvar="MINEGW_KEY",
                      help="the operator's private key file (minegw keys new); signs the command")
_A_BY = typer.Option(None, help="operator name (default: the key file's name); without --key: sent unsigned")


def _send_command(kind: str, key: Optional[Path], by: Optional[str], config: Optional[Path], host: str, port: int,
                  prefix: str, site: Optional[str], timeout: float, **fields):
    """Build, sign and send one command; the gateway's reply (one line and exit 1 when there is none)."""
    from gateway.config import CommandsConfig
    from gateway.mqtt import MqttError
    from gateway.operator import CommandRefused, Operator

    cfg, topics = _alarm_broker(config, host, port, prefix, site)
    if topics.site == "+":
        fail("name the site: --config SITE.yaml or --site ID")
    max_age = (_load(config).commands if config else CommandsConfig()).max_age
    try:
        reply = Operator(key, by).send(cfg, topics, kind, timeout, max_age, **fields)
    except (CommandRefused, MqttError) as exc:
        fail(str(exc))
    if reply is None:
        fail(f"no reply from the gateway within {timeout:g} s")
    return reply


@alarm_app.command("ack")
def alarm_ack(alarm: str = typer.Argument(..., help="alarm id"), key: Optional[Path] = _A_KEY,
              by: Optional[str] = _A_BY, reason: Optional[str] = typer.Option(None),
              config: Optional[Path] = _A_CONFIG, host: str = _A_HOST, port: int = _A_PORT,
              prefix: str = _A_PREFIX, site: Optional[str] = _A_SITE,
              timeout: float = typer.Option(10.0, help="seconds to wait for the gateway's reply")) -> None:
    """Acknowledge an alarm and wait for the gateway to confirm it."""
    reply = _send_command("ack", key, by, config, host, port, prefix, site, timeout, alarm=alarm, reason=reason)
    if not reply.ok:
        fail(f"refused: {reply.error}")
    out.print(f"ok: {alarm} acknowledged, now {reply.state} ({reply.request_id})", highlight=False, markup=False)


@app.command("write")
def write(device: str = typer.Argument(...), signal: str = typer.Argument(...),
          value: str = typer.Argument(..., help="true/false, a number, or text"),
          key: Optional[Path] = _A_KEY, by: Optional[str] = _A_BY, reason: Optional[str] = typer.Option(None),
          config: Optional[Path] = _A_CONFIG, host: str = _A_HOST, port: int = _A_PORT,
          prefix: str = _A_PREFIX, site: Optional[str] = _A_SITE,
          timeout: float = typer.Option(10.0, help="seconds to wait for the gateway's reply")) -> None:
    """Write a device signal through the gateway's command topic (signed, checked, rate-limited, audited)."""
    import json

    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    parsed = parsed if isinstance(parsed, (bool, int, float, str)) else value
    reply = _send_command("write", key, by, config, host, port, prefix, site, timeout,
                          device=device, signal=signal, value=parsed, reason=reason)
    if not reply.ok:
        fail(f"refused: {reply.error}")
    out.print(f"ok: {device}.{signal}={parsed!r} ({reply.request_id})", highlight=False, markup=False)


@keys_app.command("new")
def keys_new(name: str = typer.Argument(..., help="the operator's name: the key_id of the commands signed"),
             directory: Path = typer.Option(Path("."), "--dir", help="where to write NAME.key")) -> None:
    """Make an operator's Ed25519 key pair: NAME.key (PKCS#8 PEM, mode 0600) and the site-file line."""
    import os
    import re

    from gateway import signing

    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name):
        fail(f"{name!r}: an operator name has letters, digits and _.@- only, at most 64")
    path = directory / f"{name}.key"
    key = signing.new_private_key()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrites a key
    except FileExistsError:
        fail(f"{path} exists: keys are not overwritten")
    except OSError as exc:
        fail(f"{path}: {exc.strerror}")
    with os.fdopen(fd, "wb") as f:
        f.write(signing.private_pem(key))
    out.print(f"private key: {path} (keep it secret; sign with --key {path} or MINEGW_KEY={path})",
              highlight=False, markup=False)
    out.print("in the site file, under commands: operators:", highlight=False, markup=False)
    out.print(f'    {name}: "{signing.public_text(key)}"', highlight=False, markup=False)


_B_ZONE = typer.Option(..., "--zone", "-z", help="broadcast zone (repeat for more)")


def _broadcast_request(key, by, config, host, port, prefix, site, timeout, **fields) -> None:
    reply = _send_command("broadcast", key, by, config, host, port, prefix, site, timeout, **fields)
    for node, r in ((reply.result or {}).get("nodes") or {}).items():
        state = f"confirmed in {r.get('confirm_ms')} ms" if r.get("confirmed") else f"FAILED: {r.get('reason')}"
        out.print(f"  {node} (zone {r.get('zone')}): {state}", highlight=False, markup=False)
    if not reply.ok:
        fail(f"refused: {reply.error}" if reply.result is None else f"failed: {reply.error}")
    elapsed = (reply.result or {}).get("elapsed_ms")
    out.print(f"ok: {fields['action']} {', '.join(fields['zones'])}, all confirmed in {elapsed} ms "
              f"({reply.request_id})", highlight=False, markup=False)


@broadcast_app.command("play")
def broadcast_play(message: str = typer.Argument(..., help="message name or number"), zone: list[str] = _B_ZONE,
                   priority: str = typer.Option("routine", help="emergency|dispatcher|routine"),
                   key: Optional[Path] = _A_KEY, by: Optional[str] = _A_BY, reason: Optional[str] = None,
                   config: Optional[Path] = _A_CONFIG, host: str = _A_HOST, port: int = _A_PORT,
                   prefix: str = _A_PREFIX, site: Optional[str] = _A_SITE,
                   timeout: float = typer.Option(15.0, help="seconds to wait for the gateway's reply")) -> None:
    """Play a message in zones and wait for every node's confirmation."""
    if priority not in ("emergency", "dispatcher", "routine"):
        fail("--priority: emergency, dispatcher or routine")
    _broadcast_request(key, by, config, host, port, prefix, site, timeout, action="play", message=message,
                       zones=zone, priority=priority, reason=reason)


@broadcast_app.command("stop")
def broadcast_stop(zone: list[str] = _B_ZONE, key: Optional[Path] = _A_KEY, by: Optional[str] = _A_BY,
                   reason: Optional[str] = None,
                   config: Optional[Path] = _A_CONFIG, host: str = _A_HOST, port: int = _A_PORT,
                   prefix: str = _A_PREFIX, site: Optional[str] = _A_SITE,
                   timeout: float = typer.Option(15.0, help="seconds to wait for the gateway's reply")) -> None:
    """Stop the broadcast in zones and wait for every node to confirm it is quiet."""
    _broadcast_request(key, by, config, host, port, prefix, site, timeout, action="stop", zones=zone, reason=reason)


@broadcast_app.command("status")
def broadcast_status(config: Path = typer.Option(..., "--config", "-c", help="site file (broker, nodes)"),
                     timeout: float = typer.Option(2.0, help="seconds to collect retained messages")) -> None:
    """Each broadcast node's latest retained state and data: playing message, priority, faults."""
    import json

    from gateway.mqtt import MqttError, tail

    loaded = _load(config)
    if loaded.mqtt is None or loaded.broadcast is None:
        fail(f"{config}: needs mqtt: and broadcast: sections")
    from gateway.contract import Topics

    topics = Topics(loaded.mqtt.topic_prefix, loaded.site.id)
    devices = {d.id: d for d in loaded.devices}
    wanted = {}
    for z in loaded.broadcast.zones:
        for n in z.nodes:
            d = devices[n]
            wanted[topics.state(d.area, n)] = (n, z.id, "state")
            wanted[topics.data(d.area, n)] = (n, z.id, "data")
    seen: dict[str, dict] = {}

    def keep(message) -> None:
        if message.topic in wanted:
            node, zone, kind = wanted[message.topic]
            try:
                seen.setdefault(node, {"zone": zone})[kind] = json.loads(message.payload)
            except ValueError:
                pass

    try:
        tail(loaded.mqtt, f"{topics.prefix}/{topics.site}/#", None, timeout, keep)
    except MqttError as exc:
        fail(str(exc))
    for node, zone, _ in sorted({v for v in wanted.values() if v[2] == "state"}):
        got = seen.get(node, {})
        state = got.get("state", {})
        state = state.get("state", state.get("status", "?")) if isinstance(state, dict) else state
        data = got.get("data")
        samples = data.get("samples") if isinstance(data, dict) else None
        values = {k: (v or {}).get("value") for k, v in samples.items()} if isinstance(samples, dict) else {}
        if data is None:
            line = "no retained data"
        elif values.get("playing"):
            line = f"playing message {values.get('playing_message')} at priority {values.get('playing_priority')}"
        else:
            line = "idle"
        faults = [f for f in ("amplifier_fault", "line_fault", "on_battery") if values.get(f)]
        out.print(f"{node} (zone {zone}): {state}; {line}; faults: {', '.join(faults) or 'none'}",
                  highlight=False, markup=False)


# -- dashboards ------------------------------------------------------------------------
def _built_dashboards() -> dict[str, dict]:
    import dashboards

    try:
        return dashboards.build_all()
    except ModuleNotFoundError as exc:  # the SDK is an extra: the gateway underground does not need it
        fail(f"{exc}: install the dashboards extra: pip install 'minegw[dashboards]'")


@dashboards_app.command("build")
def dashboards_build(directory: Optional[Path] = typer.Option(None, "--dir", help="default: dashboards/json"),
                     check: bool = typer.Option(False, "--check", help="only compare; exit 1 if out of date")) -> None:
    """Write every dashboard's JSON (Grafana provisioning reads it), or check it is up to date."""
    import dashboards

    directory = directory or dashboards.JSON_DIR
    built = _built_dashboards()
    if check:
        problems = dashboards.differences(directory, built)
        for problem in problems:
            err.print(f"{directory}/{problem}", highlight=False, markup=False)
        if problems:
            fail("the dashboards' JSON is out of date: run minegw dashboards build")
        out.print(f"{directory}: up to date", highlight=False)
        return
    for path in dashboards.write(directory, built):
        out.print(f"wrote {path}", highlight=False)


@dashboards_app.command("push")
def dashboards_push(url: str = typer.Option(..., envvar="GRAFANA_URL", help="Grafana, e.g. http://grafana:3000"),
                    token: str = typer.Option(..., envvar="GRAFANA_TOKEN",
                                              help="service-account token, or $GRAFANA_TOKEN"),
                    folder: str = typer.Option("minegw", help="folder title (created when missing)"),
                    directory: Optional[Path] = typer.Option(None, "--dir", help="default: dashboards/json"),
                    timeout: float = typer.Option(10.0)) -> None:
    """Create or update the dashboards' JSON on a Grafana server (needs the grafana extra)."""
    import dashboards
    from dashboards.push import PushError, push_dashboards, read_dir

    try:
        results = push_dashboards(url, token, read_dir(directory or dashboards.JSON_DIR), folder=folder,
                                  timeout=timeout)
    except PushError as exc:
        fail(str(exc))
    for r in results:
        out.print(f"{r.status:8} {r.title} (uid {r.uid}, version {r.version}) {r.url}", highlight=False)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        fail(f"{text!r}: expected HOST:PORT")
    return host, int(port)


def _number(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
