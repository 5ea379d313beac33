"""Settings of an SNMP device (the ``devices[]`` entries with ``adapter: snmp``): a ring switch or a UPS."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from gateway.core.device import DeviceConfig, HostName

PROFILE_KINDS = {"ring_switch": "network_switch", "ups": "ups"}  # built-in profile → equipment kind


class SnmpV3User(BaseModel):
    """USM user for SNMPv3. ``priv_key`` absent: authNoPriv; present: authPriv (what a mine should use)."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=32)
    auth_protocol: Literal["SHA", "SHA224", "SHA256", "SHA384", "SHA512", "MD5"] = "SHA"
    auth_key: SecretStr = Field(description="at least 8 characters (RFC 3414)")
    priv_protocol: Literal["AES", "AES192", "AES256", "DES"] = "AES"
    priv_key: SecretStr | None = None

    @model_validator(mode="after")
    def _key_lengths(self) -> SnmpV3User:
        for name in ("auth_key", "priv_key"):
            key = getattr(self, name)
            if key is not None and len(key.get_secret_value()) < 8:
                raise ValueError(f"{name} must be at least 8 characters (RFC 3414)")
        return self


class SnmpDeviceConfig(DeviceConfig):
    adapter: Literal["snmp"] = "snmp"
    host: HostName
    port: int = Field(161, ge=1, le=65535)
    version: Literal["2c", "3"] = "2c"
    community: SecretStr = Field(SecretStr("public"), description="v2c only")
    v3: SnmpV3User | None = Field(None, description="required with version 3")
    profile: str = Field(description="built-in profile (ring_switch, ups) or path to a profile YAML file")
    ports: list[int] | int = Field(8, description="switch: ifIndex values read (N means 1..N)")
    poll_interval: float = Field(10.0, gt=0, le=10, description="seconds; the mine rule is ≤ 10 s")
    timeout: float = Field(2.0, gt=0, le=30, description="seconds per request")
    retries: int = Field(1, ge=0, le=5)

    @model_validator(mode="after")
    def _v3_user(self) -> SnmpDeviceConfig:
        if self.version == "3" and self.v3 is None:
            raise ValueError("version 3 needs a v3: user (user, auth_key, priv_key)")
        return self

    @property
    def port_indexes(self) -> list[int]:
        return list(range(1, self.ports + 1)) if isinstance(self.ports, int) else list(self.ports)

    @property
    def equipment_kind(self) -> str:
        return PROFILE_KINDS.get(self.profile, "network_device")
