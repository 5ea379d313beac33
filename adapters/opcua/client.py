"""An asyncua ``Client`` set up from a device's security settings (shared by the adapter and tools)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from asyncua import Client, ua
from asyncua.crypto import security_policies
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .config import OpcUaDeviceConfig

log = logging.getLogger(__name__)


class _QuietTeardown(logging.Filter):
    """asyncua logs at ERROR or WARNING, often with a traceback and at every reconnect
    attempt, what the adapter handles and reports itself (as the device state, once per
    change): a lost connection or a server's clean shutdown in its publish loop, the
    teardown of a dead link, a refused OpenSecureChannel, a BadTooManyOperations the
    adapter answers by splitting its request."""

    EXPECTED = ("close_session was called but connection is closed",
                "close_secure_channel was called but connection is closed",
                "close_session but connection wasn't established")
    SHUTDOWN = (ua.StatusCodes.BadSessionClosed, ua.StatusCodes.BadShutdown, ua.StatusCodes.BadServerHalted,
                ua.StatusCodes.BadSessionIdInvalid)
    HANDLED_FAULTS = ("BadSessionClosed", "BadShutdown", "BadServerHalted", "BadSessionIdInvalid",
                      "BadTooManyOperations")

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        exc = record.exc_info[1] if record.exc_info else None
        if message.startswith("Publish iteration crashed"):
            return not (isinstance(exc, (ConnectionError, OSError)) or getattr(exc, "code", None) in self.SHUTDOWN)
        if message.startswith("ServiceFault (") and record.args:
            return record.args[0] not in self.HANDLED_FAULTS
        if message.startswith("Exception raised while parsing message from server"):
            return not _answer_to_open_secure_channel(exc)
        return not message.startswith(self.EXPECTED)


def _answer_to_open_secure_channel(exc: BaseException | None) -> bool:
    """The exception came from decoding the server's answer to OpenSecureChannel (a ServiceFault)."""
    header = None
    for frame, _ in traceback.walk_tb(exc.__traceback__ if exc else None):
        header = header or frame.f_locals.get("header")
    return getattr(header, "MessageType", None) == ua.MessageType.SecureOpen


for _name in ("asyncua.client.ua_session.UaSession", "asyncua.client.ua_client.UaClient",
              "asyncua.client.ua_client.UASocketProtocol"):
    logging.getLogger(_name).addFilter(_QuietTeardown())

DEFAULT_CLIENT_URI = "urn:minegw:gateway"
SESSION_TIMEOUT_MS = 120_000  # a session we abandon (link lost) is gone from the server after this


@dataclass(frozen=True)
class Security:
    """How to reach a server: message security, and who we are (anonymous, a user with a
    password, or a user with an X.509 certificate)."""

    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = None
    private_key: Path | None = None
    server_certificate: Path | None = None
    username: str | None = None
    password: str | None = None
    user_certificate: Path | None = None
    user_private_key: Path | None = None

    @classmethod
    def of(cls, device: OpcUaDeviceConfig) -> Security:
        return cls(device.security_policy, device.security_mode, device.certificate, device.private_key,
                   device.server_certificate, device.username,
                   device.password.get_secret_value() if device.password else None,
                   device.user_certificate, device.user_private_key)

    def who(self) -> str:
        if self.username:
            return f"user {self.username!r}"
        if self.user_certificate:
            return f"user certificate {self.user_certificate.name!r}"
        return "anonymous"

    def describe(self) -> str:
        user = self.who()
        return user if self.policy == "None" else f"{self.policy}/{self.mode}, {user}"


async def make_client(url: str, security: Security, timeout: float) -> Client:
    """A client ready to ``connect()``. With security on and no pinned server certificate this
    already asks the server for its endpoints (so it can fail like a connect)."""
    # The watchdog reads the server state every interval: a silent network is noticed
    # within about two of them.
    client = Client(url, timeout=timeout, watchdog_intervall=min(max(timeout / 2, 1.0), 5.0))
    client.name = client.description = "minegw gateway"
    client.product_uri = "urn:minegw"
    client.session_timeout = SESSION_TIMEOUT_MS
    if security.certificate:
        client.application_uri = application_uri(security.certificate)
    if security.policy != "None":
        await client.set_security(
            getattr(security_policies, f"SecurityPolicy{security.policy}"), str(security.certificate),
            str(security.private_key),
            server_certificate=str(security.server_certificate) if security.server_certificate else None,
            mode=getattr(ua.MessageSecurityMode, security.mode))
    if security.username:
        client.set_user(security.username)
        client.set_password(security.password or "")
    elif security.user_certificate:
        # X509IdentityToken: the certificate, and the server's certificate + nonce signed with its key
        await client.load_client_certificate(str(security.user_certificate))
        await client.load_private_key(security.user_private_key)
    return client


def load_certificate(path: Path) -> x509.Certificate:
    """A certificate file, DER or PEM."""
    data = path.read_bytes()
    return x509.load_pem_x509_certificate(data) if data.startswith(b"-----") else x509.load_der_x509_certificate(data)


def thumbprint(certificate: Path) -> str:
    """The SHA-1 thumbprint servers show in their certificate lists (hex, upper case)."""
    try:
        return load_certificate(certificate).fingerprint(hashes.SHA1()).hex().upper()
    except (OSError, ValueError) as exc:
        return f"unreadable: {exc}"


def application_uri(certificate: Path) -> str:
    """The URI in a certificate's subject alternative names: the client must present the same."""
    cert = load_certificate(certificate)
    try:
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    return uris[0] if uris else DEFAULT_CLIENT_URI


async def close_quietly(client: Client, timeout: float) -> None:
    """Close the session if the link still works; never raise (the link may be long gone)."""
    try:
        await asyncio.wait_for(client.disconnect(), timeout)
    except (Exception, asyncio.TimeoutError) as exc:  # noqa: BLE001 - teardown of a failed link
        log.debug("disconnect from %s: %r", client.server_url.geturl(), exc)
        with contextlib.suppress(Exception):
            client.disconnect_socket()


@contextlib.asynccontextmanager
async def open_client(url: str, security: Security, timeout: float = 4.0) -> AsyncIterator[Client]:
    client = await make_client(url, security, timeout)
    await client.connect()
    try:
        yield client
    finally:
        await close_quietly(client, timeout)
