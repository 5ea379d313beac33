"""A simulated mine that fills a real InfluxDB with every measurement of docs/historian.md, for
checking the Grafana dashboards' InfluxQL against real data.

``dashboard_site(...)`` is the site: ``demo-mine`` / ``gateway-1`` with three areas

- ``face-1201`` (longwall face): ``shearer-1201``, ``afc-1201`` (face conveyor), ``rp-1201``
  (roof pressure over OPC UA, shipped ``longwall`` node map, 20 supports), broadcast nodes
  ``bn-1201-1``, ``bn-1201-2``;
- ``heading-1302`` (heading): ``roadheader-1302``, camera ``cam-1302``, broadcast node ``bn-1302``;
- ``belt-main`` (belt line): ``belt-main-1`` and ``belt-main-2`` (one simulator port, unit ids 1
  and 2), camera ``belt-transfer-cam``, broadcast node ``bn-belt-main``;

with alarms, broadcast zones and an escape route, a methane linkage, commands and the historian.

``await fill(site)`` runs the simulators and the gateway (MQTT and historian sinks) and makes
every kind of event happen once (see :func:`fill`), then stops the gateway and drains the
historian's buffer into InfluxDB. ``filled_historian`` is a module-scoped pytest fixture doing
all of that on a fresh database of the session's InfluxDB, once per session (modules using it share
the database: read only)::

    from tests.dashboard_site import filled_historian  # noqa: F401  (the fixture)

    def test_x(filled_historian):
        rows = filled_historian.query('SELECT last("speed") FROM "belt_conveyor" GROUP BY "device"')
"""
from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from gateway.contract import BroadcastReply, CommandReply, Topics
from gateway.config import SiteConfig, parse_site
from gateway.buffer import DurableBuffer
from gateway.core.model import Quality, utcnow
from gateway.historian.influx import make_writer
from gateway.historian.lineprotocol import uplink_status_line
from gateway.historian.sink import HistorianSink
from gateway.operator import Operator
from gateway.runtime import Gateway
from gateway.service import build_sinks
from simulators.opcua.server import OpcUaSimServer
from simulators.site import SiteSimulator
from tests.network_fill import fill_network
from tests.rtsp_util import RtspCamera
from tests.util import Operators, RecordingSink, free_port

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
SITE_ID, GATEWAY_ID = "demo-mine", "gateway-1"
FACE, HEADING, BELT = "face-1201", "heading-1302", "belt-main"
SUPPORTS = 20
# The longwall face runs TIME_SCALE times faster than life and is sampled every OPC_UA_INTERVAL s
# (OPC_UA_INTERVAL x TIME_SCALE = 5 s of face time between samples): a leg is below 5 MPa for about
# 7 s of face time when its support advances, and a cycle's figures need two such lowerings. With
# SEED the first cycles are reported some 10-20 s after the start (the face's passes, stops
# included, come from the seed).
SEED, TIME_SCALE, OPC_UA_INTERVAL = 10, 100.0, 0.05
POLL = 0.5  # Modbus and ONVIF poll interval, s
USERS = ("alice", "zhang.wei")  # may write; anyone else is refused

KINDS = {  # device -> historian measurement
    "shearer-1201": "shearer", "afc-1201": "face_conveyor", "rp-1201": "roof_pressure",
    "bn-1201-1": "broadcast_node", "bn-1201-2": "broadcast_node",
    "roadheader-1302": "roadheader", "cam-1302": "camera", "bn-1302": "broadcast_node",
    "belt-main-1": "belt_conveyor", "belt-main-2": "belt_conveyor", "belt-transfer-cam": "camera",
    "bn-belt-main": "broadcast_node",
}


def keys_dir(state: Path) -> Path:
    """Where the operators' private keys of a dashboard site live (beside its replay store)."""
    return Path(state) / "operators"


def dashboard_site(mqtt_host: str, mqtt_port: int, influx_url: str, database: str, *,
                   state_dir: str | Path | None = None, prefix: str | None = None,
                   rtsp_port: int | None = None) -> SiteConfig:
    """The demo mine; ``state_dir`` holds the historian buffer and snapshots (default: a new temporary
    directory), ``prefix`` is the MQTT topic prefix (default: ``dash-<random>``, unique); with ``rtsp_port``
    (an RTSP test camera, tests/rtsp_util.py) the gateway relays both cameras' video from it."""
    state = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="minegw-dashboard-"))
    keys_dir(state).mkdir(parents=True, exist_ok=True)
    prefix = prefix or f"dash-{uuid.uuid4().hex[:8]}"
    belt_port, node_port = free_port(), free_port()
    # timeout: the simulators share the gateway's event loop; only a busy loop makes them late
    fast = {"poll_interval": POLL, "timeout": 2.0, "retries": 0, "backoff_initial": 0.2, "backoff_max": 1.0}

    def modbus(dev: str, area: str, profile: str, port: int, unit: int = 1, **extra) -> dict:
        return {"id": dev, "adapter": "modbus", "area": area, "profile": profile, "host": HOST, "port": port,
                "unit_id": unit, **fast, **extra}

    def camera(dev: str, area: str, zone: str) -> dict:
        return {"id": dev, "adapter": "onvif", "area": area, "zone": zone, "host": HOST, "port": free_port(),
                "username": "admin", "password": "Dash-Cam-4f1e", "poll_interval": POLL, "timeout": 2.0,
                "backoff_initial": 0.2, "backoff_max": 1.0}

    nodes = {"bn-1201-1": FACE, "bn-1201-2": FACE, "bn-1302": HEADING, "bn-belt-main": BELT}
    return parse_site({
        "site": {"id": SITE_ID, "name": "Demo colliery", "gateway_id": GATEWAY_ID},
        "areas": [{"id": FACE, "kind": "longwall_face", "name": "Longwall face 1201", "zones": [FACE]},
                  {"id": HEADING, "kind": "heading", "name": "Heading 1302", "zones": [HEADING]},
                  {"id": BELT, "kind": "belt_line", "name": "Main belt line", "zones": [BELT, "escape-main"]}],
        "devices": [
            modbus("shearer-1201", FACE, "shearer", free_port(), zone=FACE),
            modbus("afc-1201", FACE, "face_conveyor", free_port(), zone=FACE),
            {"id": "rp-1201", "adapter": "opcua", "area": FACE, "zone": FACE, "url": f"opc.tcp://{HOST}:{free_port()}",
             "nodemap": "longwall", "supports": SUPPORTS, "sampling_interval": OPC_UA_INTERVAL,
             "publishing_interval": OPC_UA_INTERVAL, "timeout": 4.0, "backoff_initial": 0.2, "backoff_max": 1.0},
            modbus("roadheader-1302", HEADING, "roadheader", free_port(), zone=HEADING),
            camera("cam-1302", HEADING, HEADING),
            modbus("belt-main-1", BELT, "belt_conveyor", belt_port, 1, zone=BELT),
            modbus("belt-main-2", BELT, "belt_conveyor", belt_port, 2, zone=BELT),
            camera("belt-transfer-cam", BELT, "belt-main-transfer"),
            *(modbus(node, area, "broadcast_node", node_port, i, zone=area) for i, (node, area) in
              enumerate(nodes.items(), 1)),
        ],
        "alarms": [
            {"id": "shearer-ch4", "device": "shearer-1201", "signal": "methane", "kind": "methane",
             "location": "machine"},
            {"id": "shearer-temp", "device": "shearer-1201", "signal": "left_cutting_temperature", "kind": "high",
             "limit": 135, "deadband": 5, "on_delay": 3, "priority": "high", "message": "left cutting motor hot"},
            {"id": "shearer-link", "device": "shearer-1201", "kind": "comm_loss", "on_delay": 5},
            {"id": "afc-chain", "device": "afc-1201", "signal": "chain_break", "kind": "state", "priority": "critical"},
            {"id": "roadheader-ch4", "device": "roadheader-1302", "signal": "methane", "kind": "methane",
             "location": "heading"},
            {"id": "roadheader-link", "device": "roadheader-1302", "kind": "comm_loss"},
            {"id": "belt-1-drum-hot", "device": "belt-main-1", "signal": "drive_drum_temperature", "kind": "high",
             "limit": 55, "deadband": 2, "message": "belt-main-1: drive drum hot"},
            {"id": "belt-2-current", "device": "belt-main-2", "signal": "motor_current", "kind": "high_high",
             "limit": 450, "deadband": 10},
            {"id": "belt-1-slip", "device": "belt-main-1", "signal": "slip", "kind": "state", "priority": "high"},
            {"id": "belt-2-slip", "device": "belt-main-2", "signal": "slip", "kind": "state", "priority": "high"},
            {"id": "belt-2-tear", "device": "belt-main-2", "signal": "tear", "kind": "state", "priority": "critical"},
            {"id": "belt-1-smoke", "device": "belt-main-1", "signal": "smoke_trip", "kind": "state",
             "priority": "critical", "message": "belt-main-1: smoke at the drive"},
            {"id": "roof-under-set", "device": "rp-1201", "signal": "supports_below_setting", "kind": "high",
             "limit": 5, "priority": "medium"},
        ],
        "broadcast": {
            "zones": [{"id": FACE, "nodes": ["bn-1201-1", "bn-1201-2"]},
                      {"id": HEADING, "nodes": ["bn-1302"]},
                      {"id": BELT, "nodes": ["bn-belt-main"]},
                      {"id": "escape-main", "nodes": ["bn-belt-main"], "escape_route": True}],
            "escape_routes": {FACE: ["escape-main"], HEADING: ["escape-main"]},
            "confirm_timeout": 8.0},  # the nodes' simulators share a loop that a loaded machine makes late
        "linkage": [{"kind": "methane", "message": "evacuation", "priority": "emergency"},
                    {"kind": "state", "alarms": ["belt-1-smoke"], "message": "fire", "priority": "emergency"}],
        "commands": {"allowed_users": list(USERS), "replay_store": str(state / "command-ids.sqlite3"),
                     "operators": Operators(keys_dir(state), *USERS, "mallory").site_entry()},
        "snapshots": {"directory": str(state / "snapshots")},
        "video": {"cameras": [{"device": cam, "sub": f"rtsp://{HOST}:{rtsp_port}/sub",
                               "main": f"rtsp://{HOST}:{rtsp_port}/main"} for cam in ("cam-1302", "belt-transfer-cam")],
                  "relay": {"bind": HOST, "rtsp_port": 0, "http_port": 0, "hls_dir": str(state / "hls")},
                  "clips": {"pre_s": 2, "post_s": 1}, "uplink_budget_kbps": 2000,
                  "publish_interval_s": 1} if rtsp_port else None,
        "mqtt": {"host": mqtt_host, "port": mqtt_port, "topic_prefix": prefix},
        "historian": {"url": influx_url, "database": database, "flush_interval": 0.2,
                      "buffer": {"path": str(state / "historian.sqlite3")}},
    })


# -- watching the gateway ---------------------------------------------------------------------
class Watch(RecordingSink):
    """A sink that notes what the gateway routes, so that :func:`fill` can wait for each step."""

    def __init__(self) -> None:
        super().__init__("dashboard-watch")
        self.latest: dict[str, dict[str, Any]] = {}  # device -> signal -> last value
        self.good: dict[str, dict[str, Any]] = defaultdict(dict)  # the same, of good samples only
        self.derived = 0  # *_setting_load samples derived from the roof pressure
        self.events: dict[str, set] = defaultdict(set)  # device -> values of event signals seen (cameras)

    def on_reading(self, device, reading) -> None:
        super().on_reading(device, reading)
        values = self.latest.setdefault(device.id, {})
        for s in reading.samples:
            values[s.signal] = s.value
            if s.quality is Quality.GOOD:
                self.good[device.id][s.signal] = s.value
            if s.signal.endswith("_setting_load"):
                self.derived += 1
            if s.signal == "motion":
                self.events[device.id].add(s.value)

    def alarm_state(self, alarm: str) -> str | None:
        states = [e.state.value for e in self.alarm_events if e.alarm == alarm]
        return states[-1] if states else None

    def status(self, device: str) -> str | None:
        states = [s.status.value for s in self.states if s.device == device]
        return states[-1] if states else None

    async def until(self, what: str, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (result := predicate()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"dashboard fill: no {what} within {timeout:g} s")
            await asyncio.sleep(0.05)
        return result


# -- the fill ---------------------------------------------------------------------------------
@dataclass
class FillReport:
    """What :func:`fill` did: seconds per step since its start (simulators first), and what the historian took."""

    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    lines_written: int = 0  # by the gateway's historian sink
    lines_drained: int = 0  # left in the buffer at the stop, written afterwards
    dead_letters: int = 0  # lines InfluxDB refused (type conflicts...): should be 0
    derived_setting_loads: int = 0
    replies: dict[str, dict] = field(default_factory=dict)  # request id -> the gateway's reply


class _Fill:
    def __init__(self, site: SiteConfig, gateway: Gateway, sims: SiteSimulator, watch: Watch, report: FillReport,
                 started: float):
        self.site, self.gw, self.sims, self.watch, self.report = site, gateway, sims, watch, report
        self.topics = Topics(site.mqtt.topic_prefix, site.site.id)
        self.started = started
        self.linked = asyncio.Event()

    def step(self, name: str) -> None:
        self.report.steps[name] = round(time.monotonic() - self.started, 2)
        log.info("dashboard fill: %s at %.1f s", name, self.report.steps[name])

    # -- through the broker, with the functions `minegw alarm ack|write|broadcast` use --------
    async def ack(self, rid: str, alarm: str, by: str) -> None:
        reply = await self._request("ack", by, rid, alarm=alarm)
        if not reply["ok"]:
            raise RuntimeError(f"dashboard fill: acknowledgement of {alarm} refused: {reply['error']}")

    async def _request(self, kind: str, by: str, rid: str, **fields) -> dict:
        operator = Operator(keys_dir(self.site.commands.replay_store.parent) / f"{by}.key", by)
        reply = await asyncio.to_thread(operator.send, self.site.mqtt, self.topics, kind, 15.0,
                                        self.site.commands.max_age, rid, **fields)
        if reply is None:
            raise TimeoutError(f"dashboard fill: no reply to a {kind} command")
        reply = reply.model_dump(mode="json")
        self.report.replies[reply["request_id"]] = reply
        return reply

    async def write(self, rid: str, device: str, signal: str, value, by: str = "alice", reason: str | None = None):
        return CommandReply.model_validate(await self._request("write", by, rid, device=device, signal=signal,
                                                               value=value, reason=reason))

    async def broadcast(self, rid: str, action: str, zones: list[str], by: str = "zhang.wei", **extra):
        return BroadcastReply.model_validate(await self._request("broadcast", by, rid, action=action, zones=zones,
                                                                 **extra))

    # -- the scenes, run side by side -----------------------------------------------------
    async def face(self) -> None:
        """Methane on the shearer: alarm and cut level, evacuation linkage, acknowledged, cleared."""
        w = self.watch
        self.sims.simulator("shearer-1201").set_fault("out_of_range", signal="methane", value=4.4)
        await w.until("methane alarm", lambda: w.alarm_state("shearer-ch4") == "active_unack"
                      and w.alarm_state("shearer-ch4-cut") == "active_unack")
        self.step("methane alarm raised")
        await w.until("methane linkage", lambda: {e.alarm for e in w.linkages} >= {"shearer-ch4", "shearer-ch4-cut"})
        self.step("methane linkage confirmed")
        self.linked.set()
        await self.ack("dash-ack-1", "shearer-ch4", "zhang.wei")
        await self.ack("dash-ack-2", "shearer-ch4-cut", "zhang.wei")
        await w.until("methane acknowledgement", lambda: w.alarm_state("shearer-ch4") == "active_ack"
                      and w.alarm_state("shearer-ch4-cut") == "active_ack")
        self.step("methane alarm acknowledged")
        self.sims.simulator("shearer-1201").clear_fault("out_of_range")
        await w.until("methane back to normal", lambda: w.alarm_state("shearer-ch4") == "normal"
                      and w.alarm_state("shearer-ch4-cut") == "normal")
        self.step("methane alarm cleared")

    async def heading(self) -> None:
        """The roadheader's link goes down for a few seconds (comm_loss alarm); motion on the camera."""
        w = self.watch
        await w.until("roadheader online", lambda: w.status("roadheader-1302") == "online")
        self.sims.simulator("roadheader-1302").set_fault("offline")
        await w.until("roadheader offline", lambda: w.status("roadheader-1302") == "offline")
        offline_at = time.monotonic()
        self.step("roadheader offline")
        await self.camera_motion("cam-1302")
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - offline_at)))  # a few seconds offline
        self.sims.simulator("roadheader-1302").clear_fault("offline")
        await w.until("roadheader online again", lambda: w.status("roadheader-1302") == "online", timeout=20)
        self.step("roadheader online")
        await w.until("roadheader link alarm cleared", lambda: w.alarm_state("roadheader-link") == "cleared_unack")
        await self.ack("dash-ack-3", "roadheader-link", "alice")
        await w.until("roadheader link alarm normal", lambda: w.alarm_state("roadheader-link") == "normal")

    async def camera_motion(self, cam: str) -> None:
        w = self.watch
        await w.until(f"{cam} events", lambda: False in w.events[cam], timeout=20)  # subscribed
        self.sims.simulator(cam).set_fault("motion")
        await w.until(f"motion on {cam}", lambda: True in w.events[cam])
        await asyncio.sleep(1.0)
        self.sims.simulator(cam).clear_fault("motion")
        await w.until(f"motion over on {cam}", lambda: w.latest.get(cam, {}).get("motion") is False)
        self.step(f"motion on {cam}")

    async def commands(self) -> None:
        """Writes accepted and refused, and a broadcast played and stopped, all through the broker."""
        ok = await self.write("dash-write-1", "shearer-1201", "haulage_speed_setpoint", -4.5,
                              reason="slow down for the roof")
        assert ok.ok, ok
        ok = await self.write("dash-write-2", "belt-main-1", "run_command", True, by="zhang.wei")
        assert ok.ok, ok
        refused = await self.write("dash-write-3", "shearer-1201", "haulage_speed_setpoint", 20)
        assert not refused.ok and refused.error.startswith("out of range"), refused
        refused = await self.write("dash-write-4", "belt-main-2", "run_command", False, by="mallory")
        assert not refused.ok and refused.error.startswith("unauthorised"), refused
        self.step("writes")
        played = await self.broadcast("dash-bc-play", "play", [HEADING], message="gas", priority="dispatcher",
                                      reason="gas drill")
        assert played.ok, played
        # polls of the node must see it playing before the stop (a loaded machine polls late): the first
        # one, then two more intervals of it
        await self.watch.until("bn-1302 playing", lambda: self.watch.latest.get("bn-1302", {}).get("playing_priority") == 2)
        await asyncio.sleep(2 * POLL)
        stopped = await self.broadcast("dash-bc-stop", "stop", [HEADING])
        assert stopped.ok, stopped
        self.step("broadcast play and stop")

    async def belt(self) -> None:
        """A hot drive drum, a slipping belt, motion at the transfer point, smoke at the drive (fire
        broadcast by linkage), and a broadcast node that fails to confirm (gateway alarm
        broadcast-node-bn-belt-main) and then confirms again."""
        w = self.watch
        self.sims.simulator("belt-main-1").set_fault("out_of_range", signal="drive_drum_temperature", value=65.0)
        # the historian must hold a good reading of the belt before it slips (a loaded machine's first ones are stale)
        await w.until("belt-main-2 read running", lambda: w.good["belt-main-2"].get("slip") is False)
        self.sims.simulator("belt-main-2").set_fault("slip", ratio=0.4)
        await self.camera_motion("belt-transfer-cam")
        await w.until("belt alarms", lambda: w.alarm_state("belt-1-drum-hot") == "active_unack"
                      and w.alarm_state("belt-2-slip") == "active_unack")
        self.step("belt alarms raised")
        await self.linked.wait()  # the escape route's node is busy with the evacuation until then
        self.sims.simulator("belt-main-1").set_fault("smoke", level=1.5)  # trips after ~5 s: fire broadcast
        await w.until("fire linkage", lambda: any(e.alarm == "belt-1-smoke" for e in w.linkages))
        self.step("smoke: fire linkage confirmed")
        node = self.sims.simulator("bn-belt-main")
        node.set_fault("amplifier_fault")
        failed = await self.gw.broadcast.play("all_clear", [BELT], "routine")
        assert not failed.ok, failed
        node.clear_fault("amplifier_fault")
        for _ in range(3):  # the first confirmation clears the gateway alarm
            if (quiet := await self.gw.broadcast.stop([BELT, "escape-main"])).ok:
                break
        assert quiet.ok, quiet
        node_alarm = "broadcast-node-bn-belt-main"
        await w.until("broadcast node alarm cleared",
                      lambda: [a.active for a in w.alarms if a.id == node_alarm][-2:] == [True, False])
        self.step("broadcast node alarm raised and cleared")
        self.sims.simulator("belt-main-1").clear_fault("out_of_range")
        self.sims.simulator("belt-main-1").clear_fault("smoke")  # the trip resets, the belt starts again
        await w.until("drum and smoke alarms cleared", lambda: w.alarm_state("belt-1-drum-hot") == "cleared_unack"
                      and w.alarm_state("belt-1-smoke") == "cleared_unack")
        self.step("drum and smoke alarms cleared")

    async def roof(self) -> None:
        await self.watch.until("roof-pressure cycle figures", lambda: self.watch.derived >= 4, timeout=45)
        self.step("roof-pressure cycles")


async def fill(site: SiteConfig, *, seed: int = SEED, time_scale: float = TIME_SCALE,
               min_seconds: float = 15.0) -> FillReport:
    """Run the site's simulators and gateway (MQTT and historian) until every kind of event happened:

    readings of every device (roof-pressure cycle figures ``support_NNN_*_leg_setting_load`` … included),
    motion on both cameras, the roadheader offline for 3 s and back (``comm_loss`` alarm, acknowledged),
    methane on the shearer (alarm and cut level raised, evacuation linkage to the face and its escape
    route, acknowledged through the broker, cleared), belt alarms (hot drum: high; slip: state; smoke
    trip: state, with a fire broadcast by linkage in the belt line's zones), device
    writes accepted and refused and a broadcast played and stopped through the command topics, a
    broadcast node with an amplifier fault that does not confirm (gateway alarm raised, then cleared);
    then stop the gateway and write what its buffer still holds to InfluxDB. At least ``min_seconds``.
    """
    report = FillReport()
    started = time.monotonic()
    state_dir = site.historian.buffer.path.parent
    sims = SiteSimulator(site, seed=seed, opcua_time_scale=time_scale, onvif_discovery_port=None,
                         opcua_certificate_dir=state_dir / "opcua-pki")
    for server in sims.servers:
        if isinstance(server, OpcUaSimServer):
            server.update_interval = OPC_UA_INTERVAL  # new values as often as the gateway samples
    watch = Watch()
    sinks = build_sinks(site)
    historian = next(s for s in sinks if isinstance(s, HistorianSink))
    historian.health_interval = 2.0  # gateway_health every 2 s
    await sims.start()
    try:
        gateway = Gateway(site, [*sinks, watch])
        await gateway.start()
        try:
            run = _Fill(site, gateway, sims, watch, report, started)
            await watch.until("a reading of every device",
                              lambda: set(KINDS) <= set(watch.latest), timeout=20)
            run.step("every device read")
            fill_network(historian)  # ring, switches, UPS (tests/network_fill.py)
            historian.put_lines([(time.time(), uplink_status_line(SITE_ID, "district-1", True, utcnow()))])
            await asyncio.gather(run.face(), run.heading(), run.commands(), run.belt(), run.roof())
            await asyncio.sleep(max(0.0, min_seconds - (time.monotonic() - started)))
            report.derived_setting_loads = watch.derived
        finally:
            await gateway.stop()
            report.lines_written = historian.written
    finally:
        await sims.stop()
    report.lines_drained, report.dead_letters = await drain(site)
    rows = influx_query(site.historian.url, 'SELECT count("buffered") FROM "gateway_health"', site.historian.database)
    if not rows or not rows[0].get("count"):
        raise RuntimeError(f"dashboard fill: nothing in {site.historian.database}.gateway_health after the drain")
    report.seconds = round(time.monotonic() - started, 1)
    log.info("dashboard fill done in %.1f s: %s", report.seconds, report)
    return report


async def drain(site: SiteConfig) -> tuple[int, int]:
    """Write what the (stopped) gateway left in its historian buffer; returns (lines written, dead letters)."""
    buffer = DurableBuffer(site.historian.buffer.path, create=False)
    writer = make_writer(site.historian)
    written = 0
    try:
        while (batch := buffer.take_batch(site.historian.batch_lines)) is not None:
            for attempt in range(20):
                try:
                    await writer.write(batch.lines)
                    break
                except Exception as exc:  # noqa: BLE001 - retry a refusal a few times, then give up loudly
                    if attempt == 19:
                        buffer.nack(batch)
                        raise RuntimeError(f"dashboard fill: cannot drain the historian buffer: {exc}") from exc
                    await asyncio.sleep(0.25)
            buffer.ack(batch)
            written += len(batch)
        return written, buffer.stats().dead_letters
    finally:
        await writer.close()
        buffer.close()


def influx_query(url: str, q: str, db: str | None = None) -> list[dict]:
    """InfluxQL over HTTP; the rows of every series as dicts (series tags included), times in ns."""
    params = {"q": q, "epoch": "ns", **({"db": db} if db else {})}
    req = urllib.request.Request(f"{url}/query?{urllib.parse.urlencode(params)}", method="POST")
    with urllib.request.urlopen(req, timeout=10) as response:
        answer = json.loads(response.read() or b"{}")
    rows = []
    for result in answer.get("results", []):
        if result.get("error"):
            raise RuntimeError(f"{q}: {result['error']}")
        for series in result.get("series", []):
            rows += [{**series.get("tags", {}), **dict(zip(series["columns"], values))} for values in series["values"]]
    return rows


# -- the fixture ------------------------------------------------------------------------------
@dataclass
class FilledHistorian:
    """A database filled by :func:`fill`: ``query(q)`` runs InfluxQL on it (rows as dicts, tags included)."""

    url: str
    database: str
    site: SiteConfig
    report: FillReport
    influx: Any = None  # the session's tests.conftest.Influx
    supports: int = SUPPORTS  # of the roof-pressure device rp-1201

    def query(self, q: str) -> list[dict]:
        if self.influx is not None:
            return self.influx.query(q, self.database)
        return influx_query(self.url, q, self.database)


_FILLED: dict[str, FilledHistorian] = {}  # InfluxDB url -> its filled database, once per test session


@pytest.fixture(scope="module")
def filled_historian(mosquitto, influxdb, tmp_path_factory) -> FilledHistorian:
    """A database of the session's InfluxDB filled by the simulated mine (about 20 s, once per session:
    every module using the fixture gets the same database; read it, never write to it)."""
    if (filled := _FILLED.get(influxdb.url)) is None:
        database = influxdb.create_database(f"dashboards_{uuid.uuid4().hex[:8]}")
        state = tmp_path_factory.mktemp("dashboard-site")
        camera = RtspCamera().start()  # the video relay's source (stream health panels, live tiles)
        try:
            site = dashboard_site(mosquitto.host, mosquitto.port, influxdb.url, database, state_dir=state,
                                  rtsp_port=camera.port)
            report = asyncio.run(fill(site))
        finally:
            camera.stop()
        print(f"\ndashboard fill: {report.seconds} s, steps {report.steps}")
        filled = _FILLED[influxdb.url] = FilledHistorian(url=influxdb.url, database=database, site=site,
                                                         report=report, influx=influxdb)
    return filled
