"""What the console knows about a site: the latest state of every device, alarm, gateway, broadcast
and ring, as the site's MQTT topics say it (docs/mqtt.md). Not Textual-specific: :class:`SiteModel`
takes ``(topic, payload)`` pairs on one thread (the app's event loop) and answers questions.

Data messages are read in both payloads: full (``samples`` by name) and compact (values in the order of
a retained ``…/schema`` version; a compact message that arrives before its schema waits for it, the
latest per device). Each device keeps the latest sample of every signal it ever sent, so derived
readings, camera events and report-by-exception messages merge into one picture. Data goes through
``orjson`` and plain dicts (hundreds of samples a second on a 150-support face); the rare retained
messages (states, alarms, health) are validated with the contract's models.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from gateway.config import SiteConfig
from gateway.contract import (AlarmMessage, GatewayAlarmMessage, GatewayHealth, GatewayStatus, InventoryMessage,
                              LinkageMessage, SchemaMessage, StateMessage)

GOOD = "good"
STATUS_NAMES = {0: "stopped", 1: "running", 2: "offline", 3: "fault"}  # gateway/derived/status.py, by severity
# the equipment an area's status is made of: the Grafana overview's tiles (dashboards/overview.py)
STATUS_KINDS = ("shearer", "face_conveyor", "roadheader", "belt_conveyor")
MAX_PENDING = 64  # compact messages waiting for a schema, over all devices


class Signal(NamedTuple):
    value: Any
    unit: str
    quality: str
    ts: str | int  # ISO text (full payload) or epoch ms (compact payload)


@dataclass
class Device:
    id: str
    area: str
    kind: str = ""
    zone: str | None = None
    signals: dict[str, Signal] = field(default_factory=dict)
    state: StateMessage | None = None
    inventory: InventoryMessage | None = None
    last_data: float | None = None  # wall time (time.time()) a data message arrived
    last_poll_ms: float | None = None
    last_event: tuple[str | int, str] | None = None  # camera: (ts, what) of the latest event message

    def value(self, name: str, default: Any = None) -> Any:
        s = self.signals.get(name)
        return default if s is None else s.value

    @property
    def online(self) -> bool | None:
        return None if self.state is None else self.state.status.value == "online"

    @property
    def status_code(self) -> int | None:
        code = self.value("status_code")
        return code if isinstance(code, int) and not isinstance(code, bool) else None


@dataclass
class Gateway:
    id: str
    status: GatewayStatus | None = None
    health: GatewayHealth | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # health keys the contract does not name (yet)
    alarms: dict[str, GatewayAlarmMessage] = field(default_factory=dict)


@dataclass
class NodeConfirmation:
    confirmed: bool
    confirm_ms: float | None
    reason: str | None
    source: str  # "linkage <alarm>" or "command <request id>"


@dataclass
class Link:
    """The console's own connection to the broker."""

    connected: bool = False
    problem: str = "connecting"
    since: float = field(default_factory=time.time)
    last_message: float | None = None


class SiteModel:
    """The latest state of one site. ``apply(topic, payload)`` returns whether it changed anything."""

    def __init__(self, site: SiteConfig, prefix: str | None = None):
        self.site = site
        self.prefix = prefix if prefix is not None else (site.mqtt.topic_prefix if site.mqtt else "minegw")
        self.base = f"{self.prefix}/{site.site.id}/"
        self.devices: dict[str, Device] = {d.id: Device(d.id, d.area, _kind(d), d.zone) for d in site.devices}
        self.schemas: dict[str, SchemaMessage] = {}
        self.pending: dict[str, tuple[str, bytes]] = {}  # device -> (area, compact payload) without its schema
        self.alarms: dict[tuple[str, str, str], AlarmMessage] = {}  # (area, device, alarm id)
        self.gateways: dict[str, Gateway] = {}
        self.linkages: dict[tuple[str, str], LinkageMessage] = {}
        self.confirmations: dict[str, NodeConfirmation] = {}  # broadcast node -> its latest confirmation
        self.rings: dict[str, dict] = {}
        self.link = Link()
        self.received = 0
        self.problems: list[str] = []  # the last few messages that could not be read, with their topic

    # -- intake ----------------------------------------------------------------------------------
    def apply(self, topic: str, payload: bytes, now: float | None = None) -> bool:
        if not topic.startswith(self.base):
            return False
        self.received += 1
        self.link.last_message = now if now is not None else time.time()
        parts = topic[len(self.base):].split("/")
        try:
            return self._route(parts, payload)
        except (ValueError, ValidationError, KeyError, TypeError, IndexError) as exc:
            self._problem(f"{topic}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            return False

    def _route(self, parts: list[str], payload: bytes) -> bool:
        head = parts[0]
        if head == "gateway" and len(parts) >= 3:
            return self._gateway(parts, payload)
        if head == "network" and len(parts) == 3 and parts[1] == "ring":
            return self._ring(parts[2], payload)
        if len(parts) == 3 and parts[1] == "linkage":
            return self._linkage(payload)
        if len(parts) == 4 and parts[2] == "alarm":
            return self._alarm((parts[0], parts[1], parts[3]), payload)
        if len(parts) != 3:
            return False
        area, device, leaf = parts
        handler = {"data": self._data, "schema": self._schema, "state": self._state,
                   "inventory": self._inventory}.get(leaf)
        return handler(area, device, payload) if handler else False

    def _problem(self, text: str) -> None:
        self.problems = (self.problems + [text])[-5:]

    def device(self, area: str, device_id: str, kind: str | None = None, zone: str | None = None) -> Device:
        d = self.devices.get(device_id)
        if d is None:  # a device the site file does not name (another gateway's): shown all the same
            d = self.devices[device_id] = Device(device_id, area)
        if kind:
            d.kind = kind
        if zone is not None:
            d.zone = zone
        return d

    def _data(self, area: str, device_id: str, payload: bytes) -> bool:
        message = orjson.loads(payload)
        if "schema" in message:
            return self._compact(area, device_id, message, payload)
        d = self.device(area, device_id, message.get("kind"), message.get("zone"))
        samples = {name: Signal(s.get("value"), s.get("unit", ""), s.get("quality", GOOD), s.get("ts", ""))
                   for name, s in message["samples"].items()}
        self._merge(d, samples, message.get("ts", ""), message.get("poll_ms"))
        return True

    def _compact(self, area: str, device_id: str, message: dict, payload: bytes) -> bool:
        schema = self.schemas.get(device_id)
        version = schema.schemas.get(message["schema"]) if schema else None
        if version is None:  # wait for the retained schema message
            self.pending.pop(device_id, None)
            if len(self.pending) >= MAX_PENDING:
                self.pending.pop(next(iter(self.pending)))
            self.pending[device_id] = (area, payload)
            return False
        d = self.device(area, device_id, schema.kind, schema.zone)
        ts, offset = message["ts"], message.get("time", 0)
        quality, times = message.get("quality", {}), message.get("times", {})
        values = message["values"]
        sent = values.items() if isinstance(values, dict) else enumerate(values)
        samples = {}
        for key, value in sent:
            i, k = int(key), str(key)
            samples[version.signals[i]] = Signal(value, version.units[i], quality.get(k, GOOD),
                                                 ts + times.get(k, offset))
        self._merge(d, samples, ts, message.get("poll_ms"))
        return True

    @staticmethod
    def _merge(d: Device, samples: dict[str, Signal], ts: str | int, poll_ms: float | None) -> None:
        d.signals.update(samples)
        d.last_data = time.time()
        if poll_ms:  # derived readings and camera events carry 0
            d.last_poll_ms = poll_ms
        elif d.kind == "camera" and "online" not in samples:
            # what is on (motion, tamper, …); a message of events all off (after a resubscription too) is "clear"
            on = [name if s.value is True else f"{name}={s.value}" for name, s in samples.items()
                  if s.value is not False]
            d.last_event = (ts, ", ".join(on) or "clear")

    def _schema(self, area: str, device_id: str, payload: bytes) -> bool:
        if not payload:
            self.schemas.pop(device_id, None)
            return False
        schema = self.schemas[device_id] = SchemaMessage.model_validate_json(payload)
        self.device(area, device_id, schema.kind, schema.zone)
        waiting = self.pending.pop(device_id, None)
        if waiting is not None:
            self._compact(waiting[0], device_id, orjson.loads(waiting[1]), waiting[1])
        return True

    def _state(self, area: str, device_id: str, payload: bytes) -> bool:
        if not payload:
            return False
        self.device(area, device_id).state = StateMessage.model_validate_json(payload)
        return True

    def _inventory(self, area: str, device_id: str, payload: bytes) -> bool:
        if not payload:
            return False
        inventory = InventoryMessage.model_validate_json(payload)
        self.device(area, device_id, inventory.kind, inventory.zone).inventory = inventory
        return True

    def _alarm(self, key: tuple[str, str, str], payload: bytes) -> bool:
        if not payload:  # cleared: back to normal
            return self.alarms.pop(key, None) is not None
        alarm = AlarmMessage.model_validate_json(payload)
        if alarm.state == "normal":
            return self.alarms.pop(key, None) is not None
        self.alarms[key] = alarm
        return True

    def _gateway(self, parts: list[str], payload: bytes) -> bool:
        leaf = parts[2]
        if leaf == "reply":  # gateway/{id}/reply/[{signer}/]{request id}: the console's own commands' replies
            return self._reply(parts[-1], payload)
        gw = self.gateways.setdefault(parts[1], Gateway(parts[1]))
        if leaf == "alarm" and len(parts) == 4:
            if not payload:
                return gw.alarms.pop(parts[3], None) is not None
            gw.alarms[parts[3]] = GatewayAlarmMessage.model_validate_json(payload)
        elif leaf == "status" and payload:
            gw.status = GatewayStatus.model_validate_json(payload)
        elif leaf == "health" and payload:
            raw = orjson.loads(payload)
            gw.health = GatewayHealth.model_validate(raw)
            gw.extra = {k: v for k, v in raw.items() if k not in GatewayHealth.model_fields}
        else:
            return False
        return True

    def _linkage(self, payload: bytes) -> bool:
        if not payload:
            return False
        event = LinkageMessage.model_validate_json(payload)
        self.linkages[(event.area, event.alarm)] = event
        for node, n in event.nodes.items():
            self.confirmations[node] = NodeConfirmation(n.confirmed, n.confirm_ms, n.reason, f"linkage {event.alarm}")
        return True

    def _reply(self, request_id: str, payload: bytes) -> bool:
        """A broadcast command's reply says which nodes confirmed (``result.nodes``)."""
        if not payload:
            return False
        reply = orjson.loads(payload)
        nodes = ((reply.get("result") or {}).get("nodes") or {}) if isinstance(reply, dict) else {}
        for node, r in nodes.items():
            self.confirmations[node] = NodeConfirmation(bool(r.get("confirmed")), r.get("confirm_ms"),
                                                        r.get("reason"), f"command {request_id}")
        return bool(nodes)

    def _ring(self, ring: str, payload: bytes) -> bool:
        if not payload:
            return self.rings.pop(ring, None) is not None
        self.rings[ring] = orjson.loads(payload)
        return True

    def connection(self, connected: bool, problem: str = "", now: float | None = None) -> None:
        if connected != self.link.connected or problem != self.link.problem:
            self.link = Link(connected, problem, now if now is not None else time.time(), self.link.last_message)

    # -- questions -------------------------------------------------------------------------------
    def of_kind(self, *kinds: str, area: str | None = None) -> list[Device]:
        return [d for d in self.devices.values() if d.kind in kinds and (area is None or d.area == area)]

    def area_status(self, area: str) -> int | None:
        """The worst ``status_code`` of the area's machines (the Grafana overview's rule), None without one."""
        codes = [c for d in self.of_kind(*STATUS_KINDS, area=area) if (c := d.status_code) is not None]
        return max(codes) if codes else None

    def active_alarms(self, area: str | None = None) -> list[AlarmMessage]:
        """Alarms not normal, newest transition first."""
        found = [a for a in self.alarms.values() if area is None or a.area == area]
        return sorted(found, key=lambda a: a.ts, reverse=True)

    def areas(self) -> list[str]:
        known = [a.id for a in self.site.areas]
        return known + sorted({d.area for d in self.devices.values()} - set(known))


def _kind(device) -> str:
    try:
        return device.equipment_kind
    except Exception:  # noqa: BLE001 - a profile that does not load: the messages will say the kind
        return ""


def take(model: SiteModel, messages: Iterable[tuple[str, bytes]]) -> bool:
    """Apply a batch; whether anything changed."""
    changed = False
    for topic, payload in messages:
        changed = model.apply(topic, payload) or changed
    return changed
