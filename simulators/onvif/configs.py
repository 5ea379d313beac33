"""The simulated camera's Profile S configuration answers, as templates (see :mod:`.responses`).

Media: GetVideoSources, GetVideoSourceConfigurations, GetVideoEncoderConfigurations,
GetAudioSources (none: the camera has no microphone), GetOSDs. Device: GetScopes,
GetHostname, GetNTP, GetNetworkInterfaces. Written against onvif.xsd and the media and
device WSDLs onvif-zeep-async ships; tests/test_video_sim.py validates each answer against
them and asks for it through onvif-zeep-async. The profiles' configurations
(:data:`PROFILE` in :mod:`.responses`) are built from the same fragments.
"""
from __future__ import annotations

import hashlib
from string import Template
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from adapters.onvif.discovery import SCOPE_PREFIX

from .identity import CameraIdentity, StreamProfile

SOURCE_TOKEN = "video-1"
SOURCE_CONFIGURATION_TOKEN = "vsc-1"
NTP_SERVER = "pool.ntp.org"

VIDEO_SOURCE_CONFIGURATION = Template(
    '<$tag token="vsc-1"><tt:Name>VideoSource</tt:Name><tt:UseCount>$profiles</tt:UseCount>'
    '<tt:SourceToken>video-1</tt:SourceToken><tt:Bounds x="0" y="0" width="$width" height="$height"/></$tag>')

VIDEO_ENCODER_CONFIGURATION = Template(
    '<$tag token="vec-$token"><tt:Name>$name</tt:Name><tt:UseCount>1</tt:UseCount>'
    "<tt:Encoding>$encoding</tt:Encoding><tt:Resolution><tt:Width>$width</tt:Width><tt:Height>$height</tt:Height>"
    "</tt:Resolution><tt:Quality>5</tt:Quality><tt:RateControl><tt:FrameRateLimit>$fps</tt:FrameRateLimit>"
    "<tt:EncodingInterval>1</tt:EncodingInterval><tt:BitrateLimit>$bitrate</tt:BitrateLimit></tt:RateControl>"
    "$h264<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0</tt:IPv4Address>"
    "</tt:Address><tt:Port>0</tt:Port><tt:TTL>1</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>"
    "<tt:SessionTimeout>PT60S</tt:SessionTimeout></$tag>")

VIDEO_SOURCE = Template(
    '<trt:VideoSources token="video-1"><tt:Framerate>$fps</tt:Framerate>'
    "<tt:Resolution><tt:Width>$width</tt:Width><tt:Height>$height</tt:Height></tt:Resolution></trt:VideoSources>")

OSDS = Template(
    '<trt:GetOSDsResponse><trt:OSDs token="osd-clock"><tt:VideoSourceConfigurationToken>vsc-1'
    "</tt:VideoSourceConfigurationToken><tt:Type>Text</tt:Type><tt:Position><tt:Type>UpperLeft</tt:Type>"
    "</tt:Position><tt:TextString><tt:Type>DateAndTime</tt:Type><tt:DateFormat>yyyy-MM-dd</tt:DateFormat>"
    "<tt:TimeFormat>HH:mm:ss</tt:TimeFormat></tt:TextString></trt:OSDs>"
    '<trt:OSDs token="osd-name"><tt:VideoSourceConfigurationToken>vsc-1</tt:VideoSourceConfigurationToken>'
    "<tt:Type>Text</tt:Type><tt:Position><tt:Type>UpperLeft</tt:Type></tt:Position><tt:TextString>"
    "<tt:Type>Plain</tt:Type><tt:PlainText>$name</tt:PlainText></tt:TextString></trt:OSDs></trt:GetOSDsResponse>")

SCOPE = Template("<tds:Scopes><tt:ScopeDef>$kind</tt:ScopeDef><tt:ScopeItem>$item</tt:ScopeItem></tds:Scopes>")

HOSTNAME = Template(
    "<tds:GetHostnameResponse><tds:HostnameInformation><tt:FromDHCP>false</tt:FromDHCP><tt:Name>$name</tt:Name>"
    "</tds:HostnameInformation></tds:GetHostnameResponse>")

NTP = Template(
    "<tds:GetNTPResponse><tds:NTPInformation><tt:FromDHCP>false</tt:FromDHCP><tt:NTPManual><tt:Type>DNS</tt:Type>"
    "<tt:DNSname>$server</tt:DNSname></tt:NTPManual></tds:NTPInformation></tds:GetNTPResponse>")

NETWORK_INTERFACES = Template(
    '<tds:GetNetworkInterfacesResponse><tds:NetworkInterfaces token="eth0"><tt:Enabled>true</tt:Enabled>'
    "<tt:Info><tt:Name>eth0</tt:Name><tt:HwAddress>$mac</tt:HwAddress><tt:MTU>1500</tt:MTU></tt:Info>"
    "<tt:IPv4><tt:Enabled>true</tt:Enabled><tt:Config><tt:Manual><tt:Address>$address</tt:Address>"
    "<tt:PrefixLength>24</tt:PrefixLength></tt:Manual><tt:DHCP>false</tt:DHCP></tt:Config></tt:IPv4>"
    "</tds:NetworkInterfaces></tds:GetNetworkInterfacesResponse>")


def _fill(template: Template, **values: object) -> str:
    return template.substitute({k: escape(str(v)) for k, v in values.items()})


def source_size(camera: CameraIdentity) -> tuple[int, int, int]:
    """The sensor: the largest profile's width, height and frame rate."""
    best = max(camera.profiles, key=lambda p: p.width * p.height)
    return best.width, best.height, max(p.frame_rate for p in camera.profiles)


# -- fragments (also inside GetProfiles) ---------------------------------------------------------
def video_source_configuration(camera: CameraIdentity, tag: str) -> str:
    width, height, _ = source_size(camera)
    return VIDEO_SOURCE_CONFIGURATION.substitute(tag=tag, profiles=len(camera.profiles), width=width, height=height)


def video_encoder_configuration(profile: StreamProfile, tag: str) -> str:
    h264 = (f"<tt:H264><tt:GovLength>{profile.gov_length}</tt:GovLength><tt:H264Profile>Main</tt:H264Profile>"
            "</tt:H264>" if profile.encoding == "H264" else "")
    return VIDEO_ENCODER_CONFIGURATION.substitute(
        tag=tag, token=escape(profile.token), name=escape(profile.name), encoding=profile.encoding,
        width=profile.width, height=profile.height, fps=profile.frame_rate, bitrate=profile.bitrate, h264=h264)


# -- media service ---------------------------------------------------------------------------------
def video_sources(camera: CameraIdentity) -> str:
    width, height, fps = source_size(camera)
    return f"<trt:GetVideoSourcesResponse>{_fill(VIDEO_SOURCE, fps=fps, width=width, height=height)}" \
           "</trt:GetVideoSourcesResponse>"


def video_source_configurations(camera: CameraIdentity) -> str:
    return "<trt:GetVideoSourceConfigurationsResponse>" \
           f"{video_source_configuration(camera, 'trt:Configurations')}</trt:GetVideoSourceConfigurationsResponse>"


def video_encoder_configurations(camera: CameraIdentity) -> str:
    body = "".join(video_encoder_configuration(p, "trt:Configurations") for p in camera.profiles)
    return f"<trt:GetVideoEncoderConfigurationsResponse>{body}</trt:GetVideoEncoderConfigurationsResponse>"


AUDIO_SOURCES = "<trt:GetAudioSourcesResponse/>"


def osds(camera: CameraIdentity) -> str:
    return _fill(OSDS, name=camera.name)


# -- device service --------------------------------------------------------------------------------
def scopes(camera: CameraIdentity) -> str:
    """The fixed scopes (what the camera is) and the configurable ones (name, location)."""
    body = "".join(_fill(SCOPE, kind="Configurable" if s.startswith(("name/", "location/")) else "Fixed",
                         item=SCOPE_PREFIX + s) for s in camera.scopes)
    return f"<tds:GetScopesResponse>{body}</tds:GetScopesResponse>"


def hostname(camera: CameraIdentity) -> str:
    return _fill(HOSTNAME, name="".join(c if c.isalnum() else "-" for c in camera.device_id).strip("-") or "camera")


def ntp() -> str:
    return _fill(NTP, server=NTP_SERVER)


def network_interfaces(camera: CameraIdentity) -> str:
    """One wired interface; its address is where the camera is served, its MAC derived from its serial."""
    address = urlsplit(camera.base_url).hostname or "127.0.0.1"
    digest = hashlib.sha1(camera.serial.encode()).digest()
    mac = ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))  # locally administered
    return _fill(NETWORK_INTERFACES, mac=mac, address=address if address[0].isdigit() else "127.0.0.1")
