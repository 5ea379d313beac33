"""One SNMP agent (pysnmp's agent side, in this process) serving one simulated device on UDP host:port.

v2c with the site file's community, v3 with its USM user (authPriv or authNoPriv); GET, GETNEXT
and GETBULK. While the device is unreachable (a fault, or cut off by the ring) the agent drops
every request, as a switch behind a broken cable does: the manager sees timeouts, not refusals.
"""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import cmdrsp, context
from pysnmp.proto import rfc1905

from adapters.snmp.config import SnmpV3User

from .mib import LiveMib, MibSource

log = logging.getLogger(__name__)

AUTH_PROTOCOLS = {"MD5": config.USM_AUTH_HMAC96_MD5, "SHA": config.USM_AUTH_HMAC96_SHA,
                  "SHA224": config.USM_AUTH_HMAC128_SHA224, "SHA256": config.USM_AUTH_HMAC192_SHA256,
                  "SHA384": config.USM_AUTH_HMAC256_SHA384, "SHA512": config.USM_AUTH_HMAC384_SHA512}
PRIV_PROTOCOLS = {"DES": config.USM_PRIV_CBC56_DES, "AES": config.USM_PRIV_CFB128_AES,
                  "AES192": config.USM_PRIV_CFB192_AES, "AES256": config.USM_PRIV_CFB256_AES}


class _MutableTransport(udp.UdpAsyncioTransport):
    """A UDP transport that drops what arrives while ``muted()`` says so, or once closed (pysnmp's
    own hands a datagram to the dispatcher on the next loop turn, when it may be gone)."""

    muted: Callable[[], bool] = staticmethod(lambda: False)
    closed = False

    def datagram_received(self, datagram: bytes, address: Any) -> None:
        if not self.muted():
            self.loop.call_soon(self._deliver, datagram, address)

    def _deliver(self, datagram: bytes, address: Any) -> None:
        if not self.closed and self._callback_function is not None:
            self._callback_function(self, address, datagram)

    def close_transport(self) -> None:
        self.closed = True
        super().close_transport()


class _BulkResponder(cmdrsp.BulkCommandResponder):
    """GETBULK that stops repeating ``endOfMibView`` once a column ran off the end of the MIB."""

    def send_varbinds(self, snmpEngine, stateReference, errorStatus, errorIndex, varBinds):
        ended: set[tuple[int, ...]] = set()
        kept = []
        for name, value in varBinds:
            if value is rfc1905.endOfMibView or getattr(value, "tagSet", None) == rfc1905.endOfMibView.tagSet:
                if tuple(name) in ended:
                    continue
                ended.add(tuple(name))
            kept.append((name, value))
        super().send_varbinds(snmpEngine, stateReference, errorStatus, errorIndex, kept)


class SnmpAgent:
    """Serves ``source`` (a :class:`MibSource`) on UDP ``host:port`` while started.

    ``muted()`` true: requests are dropped. ``community`` None: no v2c; ``user`` None: no v3.
    Raises OSError from :meth:`start` when the port cannot be bound.
    """

    def __init__(self, source: MibSource, host: str, port: int, *, community: str | None = "public",
                 user: SnmpV3User | None = None, muted: Callable[[], bool] = lambda: False):
        self.source, self.host, self.port = source, host, port
        self.community, self.user, self.muted = community, user, muted
        self._engine: engine.SnmpEngine | None = None

    def __repr__(self) -> str:
        return f"SnmpAgent({self.source.device_id!r}, {self.host}:{self.port})"

    @property
    def listening(self) -> bool:
        return self._engine is not None

    async def start(self) -> None:
        if self._engine is not None:
            return
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"{self.source.device_id}: cannot listen on udp {self.host}:{self.port}: "
                          f"{exc.strerror or exc}") from None
        if self.port == 0:
            self.port = sock.getsockname()[1]
        snmp = engine.SnmpEngine()
        transport = _MutableTransport()
        transport.muted = self.muted
        config.add_transport(snmp, udp.DOMAIN_NAME + (1,), transport.open_server_mode(sock=sock))
        if self.community is not None:
            config.add_v1_system(snmp, "minegw-sim", self.community)
        if self.user is not None:
            self._add_user(snmp, self.user)
        snmp_context = context.SnmpContext(snmp)
        snmp_context.unregister_context_name(b"")  # the engine's own MIB: ours instead
        snmp_context.register_context_name(b"", LiveMib(self.source))
        for responder in (cmdrsp.GetCommandResponder, cmdrsp.NextCommandResponder, _BulkResponder):
            responder(snmp, snmp_context)
        self._engine = snmp

    @staticmethod
    def _add_user(snmp: engine.SnmpEngine, user: SnmpV3User) -> None:
        priv = {}
        if user.priv_key is not None:
            priv = {"privProtocol": PRIV_PROTOCOLS[user.priv_protocol], "privKey": user.priv_key.get_secret_value()}
        config.add_v3_user(snmp, user.user, AUTH_PROTOCOLS[user.auth_protocol], user.auth_key.get_secret_value(),
                           **priv)

    async def stop(self) -> None:
        snmp, self._engine = self._engine, None
        if snmp is not None:
            snmp.close_dispatcher()

    async def settled(self) -> None:
        """Nothing to wait for: muting takes effect at the next datagram."""
