"""OPC UA simulator: a roof-pressure monitoring host serving a longwall face, on asyncua.

A :class:`FaceSimulator` is one device: the face's physics (:class:`LongwallModel`) for
the signals of a node map, and the faults injected into it. It samples the model once
per update and keeps what it served (value, status, source timestamp) and a short
history, so tests can compare what a client received with what was served.

An :class:`OpcUaSimServer` is one endpoint (``opc.tcp://host:port``) serving one or more
faces: it builds the address space from their node maps, writes every update into it
(the subscriptions report the changes), and offers security policy None and
Basic256Sha256 (Sign, SignAndEncrypt) with a certificate it generates at start, to
anonymous users, users with a password and/or users with a trusted X.509 certificate.

Sensor faults (``signals``: names from the node map; ``signal`` for one):

- ``stuck``: the value and its source timestamp freeze; the host notices the sensor no
  longer refreshes and flags it ``UncertainLastUsableValue``.
- ``dead``: ``BadSensorFailure``, no value.
- ``no_communication``: ``BadNoCommunication`` (the host lost the sensor's substation).
- ``out_of_range``: a value outside the engineering range (``value``, default 10 % above).

Server behaviours of servers we did not write, as options: ``operation_limit`` (at most
that many nodes per Read / TranslateBrowsePaths / CreateMonitoredItems call, published in
the standard OperationLimits nodes unless ``publish_limits`` is false; more is answered
``BadTooManyOperations``), ``clock_skew`` (the server's clock runs that many seconds ahead:
ServerStatus.CurrentTime and every timestamp it serves), and ``trusted_clients`` checked
when the secure channel opens (an untrusted certificate gets a ServiceFault
``BadSecurityChecksFailed`` in the OpenSecureChannel response, as real servers answer).

Face and server faults: ``weighting`` (a periodic-weighting event now, on supports
``first``..``last``), ``offline`` (the port closes until cleared), ``restart`` (a server
restart: sessions and subscriptions are lost; ``downtime`` seconds closed).
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import struct
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from copy import copy
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_session import InternalSession
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import struct_from_binary
from asyncua.server.monitored_item_service import MonitoredItemService
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import Field, model_validator

from adapters.opcua.nodemap import DataType, NodeMap, Signal
from adapters.opcua.tools import make_certificate
from simulators.faults import FaultError, FaultHolder, FaultParams, NoParams
from simulators.lifecycle import FaultFollowingServer

from .longwall import FaceParams, LongwallModel

log = logging.getLogger(__name__)

GOOD = ua.StatusCodes.Good
HISTORY = 120  # updates kept for comparison


# -- faults -------------------------------------------------------------------------------
class SensorParams(FaultParams):
    signals: list[str] = Field(min_length=1, description="signal names (or give one as `signal`)")

    @model_validator(mode="before")
    @classmethod
    def _one_signal(cls, data: Any) -> Any:
        if isinstance(data, dict) and "signal" in data:
            data = {**data, "signals": [data["signal"], *data.get("signals", [])]}
            del data["signal"]
        if isinstance(data, dict) and isinstance(data.get("signals"), str):
            data = {**data, "signals": [data["signals"]]}
        return data


class OutOfRangeParams(SensorParams):
    value: float | None = Field(None, description="value served; default: 10 % of the span above the range")


class RestartParams(FaultParams):
    downtime: float = Field(0.0, ge=0, le=600, description="seconds the port stays closed")


class WeightingParams(FaultParams):
    first: int = Field(description="first support number")
    last: int = Field(description="last support number")
    factor: float = Field(4.0, gt=1, le=20, description="load-rise rates × this")
    duration: float = Field(3 * 3600, gt=0, description="face seconds")


FAULTS: dict[str, type[FaultParams]] = {
    "offline": NoParams, "restart": RestartParams, "weighting": WeightingParams,
    "stuck": SensorParams, "dead": SensorParams, "no_communication": SensorParams,
    "out_of_range": OutOfRangeParams,
}
STATUS_OF_FAULT = {"stuck": ua.StatusCodes.UncertainLastUsableValue, "dead": ua.StatusCodes.BadSensorFailure,
                   "no_communication": ua.StatusCodes.BadNoCommunication}
ONE_SHOT = {"restart", "weighting"}  # actions, not states: they do not stay in ``faults``


class Served(NamedTuple):
    """What a node holds: value (None with a Bad status), status code, source timestamp."""

    value: Any
    status: int
    ts: datetime


# -- one face -----------------------------------------------------------------------------
class FaceSimulator(FaultHolder):
    """One simulated roof-pressure system: a seeded face model plus injected faults.

    ``clock`` gives seconds since the start (default: since construction); face time
    runs ``time_scale`` times faster, from ``start_at`` face seconds.
    """

    def __init__(self, device_id: str, nodemap: NodeMap, seed: int = 0,
                 clock: Callable[[], float] | None = None, time_scale: float = 1.0, start_at: float = 0.0,
                 params: FaceParams | None = None):
        self.device_id = device_id
        self.nodemap = nodemap
        self.model = LongwallModel(nodemap, seed, params)
        self.signals = {s.name: s for s in nodemap.expanded}
        self.time_scale, self.start_at = time_scale, start_at
        start = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - start)
        self.served: dict[str, Served] = {}
        self.history: OrderedDict[datetime, dict[str, Served]] = OrderedDict()
        self._faults: dict[str, FaultParams] = {}
        self._frozen: dict[str, Served | None] = {}
        self._listeners: list[Callable[[FaceSimulator, str, FaultParams | None], None]] = []

    def __repr__(self) -> str:
        return f"FaceSimulator({self.device_id!r}, {len(self.signals)} signals)"

    def face_time(self) -> float:
        return self.start_at + self.clock() * self.time_scale

    # -- values ---------------------------------------------------------------------------
    def sample(self, now: datetime | None = None) -> dict[str, Served]:
        """Sample the model now, apply the faults, remember and return what is served."""
        now = now or datetime.now(timezone.utc)
        values = self.model.values(self.face_time())
        served = {name: Served(_as_served(self.signals[name].type, v), GOOD, now) for name, v in values.items()}
        self._apply_faults(served)
        self.served = served
        self.history[now] = served
        while len(self.history) > HISTORY:
            self.history.popitem(last=False)
        return served

    def current_values(self) -> dict[str, Any]:
        """The values served right now, exactly as a client decodes them."""
        return {name: s.value for name, s in self.served.items()}

    def served_at(self, ts: datetime) -> dict[str, Served] | None:
        """What was served by the update stamped ``ts`` (a sample's source timestamp; within
        1 ms, as MQTT payloads carry milliseconds)."""
        exact = self.history.get(ts)
        if exact is not None:
            return exact
        return next((v for k, v in reversed(self.history.items()) if abs((k - ts).total_seconds()) < 0.001), None)

    def _apply_faults(self, served: dict[str, Served]) -> None:
        if oor := self._faults.get("out_of_range"):
            for name in oor.signals:
                served[name] = Served(_as_served(self.signals[name].type, self._outside(name, oor)), GOOD,
                                      served[name].ts)
        for fault in ("dead", "no_communication"):
            for name in getattr(self._faults.get(fault), "signals", ()):
                served[name] = Served(None, STATUS_OF_FAULT[fault], served[name].ts)
        for name, frozen in self._frozen.items():
            if frozen is None:  # stuck before anything was served: freeze the first value
                frozen = self._frozen[name] = served[name]
            served[name] = Served(frozen.value, STATUS_OF_FAULT["stuck"], frozen.ts)

    def _outside(self, name: str, p: OutOfRangeParams) -> float:
        if p.value is not None:
            return p.value
        low, high = self.signals[name].range
        return high + 0.1 * (high - low)

    # -- faults ---------------------------------------------------------------------------
    @property
    def fault_kinds(self) -> dict[str, type[FaultParams]]:
        return FAULTS

    def _check_targets(self, name: str, p: FaultParams) -> FaultParams:
        for signal in getattr(p, "signals", ()):
            if signal not in self.signals:
                raise FaultError(f"{self.device_id}: {name}: no signal {signal!r} in the node map")
            if name == "out_of_range" and p.value is None and self.signals[signal].range is None:
                raise FaultError(f"{self.device_id}: out_of_range: {signal} has no range to leave")
        if isinstance(p, WeightingParams):
            try:
                self.model.index_of(p.first), self.model.index_of(p.last)
            except ValueError as exc:
                raise FaultError(f"{self.device_id}: weighting: {exc}") from None
        return p

    def set_fault(self, name: str, **params: Any) -> FaultParams:
        """Inject a fault now (replacing the same fault's earlier parameters)."""
        checked = self.check_fault(name, params)
        if isinstance(checked, WeightingParams):
            self.model.add_weighting(self.face_time(), checked.duration, checked.first, checked.last, checked.factor)
        elif name == "stuck":
            for signal in checked.signals:
                self._frozen.setdefault(signal, self.served.get(signal))
        if name not in ONE_SHOT:
            self._faults[name] = checked
        self._notify(name, checked)
        return checked

    def _fault_cleared(self, name: str) -> None:
        if name == "stuck":
            self._frozen.clear()


def _as_served(data_type: DataType, value: Any) -> Any:
    """The value as a client decodes it: Float travels as IEEE single precision."""
    if value is None:
        return None
    if data_type is DataType.FLOAT:
        return struct.unpack("<f", struct.pack("<f", value))[0]
    if data_type is DataType.DOUBLE:
        return float(value)
    if data_type.is_integer:
        return int(round(value))
    if data_type is DataType.BOOLEAN:
        return bool(value)
    return str(value)


# -- deadband as OPC UA Part 4 says -------------------------------------------------------
class _SpecDeadbandItems(MonitoredItemService):
    """asyncua's server compares a deadband with the previous *sample*, so a drift in small
    steps is never reported, and it has no percent deadband. Part 4 §7.22.2: compare with
    the last *reported* value; percent is of the EURange, and only analog items have one
    (creating a percent-deadband item on another node fails)."""

    def __init__(self, isub, aspace, ranges: dict[ua.NodeId, tuple[float, float]]):
        super().__init__(isub, aspace)
        self.ranges = ranges

    async def _create_data_change_monitored_item(self, params: ua.MonitoredItemCreateRequest):
        f = _data_change_filter(params.RequestedParameters.Filter)
        if f and f.DeadbandType == ua.DeadbandType.Percent and params.ItemToMonitor.NodeId not in self.ranges:
            return ua.MonitoredItemCreateResult(StatusCode=ua.StatusCode(ua.StatusCodes.BadFilterNotAllowed))
        return await super()._create_data_change_monitored_item(params)

    async def datachange_callback(self, handle: int, value: ua.DataValue, error: ua.StatusCode | None = None) -> None:
        if error:
            return await super().datachange_callback(handle, value, error)
        mid = self._monitored_datachange.get(handle)
        mdata = self._monitored_items.get(mid)
        if mdata is None or mdata.mode == ua.MonitoringMode.Disabled:
            return
        last = mdata.mvalue.get_current_datavalue()
        if last is not None and not self._reportable(last, value, mdata):
            return
        mdata.mvalue.set_current_datavalue(value)
        await self.isub.enqueue_datachange_event(
            mid, ua.MonitoredItemNotification(ClientHandle=mdata.client_handle, Value=value), mdata.queue_size)

    def _reportable(self, last: ua.DataValue, new: ua.DataValue, mdata) -> bool:
        if last.StatusCode != new.StatusCode:
            return True
        f = _data_change_filter(mdata.filter)
        trigger = f.Trigger if f else ua.DataChangeTrigger.StatusValue
        if trigger == ua.DataChangeTrigger.Status:
            return False
        if trigger == ua.DataChangeTrigger.StatusValueTimestamp and last.SourceTimestamp != new.SourceTimestamp:
            return True
        old, now = (v.Value.Value if v.Value is not None else None for v in (last, new))
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, now))
        if not numbers or not f or f.DeadbandType == ua.DeadbandType.None_:
            return old != now
        limit = f.DeadbandValue
        if f.DeadbandType == ua.DeadbandType.Percent:
            low, high = self.ranges[mdata.read_value_id.NodeId]
            limit = f.DeadbandValue / 100 * (high - low)
        return abs(now - old) > limit


def _data_change_filter(f: Any) -> Any:
    # Decoded filters are asyncua's generated DataChangeFilter, not ``ua.DataChangeFilter``.
    return f if hasattr(f, "DeadbandType") and hasattr(f, "Trigger") else None


# -- users ----------------------------------------------------------------------------------
class _UserCertificate(bytes):
    """The DER certificate of an X.509 identity token whose signature was verified (not the
    application certificate of the secure channel, which asyncua passes for other tokens)."""


class _Users:
    """Who may open a session: users with a password, users with a trusted certificate, and
    anonymous unless refused."""

    def __init__(self, users: dict[str, str], allow_anonymous: bool, trusted_users: dict[bytes, str] | None = None):
        self.users, self.allow_anonymous = users, allow_anonymous
        self.trusted_users = trusted_users or {}

    def get_user(self, iserver, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is not None:
            expected = self.users.get(username)
            ok = expected is not None and hmac.compare_digest(expected.encode(), (password or "").encode())
            return User(role=UserRole.User, name=username) if ok else None
        if isinstance(certificate, _UserCertificate):
            name = self.trusted_users.get(bytes(certificate))
            return User(role=UserRole.User, name=name) if name is not None else None
        return User(role=UserRole.User) if self.allow_anonymous else None


def _install_user_certificates(server: Server, trusted: dict[bytes, str]) -> None:
    """X.509 identity tokens: asyncua verifies the token's signature; an untrusted certificate
    is then refused with BadIdentityTokenRejected (a trusted one becomes its named user)."""
    iserver, verify = server.iserver, server.iserver.verify_x509_token

    def verify_x509_token(isession, token: ua.X509IdentityToken, signature: ua.SignatureData) -> bytes:
        der = verify(isession, token, signature)
        if der not in trusted:
            log.info("X.509 user token refused: certificate not trusted")
            raise ServiceError(ua.StatusCodes.BadIdentityTokenRejected)
        return _UserCertificate(der)

    iserver.verify_x509_token = verify_x509_token


# -- one endpoint -------------------------------------------------------------------------
class OpcUaSimServer(FaultFollowingServer):
    """One ``opc.tcp://host:port`` serving ``faces``, updated every ``update_interval`` seconds.

    ``users`` (name → password) may log in; anonymous sessions are allowed unless
    ``allow_anonymous`` is false. ``allow_insecure`` offers security policy None too.
    ``trusted_clients`` (certificate files), when given, are the only application
    certificates that may open a secure channel (others: a ServiceFault
    BadSecurityChecksFailed answers OpenSecureChannel); by default any certificate is
    accepted, as a server in commissioning mode does.
    ``operation_limit``: at most this many operations per Read, TranslateBrowsePaths and
    CreateMonitoredItems call (more: BadTooManyOperations), published in the server's
    OperationLimits unless ``publish_limits`` is false. ``clock_skew``: seconds the server's
    clock is ahead of the real one (negative: behind).
    ``trusted_users`` (user certificate files) may log in with an X.509 identity token;
    a token with another certificate is refused (BadIdentityTokenRejected).
    The server certificate is generated into ``certificate_dir`` (a temporary directory
    by default) unless one is there already: ``server.der`` / ``server.key.pem``.
    """

    def __init__(self, url: str, faces: list[FaceSimulator], *, update_interval: float = 1.0,
                 users: dict[str, str] | None = None, allow_anonymous: bool = True, allow_insecure: bool = True,
                 certificate_dir: str | Path | None = None, bind_host: str | None = None,
                 trusted_clients: list[str | Path] | None = None,
                 trusted_users: list[str | Path] | None = None, operation_limit: int | None = None,
                 publish_limits: bool = True, clock_skew: float = 0.0):
        if not faces:
            raise ValueError(f"{url}: no faces to serve")
        self.url = url
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port or 4840
        self.bind_host = bind_host
        self.faces = faces
        self.update_interval = update_interval
        self.users, self.allow_anonymous, self.allow_insecure = dict(users or {}), allow_anonymous, allow_insecure
        self.trusted_clients = None if trusted_clients is None else {_der(Path(p)) for p in trusted_clients}
        self.trusted_users = {_der(Path(p)): _common_name(_der(Path(p))) or Path(p).stem
                              for p in trusted_users or ()}
        self.operation_limit, self.publish_limits = operation_limit, publish_limits
        self.clock_skew = timedelta(seconds=clock_skew)
        self._tmp = None if certificate_dir else tempfile.TemporaryDirectory(prefix="minegw-opcua-sim-")
        self.certificate_dir = Path(certificate_dir or self._tmp.name)
        self.server: Server | None = None
        self._nodes: dict[str, ua.NodeId] = {}  # "device/signal" → node id
        self._written: dict[str, Served] = {}
        self._updates: asyncio.Task | None = None
        super().__init__()
        self.starts = 0  # how often the server came up (restarts + 1)
        for face in faces:
            face.subscribe(self._fault_changed)

    def __repr__(self) -> str:
        return f"OpcUaSimServer({self.url}, {[f.device_id for f in self.faces]})"

    @property
    def listening(self) -> bool:
        return self.server is not None

    @property
    def certificate(self) -> Path:
        return self.certificate_dir / "server.der"

    # -- life cycle -----------------------------------------------------------------------
    async def restart(self, downtime: float = 0.0) -> None:
        """Stop and start again on the same port: every session and subscription is lost."""
        async with self._lock:
            await self._shut()
            await asyncio.sleep(downtime)
            if self._wanted and not self._all_offline():
                await self._open()

    async def __aexit__(self, *_exc: Any) -> None:
        await super().__aexit__()
        if self._tmp is not None:
            self._tmp.cleanup()

    def _fault_changed(self, _face: FaceSimulator, fault: str, params: FaultParams | None) -> None:
        if isinstance(params, RestartParams):
            self._schedule(self.restart(params.downtime))
        elif fault == "offline":
            self._schedule()

    def _all_offline(self) -> bool:
        return all(f.offline for f in self.faces)

    async def _open(self) -> None:
        """A fresh server process, as far as clients can tell: new sessions, new subscriptions."""
        server = await self._build()
        try:
            await server.start()
        except OSError as exc:
            raise OSError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        if self.trusted_clients is not None:
            _check_clients_at_secure_channel(server, self.trusted_clients)
        self.server = server
        self.starts += 1
        await self._write_all()
        self._updates = asyncio.create_task(self._update_loop(), name=f"opcua-sim:{self.port}")

    async def _shut(self) -> None:
        if self._updates is not None:
            self._updates.cancel()
            await asyncio.gather(self._updates, return_exceptions=True)
            self._updates = None
        server, self.server = self.server, None
        if server is not None:
            _end_sessions(server)
            await server.stop()

    # -- address space --------------------------------------------------------------------
    async def _build(self) -> Server:
        server = Server(user_manager=_Users(self.users, self.allow_anonymous, self.trusted_users))
        await server.init()
        server.disable_clock()  # our updates set the time: its own loop would hold stop() up to 1 s
        server.set_endpoint(self.url)
        if self.bind_host:
            server.socket_address = (self.bind_host, self.port)
        server.set_server_name(f"minegw roof-pressure simulator ({', '.join(f.device_id for f in self.faces)})")
        await server.set_application_uri(f"urn:minegw:sim:opcua:{self.host}:{self.port}")
        await self._secure(server)
        ranges: dict[ua.NodeId, tuple[float, float]] = {}
        self._nodes = {}
        builder = _AddressSpace(server)
        for face in self.faces:
            for signal in face.nodemap.expanded:
                node_id = await builder.variable(face.nodemap, signal)
                self._nodes[f"{face.device_id}/{signal.name}"] = node_id
                if signal.range is not None:
                    ranges[node_id] = signal.range
        _install_spec_deadband(server, ranges)
        if self.operation_limit is not None:
            await _limit_operations(server, self.operation_limit, self.publish_limits)
        server.iserver.aspace.set_attribute_value_callback(
            ua.NodeId(ua.ObjectIds.Server_ServerStatus_CurrentTime), ua.AttributeIds.Value,
            lambda *_: ua.DataValue(ua.Variant(self.now(), ua.VariantType.DateTime)))
        self._written = {}
        return server

    async def _secure(self, server: Server) -> None:
        cert, key = self.certificate, self.certificate_dir / "server.key.pem"
        if not (cert.is_file() and key.is_file()):
            make_certificate(self.certificate_dir, "server", f"urn:minegw:sim:opcua:{self.host}:{self.port}",
                             server=True, hosts=tuple(h for h in (self.host, "localhost", "127.0.0.1") if h))
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        policies = [ua.SecurityPolicyType.Basic256Sha256_Sign, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
        if self.allow_insecure:
            policies.insert(0, ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies)
        tokens = [ua.UserNameIdentityToken] if self.users else []
        if self.trusted_users:
            tokens.insert(0, ua.X509IdentityToken)
            _install_user_certificates(server, self.trusted_users)
        if self.allow_anonymous:
            tokens.insert(0, ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)

    # -- updates --------------------------------------------------------------------------
    async def _update_loop(self) -> None:
        next_due = time.monotonic() + self.update_interval
        while True:
            await asyncio.sleep(max(next_due - time.monotonic(), 0))
            next_due += self.update_interval
            try:
                await self._write_all()
            except Exception:  # a model bug must not stop the server silently
                log.exception("%s: update failed", self)

    def now(self) -> datetime:
        """The server's clock: the real time plus ``clock_skew``."""
        return datetime.now(timezone.utc) + self.clock_skew

    async def _write_all(self) -> None:
        server, now = self.server, self.now()
        await _set_server_time(server, now)
        for face in self.faces:
            for name, served in face.sample(now).items():
                key = f"{face.device_id}/{name}"
                if self._written.get(key) == served:
                    continue  # unchanged (stuck): no write, no notification
                self._written[key] = served
                await server.write_attribute_value(self._nodes[key], _data_value(face.signals[name], served, now))


def _common_name(der: bytes) -> str | None:
    names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def _der(path: Path) -> bytes:
    data = path.read_bytes()
    return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER) \
        if data.startswith(b"-----") else data


async def _set_server_time(server: Server, now: datetime) -> None:
    """What asyncua's own clock loop does for ServerStatus, once per update (its CurrentTime
    variable answers every read with the time of the read: see ``_build``)."""
    node = server.get_node(ua.NodeId(ua.ObjectIds.Server_ServerStatus))
    status = copy(await node.read_value())
    status.CurrentTime = now
    await node.write_value(status)


# -- what servers we did not write do ----------------------------------------------------
LIMITED = {  # service → (session method, operations in its request), as the processor calls it
    "Read": ("read", lambda params: len(params.NodesToRead)),
    "TranslateBrowsePathsToNodeIds": ("translate_browsepaths_to_nodeids", len),
    "CreateMonitoredItems": ("create_monitored_items", lambda params: len(params.ItemsToCreate)),
}
LIMIT_NODES = (ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
               ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerTranslateBrowsePathsToNodeIds,
               ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall)


async def _limit_operations(server: Server, limit: int, publish: bool) -> None:
    """asyncua has the OperationLimits nodes but enforces none: refuse a request with more
    operations than ``limit`` (BadTooManyOperations), on every client session."""
    if publish:
        for node_id in LIMIT_NODES:
            await server.get_node(ua.NodeId(node_id)).write_value(ua.Variant(limit, ua.VariantType.UInt32))
    iserver = server.iserver
    create_session = iserver.create_session

    def limited_session(*args: Any, **kwargs: Any) -> InternalSession:
        session = create_session(*args, **kwargs)
        for method, count in LIMITED.values():
            setattr(session, method, partial(_within_limit, getattr(session, method), count, limit))
        return session

    iserver.create_session = limited_session


async def _within_limit(service: Callable, count: Callable[[Any], int], limit: int, params: Any) -> Any:
    if count(params) > limit:
        raise ServiceError(ua.StatusCodes.BadTooManyOperations)
    return await service(params)


def _end_sessions(server: Server) -> None:
    """A clean shutdown, as servers we did not write do it: every Publish request waiting for
    data is answered BadSessionClosed before the connections close (asyncua just closes them)."""
    for protocol in server.bserver.clients if server.bserver else ():
        processor = protocol.processor
        while processor._publish_requests:
            request = processor._publish_requests.popleft()
            fault = ua.ServiceFault()
            fault.ResponseHeader.ServiceResult = ua.StatusCode(ua.StatusCodes.BadSessionClosed)
            processor.send_response(request.requesthdr.RequestHandle, request.seqhdr, fault)


def _check_clients_at_secure_channel(server: Server, trusted: set[bytes]) -> None:
    """asyncua checks client certificates at CreateSession; real servers refuse an untrusted
    one when the secure channel opens, with a ServiceFault in the OpenSecureChannel response
    (BadSecurityChecksFailed: Part 4 tells servers not to say more). Every connection's
    processor gets that check (asyncua makes one per connection, then lists the connection
    in ``bserver.clients``)."""

    class Clients(list):
        def append(self, protocol: Any) -> None:
            processor: UaProcessor = protocol.processor
            processor.open_secure_channel = partial(_open_if_trusted, processor, processor.open_secure_channel,
                                                    trusted)
            super().append(protocol)

    server.bserver.clients = Clients(server.bserver.clients)


def _open_if_trusted(processor: UaProcessor, open_channel: Callable, trusted: set[bytes], algohdr: Any,
                     seqhdr: Any, body: Any) -> None:
    certificate = getattr(algohdr, "SenderCertificate", None)
    if not certificate or certificate in trusted:
        return open_channel(algohdr, seqhdr, body)
    request = struct_from_binary(ua.OpenSecureChannelRequest, body)
    log.info("OpenSecureChannel refused: client certificate not trusted")
    processor._connection.select_policy(algohdr.SecurityPolicyURI, certificate, request.Parameters.SecurityMode)
    fault = ua.ServiceFault()
    fault.ResponseHeader.ServiceResult = ua.StatusCode(ua.StatusCodes.BadSecurityChecksFailed)
    processor.send_response(request.RequestHeader.RequestHandle, seqhdr, fault, ua.MessageType.SecureOpen)
    processor._transport.close()


def _data_value(signal: Signal, served: Served, now: datetime) -> ua.DataValue:
    variant = (ua.Variant(None, ua.VariantType.Null) if served.value is None
               else ua.Variant(served.value, getattr(ua.VariantType, signal.type.value)))
    return ua.DataValue(variant, StatusCode=ua.StatusCode(served.status), SourceTimestamp=served.ts,
                        ServerTimestamp=now)


def _install_spec_deadband(server: Server, ranges: dict[ua.NodeId, tuple[float, float]]) -> None:
    """Give every subscription of this server (only) the spec-conforming deadband check."""
    service = server.iserver.subscription_service
    create = service.create_subscription

    async def create_subscription(params, callback, session_id, request_callback=None):
        result = await create(params, callback, session_id, request_callback)
        isub = service.subscriptions[result.SubscriptionId]
        isub.monitored_item_srv = _SpecDeadbandItems(isub, service.aspace, ranges)
        return result

    service.create_subscription = create_subscription


class _AddressSpace:
    """Folders, objects and variables for node-map signals, created once each.

    A node-id signal ``s=Longwall.Support001.FrontLeg`` becomes the variable
    ``FrontLeg`` in the objects ``Longwall/Support001`` (its dotted parts); other node
    ids go into ``<root>``. A path signal gets exactly its browse path, with node ids
    ``s=<names joined by dots>``.
    """

    def __init__(self, server: Server):
        self.server = server
        self.namespaces: dict[str, int] = {}
        self.objects: dict[tuple, Any] = {}

    async def variable(self, nodemap: NodeMap, s: Signal) -> ua.NodeId:
        await self._namespace(nodemap.namespace, nodemap.namespace)  # registered first: index 2
        ns = await self._namespace(s.namespace, nodemap.namespace)
        if s.node_id is not None:
            node_id = ua.NodeId.from_string(f"ns={ns};{s.node_id}")
            parts = s.node_id[2:].split(".") if s.node_id.startswith("s=") else [nodemap.root, s.name]
            parent, name = await self._objects([(ns, p) for p in parts[:-1]] or [(ns, nodemap.root)]), parts[-1]
        else:
            path = [(await self._namespace(element_ns, nodemap.namespace), name) for element_ns, name in s.path]
            node_id = ua.NodeId(".".join(name for _, name in path), path[-1][0])
            parent, name = await self._objects(path[:-1]), path[-1][1]
        initial = ua.Variant(_as_served(s.type, 0), getattr(ua.VariantType, s.type.value))
        var = await parent.add_variable(node_id, ua.QualifiedName(name, node_id.NamespaceIndex), initial)
        await var.write_attribute(ua.AttributeIds.Description, ua.DataValue(ua.Variant(
            ua.LocalizedText(s.description or s.name))))
        if s.range is not None:
            await var.add_property(ua.NodeId(f"{node_id.Identifier}.EURange", node_id.NamespaceIndex),
                                   ua.QualifiedName("EURange", 0), ua.Range(*s.range))
        return node_id

    async def _namespace(self, namespace: str | int, default: str) -> int:
        if isinstance(namespace, int):
            if namespace == 0:
                return 0
            if namespace != 2:  # the first namespace registered gets index 2
                raise ValueError(f"the simulator serves the node map's namespace as index 2, not ns={namespace}")
            namespace = default
        if namespace not in self.namespaces:
            self.namespaces[namespace] = await self.server.register_namespace(namespace)
        return self.namespaces[namespace]

    async def _objects(self, path: list[tuple[int, str]]):
        node = self.server.nodes.objects
        for depth in range(1, len(path) + 1):
            key = tuple(path[:depth])
            if key not in self.objects:
                ns, name = path[depth - 1]
                node_id = ua.NodeId(".".join(n for _, n in key), ns)
                self.objects[key] = await node.add_object(node_id, ua.QualifiedName(name, ns))
            node = self.objects[key]
        return node
