"""WS-Discovery responder for simulated cameras: one UDP socket answers for all of them.

It listens on ``port``. On 3702, the WS-Discovery port, it also joins the multicast group
239.255.255.250 on every IPv4 interface but loopback (which has no multicast); on another
port (a test's unicast probes) it joins nothing, so it sends no IGMP report either. Each camera that is not offline and matches the probe's types and scopes
answers with its own ProbeMatch (its endpoint reference, scopes and device service URL),
sent back to the prober's address as a real camera does.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import struct

from wsdiscovery import Scope
from wsdiscovery.actions import NS_ACTION_PROBE, constructProbeMatch
from wsdiscovery.message import createSOAPMessage, parseSOAPMessage
from wsdiscovery.service import Service
from wsdiscovery.util import matchesFilter

from adapters.onvif.discovery import DEVICE, MULTICAST_GROUP, NETWORK_VIDEO_TRANSMITTER, PORT, SCOPE_PREFIX, \
    local_ipv4_addresses

from .server import OnvifSimServer

log = logging.getLogger(__name__)


def camera_service(server: OnvifSimServer) -> Service:
    camera = server.camera
    return Service([NETWORK_VIDEO_TRANSMITTER, DEVICE], [Scope(SCOPE_PREFIX + s) for s in camera.scopes], [server.url],
                   camera.endpoint, "1")


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, servers: list[OnvifSimServer]):
        self.servers = servers
        self.transport: asyncio.DatagramTransport | None = None
        self.probes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        env = parseSOAPMessage(data, addr[0])
        if env is None or env.getAction() != NS_ACTION_PROBE:
            return
        self.probes += 1
        for server in self.servers:
            service = camera_service(server)
            if server.listening and matchesFilter(service, env.getTypes(), env.getScopes()):
                match = createSOAPMessage(constructProbeMatch([service], env.getMessageId()))
                self.transport.sendto(match.encode(), addr)


class DiscoveryResponder:
    """Answers Probes for ``servers``' cameras on UDP ``port`` (0: a free one, see ``address``)."""

    def __init__(self, servers: list[OnvifSimServer], port: int = PORT, bind_host: str = "0.0.0.0"):
        self.servers, self.port, self.bind_host = servers, port, bind_host
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol = _Responder(servers)

    @property
    def address(self) -> tuple[str, int] | None:
        return self._transport.get_extra_info("sockname")[:2] if self._transport else None

    @property
    def probes(self) -> int:
        """Probes received so far."""
        return self._protocol.probes

    async def start(self) -> None:
        """Raises OSError if the port cannot be bound."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restarts; cameras share 3702 on one host
        try:
            sock.bind((self.bind_host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"WS-Discovery responder: cannot listen on UDP {self.bind_host}:{self.port}: "
                          f"{exc.strerror or exc}") from None
        joined = [a for a in local_ipv4_addresses() if _join(sock, a)] if self.port == PORT else []
        log.info("WS-Discovery responder on UDP %s:%d for %d camera(s), %s", self.bind_host, sock.getsockname()[1],
                 len(self.servers), f"multicast on {', '.join(joined)}" if joined else "unicast only")
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self._protocol, sock=sock)

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def settled(self) -> None:
        """Nothing to wait for (the SiteSimulator asks every server)."""


def _join(sock: socket.socket, address: str) -> bool:
    request = struct.pack("4s4s", socket.inet_aton(MULTICAST_GROUP), socket.inet_aton(address))
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, request)
    except OSError as exc:
        log.debug("WS-Discovery responder: cannot join %s on %s: %s", MULTICAST_GROUP, address, exc)
        return False
    return True
