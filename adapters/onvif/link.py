"""A session with one camera through onvif-zeep-async: open, read the inventory, check, pull events, snapshot.

Authentication is WS-Security UsernameToken with PasswordDigest. A camera refuses a token
whose ``Created`` time is far from its own clock, so :meth:`CameraLink.open` first asks
GetSystemDateAndTime (which needs no login) and every later token is stamped with the
camera's time (onvif-zeep-async's ``adjust_time``); event times are corrected back to the
gateway's clock the same way. Every failure becomes a one-line :class:`CameraError` that
never holds a credential; URIs leave through :func:`public_uri`, without them.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
from lxml import etree
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault, TransportError

from gateway.core.model import Inventory, MediaProfile, Sample, utcnow

from .config import OnvifDeviceConfig
from .events import event_samples, topic_paths

_root = logging.getLogger()
_saved_root = (_root.handlers[:], _root.level)
from onvif import ONVIFCamera  # noqa: E402 - importing onvif calls logging.basicConfig(INFO): undone below
from onvif.definition import SERVICES  # noqa: E402
from onvif.exceptions import ONVIFAuthError, ONVIFError, ONVIFTimeoutError  # noqa: E402

_root.handlers[:] = _saved_root[0]
_root.setLevel(_saved_root[1])

log = logging.getLogger(__name__)


class RedactCredentials(logging.Filter):
    """onvif-zeep-async and zeep log whole SOAP requests and answers at DEBUG, and a camera may
    answer with ``rtsp://user:password@...`` or ``?password=`` URIs: such logs lose them."""

    USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"<>]+@")
    QUERY = re.compile(r"([?&;](?:user|username|usr|password|pass|passwd|pwd|auth|token)=)[^&\s'\"<>]*", re.I)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = self.QUERY.sub(r"\1***", self.USERINFO.sub(r"\1***@", text))
        if clean != text:
            record.msg, record.args = clean, None
        return True


for _name in ("onvif", "onvif.zeep_aiohttp", "zeep.transports"):  # the loggers that write messages out
    logging.getLogger(_name).addFilter(RedactCredentials())

T = TypeVar("T")

SERVICE_NAMES = {spec["ns"]: name for name, spec in reversed(SERVICES.items())}  # "events" wins over "pullpoint"
SERVICE_NAMES["http://www.onvif.org/ver10/device/wsdl"] = "device"
CREDENTIAL_KEYS = {"user", "username", "usr", "password", "pass", "passwd", "pwd", "auth", "token"}
SKEW_WORTH_LOGGING_S = 5.0
SUBSCRIPTION_S = 120


class CameraError(Exception):
    """The camera cannot be used now; the message says why in one line, without credentials."""


class AuthError(CameraError):
    """The camera refused the user name or password."""


class LinkDown(CameraError):
    """Connection refused or lost."""


class NoAnswer(LinkDown):
    """No answer in time."""


def public_uri(uri: str | None) -> str | None:
    """``uri`` without ``user:password@`` and without credential query parameters."""
    if not uri:
        return None
    parts = urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if k.lower() not in CREDENTIAL_KEYS])
    return urlunsplit((parts.scheme, host, parts.path, query, parts.fragment))


class CameraLink:
    """One camera session. Use ``async with CameraLink(cfg) as link`` or ``open()``/``close()``."""

    def __init__(self, config: OnvifDeviceConfig):
        self.config = config
        self.timeout = config.timeout
        self.camera: ONVIFCamera | None = None
        self._pullpoint = None  # onvif PullPointManager while subscribed

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    @property
    def clock_offset(self) -> dt.timedelta:
        """The camera's clock minus ours, ±0.5 s: GetSystemDateAndTime tells whole seconds.

        The library's difference is taken from a time cut down to the second, so it is 0-1 s
        low: the middle of that second is the best estimate. Within a second of ours the camera
        is taken as synchronised (on NTP it is, to the millisecond).
        """
        measured = self.camera.dt_diff if self.camera else None
        if measured is None:
            return dt.timedelta(0)
        offset = measured + dt.timedelta(seconds=0.5)
        return offset if abs(offset) > dt.timedelta(seconds=1) else dt.timedelta(0)

    @property
    def subscribed(self) -> bool:
        return self._pullpoint is not None

    async def __aenter__(self) -> CameraLink:
        await self.open()
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        await self.close()

    # -- session --------------------------------------------------------------------------
    async def open(self) -> None:
        """Learn the camera's clock and its service addresses (needs a valid login)."""
        cfg = self.config
        # An empty login (not None, which the library cannot sign) for cameras that need none.
        self.camera = ONVIFCamera(cfg.host, cfg.port, cfg.username or "", cfg.secret or "", no_cache=True,
                                  adjust_time=True)
        try:
            await self._call("connect", self.camera.update_xaddrs(), timeout=3 * self.timeout)
        except CameraError:
            await self.close()
            raise
        offset = self.clock_offset.total_seconds()
        if abs(offset) >= SKEW_WORTH_LOGGING_S:
            log.warning("%s: camera clock is %+.0f s from the gateway's; corrected in every login and event time "
                        "(set the camera to NTP)", cfg.id, offset)

    async def close(self) -> None:
        if self._pullpoint is not None:
            await self._unsubscribe()
        if self.camera is not None:
            camera, self.camera = self.camera, None
            try:
                await asyncio.wait_for(camera.close(), self.timeout)
            except (asyncio.TimeoutError, aiohttp.ClientError, OSError):
                pass

    async def check(self) -> float:
        """One authenticated request (GetDeviceInformation); returns its round trip in ms."""
        device = await self._service("devicemgmt")
        started = time.monotonic()
        await self._call("GetDeviceInformation", device.GetDeviceInformation())
        return (time.monotonic() - started) * 1000

    # -- inventory ------------------------------------------------------------------------
    async def read_inventory(self) -> Inventory:
        """Device information, services and capabilities, event topics and media profiles."""
        device = await self._service("devicemgmt")
        info = await self._call("GetDeviceInformation", device.GetDeviceInformation())
        capabilities = await self._call("GetCapabilities", self.camera.get_capabilities()) or {}
        services = sorted({SERVICE_NAMES.get(ns, ns) for ns in self.camera.xaddrs}
                          | {name.lower() for name, value in capabilities.items() if value and name != "Extension"})
        profiles = await self._profiles()
        return Inventory(
            device=self.config.id, ts=utcnow(), online=True, manufacturer=info.Manufacturer, model=info.Model,
            firmware=info.FirmwareVersion, serial=info.SerialNumber, hardware_id=info.HardwareId,
            services=services, ptz="ptz" in services or any(p.ptz for p in profiles),
            event_topics=await self._event_topics() if "events" in services else [], profiles=profiles,
            clock_offset_s=self.clock_offset.total_seconds())

    async def _profiles(self) -> list[MediaProfile]:
        media = await self._service("media")
        out = []
        for profile in await self._call("GetProfiles", media.GetProfiles()) or []:
            encoder = profile.VideoEncoderConfiguration
            resolution = getattr(encoder, "Resolution", None)
            rate = getattr(encoder, "RateControl", None)
            out.append(MediaProfile(
                token=profile.token, name=profile.Name, encoding=getattr(encoder, "Encoding", None),
                width=getattr(resolution, "Width", None), height=getattr(resolution, "Height", None),
                frame_rate=getattr(rate, "FrameRateLimit", None),
                stream_uri=public_uri(await self._uri(media, "GetStreamUri", profile.token)),
                snapshot_uri=public_uri(await self._uri(media, "GetSnapshotUri", profile.token)),
                ptz=profile.PTZConfiguration is not None))
        return out

    async def _uri(self, media, operation: str, token: str) -> str | None:
        request: dict[str, Any] = {"ProfileToken": token}
        if operation == "GetStreamUri":
            request["StreamSetup"] = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
        try:
            return (await self._call(operation, getattr(media, operation)(request))).Uri
        except AuthError:
            raise
        except CameraError as exc:  # a profile without a stream (or snapshot) is not a broken camera
            log.warning("%s: %s for profile %s: %s", self.config.id, operation, token, exc)
            return None

    async def _event_topics(self) -> list[str]:
        events = await self._service("events")
        try:
            properties = await self._call("GetEventProperties", events.GetEventProperties())
        except AuthError:
            raise
        except CameraError as exc:
            log.warning("%s: cannot read the event topics: %s", self.config.id, exc)
            return []
        roots = getattr(properties.TopicSet, "_value_1", None) or []
        return sorted(t for root in roots if isinstance(root, etree._Element) for t in topic_paths(root))

    # -- events ---------------------------------------------------------------------------
    async def subscribe(self) -> None:
        """A PullPoint subscription (renewed in the background by onvif-zeep-async)."""
        lost = lambda: log.info("%s: event subscription lost; renewing", self.config.id)  # noqa: E731
        self._pullpoint = await self._call("CreatePullPointSubscription", self.camera.create_pullpoint_manager(
            dt.timedelta(seconds=SUBSCRIPTION_S), lost))

    async def pull_events(self, wait: float) -> list[Sample]:
        """Events that arrive within ``wait`` seconds (returns at the first), as samples at their event time."""
        service = self._pullpoint.get_service()
        request = {"MessageLimit": 100, "Timeout": dt.timedelta(seconds=round(wait, 1))}
        try:
            result = await self._call("PullMessages", service.PullMessages(request), timeout=wait + self.timeout)
        except (AuthError, LinkDown):
            raise
        except CameraError as exc:  # the camera forgot the subscription (rebooted, expired): subscribe anew
            log.info("%s: event subscription refused (%s); subscribing again", self.config.id, exc)
            await self._unsubscribe()
            return []
        offset = self.clock_offset
        return [s for message in result.NotificationMessage or [] for s in event_samples(message, offset)]

    async def _unsubscribe(self) -> None:
        pullpoint, self._pullpoint = self._pullpoint, None
        try:
            await asyncio.wait_for(pullpoint.shutdown(), self.timeout)
        except (asyncio.TimeoutError, ONVIFError, ZeepError, aiohttp.ClientError, OSError):
            pass  # best effort: the subscription expires on the camera anyway

    # -- snapshots ------------------------------------------------------------------------
    async def snapshot(self, profile: str | None = None) -> bytes:
        """A JPEG from the camera's snapshot URI of ``profile`` (default: the first profile)."""
        if profile is None:
            media = await self._service("media")
            profiles = await self._call("GetProfiles", media.GetProfiles())
            if not profiles:
                raise CameraError("the camera has no media profile")
            profile = profiles[0].token
        image = await self._call("snapshot", self.camera.get_snapshot(profile, timeout=self.timeout))
        if not image:
            raise CameraError(f"no snapshot for profile {profile!r} (no snapshot URI, or the camera refused)")
        return image

    # -- plumbing -------------------------------------------------------------------------
    async def _service(self, name: str):
        return await self._call(f"{name} service", self.camera.create_onvif_service(name))

    async def _call(self, what: str, call: Awaitable[T], timeout: float | None = None) -> T:
        """Await ``call`` within ``timeout`` (default: the configured one); failures → CameraError."""
        try:
            return await asyncio.wait_for(call, timeout or self.timeout)
        except CameraError:
            raise
        except Exception as exc:  # noqa: BLE001 - every library failure becomes one line
            raise self._explain(what, exc, timeout or self.timeout) from None

    def _explain(self, what: str, exc: BaseException, timeout: float) -> CameraError:
        cause = exc.__cause__ if isinstance(exc, ONVIFError) and exc.__cause__ else exc
        if isinstance(cause, Fault):
            return _fault(what, cause, self.config.username)
        if isinstance(cause, ONVIFAuthError) or (isinstance(cause, TransportError) and cause.status_code == 401):
            return AuthError(f"authentication failed: the camera refused user {self.config.username!r} ({what})")
        if isinstance(cause, (asyncio.TimeoutError, TimeoutError, ONVIFTimeoutError)):
            return NoAnswer(f"no answer within {timeout:g} s ({what})")
        if isinstance(cause, aiohttp.ClientConnectorError):
            error = cause.os_error
            why = "connection refused" if isinstance(error, ConnectionRefusedError) else error.strerror or error
            return LinkDown(f"cannot connect to {self.where}: {why}")
        if isinstance(cause, (aiohttp.ClientError, OSError)):
            return LinkDown(f"connection to {self.where} lost ({what}): {type(cause).__name__}")
        if isinstance(cause, TransportError):
            return CameraError(f"{what}: HTTP {cause.status_code} from {self.where}")
        return CameraError(f"{what}: {type(cause).__name__}: {cause}")


def _fault(what: str, fault: Fault, username: str | None) -> CameraError:
    subcodes = [etree.QName(c).localname if isinstance(c, etree.QName) else str(c).rpartition("}")[2]
                for c in (fault.subcodes or [])]
    text = f"{'/'.join(f'ter:{c}' for c in subcodes) or 'fault'}: {fault.message}"
    if "NotAuthorized" in subcodes or "auth" in (fault.message or "").lower():
        return AuthError(f"authentication failed: the camera refused user {username!r} ({text})")
    return CameraError(f"{what}: SOAP {text}")
