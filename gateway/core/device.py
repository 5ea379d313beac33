"""What every device's settings have, whatever its protocol; each adapter's config extends it."""
from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})")


def _host_name(value: str) -> str:
    """A host name or IP address, nothing more: the port is a setting of its own, so
    ``127.0.0.1:18830`` is refused here rather than dialled as ``127.0.0.1:18830:1883`` forever."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    name, colon, port = value.rpartition(":")
    if "://" in value:
        raise ValueError(f"{value!r} is a URL: give the host name or address only")
    if colon and port.isdigit():
        raise ValueError(f"{value!r} has a port in it: give the host ({name}) and the port ({port}) separately")
    if not _HOST_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a host name or IP address")
    return value


HostName = Annotated[str, AfterValidator(_host_name)]


class NetworkAttachment(BaseModel):
    """Where a device hangs on the mine's ring network: a switch (its device id) and port (ifIndex)."""

    model_config = ConfigDict(extra="forbid")

    switch: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="device id of the switch")
    port: int | None = Field(None, ge=1, description="the switch port (ifIndex), when known")


class DeviceConfig(BaseModel):
    """Settings every device has, whatever its protocol. Adapters extend it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="unique in the site; used in topics")
    adapter: str
    area: str
    zone: str | None = None
    name: str = ""
    enabled: bool = True
    poll_interval: float = Field(1.0, gt=0, le=10, description="seconds; the mine rule is ≤ 10 s")
    network: NetworkAttachment | None = Field(None, description="the switch (and port) the device hangs on")

    @property
    def equipment_kind(self) -> str:
        """What the device is (shearer, belt_conveyor, ...): names historian measurements."""
        return self.adapter
