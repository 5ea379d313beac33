"""The command path: device writes, broadcast commands and alarm acknowledgements, checked and audited.

A command arrives as JSON (the MQTT sink's ``…/command/write``, ``…/command/broadcast`` and
``…/command/alarm/ack`` topics; ``minegw write|broadcast|alarm ack`` publish there) and passes,
in this order (docs/mqtt.md#commands):

1. transport: at most ``commands.max_payload`` bytes;
2. JSON: an object, any depth of garbage refused without an exception; never one the broker
   delivers from its retained store;
3. signature: Ed25519 by a key in ``commands.operators`` (gateway/signing.py) — ``by`` is then the
   verified ``key_id``, never the payload's claim;
4. schema: every field and its length limit;
5. freshness: ``issued_at`` no older than ``commands.max_age``, at most ``max_skew`` ahead;
6. one shot: a ``request_id`` seen before (kept on disk, gateway/replay.py) is a replay;
7. the command's own checks (authorised user, device, signal, range, zones), rate limits, and then
   the action.

Every command, accepted or refused, becomes an :class:`AuditEntry` for the sinks'
``on_command_audit`` (the historian's ``command_audit``) and gets a reply when it named a
request id (or came with an MQTT 5 response topic).
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ValidationError

from gateway import signing
from gateway.config import CommandsConfig
from gateway.contract import (REQUEST_ID, AckCommand, AckReply, BroadcastCommand, BroadcastReply, Command,
                              CommandReply, WriteCommand)
from gateway.core.model import utcnow
from gateway.replay import ReplayGuard, ReplayStoreError

log = logging.getLogger(__name__)


class AuditEntry(BaseModel):
    """Who asked what, when, and what came of it."""
    request_id: str | None
    device: str | None
    signal: str | None
    value: bool | int | float | str | None
    by: str | None
    reason: str | None
    source: str  # "mqtt"
    ok: bool
    error: str | None
    ts: datetime


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens, self.last = float(burst), clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Refused(Exception):
    """A command that must not run; ``str()`` is the reason given in the reply and the audit."""


@dataclass
class Outcome:
    """What an action did: ``reply_fields`` go into the reply, ``error`` is None when it succeeded."""
    error: str | None = None
    reply_fields: dict | None = None


@dataclass
class Kind:
    """One kind of command: its model, its reply, how it is audited and what it does."""
    model: type[Command]
    reply: type[BaseModel]
    audit_what: Callable[[Command], tuple[str | None, str | None, object]]  # (device, signal, value)
    reply_of: Callable[[Command], dict]  # what the reply repeats of the command
    run: Callable[[Command, str], Awaitable[Outcome]]  # (command, verified sender) -> outcome


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(x) for x in e["loc"]) or "payload"
    return f"{where}: {e['msg']}"


def _request_id(body: object) -> str | None:
    rid = body.get("request_id") if isinstance(body, dict) else None
    return rid if isinstance(rid, str) and re.fullmatch(REQUEST_ID, rid) else None


class CommandHandler:
    """Runs on the gateway's event loop. ``adapters`` maps device id to adapter; ``broadcast`` is the
    BroadcastController (or None); ``ack(alarm, by)`` acknowledges an alarm and returns its new event."""

    def __init__(self, cfg: CommandsConfig, adapters: Mapping, audit: Callable[[AuditEntry], None], *,
                 broadcast=None, ack: Callable | None = None, clock: Callable[[], datetime] = utcnow):
        self.cfg, self.adapters, self.broadcast, self._ack = cfg, adapters, broadcast, ack
        self._audit, self._clock = audit, clock
        self.operators = cfg.public_keys()
        if not cfg.require_signature:
            log.warning("commands.require_signature is false: anyone who can publish to the command topics "
                        "can write, broadcast and acknowledge as any user (docs/mqtt.md#threat-model)")
        elif not self.operators:
            log.info("no commands.operators in the site file: every command will be refused")
        self.replays = ReplayGuard(cfg.replay_store)
        self._global = TokenBucket(cfg.global_rate, cfg.global_burst)
        self._buckets: dict[str, TokenBucket] = {}
        self._last_ts: datetime | None = None
        self.accepted = self.refused = 0
        self.kinds = {
            "write": Kind(WriteCommand, CommandReply, lambda c: (c.device, c.signal, c.value),
                          lambda c: {"device": c.device, "signal": c.signal, "value": c.value}, self._write),
            "broadcast": Kind(BroadcastCommand, BroadcastReply, _broadcast_what,
                              lambda c: {"action": c.action}, self._broadcast),
            "ack": Kind(AckCommand, AckReply, lambda c: ("alarm", "ack", c.alarm),
                        lambda c: {"alarm": c.alarm}, self._acknowledge),
        }

    async def handle(self, kind: str, payload: bytes, retained: bool = False, source: str = "mqtt") -> BaseModel:
        """Check, run and audit one command; the reply to send back."""
        spec = self.kinds[kind]
        body, cmd, by = None, None, None
        try:
            body = self._parse(payload)
            if retained:
                raise Refused("retained: a command delivered from the broker's retained store never runs")
            by = self._sender(body)
            cmd = self._validate(spec.model, body)
            self._check_claim(cmd, by)
            self._check_fresh(cmd)
            self._check_once(cmd)
            outcome = await spec.run(cmd, by)
        except Refused as exc:
            outcome = Outcome(error=str(exc))
        except Exception as exc:  # noqa: BLE001 - an adapter bug is a refused command, not a dead gateway
            log.exception("%s command failed", kind)
            outcome = Outcome(error=f"{kind} failed: {exc}")
        return self._finish(spec, kind, cmd, _request_id(body), by, source, outcome)

    def close(self) -> None:
        self.replays.close()

    # ---- the checks every command passes ----

    def _parse(self, payload: bytes) -> dict:
        if len(payload) > self.cfg.max_payload:
            raise Refused(f"too large: {len(payload)} bytes, at most {self.cfg.max_payload}")
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise Refused(f"malformed command: not JSON ({type(exc).__name__})") from None
        if not isinstance(body, dict):
            raise Refused("malformed command: not a JSON object")
        return body

    def _sender(self, body: dict) -> str | None:
        """The verified key_id; for a site that accepts unsigned commands, the unsigned claim."""
        if body.get(signing.SIG) is None and not self.cfg.require_signature:
            return None  # the claim in ``by`` is checked by the schema, then taken as it is
        try:
            return signing.verify(body, self.operators)
        except (signing.SignatureError, RecursionError) as exc:
            raise Refused(f"unauthenticated: {exc}") from None

    @staticmethod
    def _validate(model: type[Command], body: dict) -> Command:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise Refused(f"malformed command: {_first_error(exc)}") from None

    @staticmethod
    def _check_claim(cmd: Command, verified: str | None) -> None:
        if verified is None and not cmd.by:
            raise Refused("malformed command: by: required in an unsigned command")
        if verified is not None and cmd.by is not None and cmd.by != verified:
            raise Refused(f"by {cmd.by!r} is not the signer {verified!r}")

    def _check_fresh(self, cmd: Command) -> None:
        age = (self._clock() - cmd.issued_at).total_seconds()
        if age > self.cfg.max_age:
            raise Refused(f"expired: issued {age:.1f} s ago, commands are taken for {self.cfg.max_age:g} s")
        if -age > self.cfg.max_skew:
            raise Refused(f"issued {-age:.1f} s in the future (clock skew allowed: {self.cfg.max_skew:g} s)")

    def _check_once(self, cmd: Command) -> None:
        now = self._clock().timestamp()
        until = max(now, cmd.issued_at.timestamp()) + self.cfg.max_age + self.cfg.max_skew
        try:
            first = self.replays.first_use(cmd.request_id, until, now)
        except ReplayStoreError as exc:
            log.error("%s: commands refused until it can be written", exc)
            raise Refused("the gateway cannot record request ids (replay store unwritable)") from None
        if not first:
            raise Refused(f"replay: request_id {cmd.request_id} was used before")

    def _authorise(self, who: str, what: str) -> None:
        if self.cfg.allowed_users and who not in self.cfg.allowed_users:
            raise Refused(f"unauthorised: {who!r} may not {what}")

    def _rate_limit(self, bucket_name: str, what: str) -> None:
        bucket = self._buckets.get(bucket_name)
        if bucket is None:
            bucket = self._buckets[bucket_name] = TokenBucket(self.cfg.rate, self.cfg.burst)
        if not bucket.take():
            raise Refused(f"rate limited: at most {self.cfg.burst} {what} at once, {self.cfg.rate:g}/s")
        if not self._global.take():
            raise Refused(f"rate limited: at most {self.cfg.global_rate:g} commands/s for the gateway")

    # ---- the actions ----

    async def _write(self, cmd: WriteCommand, by: str | None) -> Outcome:
        self._authorise(by or cmd.by, "write to devices")
        adapter = self.adapters.get(cmd.device)
        if adapter is None:
            raise Refused(f"unknown device {cmd.device!r}")
        self._check_point(adapter, cmd)
        self._rate_limit(cmd.device, f"writes to {cmd.device}")
        result = await adapter.write(cmd.signal, cmd.value)
        return Outcome(None if result.ok else result.error)

    @staticmethod
    def _check_point(adapter, cmd: WriteCommand) -> None:
        profile = getattr(adapter, "profile", None)
        if profile is None:
            return
        try:
            point = profile.point(cmd.signal)
        except KeyError:
            raise Refused(f"unknown signal {cmd.signal!r} of {cmd.device}") from None
        if not point.writable:
            raise Refused(f"{cmd.signal} of {cmd.device} is read-only")
        value = cmd.value
        if point.range and isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = point.range
            if not (math.isfinite(value) and low <= value <= high):
                raise Refused(f"out of range: {cmd.signal}={value} outside {low:g}..{high:g} {point.unit}".rstrip())

    async def _broadcast(self, cmd: BroadcastCommand, by: str | None) -> Outcome:
        self._authorise(by or cmd.by, "send broadcast commands")
        controller = self.broadcast
        if controller is None:
            raise Refused("this site has no broadcast: section")
        try:
            controller.nodes_of(cmd.zones)
            if cmd.action == "play":
                if cmd.message is None:
                    raise KeyError("play needs a message")
                controller.message(cmd.message)
        except KeyError as exc:
            raise Refused(str(exc.args[0])) from None
        if cmd.action == "volume" and cmd.volume is None:
            raise Refused("volume needs a volume (0..100)")
        self._rate_limit("broadcast", "broadcast commands")
        if cmd.action == "play":
            result = await controller.play(cmd.message, cmd.zones, cmd.priority or "routine")
        elif cmd.action == "stop":
            result = await controller.stop(cmd.zones)
        else:
            result = await controller.set_volume(cmd.zones, cmd.volume)
        error = None if result.ok else "not confirmed by " + ", ".join(
            f"{n}: {r.reason}" for n, r in result.failed.items())
        return Outcome(error, {"result": result.model_dump(mode="json")})

    async def _acknowledge(self, cmd: AckCommand, by: str | None) -> Outcome:
        who = by or cmd.by
        self._authorise(who, "acknowledge alarms")
        self._rate_limit("alarm-ack", "acknowledgements")
        try:
            event = self._ack(cmd.alarm, who)
        except KeyError:
            raise Refused(f"no alarm {cmd.alarm!r} is active") from None
        if event is None:
            raise Refused(f"alarm {cmd.alarm} has nothing to acknowledge (acknowledged already)")
        return Outcome(None, {"state": event.state.value})

    # ---- reply and audit ----

    def _finish(self, spec: Kind, kind: str, cmd: Command | None, rid: str | None, by: str | None,
                source: str, outcome: Outcome) -> BaseModel:
        ts = utcnow()
        if self._last_ts is not None and ts <= self._last_ts:  # one audit point each, never overwritten
            ts = self._last_ts + timedelta(microseconds=1)
        self._last_ts = ts
        ok = outcome.error is None
        who = by or (cmd.by if cmd else None)  # the verified signer; unsigned (where allowed): the claim
        device, signal, value = spec.audit_what(cmd) if cmd else (None, None, None)
        if ok:
            self.accepted += 1
            log.warning("%s command %s by %s: %s.%s=%r (%s)", kind, rid, who, device, signal, value,
                        cmd.reason or "no reason given")
        else:
            self.refused += 1
            log.warning("%s command %s refused (by %s): %s", kind, rid, who or "?", outcome.error)
        entry = AuditEntry(request_id=rid, device=device, signal=signal, value=value, by=who,
                           reason=cmd.reason if cmd else None, source=source, ok=ok, error=outcome.error, ts=ts)
        try:
            self._audit(entry)
        except Exception:  # noqa: BLE001
            log.exception("audit of command %s failed", rid)
        return spec.reply(request_id=rid, ok=ok, by=by, error=outcome.error, ts=ts,
                          **(spec.reply_of(cmd) if cmd else {}), **(outcome.reply_fields or {}))


def _broadcast_what(cmd: BroadcastCommand) -> tuple[str, str, str]:
    what = cmd.message if cmd.message is not None else cmd.volume if cmd.action == "volume" else ""
    text = f"{what} -> {','.join(cmd.zones)}"
    if cmd.priority is not None:
        text += f" ({cmd.priority})"
    return "broadcast", cmd.action, text
