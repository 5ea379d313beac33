"""``minegw alarm``, ``write``, ``keys``, ``broadcast``: signed commands through the broker, and operators' keys."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gateway.cli.common import HOST_OPT, PORT_OPT, broker, fail, load, out

commands = typer.Typer()
alarm_app = typer.Typer(no_args_is_help=True, help="Device alarms: list and acknowledge (through the broker).")
broadcast_app = typer.Typer(no_args_is_help=True, help="Emergency broadcast: play, stop, status (through the broker).")
keys_app = typer.Typer(no_args_is_help=True, help="Operators' signing keys for commands (docs/mqtt.md#commands).")


# -- alarms ----------------------------------------------------------------------------
def _alarm_broker(config: Optional[Path], host: str, port: int, prefix: str, site: Optional[str]):
    from gateway.contract import Topics

    cfg, loaded = broker(config, host=host, port=port)
    if loaded:
        return cfg, Topics(cfg.topic_prefix, site or loaded.site.id)
    return cfg, Topics(prefix, site or "+")


_A_CONFIG = typer.Option(None, "--config", "-c", help="site file (broker, prefix, site id)")
_A_HOST, _A_PORT = HOST_OPT, PORT_OPT
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


_A_GATEWAY = typer.Option(None, help="wait for this gateway's reply [default: the site file's gateway_id, "
                                       "else the first gateway's to answer]")


def _send_command(kind: str, key: Optional[Path], by: Optional[str], config: Optional[Path], host: str, port: int,
                  prefix: str, site: Optional[str], timeout: float, *, gateway: Optional[str], **fields):
    """Build, sign and send one command; the gateway's reply (one line and exit 1 when there is none)."""
    from gateway.config import CommandsConfig
    from gateway.mqtt import MqttError
    from gateway.operator import CommandRefused, Operator

    cfg, topics = _alarm_broker(config, host, port, prefix, site)
    if topics.site == "+":
        fail("name the site: --config SITE.yaml or --site ID")
    loaded = load(config) if config else None
    max_age = (loaded.commands if loaded else CommandsConfig()).max_age
    if gateway is not None and (not gateway or set(gateway) & set("/+#")):
        fail(f"--gateway {gateway!r}: a gateway id (no '/', '+' or '#')")
    gateway = gateway or (loaded.site.gateway_id if loaded else None)
    try:
        answer = Operator(key, by).ask(cfg, topics, kind, timeout, max_age, gateway=gateway, **fields)
    except (CommandRefused, MqttError) as exc:
        fail(str(exc))
    if answer is None:
        fail(f"no reply from {f'gateway {gateway}' if gateway else 'the gateway'} within {timeout:g} s")
    return answer


def _refused(answer, verb: str = "refused") -> None:
    fail(f"{verb}: {answer.reply.error} (gateway {answer.gateway})")


def _done(text: str, answer) -> None:
    """The answer in one line: what was done, the request id and which gateway answered (from its topic)."""
    out.print(f"ok: {text} ({answer.reply.request_id}, gateway {answer.gateway})", highlight=False, markup=False)


@alarm_app.command("ack")
def alarm_ack(alarm: str = typer.Argument(..., help="alarm id"), key: Optional[Path] = _A_KEY,
              by: Optional[str] = _A_BY, reason: Optional[str] = typer.Option(None),
              config: Optional[Path] = _A_CONFIG, host: str = _A_HOST, port: int = _A_PORT,
              prefix: str = _A_PREFIX, site: Optional[str] = _A_SITE, gateway: Optional[str] = _A_GATEWAY,
              timeout: float = typer.Option(10.0, help="seconds to wait for the gateway's reply")) -> None:
    """Acknowledge an alarm and wait for the gateway to confirm it."""
    answer = _send_command("ack", key, by, config, host, port, prefix, site, timeout, gateway=gateway, alarm=alarm,
                           reason=reason)
    if not answer.reply.ok:
        _refused(answer)
    _done(f"{alarm} acknowledged, now {answer.reply.state}", answer)


@commands.command("write")
def write(device: str = typer.Argument(...), signal: str = typer.Argument(...),
          value: str = typer.Argument(..., help="true/false, a number, or text"),
          key: Optional[Path] = _A_KEY, by: Optional[str] = _A_BY, reason: Optional[str] = typer.Option(None),
          config: Optional[Path] = _A_CONFIG, host: str = _A_HOST, port: int = _A_PORT,
          prefix: str = _A_PREFIX, site: Optional[str] = _A_SITE, gateway: Optional[str] = _A_GATEWAY,
          timeout: float = typer.Option(10.0, help="seconds to wait for the gateway's reply")) -> None:
    """Write a device signal through the gateway's command topic (signed, checked, rate-limited, audited)."""
    import json

    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    parsed = parsed if isinstance(parsed, (bool, int, float, str)) else value
    answer = _send_command("write", key, by, config, host, port, prefix, site, timeout, gateway=gateway,
                           device=device, signal=signal, value=parsed, reason=reason)
    if not answer.reply.ok:
        _refused(answer)
    _done(f"{device}.{signal}={parsed!r}", answer)


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


def _broadcast_request(key, by, config, host, port, prefix, site, timeout, gateway, **fields) -> None:
    answer = _send_command("broadcast", key, by, config, host, port, prefix, site, timeout, gateway=gateway, **fields)
    reply = answer.reply
    for node, r in ((reply.result or {}).get("nodes") or {}).items():
        state = f"confirmed in {r.get('confirm_ms')} ms" if r.get("confirmed") else f"FAILED: {r.get('reason')}"
        out.print(f"  {node} (zone {r.get('zone')}): {state}", highlight=False, markup=False)
    if not reply.ok:
        _refused(answer, "refused" if reply.result is None else "failed")
    elapsed = (reply.result or {}).get("elapsed_ms")
    _done(f"{fields['action']} {', '.join(fields['zones'])}, all confirmed in {elapsed} ms", answer)


@broadcast_app.command("play")
def broadcast_play(message: str = typer.Argument(..., help="message name or number"), zone: list[str] = _B_ZONE,
                   priority: str = typer.Option("routine", help="emergency|dispatcher|routine"),
                   key: Optional[Path] = _A_KEY, by: Optional[str] = _A_BY, reason: Optional[str] = None,
                   config: Optional[Path] = _A_CONFIG, host: str = _A_HOST, port: int = _A_PORT,
                   prefix: str = _A_PREFIX, site: Optional[str] = _A_SITE, gateway: Optional[str] = _A_GATEWAY,
                   timeout: float = typer.Option(15.0, help="seconds to wait for the gateway's reply")) -> None:
    """Play a message in zones and wait for every node's confirmation."""
    if priority not in ("emergency", "dispatcher", "routine"):
        fail("--priority: emergency, dispatcher or routine")
    _broadcast_request(key, by, config, host, port, prefix, site, timeout, gateway, action="play", message=message,
                       zones=zone, priority=priority, reason=reason)


@broadcast_app.command("stop")
def broadcast_stop(zone: list[str] = _B_ZONE, key: Optional[Path] = _A_KEY, by: Optional[str] = _A_BY,
                   reason: Optional[str] = None,
                   config: Optional[Path] = _A_CONFIG, host: str = _A_HOST, port: int = _A_PORT,
                   prefix: str = _A_PREFIX, site: Optional[str] = _A_SITE, gateway: Optional[str] = _A_GATEWAY,
                   timeout: float = typer.Option(15.0, help="seconds to wait for the gateway's reply")) -> None:
    """Stop the broadcast in zones and wait for every node to confirm it is quiet."""
    _broadcast_request(key, by, config, host, port, prefix, site, timeout, gateway, action="stop", zones=zone, reason=reason)


@broadcast_app.command("status")
def broadcast_status(config: Path = typer.Option(..., "--config", "-c", help="site file (broker, nodes)"),
                     timeout: float = typer.Option(2.0, help="seconds to collect retained messages")) -> None:
    """Each broadcast node's latest retained state and data: playing message, priority, faults."""
    from pydantic import ValidationError

    from gateway.contract import DataMessage, StateMessage, Topics
    from gateway.mqtt import MqttError, tail

    loaded = load(config)
    if loaded.mqtt is None or loaded.broadcast is None:
        fail(f"{config}: needs mqtt: and broadcast: sections")
    topics = Topics(loaded.mqtt.topic_prefix, loaded.site.id)
    devices = {d.id: d for d in loaded.devices}
    wanted: dict[str, tuple[str, str, type[StateMessage] | type[DataMessage]]] = {}
    for z in loaded.broadcast.zones:
        for n in z.nodes:
            d = devices[n]
            wanted[topics.state(d.area, n)] = (n, z.id, StateMessage)
            wanted[topics.data(d.area, n)] = (n, z.id, DataMessage)
    states: dict[str, StateMessage] = {}
    data: dict[str, DataMessage] = {}

    def keep(message) -> None:
        if message.topic in wanted:
            node, _, model = wanted[message.topic]
            try:
                (states if model is StateMessage else data)[node] = model.model_validate_json(message.payload)
            except ValidationError:
                pass

    try:
        tail(loaded.mqtt, f"{topics.prefix}/{topics.site}/#", None, timeout, keep)
    except MqttError as exc:
        fail(str(exc))
    for node, zone in sorted({(n, z) for n, z, model in wanted.values() if model is StateMessage}):
        state = states[node].status.value if node in states else "?"
        values = {name: sample.value for name, sample in data[node].samples.items()} if node in data else {}
        if node not in data:
            line = "no retained data"
        elif values.get("playing"):
            line = f"playing message {values.get('playing_message')} at priority {values.get('playing_priority')}"
        else:
            line = "idle"
        faults = [f for f in ("amplifier_fault", "line_fault", "on_battery") if values.get(f)]
        out.print(f"{node} (zone {zone}): {state}; {line}; faults: {', '.join(faults) or 'none'}",
                  highlight=False, markup=False)
