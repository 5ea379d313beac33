"""Settings of a Modbus TCP device (the ``devices[]`` entries with ``adapter: modbus``)."""
from __future__ import annotations

from typing import Literal

import yaml
from pydantic import Field, field_validator

from gateway.core.device import DeviceConfig, HostName

from .profile import load_profile


class ModbusDeviceConfig(DeviceConfig):
    adapter: Literal["modbus"] = "modbus"
    host: HostName
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    profile: str = Field(description="built-in profile name or path to a profile YAML file")
    timeout: float = Field(1.0, gt=0, le=10, description="seconds per request")
    retries: int = Field(1, ge=0, le=5, description="extra attempts per request")
    max_gap: int = Field(8, ge=0, le=100, description="unused registers a merged read may span")
    hole_retry: float = Field(600.0, gt=0, description="seconds between retries of one range the device refused")
    backoff_initial: float = Field(0.5, gt=0, description="first reconnect delay, seconds")
    backoff_max: float = Field(30.0, gt=0, description="longest reconnect delay, seconds")
    read_transport: Literal["asyncio", "pymodbus"] = Field(
        "asyncio", description="reads through the adapter's own asyncio transport, or pymodbus' client "
                               "(a fallback for a device the first does not suit); writes always use pymodbus")

    @field_validator("profile")
    @classmethod
    def _profile_exists(cls, name: str) -> str:
        try:
            load_profile(name)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ValueError(f"profile {name}: {exc}") from None
        return name

    @property
    def equipment_kind(self) -> str:
        return load_profile(self.profile).kind
