"""The SNMP devices of a site file (switches, UPS) and their ring, for :class:`simulators.site.SiteSimulator`."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.snmp.config import PROFILE_KINDS
from simulators.physics import derive_seed

from .agent import SnmpAgent
from .network import RingNetwork
from .switch import SwitchSimulator
from .ups import UpsSimulator


def site_snmp(site: Any, devices: list[Any], seed: int, clock: Callable[[], float], bind_host: str | None,
              isolate: Callable[[str, bool], None],
              ) -> tuple[dict[str, SwitchSimulator | UpsSimulator], list[SnmpAgent], RingNetwork]:
    """A simulator and an agent per ``adapter: snmp`` device in ``devices`` (profile ``ups``: a UPS;
    anything else: a switch), and the ring network over the switches (``site.network``; every
    device's ``network`` attachment). ``isolate(device_id, flag)`` takes a non-SNMP device offline."""
    sims: dict[str, SwitchSimulator | UpsSimulator] = {}
    agents = []
    switches: dict[str, SwitchSimulator] = {}
    for d in devices:
        where = d.zone or d.area
        if PROFILE_KINDS.get(d.profile) == "ups":
            sim: SwitchSimulator | UpsSimulator = UpsSimulator(d.id, derive_seed(seed, d.id), clock, where)
        else:
            sim = switches[d.id] = SwitchSimulator(d.id, d.port_indexes, derive_seed(seed, d.id), clock, where)
        sims[d.id] = sim
        community = d.community.get_secret_value() if d.version == "2c" else None
        agents.append(SnmpAgent(sim, bind_host or d.host, d.port, community=community, user=d.v3,
                                muted=lambda sim=sim: sim.offline))
    network = RingNetwork(site.network, switches, site.devices, isolate)
    return sims, agents, network
