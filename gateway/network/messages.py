"""The ring diagnosis on the wire: ``{prefix}/{site}/network/ring/{ring}`` (retained), see docs/network.md.

Part of the MQTT contract (``Topics.network_ring`` in gateway/contract.py); kept here, beside the diagnosis
whose fields it carries.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, PlainSerializer

from gateway.core.model import iso

Timestamp = Annotated[AwareDatetime, PlainSerializer(iso, return_type=str, when_used="json")]


class RingLink(BaseModel):
    """A ring link: switch ``a`` port ``a_port`` cabled to switch ``b`` port ``b_port``."""

    a: str
    a_port: int
    b: str
    b_port: int


class DegradedLink(BaseModel):
    """A link whose in-error rate climbs; ``b`` is the far switch, or the device on an access port (``b_port`` null)."""

    a: str
    a_port: int
    b: str
    b_port: int | None
    errors_ps: float


class MiswiredEnd(BaseModel):
    """A ring port whose LLDP neighbour is not the one on paper."""

    switch: str
    port: int
    expected: str
    expected_port: str
    found: str
    found_port: str


class DeviceLinkDown(BaseModel):
    device: str
    switch: str
    port: int


class NetworkRingMessage(BaseModel):
    """``{prefix}/{site}/network/ring/{ring}`` (retained): the ring's diagnosis (docs/network.md, "Diagnosis")."""

    site: str
    ring: str
    ts: Timestamp  # of the switch event that changed it
    state: Literal["closed", "open", "segmented", "unknown"]
    open_links: list[RingLink]
    islands: list[list[str]]  # the ring's pieces when segmented, each in ring order; empty otherwise
    cut_off_switches: list[str]  # not reachable from the gateway's switch
    cut_off_devices: list[str]  # devices hung on those switches
    unreachable_switches: list[str] = []  # not answering, yet reachable on paper
    degraded_links: list[DegradedLink]
    restarted_switches: list[str]
    miswired: list[MiswiredEnd]
    devices_link_down: list[DeviceLinkDown] = []
