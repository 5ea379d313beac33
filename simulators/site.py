"""Simulate every Modbus device of a site file, with optional scenario and fault control.

Devices that share host:port are served by one server, one unit id each (a gateway in
front of an RS485 line). Every device gets its own seed, derived from the site seed
and its id, and all share one clock: seconds since :meth:`SiteSimulator.start`.

The control endpoint lets another process inject faults: TCP, one JSON object per
line each way::

    {"device": "belt-main-1", "fault": "slip", "params": {"ratio": 0.45}}
    {"device": "belt-main-1", "fault": "slip", "clear": true}     # clear one fault
    {"device": "belt-main-1", "clear": true}                      # clear them all
    -> {"ok": true, "device": "belt-main-1", "faults": {...active faults...}}
    -> {"ok": false, "error": "..."}

The reply comes once the change is in effect (an offline port is closed by then).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.config import SiteConfig, load_site
from simulators.modbus.dynamics import derive_seed
from simulators.modbus.scenario import Scenario, run_scenario
from simulators.modbus.server import DeviceSimulator, FaultError, ModbusSimServer

log = logging.getLogger(__name__)


class SiteSimulator:
    """Serve every Modbus device of ``site`` (a SiteConfig or a site file path).

    ``bind_host`` overrides the devices' hosts for listening (e.g. "0.0.0.0" when the
    site file names this machine's LAN address). ``control_port`` opens the fault
    control endpoint on ``control_host`` (0: any free port, see ``control_address``).
    """

    def __init__(self, site: SiteConfig | str | Path, seed: int = 0,
                 scenario: Scenario | str | Path | None = None, *, bind_host: str | None = None,
                 control_port: int | None = None, control_host: str = "127.0.0.1"):
        self.site = site if isinstance(site, SiteConfig) else load_site(site)
        self.seed = seed
        self._started_at: float | None = None
        self._simulators = {
            d.id: DeviceSimulator(d.id, d.profile, d.unit_id, derive_seed(seed, d.id), clock=self.clock)
            for d in self.site.devices if d.adapter == "modbus"}
        endpoints: dict[tuple[str, int], list[DeviceSimulator]] = defaultdict(list)
        for d in self.site.devices:
            if d.id in self._simulators:
                endpoints[bind_host or d.host, d.port].append(self._simulators[d.id])
        self.servers = [ModbusSimServer(host, port, sims) for (host, port), sims in endpoints.items()]
        if scenario is not None and not isinstance(scenario, Scenario):
            scenario = Scenario.load(scenario)
        if scenario is not None:
            scenario.check(self._simulators)
        self.scenario = scenario
        self._control = _ControlEndpoint(self)
        self._control_at = (control_host, control_port) if control_port is not None else None
        self._scenario_task: asyncio.Task | None = None

    # -- access ---------------------------------------------------------------------------
    def clock(self) -> float:
        """Seconds since start (0 before)."""
        return 0.0 if self._started_at is None else time.monotonic() - self._started_at

    @property
    def simulators(self) -> dict[str, DeviceSimulator]:
        return dict(self._simulators)

    def simulator(self, device_id: str) -> DeviceSimulator:
        try:
            return self._simulators[device_id]
        except KeyError:
            raise KeyError(f"no simulated device {device_id!r} "
                           f"(known: {', '.join(self._simulators)})") from None

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
        self._started_at = time.monotonic()
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
            sim = self.site.simulator(request.device)
            if request.clear:
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
