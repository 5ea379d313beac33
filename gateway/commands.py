"""Device writes on command: validation, authorisation, rate limits, the write itself and the audit trail.

A command arrives as JSON (the MQTT sink's ``…/command/write`` topic, or ``minegw write``
through it), is checked here, and only when every check passed is ``adapter.write`` called.
Every command, accepted or refused, becomes an :class:`AuditEntry` handed to the sinks'
``on_command_audit`` (the historian's ``command_audit`` measurement). See docs/mqtt.md.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.config import CommandsConfig
from gateway.model import utcnow

log = logging.getLogger(__name__)

REQUEST_ID = r"^[A-Za-z0-9_.:-]{1,64}$"  # it goes into a reply topic: no '/', '+' or '#'


class WriteCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(pattern=REQUEST_ID)
    device: str = Field(min_length=1)
    signal: str = Field(min_length=1)
    value: bool | int | float | str
    by: str = Field(min_length=1, description="who sends the command")
    reason: str | None = None


class CommandReply(BaseModel):
    request_id: str | None
    ok: bool
    device: str | None = None
    signal: str | None = None
    value: bool | int | float | str | None = None
    error: str | None = None
    ts: datetime = Field(default_factory=utcnow)


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


def request_id_of(payload: bytes) -> str | None:
    """The request id of a command that failed validation, when one can be found."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    rid = body.get("request_id") if isinstance(body, dict) else None
    return rid if isinstance(rid, str) and re.fullmatch(REQUEST_ID, rid) else None


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(x) for x in e["loc"]) or "payload"
    return f"{where}: {e['msg']}"


class CommandHandler:
    """Runs on the gateway's event loop; ``adapters`` maps device id to adapter."""

    def __init__(self, cfg: CommandsConfig, adapters: dict, audit: Callable[[AuditEntry], None]):
        self.cfg, self.adapters, self._audit = cfg, adapters, audit
        self._global = TokenBucket(cfg.global_rate, cfg.global_burst)
        self._per_device: dict[str, TokenBucket] = {}
        self._last_ts: datetime | None = None
        self.accepted = self.refused = 0

    async def handle_payload(self, payload: bytes, source: str = "mqtt") -> CommandReply:
        try:
            cmd = WriteCommand.model_validate_json(payload)
        except ValidationError as exc:
            return self._finish(None, request_id_of(payload), source, False,
                                f"malformed command: {_first_error(exc)}")
        return await self.handle(cmd, source)

    async def handle(self, cmd: WriteCommand, source: str = "mqtt") -> CommandReply:
        why = self._refusal(cmd)
        if why:
            return self._finish(cmd, cmd.request_id, source, False, why)
        try:
            result = await self.adapters[cmd.device].write(cmd.signal, cmd.value)
        except Exception as exc:  # noqa: BLE001 - an adapter bug is a refused command, not a dead gateway
            log.exception("write %s.%s failed", cmd.device, cmd.signal)
            return self._finish(cmd, cmd.request_id, source, False, f"write failed: {exc}")
        return self._finish(cmd, cmd.request_id, source, result.ok, None if result.ok else result.error)

    def _refusal(self, cmd: WriteCommand) -> str | None:
        """Why the command must not be written, or None; the rate limit is counted last."""
        if self.cfg.allowed_users and cmd.by not in self.cfg.allowed_users:
            return f"unauthorised: {cmd.by!r} may not write to devices"
        adapter = self.adapters.get(cmd.device)
        if adapter is None:
            return f"unknown device {cmd.device!r}"
        profile = getattr(adapter, "profile", None)
        if profile is not None:
            try:
                point = profile.point(cmd.signal)
            except KeyError:
                return f"unknown signal {cmd.signal!r} of {cmd.device}"
            if not point.writable:
                return f"{cmd.signal} of {cmd.device} is read-only"
            value = cmd.value
            if point.range and isinstance(value, (int, float)) and not isinstance(value, bool):
                low, high = point.range
                if not (math.isfinite(value) and low <= value <= high):
                    return f"out of range: {cmd.signal}={value} outside {low:g}..{high:g} {point.unit}".rstrip()
        bucket = self._per_device.get(cmd.device)
        if bucket is None:
            bucket = self._per_device[cmd.device] = TokenBucket(self.cfg.rate, self.cfg.burst)
        if not bucket.take():
            return f"rate limited: at most {self.cfg.burst} writes at once, {self.cfg.rate:g}/s to {cmd.device}"
        if not self._global.take():
            return f"rate limited: at most {self.cfg.global_rate:g} writes/s for the gateway"
        return None

    def _finish(self, cmd: WriteCommand | None, rid: str | None, source: str, ok: bool,
                error: str | None) -> CommandReply:
        ts = utcnow()
        if self._last_ts is not None and ts <= self._last_ts:  # one audit point each, never overwritten
            ts = self._last_ts + timedelta(microseconds=1)
        self._last_ts = ts
        reply = CommandReply(request_id=rid, ok=ok, error=error, ts=ts,
                             device=cmd.device if cmd else None, signal=cmd.signal if cmd else None,
                             value=cmd.value if cmd else None)
        if ok:
            self.accepted += 1
            log.warning("command %s: %s set %s.%s=%r (%s)", rid, cmd.by, cmd.device, cmd.signal, cmd.value,
                        cmd.reason or "no reason given")
        else:
            self.refused += 1
            log.warning("command %s refused (by %s): %s", rid, cmd.by if cmd else "?", error)
        entry = AuditEntry(request_id=rid, device=reply.device, signal=reply.signal, value=reply.value,
                           by=cmd.by if cmd else None, reason=cmd.reason if cmd else None, source=source,
                           ok=ok, error=error, ts=ts)
        try:
            self._audit(entry)
        except Exception:  # noqa: BLE001
            log.exception("audit of command %s failed", rid)
        return reply


# -- broadcast commands (``…/command/broadcast``, ``minegw broadcast``) ---------------------------
class BroadcastCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(pattern=REQUEST_ID)
    action: Literal["play", "stop", "volume"]
    message: str | int | None = None
    zones: list[str] = Field(min_length=1)
    priority: Literal["emergency", "dispatcher", "routine"] | int | None = None
    volume: int | None = Field(None, ge=0, le=100)
    by: str = Field(min_length=1, description="who sends the command")
    reason: str | None = None


class BroadcastReply(BaseModel):
    request_id: str | None
    ok: bool
    action: str | None = None
    error: str | None = None
    result: dict | None = Field(None, description="the BroadcastResult: per-node confirmed/failed, elapsed_ms")
    ts: datetime = Field(default_factory=utcnow)


async def handle_broadcast_payload(handler: CommandHandler, controller, payload: bytes,
                                   source: str = "mqtt") -> BroadcastReply:
    """Validate, authorise, rate-limit, run and audit one broadcast command (``controller``: BroadcastController)."""
    try:
        cmd = BroadcastCommand.model_validate_json(payload)
    except ValidationError as exc:
        return _broadcast_finish(handler, None, request_id_of(payload), source, False,
                                 f"malformed command: {_first_error(exc)}")
    why = None
    if handler.cfg.allowed_users and cmd.by not in handler.cfg.allowed_users:
        why = f"unauthorised: {cmd.by!r} may not send broadcast commands"
    elif controller is None:
        why = "this site has no broadcast: section"
    else:
        try:
            controller.nodes_of(cmd.zones)
            if cmd.action == "play":
                if cmd.message is None:
                    raise KeyError("play needs a message")
                controller.message(cmd.message)
        except KeyError as exc:
            why = str(exc.args[0])
        if why is None and cmd.action == "volume" and cmd.volume is None:
            why = "volume needs a volume (0..100)"
    if why is None:
        bucket = handler._per_device.get("broadcast")
        if bucket is None:
            bucket = handler._per_device["broadcast"] = TokenBucket(handler.cfg.rate, handler.cfg.burst)
        if not bucket.take():
            why = f"rate limited: at most {handler.cfg.burst} broadcast commands at once, {handler.cfg.rate:g}/s"
        elif not handler._global.take():
            why = f"rate limited: at most {handler.cfg.global_rate:g} commands/s for the gateway"
    if why:
        return _broadcast_finish(handler, cmd, cmd.request_id, source, False, why)
    try:
        if cmd.action == "play":
            result = await controller.play(cmd.message, cmd.zones, cmd.priority or "routine")
        elif cmd.action == "stop":
            result = await controller.stop(cmd.zones)
        else:
            result = await _set_volume(controller, cmd.zones, cmd.volume)
    except Exception as exc:  # noqa: BLE001
        log.exception("broadcast %s failed", cmd.action)
        return _broadcast_finish(handler, cmd, cmd.request_id, source, False, f"broadcast failed: {exc}")
    error = None if result.ok else "not confirmed by " + ", ".join(
        f"{n}: {r.reason}" for n, r in result.failed.items())
    return _broadcast_finish(handler, cmd, cmd.request_id, source, result.ok, error,
                             result.model_dump(mode="json"))


async def _set_volume(controller, zones: list[str], volume: int):
    from gateway.broadcast import BroadcastResult, NodeResult

    started = time.monotonic()
    results = {}
    for node, zone in controller.nodes_of(zones).items():
        adapter = controller.gateway.adapters.get(node)
        if adapter is None:
            results[node] = NodeResult(node=node, zone=zone, confirmed=False, reason="node disabled (no adapter)")
            continue
        r = await adapter.write("volume_setpoint", volume)
        results[node] = NodeResult(node=node, zone=zone, confirmed=r.ok, reason=None if r.ok else r.error,
                                   confirm_ms=round((time.monotonic() - started) * 1000, 1) if r.ok else None)
    ok = all(r.confirmed for r in results.values())
    return BroadcastResult(action="volume", zones=zones, nodes=results,
                           elapsed_ms=round((time.monotonic() - started) * 1000, 1) if ok else None)


def _broadcast_finish(handler: CommandHandler, cmd: BroadcastCommand | None, rid: str | None, source: str,
                      ok: bool, error: str | None, result: dict | None = None) -> BroadcastReply:
    ts = utcnow()
    if handler._last_ts is not None and ts <= handler._last_ts:
        ts = handler._last_ts + timedelta(microseconds=1)
    handler._last_ts = ts
    what = None
    if cmd is not None:
        what = f"{cmd.message if cmd.message is not None else cmd.volume if cmd.action == 'volume' else ''}" \
               f" -> {','.join(cmd.zones)}"
        if cmd.priority is not None:
            what += f" ({cmd.priority})"
    if ok:
        handler.accepted += 1
        log.warning("broadcast command %s: %s %s %s (%s)", rid, cmd.by, cmd.action, what,
                    cmd.reason or "no reason given")
    else:
        handler.refused += 1
        log.warning("broadcast command %s refused (by %s): %s", rid, cmd.by if cmd else "?", error)
    entry = AuditEntry(request_id=rid, device="broadcast", signal=cmd.action if cmd else None, value=what,
                       by=cmd.by if cmd else None, reason=cmd.reason if cmd else None, source=source,
                       ok=ok, error=error, ts=ts)
    try:
        handler._audit(entry)
    except Exception:  # noqa: BLE001
        log.exception("audit of broadcast command %s failed", rid)
    return BroadcastReply(request_id=rid, ok=ok, action=cmd.action if cmd else None, error=error,
                          result=result, ts=ts)
