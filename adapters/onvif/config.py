"""Settings of an ONVIF camera (``devices[]`` entries with ``adapter: onvif``) and of the snapshot store."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from gateway.core.device import DeviceConfig, HostName
from gateway.video.picture import HealthRules


class OnvifDeviceConfig(DeviceConfig):
    adapter: Literal["onvif"] = "onvif"
    host: HostName = Field(description="camera address; its device service is http://host:port/onvif/device_service")
    port: int = Field(80, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = Field(None, description="use ${ENV} in the site file; never published or logged")
    poll_interval: float = Field(5.0, gt=0, le=10, description="health check every this many seconds")
    timeout: float = Field(5.0, gt=0, le=60, description="seconds per request")
    events: bool = Field(True, description="subscribe to the camera's events (PullPoint)")
    inventory_interval: float = Field(3600.0, ge=60, description="re-read the inventory this often, seconds")
    snapshot_profile: str | None = Field(None, description="media profile token for snapshots; default: the first")
    stream_health: bool = Field(False, description="watch one of its streams: rate, bit rate, stalls, and the "
                                                   "picture (frozen, black, obscured); docs/video.md")
    stream_profile: str | None = Field(None, description="media profile watched; default: the smallest picture")
    health_interval: float = Field(5.0, ge=0.5, le=300, description="a stream-health reading every this many seconds")
    health_rules: HealthRules = Field(default_factory=HealthRules, description="thresholds; docs/video.md")
    backoff_initial: float = Field(1.0, gt=0, description="first reconnect delay, seconds")
    backoff_max: float = Field(30.0, gt=0, description="longest reconnect delay, seconds")

    @model_validator(mode="after")
    def _check(self) -> OnvifDeviceConfig:
        if self.password is not None and not self.username:
            raise ValueError("a password needs a username")
        return self

    @property
    def equipment_kind(self) -> str:
        return "camera"

    @property
    def secret(self) -> str | None:
        return self.password.get_secret_value() if self.password else None


class SnapshotConfig(BaseModel):
    """Where snapshots taken on alarms are kept (``snapshots:`` in the site file)."""

    model_config = ConfigDict(extra="forbid")

    directory: Path = Path("/var/lib/minegw/snapshots")
    max_bytes: int = Field(1_000_000_000, ge=10_000, description="disk budget; the oldest go beyond it")
