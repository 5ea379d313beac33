"""Simulate every Modbus, OPC UA, ONVIF and SNMP device of a site file, with optional scenario and fault control.

Modbus devices that share host:port are served by one server, one unit id each (a
gateway in front of an RS485 line). OPC UA devices get one server per endpoint URL
(see simulators/opcua), ONVIF cameras one each, plus one WS-Discovery responder for
them all (see simulators/onvif), SNMP switches and UPS one agent each, wired into the site's
rings (see simulators/snmp: a cut that isolates switches takes the devices behind them offline). Every device gets its own seed, derived from the site seed
and its id, and all share one clock: seconds since :meth:`SiteSimulator.start`.

The control endpoint lets another process inject faults: TCP, one JSON object per
line each way::

    {"device": "belt-main-1", "fault": "slip", "params": {"ratio": 0.45}}
    {"device": "belt-main-1", "fault": "slip", "clear": true}     # clear one fault
    {"device": "belt-main-1", "clear": true}                      # clear them all
    {"device": "belt-main-1", "isolated": true}                   # cut off by the ring (or back: false)
    -> {"ok": true, "device": "belt-main-1", "faults": {...active faults...}}
    -> {"ok": false, "error": "..."}

The reply comes once the change is in effect (an offline port is closed by then).

A site can be split over processes (``part``; see simulators/procs.py): each part serves
its share of the Modbus endpoints, part 0 also every OPC UA and ONVIF server. Every part
runs the scenario steps of its own devices, all on one clock (``origin``), and part 0's
control endpoint passes requests for the other parts' devices on to theirs (``remote``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.opcua.nodemap import load_nodemap
from simulators.faults import FaultError
from simulators.modbus.scenario import Scenario, run_scenario
from simulators.modbus.server import DeviceSimulator, ModbusSimServer
from simulators.onvif.camera import CameraSimulator
from simulators.onvif.site import site_cameras
from simulators.opcua.face import FaceSimulator
from simulators.opcua.server import OpcUaSimServer
from simulators.physics import derive_seed
from simulators.snmp.site import site_snmp

log = logging.getLogger(__name__)


def site_parts(site: Any, parts: int) -> dict[str, int]:
    """Which part serves each device when the site is split over ``parts`` processes: Modbus
    endpoints (host:port, with all their units) in turn, everything else in part 0."""
    endpoints: dict[tuple[str, int], int] = {}
    owner = {}
    for d in site.devices:
        if d.adapter == "modbus":
            owner[d.id] = endpoints.setdefault((d.host, d.port), len(endpoints) % parts)
        else:
            owner[d.id] = 0
    return owner


class SiteSimulator:
    """Serve every Modbus, OPC UA and ONVIF device of ``site``: a loaded site file (a ``SiteConfig``;
    only its ``devices`` are read, each by its ``adapter`` and that adapter's settings).

    ``bind_host`` overrides the devices' hosts for listening (e.g. "0.0.0.0" when the
    site file names this machine's LAN address). ``control_port`` opens the fault
    control endpoint on ``control_host`` (0: any free port, see ``control_address``).
    OPC UA faces run ``opcua_time_scale`` times faster than the clock (a shearer pass
    takes ~40 min at 1); their server certificates go to ``opcua_certificate_dir``
    (default: a temporary directory per server). Cameras answer WS-Discovery probes on UDP
    ``onvif_discovery_port`` (None: no responder) and stream over RTSP on ``rtsp_port``
    (0: a free one, what GetStreamUri answers; None: no streams).

    ``part`` = (index, count) serves only that part of the site (:func:`site_parts`), with the
    clock counting from ``origin`` (a ``time.monotonic()`` reading every part shares; default:
    start). ``remote`` maps the devices other parts serve to their control endpoints.
    """

    def __init__(self, site: Any, seed: int = 0,
                 scenario: Scenario | str | Path | None = None, *, bind_host: str | None = None,
                 control_port: int | None = None, control_host: str = "127.0.0.1",
                 opcua_time_scale: float = 1.0, opcua_certificate_dir: str | Path | None = None,
                 onvif_discovery_port: int | None = 3702, part: tuple[int, int] = (0, 1),
                 origin: float | None = None, rtsp_port: int | None = 0):
        if isinstance(site, (str, Path)):
            raise TypeError("SiteSimulator takes a loaded site, not a path: load the file first")
        self.site = site
        self.seed = seed
        self.part = part
        self._origin = origin
        self._started_at: float | None = None
        owner = site_parts(site, part[1])
        mine = [d for d in site.devices if owner[d.id] == part[0]]
        self.remote: dict[str, tuple[str, int]] = {}
        self._simulators: dict[str, DeviceSimulator | FaceSimulator | CameraSimulator] = {
            d.id: DeviceSimulator(d.id, d.profile, d.unit_id, derive_seed(seed, d.id), clock=self.clock)
            for d in mine if d.adapter == "modbus"}
        endpoints: dict[tuple[str, int], list[DeviceSimulator]] = defaultdict(list)
        for d in self.site.devices:
            if d.id in self._simulators:
                endpoints[bind_host or d.host, d.port].append(self._simulators[d.id])
        self.servers: list[ModbusSimServer | OpcUaSimServer] = [
            ModbusSimServer(host, port, sims) for (host, port), sims in endpoints.items()]
        self.servers += self._opcua_servers(mine, bind_host, opcua_time_scale, opcua_certificate_dir)
        cameras, camera_servers = site_cameras([d for d in mine if d.adapter == "onvif"],
                                               bind_host, onvif_discovery_port, rtsp_port)
        self._simulators.update(cameras)
        self.servers += camera_servers
        self._isolating: set[asyncio.Task] = set()
        snmp_sims, agents, self.network = site_snmp(site, [d for d in mine if d.adapter == "snmp"], seed,
                                                   self.clock, bind_host, self.isolate)
        self._simulators.update(snmp_sims)
        self.servers += agents
        if scenario is not None and not isinstance(scenario, Scenario):
            scenario = Scenario.load(scenario)
        if scenario is not None:  # steps on the other parts' devices run there
            scenario = scenario.without({d.id for d in site.devices if owner[d.id] != part[0]})
            scenario.check(self._simulators)
        self.scenario = scenario
        self._control = _ControlEndpoint(self)
        self._control_at = (control_host, control_port) if control_port is not None else None
        self._scenario_task: asyncio.Task | None = None

    def _opcua_servers(self, devices: list[Any], bind_host: str | None, time_scale: float,
                       certificate_dir: str | Path | None) -> list[OpcUaSimServer]:
        """One server per endpoint URL. It accepts the logins the site file uses; anonymous
        sessions only where no device logs in."""
        by_url: dict[str, list[Any]] = defaultdict(list)
        for d in devices:
            if d.adapter == "opcua":
                by_url[d.url].append(d)
        servers = []
        for url, devices in by_url.items():
            faces = [self._face(d, time_scale) for d in devices]
            users = {d.username: d.password.get_secret_value() if d.password else "" for d in devices if d.username}
            where = urlparse(url)
            own_dir = Path(certificate_dir) / f"{where.hostname}_{where.port}" if certificate_dir else None
            servers.append(OpcUaSimServer(url, faces, users=users, allow_anonymous=not users,
                                          certificate_dir=own_dir, bind_host=bind_host))
        return servers

    def _face(self, d: Any, time_scale: float) -> FaceSimulator:
        self._simulators[d.id] = face = FaceSimulator(
            d.id, load_nodemap(d.nodemap, d.supports), derive_seed(self.seed, d.id), clock=self.clock,
            time_scale=time_scale)
        return face

    # -- access ---------------------------------------------------------------------------
    def clock(self) -> float:
        """Seconds since start (0 before)."""
        return 0.0 if self._started_at is None else time.monotonic() - self._started_at

    @property
    def simulators(self) -> dict[str, DeviceSimulator | FaceSimulator]:
        return dict(self._simulators)

    def simulator(self, device_id: str) -> DeviceSimulator | FaceSimulator:
        try:
            return self._simulators[device_id]
        except KeyError:
            raise KeyError(f"no simulated device {device_id!r} "
                           f"(known: {', '.join(self._simulators)})") from None

    def isolate(self, device_id: str, isolated: bool) -> None:
        """Cut a device off (its server stops answering) or bring it back, wherever it is served."""
        if where := self.remote.get(device_id):
            line = json.dumps({"device": device_id, "isolated": isolated}).encode()
            task = asyncio.get_running_loop().create_task(_forward(where, line, device_id))
            self._isolating.add(task)
            task.add_done_callback(self._isolating.discard)
        elif device_id in self._simulators:
            self._simulators[device_id].set_isolated(isolated)

    @property
    def control_address(self) -> tuple[str, int] | None:
        """(host, port) of the control endpoint while it runs."""
        return self._control.address

    @property
    def scenario_done(self) -> bool:
        return self._scenario_task is not None and self._scenario_task.done()

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Open every server (OSError if a port is taken), the control endpoint, and the scenario."""
        self._started_at = self._origin if self._origin is not None else time.monotonic()
        try:
            for server in self.servers:
                await server.start()
            if self._control_at:
                await self._control.start(*self._control_at)
        except BaseException:
            await self.stop()
            raise
        if self.scenario is not None:
            self._scenario_task = asyncio.create_task(
                run_scenario(self.scenario, self._simulators, self.clock, self.settled), name="scenario")
            self._scenario_task.add_done_callback(_log_failure)

    async def stop(self) -> None:
        if self._scenario_task:
            self._scenario_task.cancel()
            await asyncio.gather(self._scenario_task, return_exceptions=True)
            self._scenario_task = None
        await self._control.stop()
        for server in self.servers:
            await server.stop()

    async def settled(self) -> None:
        """Wait until every server's port follows the latest ``offline`` changes."""
        while self._isolating:
            await asyncio.gather(*self._isolating, return_exceptions=True)
        for server in self.servers:
            await server.settled()

    async def __aenter__(self) -> SiteSimulator:
        await self.start()
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        await self.stop()


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception():
        log.error("scenario stopped: %s", task.exception())


# -- fault control over TCP ---------------------------------------------------------------
class ControlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str
    fault: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    clear: bool = False
    isolated: bool | None = Field(None, description="the simulated ring cut the device off (or brought it back)")


class ControlError(Exception):
    """The control endpoint refused a request."""


class _ControlEndpoint:
    def __init__(self, site: SiteSimulator):
        self.site = site
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> tuple[str, int] | None:
        if self._server is None or not self._server.sockets:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._clients):  # Server.close() leaves open connections be
                writer.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while line := await reader.readline():
                if line.strip():
                    writer.write(json.dumps(await self.handle(line)).encode() + b"\n")
                    await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away or sent an endless line
        finally:
            self._clients.discard(writer)
            writer.close()

    async def handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = ControlRequest.model_validate_json(line)
            if where := self.site.remote.get(request.device):
                return await _forward(where, line, request.device)
            sim = self.site.simulator(request.device)
            if request.isolated is not None:
                sim.set_isolated(request.isolated)
            elif request.clear:
                sim.clear_fault(request.fault)
            elif request.fault:
                sim.set_fault(request.fault, **request.params)
            else:
                raise FaultError('give "fault" (with "params"), or "clear": true')
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg']}" for e in exc.errors())
            return {"ok": False, "error": f"bad request: {problems}"}
        except (FaultError, KeyError) as exc:
            return {"ok": False, "error": str(exc.args[0])}
        await self.site.settled()
        return {"ok": True, "device": request.device, "faults": sim.faults}


async def _forward(where: tuple[str, int], line: bytes, device: str, timeout: float = 10.0) -> dict[str, Any]:
    """Pass a control request on to the part of the site that serves ``device``; its reply."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*where), timeout)
        try:
            writer.write(line.rstrip(b"\n") + b"\n")
            await writer.drain()
            reply = await asyncio.wait_for(reader.readline(), timeout)
        finally:
            writer.close()
        return json.loads(reply)
    except (OSError, asyncio.TimeoutError, ValueError) as exc:
        return {"ok": False, "error": f"{device}: its simulator process ({where[0]}:{where[1]}) "
                                      f"did not answer: {exc or type(exc).__name__}"}


async def send_fault(host: str, port: int, device: str, fault: str | None = None,
                     params: dict[str, Any] | None = None, *, clear: bool = False,
                     timeout: float = 5.0) -> dict[str, Any]:
    """Ask a running SiteSimulator's control endpoint to set (or ``clear``) a fault.

    Returns the reply (``faults`` holds the device's active faults); raises
    :class:`ControlError` when the simulator refuses, OSError when it is not there.
    """
    request: dict[str, Any] = {"device": device}
    if fault is not None:
        request["fault"] = fault
    if params:
        request["params"] = params
    if clear:
        request["clear"] = True
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    if not line:
        raise ControlError("the simulator closed the connection without answering")
    reply = json.loads(line)
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "refused"))
    return reply
