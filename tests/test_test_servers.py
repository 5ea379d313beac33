"""The test session's own servers: a port taken between free_port() and the bind costs a retry, not the test."""
import socket

import pytest

from tests.conftest import Influx, Mosquitto
from tests.snmpd import Snmpd
from tests.util import PORTS_FROM, PortTaken, free_port


def _squatter(kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket bound to a free port and not listening, like another process's client that was given the port."""
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    return s


@pytest.mark.parametrize("kind", [Mosquitto, Influx])
def test_a_server_whose_port_was_taken_starts_on_another_and_keeps_it_across_restarts(tmp_path, kind):
    with _squatter() as taken:
        server = kind(tmp_path)
        server.port = taken.getsockname()[1]
        server.start()
        try:
            assert server.port != taken.getsockname()[1]
            socket.create_connection((server.host, server.port), timeout=2).close()
            port = server.port
            server.restart()
            assert server.port == port
        finally:
            server.stop()


def test_snmpd_whose_udp_port_was_taken_answers_on_another(tmp_path):
    with _squatter(socket.SOCK_DGRAM) as taken:
        agent = Snmpd(tmp_path)
        agent.port = taken.getsockname()[1]
        agent.start()  # returns once a GET is answered
        try:
            assert agent.port != taken.getsockname()[1]
        finally:
            agent.stop()


def test_a_restart_whose_port_was_taken_fails_instead_of_moving(tmp_path):
    server = Mosquitto(tmp_path)
    server.start()
    server.stop()
    with socket.socket() as taken:
        taken.bind((server.host, server.port))
        with pytest.raises(PortTaken, match="Address already in use"):
            server.start()


def test_free_ports_are_below_the_ephemeral_range_in_this_workers_share_and_never_handed_out_twice(monkeypatch):
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    ports = [free_port(), free_port(kind=socket.SOCK_DGRAM), *(free_port() for _ in range(50))]
    share = (low - PORTS_FROM) // 2
    assert all(PORTS_FROM + share <= p < PORTS_FROM + 2 * share for p in ports)
    assert len(set(ports)) == len(ports)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", ports[1]))  # free for UDP as promised
