"""What a simulated camera is, as its SOAP answers describe it: identity and media profiles.

:mod:`.camera` holds these and :mod:`.responses` renders them; imports run one way:
camera → responses → identity.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StreamProfile:
    """One media profile: a video encoder configuration on the camera's one video source."""

    token: str
    name: str
    encoding: str  # tt:VideoEncoding: JPEG, MPEG4, H264
    width: int
    height: int
    frame_rate: int
    bitrate: int  # kbit/s

    @property
    def gov_length(self) -> int:
        """Frames from one key frame to the next: two seconds' worth."""
        return 2 * self.frame_rate


DEFAULT_PROFILES = (StreamProfile("main", "MainStream", "H264", 1920, 1080, 25, 4096),
                    StreamProfile("sub", "SubStream", "H264", 640, 360, 15, 512))


class CameraIdentity(Protocol):
    """What the SOAP answers read from a camera (a :class:`.camera.CameraSimulator`)."""

    device_id: str
    name: str
    manufacturer: str
    model: str
    firmware: str
    serial: str
    ptz: bool
    base_url: str  # http://host:port
    profiles: tuple[StreamProfile, ...]

    @property
    def scopes(self) -> list[str]: ...
