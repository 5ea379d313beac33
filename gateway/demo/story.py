"""The demo's scripted story, and the keys that play its scenes one at a time.

The story (:meth:`Story.play`): methane rises at the shearer → the alarm → the evacuation broadcast in
the face's zones and its escape route, every node confirming (trigger → all confirmed, from the
linkage event); belt-main-1's drive drum slips and the belt trips; the belt-transfer camera drops off
the network; periodic weighting raises the load along a stretch of the face; then everything is put
right, and (``auto_ack``) the demo operator acknowledges the alarms and stops the broadcast with
signed commands, through the broker, as a dispatcher would.

Faults go through the simulators' control endpoint, the code ``minegw sim-fault`` runs
(simulators/site.py ``send_fault``): another terminal can inject the same faults.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.config import SiteConfig
from gateway.contract import Topics
from gateway.demo.site import BELT_1, BELT_CAMERA, ESCAPE, FACE, ROOF, SHEARER
from gateway.demo.watch import CLEARED, RAISED, DemoWatch
from gateway.operator import Operator

log = logging.getLogger(__name__)

Action = tuple[str, str, Callable[[], Awaitable[None]]]  # (key, description, what it does)

GAS = {"level": 1.3, "rate": 0.1}  # %CH4: over the 1.0 alarm level in ~8 s, under the 1.5 cut level
SLIP = {"ratio": 0.4}  # belt speed / rated: MT 872 trips at once below 0.5
WEIGHTING = {"first": 60, "last": 95, "factor": 6.0, "duration": 1800.0}  # supports; face seconds
WAIT = 30.0  # s for each scene's effect to show on MQTT


class Story:
    """The scenes, as methods the console's keys call (each toggles its fault), and the script."""

    def __init__(self, control: tuple[str, int], watch: DemoWatch, site: SiteConfig,
                 operator: Operator | None = None, auto_ack: bool = False):
        self.control, self.watch, self.site = control, watch, site
        self.operator, self.auto_ack = operator, auto_ack
        self.topics = Topics(site.mqtt.topic_prefix, site.site.id)
        self.started = time.monotonic()
        self.log: list[str] = []
        self.faults: set[str] = set()  # scenes in effect: methane, slip, camera
        self.done = asyncio.Event()
        self.on_note: Callable[[str], None] | None = None  # told every line of the log as it comes
        self._script: asyncio.Task | None = None

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.started:5.1f} s {text}"
        self.log.append(line)
        log.info("story: %s", text)
        if self.on_note is not None:
            self.on_note(line)

    def actions(self) -> list[Action]:
        """The console's keys for the story."""
        return [("s", "story now", self.start), ("m", "methane", self.methane), ("b", "belt slip", self.belt_slip),
                ("c", "camera off", self.camera_off), ("w", "weighting", self.weighting),
                ("x", "clear all", self.clear_all)]

    # -- the scenes ---------------------------------------------------------------------
    async def fault(self, device: str, fault: str | None = None, params: dict[str, Any] | None = None,
                    clear: bool = False) -> None:
        from simulators.site import ControlError, send_fault

        try:
            await send_fault(*self.control, device=device, fault=fault, params=params, clear=clear)
        except (ControlError, OSError) as exc:
            self.note(f"{device}: {fault or 'faults'} refused: {exc}")

    async def _toggle(self, scene: str, device: str, fault: str, params: dict, on: str, off: str) -> None:
        clear = scene in self.faults
        await self.fault(device, fault, None if clear else params, clear=clear)
        (self.faults.discard if clear else self.faults.add)(scene)
        self.note(off if clear else on)

    async def methane(self) -> None:
        await self._toggle("methane", SHEARER, "gas", GAS, f"methane rising at {SHEARER} (gas inflow)",
                           f"gas inflow at {SHEARER} stopped: methane falls back")

    async def belt_slip(self) -> None:
        await self._toggle("slip", BELT_1, "slip", SLIP, f"{BELT_1}: drive drum slipping",
                           f"{BELT_1}: drum grips again, trip reset, belt restarts")

    async def camera_off(self) -> None:
        await self._toggle("camera", BELT_CAMERA, "offline", {}, f"{BELT_CAMERA} drops off the network",
                           f"{BELT_CAMERA} back on the network")

    async def weighting(self) -> None:
        await self.fault(ROOF, "weighting", WEIGHTING)
        self.note(f"periodic weighting over supports {WEIGHTING['first']}-{WEIGHTING['last']} of {ROOF}")

    async def clear_all(self) -> None:
        for device in (SHEARER, BELT_1, BELT_CAMERA):
            await self.fault(device, clear=True)
        self.faults.clear()
        self.note("every fault cleared")

    # -- the script ---------------------------------------------------------------------
    async def start(self) -> None:
        """Play the story now (a key); again once it is over."""
        if self._script is None or self._script.done():
            self._script = asyncio.create_task(self.play(), name="demo-story")

    async def start_at(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.start()

    async def stop(self) -> None:
        if self._script is not None:
            self._script.cancel()
            await asyncio.gather(self._script, return_exceptions=True)

    async def play(self) -> None:
        self.done.clear()
        self.note("the story begins")
        if "methane" not in self.faults:
            await self.methane()
        if await self.until("methane alarm", lambda: self.watch.alarm_state("shearer-ch4") in RAISED):
            self.note("alarm shearer-ch4 raised: the linkage plays evacuation in the face and escape route")
        if link := await self.until("evacuation broadcast", lambda: self.watch.linkage("shearer-ch4")):
            self.note(f"evacuation broadcast: {link.describe()}")
        for scene in (self.belt_slip, self.camera_off):
            await scene()
        await self.weighting()
        await self.until("belt trip", lambda: self.watch.alarm_state("belt-1-slip") in RAISED)
        await self.until("camera offline", lambda: self.watch.alarm_state(f"{BELT_CAMERA}-link") in RAISED)
        await asyncio.sleep(3)
        await self.clear_all()
        for alarm in ("shearer-ch4", "belt-1-slip", f"{BELT_CAMERA}-link"):
            await self.until(f"{alarm} cleared", lambda a=alarm: self.watch.alarm_state(a) in CLEARED)
        if self.auto_ack and self.operator is not None:
            await self.dispatcher_all_clear()
        self.note("the story is over")
        self.done.set()

    async def until(self, what: str, predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while not (result := predicate()):
            if time.monotonic() > deadline:
                self.note(f"no {what} within {timeout:g} s")
                return None
            await asyncio.sleep(0.2)
        return result

    async def dispatcher_all_clear(self) -> None:
        """Acknowledge every cleared alarm and stop the evacuation message: signed commands, through the broker."""
        for alarm in self.watch.unacknowledged():
            reply = await self.send("ack", alarm=alarm)
            self.note(f"{alarm} acknowledged by {self.operator.name} (signed command): {outcome(reply)}")
        reply = await self.send("broadcast", action="stop", zones=[FACE, ESCAPE])
        self.note(f"evacuation message stopped in {FACE}, {ESCAPE} (signed command): {outcome(reply)}")

    async def send(self, kind: str, **fields) -> Any:
        cfg = self.site.mqtt
        return await asyncio.to_thread(self.operator.send, cfg, self.topics, kind, 15.0,
                                       self.site.commands.max_age, gateway=self.site.site.gateway_id, **fields)


def outcome(reply: Any) -> str:
    if reply is None:
        return "no reply"
    return "ok" if reply.ok else f"refused: {reply.error}"
