"""The ``video:`` section of the site file: which camera streams the gateway relays, and how.

Example (docs/video.md)::

    video:
      cameras:
        - device: belt-head-cam            # an ONVIF camera of devices[]
          sub: rtsp://10.1.4.21:554/sub    # relayed always (RTSP and HLS)
          main: rtsp://10.1.4.21:554/main  # pulled only while someone watches /belt-head-cam/main
      uplink_budget_kbps: 4000             # gateway alarm video-uplink-over-budget beyond it
      relay: {rtsp_port: 8554, http_port: 8888, public_host: gw-panel-3.mine.local}
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.core.device import HostName


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RelayCamera(Strict):
    """One camera the relay pulls: its device id in ``devices[]`` and its stream URLs (credentials: ${ENV})."""

    device: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="the camera's device id")
    sub: str = Field(description="RTSP URL of the sub-stream: relayed always")
    main: str | None = Field(None, description="RTSP URL of the main stream: pulled only while watched")

    @field_validator("sub", "main")
    @classmethod
    def _rtsp(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("rtsp://", "rtsps://")):
            raise ValueError(f"{v!r} is not an rtsp:// URL")
        return v


class RelayConfig(Strict):
    """Where and how the relay serves the surface."""

    enabled: bool = True
    bind: str = Field("0.0.0.0", description="address the RTSP and HTTP servers listen on")
    public_host: HostName | None = Field(None, description="the gateway's name as the surface reaches it "
                                                           "(in HLS and RTSP URLs); default: bind, or the host name")
    rtsp_port: int = Field(8554, ge=0, le=65535, description="RTSP for the NVR/VMS (0: any free port)")
    http_port: int = Field(8888, ge=0, le=65535, description="HLS, status and the player script (0: any free port)")
    hls_dir: Path = Field(Path("/var/lib/minegw/hls"), description="HLS segments, rewritten continuously")
    hls_segment_s: int = Field(1, ge=1, le=10, description="target segment length; segments cut at keyframes")
    hls_segments: int = Field(4, ge=2, le=20, description="segments in the live playlist")
    main_linger_s: float = Field(10.0, ge=0, description="keep a main stream this long after its last viewer")
    upstream_latency_ms: int = Field(100, ge=0, le=2000, description="rtspsrc jitter buffer")
    stall_s: float = Field(5.0, gt=0, description="reconnect after this long without data from a camera")
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(10.0, gt=0)
    hls_js: Path | None = Field(None, description="hls.js (npm hls.js dist/hls.min.js), served at /hls.min.js "
                                                  "for the dashboard tiles")


class ClipConfig(Strict):
    """Linkage clips: the sub-stream of each camera of an alarm's area, around the alarm."""

    pre_s: float = Field(5.0, ge=0, le=60, description="seconds before the alarm (pre-roll)")
    post_s: float = Field(5.0, ge=0, le=60, description="seconds after the alarm (post-roll)")
    max_bytes: int = Field(2_000_000_000, ge=100_000, description="disk budget of clips; the oldest go beyond it")


class VideoConfig(Strict):
    cameras: list[RelayCamera] = Field([], description="the streams the relay pulls")
    relay: RelayConfig = Field(default_factory=RelayConfig)
    clips: ClipConfig = Field(default_factory=ClipConfig)
    uplink_budget_kbps: float | None = Field(None, gt=0, description="the site's video uplink; alarm beyond it")
    publish_interval_s: float = Field(5.0, ge=1, le=60, description="bitrate samples every this many seconds")

    @field_validator("cameras")
    @classmethod
    def _unique(cls, cameras: list[RelayCamera]) -> list[RelayCamera]:
        seen: set[str] = set()
        for i, cam in enumerate(cameras):
            if cam.device in seen:
                raise ValueError(f"cameras[{i}].device: {cam.device!r} is listed twice")
            seen.add(cam.device)
        return cameras
