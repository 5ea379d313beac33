"""What OPC UA servers we did not write do and asyncua does not: hooks that make the simulator
behave like them (operation limits, clean shutdowns, certificates checked when the secure channel
opens, X.509 user tokens, the spec's deadband)."""
from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_session import InternalSession
from asyncua.server.monitored_item_service import MonitoredItemService
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import struct_from_binary
from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger(__name__)


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


class SimUsers:
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


def install_user_certificates(server: Server, trusted: dict[bytes, str]) -> None:
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


def common_name(der: bytes) -> str | None:
    names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def der_of(path: Path) -> bytes:
    data = path.read_bytes()
    return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER) \
        if data.startswith(b"-----") else data



# -- what servers we did not write do ----------------------------------------------------
LIMITED = {  # service → (session method, operations in its request), as the processor calls it
    "Read": ("read", lambda params: len(params.NodesToRead)),
    "TranslateBrowsePathsToNodeIds": ("translate_browsepaths_to_nodeids", len),
    "CreateMonitoredItems": ("create_monitored_items", lambda params: len(params.ItemsToCreate)),
}
LIMIT_NODES = (ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
               ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerTranslateBrowsePathsToNodeIds,
               ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall)


async def limit_operations(server: Server, limit: int, publish: bool) -> None:
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


def end_sessions(server: Server) -> None:
    """A clean shutdown, as servers we did not write do it: every Publish request waiting for
    data is answered BadSessionClosed before the connections close (asyncua just closes them)."""
    for protocol in server.bserver.clients if server.bserver else ():
        processor = protocol.processor
        while processor._publish_requests:
            request = processor._publish_requests.popleft()
            fault = ua.ServiceFault()
            fault.ResponseHeader.ServiceResult = ua.StatusCode(ua.StatusCodes.BadSessionClosed)
            processor.send_response(request.requesthdr.RequestHandle, request.seqhdr, fault)


def check_clients_at_secure_channel(server: Server, trusted: set[bytes]) -> None:
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


def install_spec_deadband(server: Server, ranges: dict[ua.NodeId, tuple[float, float]]) -> None:
    """Give every subscription of this server (only) the spec-conforming deadband check."""
    service = server.iserver.subscription_service
    create = service.create_subscription

    async def create_subscription(params, callback, session_id, request_callback=None):
        result = await create(params, callback, session_id, request_callback)
        isub = service.subscriptions[result.SubscriptionId]
        isub.monitored_item_srv = _SpecDeadbandItems(isub, service.aspace, ranges)
        return result

    service.create_subscription = create_subscription

