"""The simulated ring network: which cable joins which ports, what the MRP manager sees, what a cut isolates.

Built from the site file (docs/network.md): link *i* of a ring joins ``switches[i].ports[1]`` to
``switches[i+1].ports[0]`` and the last switch closes the ring; a device with
``network: {switch, port}`` hangs on that port. The first switch of each ring is its MRP manager.

After every fault change on a switch the network works out, from the gateway's switch
(``network.gateway_switch``, default the first ring's first switch), which switches can still be
reached over links that are not cut, and takes the rest offline (their agents stop answering)
together with every device hanging on them or on a cut port (``isolate(device_id, True)``: the
site simulator closes that device's Modbus / OPC UA / ONVIF server). Everything comes back when
the links do.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from simulators.faults import FaultParams

from .switch import MrpDomain, SwitchSimulator

log = logging.getLogger(__name__)

End = tuple[str, int]  # (switch id, port)
RING_PORT_MBPS, DEVICE_PORT_MBPS = 1000, 100
NO_LINK_FAULTS = ("offline", "unreachable", "crc_errors")  # faults that change no link


class RingState:
    """One ring as its MRP manager sees it: open when a link is down; counts each opening."""

    def __init__(self, ring_id: str, links: list[tuple[End, End]], is_up: Callable[[End], bool]):
        self.ring_id, self.links, self.is_up = ring_id, links, is_up
        self.reset()

    def reset(self) -> None:
        """The manager restarted: it counts from zero."""
        self.open_count = 0
        self._was_open = False

    def down_links(self) -> list[tuple[End, End]]:
        return [(a, b) for a, b in self.links if not (self.is_up(a) and self.is_up(b))]

    def state(self) -> tuple[bool, int]:
        """(ring open now, ring-open count); counts the openings it sees (each fault change, each read)."""
        is_open = bool(self.down_links())
        if is_open and not self._was_open:
            self.open_count += 1
        self._was_open = is_open
        return is_open, self.open_count


class RingNetwork:
    """The rings of a site over its simulated switches.

    ``switches``: the SwitchSimulators by device id; ``devices``: every device of the site file
    (their ``network`` attachments are read); ``isolate(device_id, isolated)`` takes a device's
    server offline or back (the site simulator's job: the device may live in another process).
    """

    def __init__(self, network: Any, switches: dict[str, SwitchSimulator], devices: Iterable[Any],
                 isolate: Callable[[str, bool], None]):
        self.switches = switches
        self.isolate = isolate
        self.cables: dict[End, End] = {}
        self.rings: dict[str, RingState] = {}
        self.managers: dict[str, str] = {}  # ring id → its MRP manager's switch id
        self.attached: dict[str, tuple[str, int | None]] = {}  # device id → (switch, port)
        self.isolated: set[str] = set()  # device ids (switches included) cut off now
        for ring in network.rings:
            self._lay_ring(ring)
        first = network.rings[0].switches[0].device if network.rings else None
        self.gateway_switch = network.gateway_switch or first
        for d in devices:
            if d.network is not None and d.network.switch in switches:
                self._attach(d.id, d.network.switch, d.network.port)
        for sw_id, sw in switches.items():
            sw.link_up = lambda port, sw_id=sw_id: self.is_up((sw_id, port))
            sw.cable_cut = lambda port, sw_id=sw_id: self.is_cut((sw_id, port))
            sw.subscribe(self._switch_changed)
            self._set_traffic(sw)
            sw.start_counters()

    def _lay_ring(self, ring: Any) -> None:
        members = [s for s in ring.switches if s.device in self.switches]
        if len(members) != len(ring.switches):
            log.warning("ring %s: only %d of its %d switches are simulated here", ring.id, len(members),
                        len(ring.switches))
        links = []
        for i, here in enumerate(ring.switches):
            there = ring.switches[(i + 1) % len(ring.switches)]
            a, b = (here.device, here.ports[1]), (there.device, there.ports[0])
            if here.device in self.switches and there.device in self.switches:
                self.cables[a], self.cables[b] = b, a
                links.append((a, b))
                for (sw, port), (other, other_port) in ((a, b), (b, a)):
                    p = self.switches[sw].add_port(port)
                    p.ring, p.speed_mbps, p.neighbor = True, RING_PORT_MBPS, (other, str(other_port))
        manager = ring.switches[0].device
        if manager in self.switches:
            state = self.rings[ring.id] = RingState(ring.id, links, self.is_up)
            self.managers[ring.id] = manager
            self.switches[manager].mrp = MrpDomain(ring.name or ring.id, ring.switches[0].ports, state.state)

    def _attach(self, device_id: str, switch: str, port: int | None) -> None:
        self.attached[device_id] = (switch, port)
        if port is not None:
            p = self.switches[switch].add_port(port)
            p.speed_mbps, p.neighbor = DEVICE_PORT_MBPS, (device_id, "1")

    def _set_traffic(self, sw: SwitchSimulator) -> None:
        """Nominal traffic: a few Mbit/s per device, the ring ports carry the ring's share."""
        for port in sw.ports.values():
            if port.ring:
                base = 40e6 + 60e6 * sw.noise.uniform(f"ring{port.index}")
                port.in_bps, port.out_bps = base, base * (0.8 + 0.4 * sw.noise.uniform(f"ring-out{port.index}"))
            elif port.neighbor is not None:
                port.in_bps = 0.2e6 + 4e6 * sw.noise.uniform(f"dev{port.index}")  # cameras send most
                port.out_bps = port.in_bps * 0.05

    # -- link state -------------------------------------------------------------------------
    def is_cut(self, end: End) -> bool:
        """Whether the cable on this port is cut (at either of its ends)."""
        ends = [end, self.cables[end]] if end in self.cables else [end]
        return any(self.switches[sw].cut_port() == port for sw, port in ends)

    def is_up(self, end: End) -> bool:
        """Whether the port has a link now: something on its cable, not cut, not in a flap's down half."""
        if end not in self.cables and not self._device_on(end):
            return False
        ends = [end, self.cables[end]] if end in self.cables else [end]
        return not any(self.switches[sw].cut_port() == port or self.switches[sw].flapping_down(port)
                       for sw, port in ends)

    def _device_on(self, end: End) -> bool:
        return any(where == end for where in self.attached.values())

    # -- reachability -----------------------------------------------------------------------
    def reachable(self) -> set[str]:
        """The switches the gateway's switch reaches over cables that are not cut (flaps carry traffic)."""
        if self.gateway_switch not in self.switches:
            return set(self.switches)
        seen, todo = {self.gateway_switch}, [self.gateway_switch]
        while todo:
            here = todo.pop()
            for (sw, port), (other, _) in self.cables.items():
                if sw == here and other not in seen and not self.is_cut((sw, port)):
                    seen.add(other)
                    todo.append(other)
        in_rings = {sw for sw, _ in self.cables}
        return seen | (set(self.switches) - in_rings)

    def cut_off(self) -> set[str]:
        """Device ids (switches and what hangs on them) the gateway cannot reach now."""
        reach = self.reachable()
        gone = set(self.switches) - reach
        for device, (switch, port) in self.attached.items():
            if switch in gone or (port is not None and self.is_cut((switch, port))):
                gone.add(device)
        return gone

    def _switch_changed(self, switch: SwitchSimulator, fault: str, _params: FaultParams | None) -> None:
        if fault in NO_LINK_FAULTS:
            return  # among them the offline changes apply() itself makes
        if fault == "reboot":
            for ring_id, manager in self.managers.items():
                if manager == switch.device_id:
                    self.rings[ring_id].reset()
        for sw in self.switches.values():
            sw.layout += 1  # LLDP rows follow cuts
        for ring in self.rings.values():
            ring.state()  # the manager counts this opening even if nobody reads it now
        self.apply()

    def apply(self) -> None:
        """Take what is cut off offline, bring back what is reachable again."""
        gone = self.cut_off()
        for device in sorted(gone ^ self.isolated):
            isolated = device in gone
            log.info("%s %s", device, "cut off by the ring" if isolated else "reachable again")
            if device in self.switches:
                self.switches[device].set_isolated(isolated)
            else:
                self.isolate(device, isolated)
        self.isolated = gone
