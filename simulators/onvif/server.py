"""One simulated camera's HTTP endpoint: ONVIF device, media and events services, and snapshots.

``http://host:port/onvif/device_service`` (and ``media_service``, ``events_service``,
``subscription/<id>`` for PullPoints, ``ptz_service`` on a PTZ camera) answer SOAP 1.2;
``/onvif/snapshot/<profile>.jpg`` serves a real JPEG behind HTTP Digest. Every operation
but ``GetSystemDateAndTime`` (pre-authentication in ONVIF, so a client can learn the
camera's clock) needs a valid WS-Security UsernameToken; a bad one gets the SOAP fault
``env:Sender / ter:NotAuthorized``. The port closes while the camera is ``offline``.
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import isodate
from aiohttp import web

from simulators.faults import FaultParams
from simulators.lifecycle import FaultFollowingServer

from . import configs, responses
from .camera import EVENT_TOPICS, CameraSimulator, PullPoint
from .identity import StreamProfile
from .soap import CONTENT_TYPE, Request, SoapFault, envelope, invalid_arg, not_authorized, not_supported, \
    parse_request

log = logging.getLogger(__name__)

TESTCARD = (Path(__file__).parent / "testcard.jpg").read_bytes()
PRE_AUTH = {"GetSystemDateAndTime"}
MAX_SUBSCRIPTION_S = 3600.0
MAX_PULL_WAIT_S = 60.0
Handler = Callable[[Request, str | None], Awaitable[str]]


class OnvifSimServer(FaultFollowingServer):
    """Serves ``camera`` on ``http://host:port`` (``port`` 0: a free one, kept across offline spells).

    ``bind_host`` overrides the address listened on (the URLs the camera hands out keep ``host``).
    """

    def __init__(self, camera: CameraSimulator, host: str = "127.0.0.1", port: int = 0, *,
                 bind_host: str | None = None):
        self.camera, self.host, self.port, self.bind_host = camera, host, port, bind_host
        self._runner: web.AppRunner | None = None
        super().__init__()
        self.answers: deque[tuple[str, int, bytes]] = deque(maxlen=500)  # (operation, HTTP status, body): for tests
        self._services: dict[str, dict[str, Handler]] = {
            "device_service": {"GetSystemDateAndTime": self._date_time, "GetDeviceInformation": self._information,
                               "GetServices": self._service_list, "GetCapabilities": self._capabilities,
                               "GetScopes": _answer(configs.scopes, camera),
                               "GetHostname": _answer(configs.hostname, camera), "GetNTP": _answer(configs.ntp),
                               "GetNetworkInterfaces": _answer(configs.network_interfaces, camera)},
            "media_service": {"GetProfiles": self._profiles, "GetStreamUri": self._stream_uri,
                              "GetSnapshotUri": self._snapshot_uri,
                              "GetVideoSources": _answer(configs.video_sources, camera),
                              "GetVideoSourceConfigurations": _answer(configs.video_source_configurations, camera),
                              "GetVideoEncoderConfigurations": _answer(configs.video_encoder_configurations, camera),
                              "GetAudioSources": _answer(lambda: configs.AUDIO_SOURCES),
                              "GetOSDs": _answer(configs.osds, camera)},
            "events_service": {"GetEventProperties": self._event_properties,
                               "CreatePullPointSubscription": self._create_pull_point},
            "subscription": {"PullMessages": self._pull, "Renew": self._renew, "Unsubscribe": self._unsubscribe,
                             "SetSynchronizationPoint": self._synchronize},
            "ptz_service": {},
        }
        camera.base_url = f"http://{host}:{port}"
        camera.subscribe(self._fault_changed)

    def __repr__(self) -> str:
        return f"OnvifSimServer({self.camera.device_id!r}, {self.camera.base_url})"

    @property
    def url(self) -> str:
        """The device service address (what WS-Discovery hands out as XAddr)."""
        return f"{self.camera.base_url}/onvif/device_service"

    @property
    def listening(self) -> bool:
        return self._runner is not None

    # -- life cycle -------------------------------------------------------------------------
    def _fault_changed(self, _camera: CameraSimulator, fault: str, _params: FaultParams | None) -> None:
        if fault == "offline":
            self._schedule()

    def _all_offline(self) -> bool:
        return self.camera.offline

    async def _shut(self) -> None:
        runner, self._runner = self._runner, None
        await runner.cleanup()  # open connections (a waiting PullMessages) are cut too

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_post("/onvif/subscription/{id}", self._soap)
        app.router.add_post("/onvif/{service}", self._soap)
        app.router.add_get("/onvif/snapshot/{token}.jpg", self._snapshot)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, self.bind_host or self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(f"{self.camera.device_id}: cannot listen on {self.host}:{self.port}: "
                          f"{exc.strerror or exc}") from None
        if not self.port:
            self.port = runner.addresses[0][1]
            self.camera.base_url = f"http://{self.host}:{self.port}"
        self._runner = runner

    # -- HTTP -------------------------------------------------------------------------------
    async def _soap(self, http: web.Request) -> web.Response:
        point_id = http.match_info.get("id")
        operations = self._services.get("subscription" if point_id else http.match_info["service"])
        if operations is None:
            raise web.HTTPNotFound()
        operation = "?"
        try:
            request = parse_request(await http.read())
            operation = request.operation
            handler = operations.get(operation)
            if handler is None:
                raise not_supported(operation)
            if operation not in PRE_AUTH:
                self._authenticate(request)
            status, body = 200, envelope(await handler(request, point_id))
        except SoapFault as fault:
            status, body = fault.status, fault.envelope()
        self.answers.append((operation, status, body))
        return web.Response(status=status, body=body, headers={"Content-Type": CONTENT_TYPE})

    def _authenticate(self, request: Request) -> None:
        why = self.camera.tokens.refusal(request.token, self.camera.now())
        if why:
            log.info("%s: %s refused: %s", self.camera.device_id, request.operation, why)
            raise not_authorized()

    async def _snapshot(self, http: web.Request) -> web.Response:
        if not self.camera.digest.verify(http.method, http.headers.get("Authorization")):
            return web.Response(status=401, headers={"WWW-Authenticate": self.camera.digest.challenge()})
        if self.camera.profile(http.match_info["token"]) is None:
            raise web.HTTPNotFound()
        self.camera.snapshots_served += 1
        return web.Response(body=TESTCARD, content_type="image/jpeg")

    # -- device service ---------------------------------------------------------------------
    async def _date_time(self, _request: Request, _point: str | None) -> str:
        return responses.system_date_and_time(self.camera.now())

    async def _information(self, _request: Request, _point: str | None) -> str:
        return responses.device_information(self.camera)

    async def _service_list(self, _request: Request, _point: str | None) -> str:
        return responses.services(self.camera)

    async def _capabilities(self, _request: Request, _point: str | None) -> str:
        return responses.capabilities(self.camera)

    # -- media service ----------------------------------------------------------------------
    async def _profiles(self, _request: Request, _point: str | None) -> str:
        return responses.profiles(self.camera)

    async def _stream_uri(self, request: Request, _point: str | None) -> str:
        return responses.media_uri("GetStreamUri", self.camera.stream_uri(self._profile(request)))

    async def _snapshot_uri(self, request: Request, _point: str | None) -> str:
        return responses.media_uri("GetSnapshotUri", self.camera.snapshot_uri(self._profile(request)))

    def _profile(self, request: Request) -> StreamProfile:
        token = request.text("trt:ProfileToken")
        profile = self.camera.profile(token)
        if profile is None:
            raise invalid_arg("NoProfile", f"no profile {token!r}")
        return profile

    # -- event service ----------------------------------------------------------------------
    async def _event_properties(self, _request: Request, _point: str | None) -> str:
        return responses.event_properties(
            [(t.topic, tuple(name for name, _ in t.source), t.data) for t in EVENT_TOPICS.values()])

    async def _create_pull_point(self, request: Request, _point: str | None) -> str:
        now = self.camera.now()
        point = self.camera.subscribe_pull_point(self._lifetime(request.text("tev:InitialTerminationTime"), now))
        address = f"{self.camera.base_url}/onvif/subscription/{point.id}"
        return responses.create_pull_point(address, now, point.termination)

    async def _pull(self, request: Request, point_id: str | None) -> str:
        point = self._pull_point(point_id)
        wait = _seconds(request.text("tev:Timeout", "PT1S"))
        limit = int(request.text("tev:MessageLimit", "100") or 100)
        messages = await point.pull(min(wait, MAX_PULL_WAIT_S), max(limit, 1))
        return responses.pull_messages(self.camera.now(), point.termination, messages)

    async def _renew(self, request: Request, point_id: str | None) -> str:
        point = self._pull_point(point_id)
        now = self.camera.now()
        point.termination = now + timedelta(seconds=self._lifetime(request.text("wsnt:TerminationTime"), now))
        return responses.renew(now, point.termination)

    async def _unsubscribe(self, _request: Request, point_id: str | None) -> str:
        self.camera.pull_points.pop(self._pull_point(point_id).id, None)
        return responses.UNSUBSCRIBE

    async def _synchronize(self, _request: Request, point_id: str | None) -> str:
        self.camera.synchronize(self._pull_point(point_id))
        return responses.SYNCHRONIZATION_POINT

    def _pull_point(self, point_id: str | None) -> PullPoint:
        point = self.camera.pull_point(point_id or "")
        if point is None:
            raise invalid_arg("InvalidSubscription", f"no subscription {point_id!r} (expired or unsubscribed)")
        return point

    @staticmethod
    def _lifetime(requested: str | None, now: datetime) -> float:
        """Seconds a subscription lives: a duration (``PT60S``) or an absolute time, 60 s if absent."""
        if not requested:
            return 60.0
        if requested.startswith(("P", "-P")):
            seconds = _seconds(requested)
        else:
            try:
                seconds = (isodate.parse_datetime(requested) - now).total_seconds()
            except (ValueError, TypeError):
                raise invalid_arg("InvalidTerminationTime", f"unreadable termination time {requested!r}") from None
        return min(max(seconds, 1.0), MAX_SUBSCRIPTION_S)


def _answer(render: Callable[..., str], *args: object) -> Handler:
    """A handler whose answer depends on the camera only (Profile S configuration reads)."""
    async def handler(_request: Request, _point: str | None) -> str:
        return render(*args)
    return handler


def _seconds(duration: str | None) -> float:
    try:
        return isodate.parse_duration(duration or "PT0S").total_seconds()
    except (ValueError, isodate.ISO8601Error):
        raise invalid_arg("InvalidDuration", f"unreadable duration {duration!r}") from None
