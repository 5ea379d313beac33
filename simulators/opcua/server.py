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
import logging
import tempfile
import time
from copy import copy
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from asyncua import Server, ua

from adapters.opcua.nodemap import NodeMap, Signal
from adapters.opcua.certs import make_certificate
from simulators.faults import FaultParams
from simulators.lifecycle import FaultFollowingServer

from .behaviours import (
    SimUsers,
    check_clients_at_secure_channel,
    common_name,
    der_of,
    end_sessions,
    install_spec_deadband,
    install_user_certificates,
    limit_operations,
)
from .face import FaceSimulator, RestartParams, Served, as_served

log = logging.getLogger(__name__)


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
        self.trusted_clients = None if trusted_clients is None else {der_of(Path(p)) for p in trusted_clients}
        self.trusted_users = {der_of(Path(p)): common_name(der_of(Path(p))) or Path(p).stem
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
            check_clients_at_secure_channel(server, self.trusted_clients)
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
            end_sessions(server)
            await server.stop()

    # -- address space --------------------------------------------------------------------
    async def _build(self) -> Server:
        server = Server(user_manager=SimUsers(self.users, self.allow_anonymous, self.trusted_users))
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
        install_spec_deadband(server, ranges)
        if self.operation_limit is not None:
            await limit_operations(server, self.operation_limit, self.publish_limits)
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
            install_user_certificates(server, self.trusted_users)
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


async def _set_server_time(server: Server, now: datetime) -> None:
    """What asyncua's own clock loop does for ServerStatus, once per update (its CurrentTime
    variable answers every read with the time of the read: see ``_build``)."""
    node = server.get_node(ua.NodeId(ua.ObjectIds.Server_ServerStatus))
    status = copy(await node.read_value())
    status.CurrentTime = now
    await node.write_value(status)


def _data_value(signal: Signal, served: Served, now: datetime) -> ua.DataValue:
    variant = (ua.Variant(None, ua.VariantType.Null) if served.value is None
               else ua.Variant(served.value, getattr(ua.VariantType, signal.type.value)))
    return ua.DataValue(variant, StatusCode=ua.StatusCode(served.status), SourceTimestamp=served.ts,
                        ServerTimestamp=now)


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
        initial = ua.Variant(as_served(s.type, 0), getattr(ua.VariantType, s.type.value))
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
