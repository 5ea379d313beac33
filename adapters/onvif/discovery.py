"""WS-Discovery (ONVIF Core §7): find cameras with a Probe on UDP 3702, multicast and unicast.

Messages are built and parsed with the wsdiscovery library; the sockets are our own (asyncio).
wsdiscovery's threaded daemon does not fit: it ignores loopback addresses, always binds port
3702 itself (two programs on one host then split the unicast answers), reads no answers to a
unicast probe (they come back to a socket it does not watch) and blocks while it waits.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from urllib.parse import unquote

import ifaddr
from wsdiscovery import QName
from wsdiscovery.actions import NS_ACTION_PROBE_MATCH, constructProbe
from wsdiscovery.message import createSOAPMessage, parseSOAPMessage

log = logging.getLogger(__name__)

PORT = 3702
MULTICAST_GROUP = "239.255.255.250"
NETWORK_VIDEO_TRANSMITTER = QName("http://www.onvif.org/ver10/network/wsdl", "NetworkVideoTransmitter", "dn")
DEVICE = QName("http://www.onvif.org/ver10/device/wsdl", "Device", "tds")
SCOPE_PREFIX = "onvif://www.onvif.org/"
REPEATS = 2  # SOAP-over-UDP sends each datagram more than once: UDP may lose one


@dataclass
class Discovered:
    """One device that answered: its endpoint reference, device service URLs and scopes."""

    endpoint: str
    address: str  # the IP address the answer came from
    xaddrs: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)

    def scope(self, kind: str) -> str | None:
        """An ONVIF scope's value, e.g. ``scope("name")`` for ``onvif://www.onvif.org/name/Belt%20head``."""
        prefix = f"{SCOPE_PREFIX}{kind}/"
        return next((unquote(s[len(prefix):]) for s in self.scopes if s.startswith(prefix)), None)


def local_ipv4_addresses() -> list[str]:
    """This host's IPv4 addresses that can carry multicast (not loopback, not link-local)."""
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                address = ipaddress.ip_address(ip.ip)
                if not address.is_loopback and not address.is_link_local:
                    found.append(ip.ip)
    return found


def split_host_port(text: str, default_port: int = PORT) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` → (host, port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return text, default_port


class _Answers(asyncio.DatagramProtocol):
    def __init__(self, message_id: str):
        self.message_id = message_id
        self.found: dict[str, Discovered] = {}

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        env = parseSOAPMessage(data, addr[0])
        if env is None or env.getAction() != NS_ACTION_PROBE_MATCH or env.getRelatesTo() != self.message_id:
            return
        for match in env.getProbeResolveMatches():
            self.found.setdefault(match.getEPR(), Discovered(
                endpoint=match.getEPR(), address=addr[0], xaddrs=list(match.getXAddrs() or []),
                scopes=[str(s) for s in match.getScopes() or []],
                types=[t.getLocalname() for t in match.getTypes() or []]))

    def error_received(self, exc: Exception) -> None:
        log.debug("WS-Discovery: %s", exc)  # e.g. ICMP port unreachable from a unicast target


async def discover(addresses: list[str] | tuple[str, ...] = (), *, timeout: float = 3.0, multicast: bool = True,
                   interfaces: list[str] | None = None) -> list[Discovered]:
    """Probe for ONVIF devices and return those that answered within ``timeout`` seconds.

    ``addresses`` (``host`` or ``host:port``, default port 3702) get a unicast probe each.
    With ``multicast``, the probe also goes to 239.255.255.250:3702 from every IPv4
    interface (``interfaces``: their addresses; default: all but loopback and link-local).
    """
    probe = constructProbe([NETWORK_VIDEO_TRANSMITTER], [])
    data = createSOAPMessage(probe).encode()
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    transport, answers = await loop.create_datagram_endpoint(lambda: _Answers(probe.getMessageId()), sock=sock)
    try:
        targets = [await _resolve(loop, a) for a in addresses]
        for _ in range(REPEATS):
            for target in targets:
                transport.sendto(data, target)
            if multicast:
                _send_multicast(sock, data, interfaces if interfaces is not None else local_ipv4_addresses())
            await asyncio.sleep(min(0.1, timeout / 10))
        await asyncio.sleep(timeout)
    finally:
        transport.close()
    return sorted(answers.found.values(), key=lambda d: (d.address, d.endpoint))


async def _resolve(loop: asyncio.AbstractEventLoop, text: str) -> tuple[str, int]:
    host, port = split_host_port(text)
    infos = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM)
    return infos[0][4][:2]


def _send_multicast(sock: socket.socket, data: bytes, interfaces: list[str]) -> None:
    if not interfaces:
        log.warning("WS-Discovery: no IPv4 interface but loopback: no multicast probe sent")
    for address in interfaces:
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
            sock.sendto(data, (MULTICAST_GROUP, PORT))
        except OSError as exc:  # an interface without multicast, or down
            log.debug("WS-Discovery: no multicast probe from %s: %s", address, exc)
