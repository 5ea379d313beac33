"""The ``network:`` section of the site file: rings of switches, and where the gateway hangs on.

A ring is an ordered list of switches (device ids of ``adapter: snmp`` devices with a switch
profile), each with its two ring ports (ifIndex). Link *i* joins ``switches[i].ports[1]`` to
``switches[i+1].ports[0]``; the last switch's ``ports[1]`` joins the first switch's ``ports[0]``,
which closes the ring. Devices name the switch they hang on (``devices[].network``).
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

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
