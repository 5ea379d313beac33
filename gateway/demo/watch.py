"""What a subscriber of the demo's broker sees, boiled down to the demo's summary.

The watcher subscribes to ``{prefix}/{site}/#`` like any integration, so the summary proves the whole
path: simulator → adapter → gateway → MQTT → subscriber. It keeps counts and the latest state per
device, every alarm's transitions and every linkage result; :meth:`DemoWatch.summary` snapshots them.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import paho.mqtt.client as paho

from gateway.config import MqttConfig, SiteConfig
from gateway.contract import Topics
from gateway.mqtt import make_client

RAISED, CLEARED = {"active_unack", "active_ack"}, {"cleared_unack", "normal"}


@dataclass
class AlarmTrack:
    """One alarm's story on the wire: raised, condition cleared, acknowledged."""

    alarm: str
    device: str
    priority: int = 0
    message: str = ""
    state: str = "normal"
    raised: int = 0  # times it went active
    cleared: int = 0  # times its condition went away after being active
    acked_by: str | None = None


@dataclass
class Linkage:
    alarm: str
    ok: bool
    zones: list[str]
    message: str
    trigger_to_confirmed_ms: float | None
    nodes: dict[str, float | None]  # node -> confirm_ms (None: failed)

    def describe(self) -> str:
        """How long from the trigger to the last node's confirmation, and each node's confirmation."""
        nodes = ", ".join(f"{n} {ms_text(ms)}" for n, ms in self.nodes.items())
        took = self.trigger_to_confirmed_ms
        return (f"trigger → all confirmed {ms_text(took)}" if took is not None else "NOT all confirmed") + f" ({nodes})"


def ms_text(ms: float | None) -> str:
    return "FAILED" if ms is None else f"{ms:.0f} ms"


@dataclass
class Summary:
    seconds: float
    broker: str
    online: dict[str, list[int]]  # equipment kind -> [online, devices]
    messages: int
    by_topic: dict[str, int]  # last topic level (data, state, alarm, linkage, ...) -> messages
    alarms: list[AlarmTrack]
    linkages: list[Linkage]
    historian: str = ""
    story: list[str] = field(default_factory=list)

    @property
    def all_online(self) -> bool:
        return all(up == total for up, total in self.online.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The summary as a few lines of plain text."""
        online = ", ".join(f"{kind} {up}/{total}" for kind, (up, total) in sorted(self.online.items()))
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.by_topic.items(), key=lambda kv: -kv[1]))
        raised = [a for a in self.alarms if a.raised]
        counts = (f"alarms raised: {len(raised)}, cleared: {sum(1 for a in raised if a.cleared)}, "
                  f"acknowledged: {sum(1 for a in raised if a.acked_by)}, "
                  f"still active: {sum(1 for a in raised if a.state in RAISED)}")
        out = [f"minegw demo: {self.seconds:.0f} s, broker {self.broker}", f"devices online: {online}",
               f"messages received: {self.messages} ({kinds})", counts]
        out += [f"  {a.alarm} ({a.device}, priority {a.priority}): raised {a.raised}x, now {a.state}"
                + (f", acknowledged by {a.acked_by}" if a.acked_by else "") for a in raised]
        for link in self.linkages:
            out.append(f"linkage {link.alarm}: {link.message} in {', '.join(link.zones)}: {link.describe()}")
        if self.historian:
            out.append(f"historian: {self.historian}")
        out += [f"story: {line}" for line in self.story]
        return out


class DemoWatch:
    """Subscribes to the whole site on ``mqtt`` and keeps what the summary needs (paho's thread writes,
    any thread reads through :meth:`summary`)."""

    def __init__(self, mqtt: MqttConfig, site: SiteConfig, broker: str = ""):
        self.site, self.broker = site, broker
        self.topics = Topics(mqtt.topic_prefix, site.site.id)
        self._base = f"{mqtt.topic_prefix}/{site.site.id}/"
        self.started = time.monotonic()
        self._kinds = {d.id: d.equipment_kind for d in site.devices}
        self._status: dict[str, str] = {}
        self._alarms: dict[str, AlarmTrack] = {}
        self._linkages: dict[str, Linkage] = {}
        self._ack_by: dict[str, str] = {}  # alarm -> who sent the latest acknowledgement (command topic)
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.client = make_client(mqtt, f"minegw-demo-watch-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(self.topics.everything(), 1)
        self.client.connect_async(mqtt.host, mqtt.port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    # -- paho's thread ------------------------------------------------------------------
    def _on_message(self, _client, _userdata, msg: paho.MQTTMessage) -> None:
        parts = msg.topic[len(self._base):].split("/")  # area, device, what[, id]; area, "linkage", alarm
        if len(parts) < 3:
            return
        what = "linkage" if parts[1] == "linkage" else f"command {parts[1]}" if parts[0] == "command" else parts[2]
        try:
            payload = json.loads(msg.payload) if msg.payload else None
        except ValueError:
            return
        with self._lock:
            self._counts["gateway " + what if parts[0] == "gateway" else what] += 1
            if parts[0] == "gateway":
                return
            if parts[:3] == ["command", "alarm", "ack"] and payload:
                self._ack_by[payload.get("alarm")] = payload.get("key_id") or payload.get("by")
            elif what == "state" and payload:
                self._status[payload["device"]] = payload["status"]
            elif what == "alarm" and len(parts) == 4:
                self._alarm(parts[1], parts[3], payload)
            elif what == "linkage" and payload:
                self._linkage(payload)

    def _alarm(self, device: str, alarm: str, payload: dict | None) -> None:
        if payload is None and alarm not in self._alarms:
            return  # a retained alarm cleared that we never saw raised (the gateway clears them at start)
        track = self._alarms.setdefault(alarm, AlarmTrack(alarm, device))
        state = payload["state"] if payload else "normal"  # cleared retained message: back to normal
        if state in RAISED and track.state not in RAISED:
            track.raised += 1
        elif state in CLEARED and track.state in RAISED:
            track.cleared += 1
        if (track.state, state) in (("cleared_unack", "normal"), ("active_unack", "active_ack")):
            track.acked_by = self._ack_by.get(alarm, "?")  # ISA-18.2: only an acknowledgement does that
        track.state = state
        if payload:
            track.priority, track.message = payload["priority"], payload["message"]
            track.acked_by = payload.get("acked_by") or track.acked_by

    def _linkage(self, payload: dict) -> None:
        nodes = {n: (m["confirm_ms"] if m["confirmed"] else None) for n, m in payload["nodes"].items()}
        self._linkages[payload["alarm"]] = Linkage(payload["alarm"], payload["ok"], payload["zones"],
                                                   payload["message"], payload["trigger_to_confirmed_ms"], nodes)

    # -- readers --------------------------------------------------------------------------
    def alarm_state(self, alarm: str) -> str | None:
        with self._lock:
            track = self._alarms.get(alarm)
            return track.state if track else None

    def active_alarms(self) -> list[str]:
        with self._lock:
            return [a.alarm for a in self._alarms.values() if a.state in RAISED]

    def unacknowledged(self) -> list[str]:
        """Alarms whose condition went but that wait for an acknowledgement."""
        with self._lock:
            return [a.alarm for a in self._alarms.values() if a.state == "cleared_unack"]

    def linkage(self, alarm: str) -> Linkage | None:
        with self._lock:
            return self._linkages.get(alarm)

    def summary(self, historian: str = "", story: list[str] | None = None) -> Summary:
        with self._lock:
            online: dict[str, list[int]] = {}
            for device, kind in self._kinds.items():
                counts = online.setdefault(kind, [0, 0])
                counts[0] += self._status.get(device) == "online"
                counts[1] += 1
            return Summary(seconds=time.monotonic() - self.started, broker=self.broker, online=online,
                           messages=sum(self._counts.values()), by_topic=dict(self._counts),
                           alarms=[AlarmTrack(**asdict(a)) for a in self._alarms.values()],
                           linkages=list(self._linkages.values()), historian=historian, story=list(story or []))
