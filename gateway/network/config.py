"""The ``network:`` section of the site file: rings of switches, and where the gateway hangs on.

A ring is an ordered list of switches (device ids of ``adapter: snmp`` devices with a switch
profile), each with its two ring ports (ifIndex). Link *i* joins ``switches[i].ports[1]`` to
``switches[i+1].ports[0]``; the last switch's ``ports[1]`` joins the first switch's ``ports[0]``,
which closes the ring. Devices name the switch they hang on (``devices[].network``).
"""
from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from adapters.snmp.config import SnmpDeviceConfig
from gateway.core.device import DeviceConfig

_ID = r"^[A-Za-z0-9_.-]+$"


class RingSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str = Field(pattern=_ID, description="device id of the switch")
    ports: tuple[int, int] = Field(description="its two ring ports (ifIndex): towards the previous, the next switch")


class Ring(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="used in topics: …/network/ring/{id}")
    name: str = ""
    switches: list[RingSwitch] = Field(min_length=2)


class NetworkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gateway_switch: str | None = Field(None, pattern=_ID,
                                       description="the switch the gateway hangs on: what is cut off is seen from it")
    rings: list[Ring] = []
    reach_interval: float = Field(30.0, ge=0, description="seconds between TCP reachability probes of the devices "
                                  "(device_health reachable, reach_ms); 0: off")


def check_network(network: NetworkConfig, devices: Sequence[DeviceConfig]) -> list[str]:
    """Located problems of the ``network:`` section against the site's devices (empty: none).

    Ring switches must be SNMP switches of the site, their ring ports among the ports they read, no
    switch twice in a ring; the gateway's switch and every device's ``network.switch`` must exist; a ring
    port takes one cable (not two rings, not a ring and a device). Devices may share an access port: the
    units behind one Modbus gateway do.
    """
    by_id = {d.id: d for d in devices}
    problems = []
    if network.gateway_switch and network.gateway_switch not in by_id:
        problems.append(f"network.gateway_switch: unknown device {network.gateway_switch!r}")
    cabled: dict[tuple[str, int], str] = {}  # (switch, port) -> where it is used first
    rings: dict[str, int] = {}
    for r, ring in enumerate(network.rings):
        where = f"network.rings[{r}]"
        if ring.id in rings:
            problems.append(f"{where}.id: {ring.id!r} already used by network.rings[{rings[ring.id]}]")
        rings.setdefault(ring.id, r)
        seen: dict[str, int] = {}
        for s, member in enumerate(ring.switches):
            at = f"{where}.switches[{s}]"
            if member.device in seen:
                problems.append(f"{at}.device: {member.device!r} is already in this ring at switches[{seen[member.device]}]")
                continue
            seen[member.device] = s
            problem = _switch_problem(by_id.get(member.device))
            if problem:
                problems.append(f"{at}.device: {member.device!r} {problem}")
                continue
            problems += _port_problems(at + ".ports", by_id[member.device], member.ports, cabled)
    for i, device in enumerate(devices):
        if device.network is None:
            continue
        at = f"devices[{i}].network"
        problem = _switch_problem(by_id.get(device.network.switch))
        if problem:
            problems.append(f"{at}.switch: {device.network.switch!r} {problem}")
        elif device.network.port is not None:
            problems += _port_problems(at + ".port", by_id[device.network.switch], (device.network.port,),
                                       dict(cabled))  # a copy: devices may share a port, not a ring port
    return problems


def _switch_problem(device: DeviceConfig | None) -> str | None:
    if device is None:
        return "is not a device of this site"
    if not isinstance(device, SnmpDeviceConfig):
        return f"is not a switch (adapter: {device.adapter}; a ring switch is adapter: snmp, profile: ring_switch)"
    if device.equipment_kind not in ("network_switch", "network_device"):  # a profile file: its kind is not known
        return f"is not a switch (profile: {device.profile})"
    return None


def _port_problems(where: str, switch: SnmpDeviceConfig, ports: Sequence[int],
                   cabled: dict[tuple[str, int], str]) -> list[str]:
    problems = []
    if len(ports) == 2 and ports[0] == ports[1]:
        problems.append(f"{where}: the two ring ports are both {ports[0]}")
    known = switch.port_indexes
    for port in dict.fromkeys(ports):
        if port not in known:
            problems.append(f"{where}: port {port} is not among {switch.id}'s ports ({_ports_text(known)})")
        elif (switch.id, port) in cabled:
            problems.append(f"{where}: {switch.id} port {port} is used twice (also at {cabled[switch.id, port]})")
        else:
            cabled[switch.id, port] = where
    return problems


def _ports_text(ports: list[int]) -> str:
    if ports and ports == list(range(ports[0], ports[-1] + 1)):
        return f"{ports[0]}..{ports[-1]}"
    return ", ".join(map(str, ports))
