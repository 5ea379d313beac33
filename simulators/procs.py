"""One site's simulators spread over several processes (``minegw sim SITE --procs N``).

Python serves requests on one core; a site of a thousand Modbus devices polled every
second wants more. :class:`SiteProcesses` splits the site with
:func:`simulators.site.site_parts`: this process is part 0 (its share of the Modbus
endpoints, every OPC UA and ONVIF server, the control endpoint the operator uses) and
starts N-1 child processes (``multiprocessing``, spawned), each serving its share of the
Modbus endpoints with a control endpoint of its own on a free loopback port. Part 0's
control endpoint passes a request for a device in a child on to that child's endpoint
and returns its reply, so ``minegw sim-fault DEVICE FAULT`` reaches the device whichever
process serves it. Every part counts model time from the same ``time.monotonic()``
reading and runs the scenario steps of its own devices; seeds derive from the device
ids, so values are the ones one process would serve.

A child stops when part 0 stops or dies (its end of the pipe closes, kill -9 included).
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from gateway.core.heap import settle_heap
from simulators.site import SiteSimulator, site_parts

log = logging.getLogger(__name__)

START_TIMEOUT = 120.0  # s: a child imports, builds and opens its servers


class SiteProcesses:
    """Part 0 of a site split over ``procs`` processes, and the children serving the rest.

    Takes SiteSimulator's arguments (``control_port``/``control_host`` are the operator's
    endpoint, in this process). ``procs`` 1 is a plain SiteSimulator in this process.
    """

    def __init__(self, site: Any, procs: int = 1, seed: int = 0, scenario: Any = None, **options: Any):
        if procs < 1:
            raise ValueError(f"procs must be at least 1, got {procs}")
        self.site, self.procs, self.seed, self.scenario = site, procs, seed, scenario
        self.origin = time.monotonic()
        self.owner = site_parts(site, procs)
        self.local = SiteSimulator(site, seed=seed, scenario=scenario, part=(0, procs), origin=self.origin,
                                   **options)
        self.child_options = {k: v for k, v in options.items() if k in ("bind_host",)}
        self.children: dict[int, tuple[multiprocessing.Process, Connection]] = {}

    @property
    def pids(self) -> dict[int, int]:
        """Process id of each part while it runs (0: this process)."""
        return {0: os.getpid(), **{i: p.pid for i, (p, _) in self.children.items()}}

    async def start(self) -> None:
        """Start the children, then this part. OSError if a part cannot open its ports."""
        ctx = multiprocessing.get_context("spawn")
        try:
            for part in range(1, self.procs):
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(target=_child, name=f"minegw-sim-{part}", daemon=True, args=(
                    self.site, (part, self.procs), self.seed, self.scenario, self.origin, self.child_options,
                    logging.getLogger().level, theirs))
                proc.start()
                theirs.close()
                self.children[part] = (proc, mine)
            for part, (proc, conn) in self.children.items():
                status, detail = await asyncio.to_thread(_receive, conn, proc, START_TIMEOUT)
                if status != "ready":
                    raise OSError(f"simulator process {part}: {detail}")
                host, port = detail
                self.local.remote.update({d: (host, port) for d, p in self.owner.items() if p == part})
            await self.local.start()
        except BaseException:
            await self.stop()
            raise
        if self.children:
            log.info("simulating over %d processes: %s", self.procs,
                     ", ".join(f"part {i}: pid {pid}" for i, pid in self.pids.items()))

    async def stop(self) -> None:
        await self.local.stop()
        children, self.children = self.children, {}
        for proc, conn in children.values():
            conn.close()  # the child sees its pipe close and stops
        for proc, _ in children.values():
            await asyncio.to_thread(proc.join, 10)
            if proc.is_alive():
                proc.kill()
                await asyncio.to_thread(proc.join, 5)

    async def __aenter__(self) -> SiteProcesses:
        await self.start()
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        await self.stop()


def _receive(conn: Connection, proc: multiprocessing.Process, timeout: float) -> tuple[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.poll(0.2):
            try:
                return conn.recv()
            except EOFError:
                break
        if not proc.is_alive():
            break
    return "error", ("exited" if not proc.is_alive() else f"not ready within {timeout:g} s")


def _child(site: Any, part: tuple[int, int], seed: int, scenario: Any, origin: float, options: dict,
           log_level: int, conn: Connection) -> None:
    """A child process: serve one part until the parent's end of ``conn`` closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: part 0 stops us
    logging.basicConfig(level=log_level or logging.WARNING,
                        format=f"%(asctime)s sim part {part[0]} %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve_part(site, part, seed, scenario, origin, options, conn))


async def _serve_part(site: Any, part: tuple[int, int], seed: int, scenario: Any, origin: float,
                      options: dict, conn: Connection) -> None:
    try:
        sims = SiteSimulator(site, seed=seed, scenario=scenario, part=part, origin=origin,
                             control_port=0, control_host="127.0.0.1", **options)
        await sims.start()
    except Exception as exc:  # noqa: BLE001 - reported to part 0, which fails the start
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    settle_heap()  # as part 0 does (gateway/service.py): a full collection stops every device's answers
    conn.send(("ready", sims.control_address))
    parent_gone = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), parent_gone.set)  # readable: closed (or a message, which we do not send)
    try:
        await parent_gone.wait()
    finally:
        loop.remove_reader(conn.fileno())
        await sims.stop()
