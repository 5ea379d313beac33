"""Settings of an OPC UA device (the ``devices[]`` entries with ``adapter: opcua``).

Times are in seconds, as everywhere in the site file (OPC UA itself counts milliseconds).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from gateway.core.device import DeviceConfig

from .nodemap import NodeMapError, load_nodemap


class Deadband(BaseModel):
    """Data-change filter: a change smaller than this is not reported (``percent``: of the EU range)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["none", "absolute", "percent"] = "none"
    value: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Deadband:
        if self.type == "percent" and self.value > 100:
            raise ValueError("a percent deadband is 0-100")
        if self.type == "none" and self.value:
            raise ValueError("a deadband value needs type absolute or percent")
        return self


class OpcUaDeviceConfig(DeviceConfig):
    adapter: Literal["opcua"] = "opcua"
    url: str = Field(pattern=r"^opc\.tcp://[^/:]+(:\d+)?(/.*)?$", description="endpoint, opc.tcp://host:port[/path]")
    nodemap: str = Field("longwall", description="built-in node map name or path to a node map YAML file")
    supports: int | None = Field(None, ge=1, le=400, description="number of supports: resizes the supports group")
    mode: Literal["subscribe", "poll"] = "subscribe"
    sampling_interval: float = Field(1.0, ge=0, le=10, description="server samples each node this often, s")
    publishing_interval: float = Field(1.0, gt=0, le=10, description="server sends changes this often, s")
    queue_size: int = Field(1, ge=1, le=1000, description="samples a node may queue between publishes")
    deadband: Deadband = Deadband()
    clock_check_interval: float = Field(60.0, ge=1, le=3600,
                                        description="seconds between measurements of the server's clock offset")
    timeout: float = Field(4.0, gt=0, le=60, description="seconds per request")
    backoff_initial: float = Field(0.5, gt=0, description="first reconnect delay, seconds")
    backoff_max: float = Field(30.0, gt=0, description="longest reconnect delay, seconds")
    security_policy: Literal["None", "Basic256Sha256"] = "None"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    username: str | None = None
    password: SecretStr | None = None
    certificate: Path | None = Field(None, description="this gateway's application certificate (DER or PEM)")
    private_key: Path | None = Field(None, description="its private key (PEM)")
    server_certificate: Path | None = Field(
        None, description="the server's certificate, pinned; absent: taken from the server's endpoints")
    user_certificate: Path | None = Field(
        None, description="X.509 user identity certificate (DER or PEM), instead of username/password")
    user_private_key: Path | None = Field(None, description="its private key (PEM)")

    @field_validator("nodemap")
    @classmethod
    def _nodemap_exists(cls, name: str) -> str:
        try:
            load_nodemap(name)
        except NodeMapError as exc:
            raise ValueError(f"node map {exc}") from None
        return name

    @model_validator(mode="after")
    def _check(self) -> OpcUaDeviceConfig:
        if self.supports is not None:
            try:
                load_nodemap(self.nodemap, self.supports)
            except NodeMapError as exc:
                raise ValueError(str(exc)) from None
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError("security_policy and security_mode are None together, or neither is")
        if self.security_policy != "None" and not (self.certificate and self.private_key):
            raise ValueError(f"security_policy {self.security_policy} needs certificate and private_key "
                             "(make a pair with `minegw opcua cert DIR`)")
        if self.password is not None and not self.username:
            raise ValueError("a password needs a username")
        if (self.user_certificate is None) != (self.user_private_key is None):
            raise ValueError("user_certificate and user_private_key go together")
        if self.user_certificate is not None and self.username:
            raise ValueError("a user is either username/password or user_certificate/user_private_key, not both")
        for name in ("certificate", "private_key", "server_certificate", "user_certificate", "user_private_key"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file {path}")
        return self

    @property
    def equipment_kind(self) -> str:
        return load_nodemap(self.nodemap).kind

    @property
    def secure(self) -> bool:
        return self.security_policy != "None"
