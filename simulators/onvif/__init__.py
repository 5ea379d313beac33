"""ONVIF camera simulator: real SOAP (device, media, events services), WS-Discovery, snapshots.

:class:`CameraSimulator` is one camera (identity, clock, logins, events, faults),
:class:`OnvifSimServer` serves it over HTTP, :class:`DiscoveryResponder` answers
WS-Discovery probes for several, :class:`.stream.RtspSimServer` serves their H.264 streams
over RTSP (GStreamer: imported on its own, only where cameras stream). ``simulators/site.py``
builds them from a site file.
"""
from .camera import EVENT_TOPICS, FAULTS, CameraSimulator
from .discovery import DiscoveryResponder
from .identity import DEFAULT_PROFILES, StreamProfile
from .server import OnvifSimServer

__all__ = ["CameraSimulator", "DEFAULT_PROFILES", "DiscoveryResponder", "EVENT_TOPICS", "FAULTS", "OnvifSimServer",
           "StreamProfile"]
