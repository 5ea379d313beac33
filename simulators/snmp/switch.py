"""A simulated industrial ring switch: ports with live counters, LLDP neighbours, MRP on the ring's manager.

Faults (``minegw sim-fault SWITCH FAULT -p NAME=VALUE``):

- ``cut`` (``port``): the cable on that port is cut. Both ends go oper-down (a ring port's
  neighbour too), its LLDP entry goes; a ring cut opens the ring, two cuts may isolate switches
  and the devices behind them (simulators/snmp/network.py). One cut per switch: cut the other end
  of a link on the neighbour.
- ``flap`` (``port``, ``period`` s, default 5): the link goes down and up every ``period`` s,
  at both ends.
- ``crc_errors`` (``port``, ``rate`` per s, default 20): ifInErrors climbs (a failing connector).
- ``reboot``: the switch restarts now: sysUpTime back to 0, every counter back to 0 (not kept as
  an active fault).
- ``unreachable`` (or ``offline``): the management agent stops answering; traffic still flows.

The model's time is the site simulator's clock; counters are integrated lazily, when read.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from simulators.faults import FaultError, FaultHolder, FaultParams, Listener, NoParams
from simulators.physics import Noise

from . import mib
from .mib import Getter, Oid


class PortParams(FaultParams):
    port: int = Field(ge=1, description="ifIndex")


class FlapParams(PortParams):
    period: float = Field(5.0, gt=0, description="seconds down, then as many up")


class CrcParams(PortParams):
    rate: float = Field(20.0, gt=0, description="input errors per second")


SWITCH_FAULTS: dict[str, type[FaultParams]] = {
    "cut": PortParams, "flap": FlapParams, "crc_errors": CrcParams, "reboot": NoParams,
    "unreachable": NoParams, "offline": NoParams}

UPTIME_BEFORE_START = (3 * 86400, 40 * 86400)  # s: how long a switch had been up when the simulator starts


@dataclass
class Port:
    """One switch port: nominal traffic and what hangs on it (LLDP: system name, port id)."""

    index: int
    speed_mbps: int
    in_bps: float = 0.0
    out_bps: float = 0.0
    neighbor: tuple[str, str] | None = None
    ring: bool = False
    counted_at: float = 0.0
    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("in", "out", "errors", "discards"), 0.0))


@dataclass
class MrpDomain:
    """What the ring's MRP manager reports: ``state()`` → (ring open, ring-open count)."""

    name: str
    ports: tuple[int, int]
    state: Callable[[], tuple[bool, int]]


class SwitchSimulator(FaultHolder):
    """One ring switch. The network (simulators/snmp/network.py) wires it: ``ports``, ``link_up(port)``
    (is the cable on that port carrying a link now), ``cable_cut(port)``, ``mrp`` on the ring's
    manager; it bumps ``layout`` when a cut comes or goes (LLDP neighbours with it)."""

    def __init__(self, device_id: str, port_indexes: list[int], seed: int, clock: Callable[[], float],
                 location: str = ""):
        self.device_id, self.location, self.clock = device_id, location, clock
        self.noise = Noise(seed)
        self.ports = {i: Port(i, 100) for i in sorted(set(port_indexes))}
        self.link_up: Callable[[int], bool] = lambda _port: False
        self.cable_cut: Callable[[int], bool] = lambda _port: False
        self.mrp: MrpDomain | None = None
        self.layout = 0
        self.boots = 0
        low, high = UPTIME_BEFORE_START
        self.booted_at = -(low + (high - low) * self.noise.uniform("uptime"))
        self._faults: dict[str, FaultParams] = {}
        self._listeners: list[Listener] = []
        self._flap_since: float = 0.0

    def __repr__(self) -> str:
        return f"SwitchSimulator({self.device_id!r}, {len(self.ports)} ports)"

    def add_port(self, index: int) -> Port:
        return self.ports.setdefault(index, Port(index, 100))

    def start_counters(self) -> None:
        """Counters as if the traffic had flowed since the switch booted."""
        now = self.clock()
        for port in self.ports.values():
            up_for = now - self.booted_at if self.link_up(port.index) else 0.0
            port.counters.update({"in": port.in_bps / 8 * up_for, "out": port.out_bps / 8 * up_for,
                                  "errors": 0.0, "discards": port.in_bps / 8e5 * up_for * 1e-4})
            port.counted_at = now

    # -- faults ---------------------------------------------------------------------------
    @property
    def fault_kinds(self) -> dict[str, type[FaultParams]]:
        return SWITCH_FAULTS

    @property
    def offline(self) -> bool:
        return super().offline or "unreachable" in self._faults

    def _check_targets(self, name: str, params: FaultParams) -> FaultParams:
        if isinstance(params, PortParams) and params.port not in self.ports:
            raise FaultError(f"{self.device_id}: {name}: no port {params.port} (ports: {', '.join(map(str, self.ports))})")
        return params

    def set_fault(self, name: str, **params: Any) -> FaultParams:
        """Inject a fault now (replacing the same fault's earlier parameters)."""
        checked = self.check_fault(name, params)
        self._count_all()
        if name == "reboot":
            self.reboot()
        else:
            if name == "flap":
                self._flap_since = self.clock()
            self._faults[name] = checked
        self._notify(name, checked)
        return checked

    def _fault_cleared(self, name: str) -> None:
        self._count_all()

    def reboot(self) -> None:
        """Restart now: uptime and every counter from zero."""
        self.booted_at = now = self.clock()
        self.boots += 1
        for port in self.ports.values():
            port.counters.update(dict.fromkeys(port.counters, 0.0))
            port.counted_at = now

    def cut_port(self) -> int | None:
        cut = self._faults.get("cut")
        return cut.port if isinstance(cut, PortParams) else None

    def flapping_down(self, port: int) -> bool:
        """Whether a flapping port is in its down half now."""
        flap = self._faults.get("flap")
        if not isinstance(flap, FlapParams) or flap.port != port:
            return False
        return math.floor((self.clock() - self._flap_since) / flap.period) % 2 == 0

    # -- live values ------------------------------------------------------------------------
    def uptime(self) -> float:
        return max(0.0, self.clock() - self.booted_at)

    def oper_up(self, index: int) -> bool:
        return self.link_up(index)

    def _count(self, port: Port) -> dict[str, float]:
        """Bring a port's counters to now: traffic while the link is up, CRC errors while injected."""
        now = self.clock()
        dt = now - port.counted_at
        if dt > 0:
            if self.oper_up(port.index):
                swing = 1 + 0.2 * self.noise.wave(f"traffic{port.index}", now, 30.0)
                port.counters["in"] += port.in_bps / 8 * swing * dt
                port.counters["out"] += port.out_bps / 8 * swing * dt
                port.counters["discards"] += port.in_bps / 8e5 * 1e-4 * dt
            crc = self._faults.get("crc_errors")
            if isinstance(crc, CrcParams) and crc.port == port.index:
                port.counters["errors"] += crc.rate * dt
            port.counted_at = now
        return port.counters

    def _count_all(self) -> None:
        for port in self.ports.values():
            self._count(port)

    # -- the MIB ----------------------------------------------------------------------------
    def mib(self) -> dict[Oid, Getter]:
        objects: dict[Oid, Getter] = {
            mib.SYS_DESCR: lambda: mib.OctetString("minegw simulated industrial ring switch"),
            mib.SYS_OBJECT_ID: lambda: mib.ObjectIdentifier((1, 3, 6, 1, 4, 1, 8072, 3, 2, 10)),
            mib.SYS_UPTIME: lambda: mib.timeticks(self.uptime()),
            mib.SYS_CONTACT: lambda: mib.OctetString(""),
            mib.SYS_NAME: lambda: mib.OctetString(self.device_id),
            mib.SYS_LOCATION: lambda: mib.OctetString(self.location),
            mib.SYS_SERVICES: lambda: mib.Integer(2),
            mib.IF_NUMBER: lambda: mib.Integer(len(self.ports)),
        }
        for port in self.ports.values():
            objects.update(self._port_objects(port))
            if port.neighbor is not None and not self.cable_cut(port.index):  # LLDP's TTL outlasts a flap
                objects.update(self._lldp_objects(port))
        if self.mrp is not None:
            objects.update(self._mrp_objects(self.mrp))
        return objects

    def _port_objects(self, port: Port) -> dict[Oid, Getter]:
        i, col, xcol = port.index, mib.IF_COLUMNS, mib.IF_X_COLUMNS
        name = f"port {i}"
        oper = lambda: mib.Integer(mib.UP if self.oper_up(i) else mib.DOWN)
        counted = lambda key, kind: lambda: kind(self._count(port)[key])
        row: dict[tuple[int, int], Getter] = {
            (1, col["ifIndex"]): lambda: mib.Integer(i),
            (1, col["ifDescr"]): lambda: mib.OctetString(name),
            (1, col["ifType"]): lambda: mib.Integer(6),  # ethernetCsmacd
            (1, col["ifMtu"]): lambda: mib.Integer(1500),
            (1, col["ifSpeed"]): lambda: mib.Gauge32(min(port.speed_mbps * 1_000_000, mib.COUNTER32 - 1)),
            (1, col["ifPhysAddress"]): lambda: mib.OctetString(self._mac(i)),
            (1, col["ifAdminStatus"]): lambda: mib.Integer(mib.UP),
            (1, col["ifOperStatus"]): oper,
            (1, col["ifLastChange"]): lambda: mib.timeticks(0),
            (1, col["ifInOctets"]): counted("in", mib.counter32),
            (1, col["ifInDiscards"]): counted("discards", mib.counter32),
            (1, col["ifInErrors"]): counted("errors", mib.counter32),
            (1, col["ifOutOctets"]): counted("out", mib.counter32),
            (2, xcol["ifName"]): lambda: mib.OctetString(name),
            (2, xcol["ifHCInOctets"]): counted("in", mib.counter64),
            (2, xcol["ifHCOutOctets"]): counted("out", mib.counter64),
            (2, xcol["ifHighSpeed"]): lambda: mib.Gauge32(port.speed_mbps),
            (2, xcol["ifAlias"]): lambda: mib.OctetString(port.neighbor[0] if port.neighbor else ""),
        }
        return {(mib.IF_ENTRY if table == 1 else mib.IF_X_ENTRY) + (c, i): g for (table, c), g in row.items()}

    def _mac(self, index: int) -> bytes:
        return bytes([0x02, 0x6D, 0x67]) + int(self.noise.uniform("mac") * 0xFFFF).to_bytes(2, "big") + bytes([index])

    def _lldp_objects(self, port: Port) -> dict[Oid, Getter]:
        sys_name, port_id = port.neighbor  # type: ignore[misc]
        col, index = mib.LLDP_COLUMNS, (0, port.index, 1)  # lldpRemTimeMark 0, local port, lldpRemIndex 1
        row = {
            "lldpRemChassisIdSubtype": lambda: mib.Integer(mib.LLDP_CHASSIS_LOCAL),
            "lldpRemChassisId": lambda: mib.OctetString(sys_name),
            "lldpRemPortIdSubtype": lambda: mib.Integer(mib.LLDP_PORT_LOCAL),
            "lldpRemPortId": lambda: mib.OctetString(port_id),
            "lldpRemPortDesc": lambda: mib.OctetString(f"port {port_id}"),
            "lldpRemSysName": lambda: mib.OctetString(sys_name),
        }
        return {mib.LLDP_REM_ENTRY + (col[name],) + index: g for name, g in row.items()}

    def _mrp_objects(self, domain: MrpDomain) -> dict[Oid, Getter]:
        col = mib.MRP_COLUMNS

        def port_state(index: int) -> Getter:
            def state() -> Any:
                if not self.oper_up(index):
                    return mib.Integer(mib.MRP_PORT_NOT_CONNECTED)
                closed = not domain.state()[0]  # the manager blocks its second port while the ring is closed
                return mib.Integer(mib.MRP_PORT_BLOCKED if closed and index == domain.ports[1] else mib.MRP_PORT_FORWARDING)
            return state

        row: dict[str, Getter] = {
            "mrpDomainName": lambda: mib.OctetString(domain.name),
            "mrpDomainOperRole": lambda: mib.Integer(mib.MRP_ROLE_MANAGER),
            "mrpDomainRingPort1": lambda: mib.Integer(domain.ports[0]),
            "mrpDomainRingPort1State": port_state(domain.ports[0]),
            "mrpDomainRingPort2": lambda: mib.Integer(domain.ports[1]),
            "mrpDomainRingPort2State": port_state(domain.ports[1]),
            "mrpDomainState": lambda: mib.OctetString(mib.MRP_STATE_OPEN if domain.state()[0] else mib.MRP_STATE_CLOSED),
            "mrpDomainRingOpenCount": lambda: mib.counter32(domain.state()[1]),
        }
        return {mib.MRP_DOMAIN_ENTRY + (col[name], 1): g for name, g in row.items()}
