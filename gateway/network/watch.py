"""The network watch: follows the readings and states of the ring switches and UPS, diagnoses every ring on each
change, and says what the gateway announces: the ring's status (``…/network/ring/{ring}``, ``network_ring``)
and the network alarms that hold now (the alarm engine turns them into transitions and suppresses the
comm-loss alarms they explain). Fed by the router; it calls nobody. See docs/network.md.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from adapters.snmp.config import SnmpDeviceConfig
from gateway.alarms import AlarmKind, NetworkAlarm, Priority
from gateway.core.device import DeviceConfig
from gateway.core.model import DeviceState, DeviceStatus, Quality, Reading
from gateway.network.config import NetworkConfig, Ring
from gateway.network.diagnosis import (DiagnosisSettings, RingDiagnosis, SwitchView, diagnose_ring, port_signals,
                                       view_of)

NETWORK_AREA = "network"  # area of the ring alarms (their device is the ring id), and of the ring topics


class NetworkSettings(BaseModel):
    """``network.diagnosis`` is not in the site file yet: these are the defaults (docs/network.md)."""

    model_config = ConfigDict(extra="forbid")

    link_errors_ps: float = Field(1.0, gt=0, description="in-errors per second at which a link counts as degraded")
    link_errors_polls: int = Field(3, ge=1, le=30, description="polls the rate must hold (or rise) over")
    restart_hold_s: float = Field(600.0, gt=0, description="seconds a switch restart stays an active alarm")


@dataclass
class RingStatus:
    """One ring's diagnosis at ``ts`` (the sample time of the switch event that caused it)."""

    ts: datetime
    diagnosis: RingDiagnosis


@dataclass
class NetworkUpdate:
    """What one switch or UPS event changed: ring statuses to announce, and every network alarm holding now."""

    ts: datetime
    rings: list[RingStatus]
    alarms: list[NetworkAlarm]


@dataclass
class _Switch:
    """One switch's history: what the diagnosis needs beyond the latest reading."""

    errors_window: int
    reading: Reading | None = None
    answering: bool = False
    polled: bool = False
    uptime: float | None = None
    restarted_at: datetime | None = None
    errors: dict[int, deque] = field(default_factory=dict)
    cached: SwitchView | None = None  # the view of the latest reading: a ring's diagnosis reads every switch's

    def add(self, reading: Reading) -> None:
        self.reading, self.answering, self.polled, self.cached = reading, True, True, None
        i = reading.schema.index.get("uptime_s")
        uptime = None if i is None or reading.quality(i) is not Quality.GOOD else reading.values[i]
        if uptime is not None:
            if self.uptime is not None and uptime < self.uptime:
                self.restarted_at = reading.time(i)
                self.errors.clear()  # counters started again: the old rates say nothing of now
            self.uptime = uptime
        for i, port, what in port_signals(reading.schema):
            if what == "in_errors_ps" and reading.values[i] is not None and reading.quality(i) is Quality.GOOD:
                self.errors.setdefault(port, deque(maxlen=self.errors_window)).append(float(reading.values[i]))

    def view(self, now: datetime, hold: float) -> SwitchView:
        if self.cached is None or self.cached.answering != (self.answering and self.reading is not None):
            view = self.cached = view_of(self.reading, self.answering)
            if view.answering:
                view.errors_ps = {port: list(series) for port, series in self.errors.items()}
        restarted = self.restarted_at is not None and now - self.restarted_at < timedelta(seconds=hold)
        return replace(self.cached, polled=self.polled, restarted=restarted)


class NetworkWatch:
    """Follows the switches of ``network.rings`` and the site's UPS; one instance per gateway, on the loop."""

    def __init__(self, network: NetworkConfig, devices: Sequence[DeviceConfig],
                 settings: NetworkSettings = NetworkSettings()):
        self.network, self.settings = network, settings
        self.diagnosis_settings = DiagnosisSettings(settings.link_errors_ps, settings.link_errors_polls)
        self.areas = {d.id: d.area for d in devices}
        self.attachments = {d.id: (d.network.switch, d.network.port) for d in devices if d.network is not None}
        self._switches = {s.device: _Switch(settings.link_errors_polls) for r in network.rings for s in r.switches}
        self._rings_of = {sw: [r for r in network.rings if any(s.device == sw for s in r.switches)]
                          for sw in self._switches}
        self._ups = {d.id for d in devices if isinstance(d, SnmpDeviceConfig) and d.equipment_kind == "ups"}
        self._on_battery: dict[str, bool] = {}
        self._last: dict[str, RingDiagnosis] = {}
        # a poll round of the switches: the switches of a ring report one by one, so a verdict that depends on
        # several of them (a ring open or not, a silent switch cut off or only unreachable) waits that long
        self.settle_s = max((d.poll_interval for d in devices if d.id in self._switches), default=10.0)

    def follows(self, device_id: str) -> bool:
        return device_id in self._switches or device_id in self._ups

    def on_reading(self, reading: Reading) -> NetworkUpdate | None:
        if reading.device in self._ups:
            i = reading.schema.index.get("on_battery")
            if i is not None and reading.values[i] is not None and reading.quality(i) is Quality.GOOD:
                self._on_battery[reading.device] = bool(reading.values[i])
            return NetworkUpdate(reading.ts, [], self.alarms(reading.ts))
        switch = self._switches.get(reading.device)
        if switch is None:
            return None
        switch.add(reading)
        return self._update(reading.device, reading.ts)

    def on_state(self, device_id: str, state: DeviceState) -> NetworkUpdate | None:
        switch = self._switches.get(device_id)
        if switch is None:
            return None
        switch.answering = state.status is DeviceStatus.ONLINE and switch.reading is not None
        failed = state.status is DeviceStatus.OFFLINE and state.reason != "not polled yet"
        switch.polled = switch.polled or failed  # answered, or failed to
        return self._update(device_id, state.since)

    def diagnose(self, ring: Ring, now: datetime) -> RingDiagnosis:
        views = {s.device: self._switches[s.device].view(now, self.settings.restart_hold_s) for s in ring.switches}
        return diagnose_ring(ring, views, self.network.gateway_switch, self.attachments, self.diagnosis_settings)

    def _update(self, switch: str, ts: datetime) -> NetworkUpdate:
        changed = []
        for ring in self._rings_of[switch]:
            diagnosis = self.diagnose(ring, ts)
            if self._last.get(ring.id) != diagnosis:
                changed.append(RingStatus(ts, diagnosis))
            self._last[ring.id] = diagnosis
        return NetworkUpdate(ts, changed, self.alarms(ts))

    def alarms(self, ts: datetime) -> list[NetworkAlarm]:
        """Every network alarm whose condition holds now: rings first (they explain the rest)."""
        found: list[NetworkAlarm] = []
        for ring in self.network.rings:
            d = self._last.get(ring.id)
            if d is not None:
                found += ring_alarms(ring, d, self.settle_s)
        seen: set[str] = set()
        for ring in self.network.rings:
            d = self._last.get(ring.id)
            if d is not None:
                found += [a for a in self._switch_alarms(d, self.settle_s) if a.id not in seen and not seen.add(a.id)]
        found += [NetworkAlarm(f"net.{ups}.on-battery", ups, self.areas[ups], AlarmKind.UPS_ON_BATTERY,
                               Priority.HIGH, f"{ups}: on battery (mains lost)", "battery")
                  for ups, on in sorted(self._on_battery.items()) if on]
        return found

    def _switch_alarms(self, d: RingDiagnosis, settle: float) -> list[NetworkAlarm]:
        found = []
        for sw in d.unreachable_switches:
            behind = tuple(dev for dev, (at, _) in sorted(self.attachments.items()) if at == sw)
            found.append(NetworkAlarm(f"net.{sw}.unreachable", sw, self.areas[sw], AlarmKind.SWITCH_UNREACHABLE,
                                      Priority.MEDIUM, f"{sw}: does not answer (SNMP), though reachable on paper",
                                      suppresses=(sw, *behind), on_delay=settle))
        for sw in d.restarted_switches:
            found.append(NetworkAlarm(f"net.{sw}.restarted", sw, self.areas[sw], AlarmKind.SWITCH_RESTARTED,
                                      Priority.LOW, f"{sw}: restarted (uptime went back)"))
        by_switch: dict[str, list[dict]] = {}
        for link in d.degraded_links:
            by_switch.setdefault(link["a"], []).append(link)
        for sw, links in by_switch.items():
            what = "; ".join(f"port {x['a_port']} ({_far_end(x)})" for x in links)  # the rate is the value
            found.append(NetworkAlarm(f"net.{sw}.errors", sw, self.areas[sw], AlarmKind.LINK_ERRORS, Priority.LOW,
                                      f"{sw}: error rate climbing at {what}", max(x["errors_ps"] for x in links)))
        for down in d.devices_link_down:
            dev = down["device"]
            found.append(NetworkAlarm(f"net.{dev}.link-down", dev, self.areas[dev], AlarmKind.LINK_DOWN,
                                      Priority.MEDIUM, f"{dev}: its link at {down['switch']} port {down['port']} is down",
                                      f"{down['switch']} port {down['port']}", suppresses=(dev,)))
        return found


def _far_end(link: dict) -> str:
    if link["b_port"] is None:
        return link["b"] or "no device on paper"
    return f"to {link['b']} port {link['b_port']}"


def ring_alarms(ring: Ring, d: RingDiagnosis, settle: float = 0.0) -> list[NetworkAlarm]:
    """ring_segmented (suppressing what it cut off) and ring_open, while they hold; raised at once (a port down
    is a fact), cleared once the ring stayed whole for ``settle`` seconds."""
    name = ring.name or ring.id
    found = []
    if d.state == "segmented":
        islands = " | ".join(" ".join(island) for island in d.islands)
        cut = ", ".join(d.cut_off_switches) or "nothing"
        devices = f" (devices: {', '.join(d.cut_off_devices)})" if d.cut_off_devices else ""
        found.append(NetworkAlarm(f"net.{ring.id}.segmented", ring.id, NETWORK_AREA, AlarmKind.RING_SEGMENTED,
                                  Priority.HIGH, f"ring {name}: segmented into {len(d.islands)} islands [{islands}]; "
                                  f"cut off: {cut}{devices}", len(d.islands),
                                  suppresses=(*d.cut_off_switches, *d.cut_off_devices), off_delay=settle))
    if d.state in ("open", "segmented"):
        where = ", ".join(map(str, d.open_links)) or "a link not found (the MRP manager reports it open)"
        found.append(NetworkAlarm(f"net.{ring.id}.open", ring.id, NETWORK_AREA, AlarmKind.RING_OPEN, Priority.MEDIUM,
                                  f"ring {name}: open at {where}", where, off_delay=settle))
    return found


def network_alarm_ids(network: NetworkConfig, devices: Sequence[DeviceConfig]) -> list[tuple[str, str, str]]:
    """(area, device, alarm id) of every network alarm the site can raise (to clear what an earlier run retained)."""
    areas = {d.id: d.area for d in devices}
    ids = []
    for ring in network.rings:
        ids += [(NETWORK_AREA, ring.id, f"net.{ring.id}.{what}") for what in ("open", "segmented")]
    switches = dict.fromkeys(s.device for r in network.rings for s in r.switches)
    ids += [(areas[sw], sw, f"net.{sw}.{what}") for sw in switches if sw in areas
            for what in ("unreachable", "restarted", "errors")]
    ids += [(d.area, d.id, f"net.{d.id}.link-down") for d in devices if d.network and d.network.port is not None]
    ids += [(d.area, d.id, f"net.{d.id}.on-battery") for d in devices
            if isinstance(d, SnmpDeviceConfig) and d.equipment_kind == "ups"]
    return ids
