"""Net-SNMP's ``snmpd`` on loopback for the SNMP tests: an agent we did not write.

One process for the session, with its own config (a v2c community and an SNMPv3 authPriv user
made by ``createUser``), its own persistent directory and a free UDP port. Registered from
tests/conftest.py.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.util import OnFreshPorts, PortTaken, free_port, log_tail

SNMPD_PATHS = ("/usr/sbin/snmpd", "/usr/local/sbin/snmpd")


def free_udp_port(host: str = "127.0.0.1") -> int:
    return free_port(host, socket.SOCK_DGRAM)


def snmpd_binary() -> str:
    found = shutil.which("snmpd") or next((p for p in SNMPD_PATHS if os.access(p, os.X_OK)), None)
    if found:
        return found
    message = "snmpd is not installed (apt-get install snmpd snmp, or run scripts/test.sh)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class Snmpd(OnFreshPorts):
    """One snmpd on 127.0.0.1: ``community`` (v2c, read-only) and ``v3_user`` (authPriv, SHA/AES)."""

    host = "127.0.0.1"
    community = "minegw-test"
    v3_user, auth_key, priv_key = "minegw-v3", "auth-key-123", "priv-key-123"
    sys_name = "snmpd-under-test"

    def __init__(self, workdir: Path):
        self.binary = snmpd_binary()
        self.workdir = workdir
        self.port = free_udp_port(self.host)
        self.conf, self.log = workdir / "snmpd.conf", workdir / "snmpd.log"
        self.process: subprocess.Popen | None = None

    def _write_conf(self) -> None:
        self.conf.write_text("\n".join([
            f"rocommunity {self.community} 127.0.0.1",
            f'createUser {self.v3_user} SHA "{self.auth_key}" AES "{self.priv_key}"',
            f"rouser {self.v3_user} priv",
            f"sysName {self.sys_name}",
        ]) + "\n")

    def _take_fresh_ports(self) -> None:
        self.port = free_udp_port(self.host)

    def _start_once(self, timeout: float = 5.0) -> None:
        self._write_conf()
        (self.workdir / "persist").mkdir(exist_ok=True)
        # No MIB files (they only add noise to the log); USM keys kept in our own directory.
        env = {**os.environ, "MIBS": "", "MIBDIRS": str(self.workdir / "no-mibs"),
               "SNMP_PERSISTENT_DIR": str(self.workdir / "persist")}
        self.process = subprocess.Popen(
            [self.binary, "-f", "-Lf", str(self.log), "-C", "-c", str(self.conf), "-p", str(self.workdir / "pid"),
             f"udp:{self.host}:{self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                said = self.log_tail()
                failure = PortTaken if "Error opening specified endpoint" in said else RuntimeError
                raise failure(f"snmpd exited with {self.process.returncode}{said}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"snmpd did not answer on {self.host}:{self.port} within {timeout} s{self.log_tail()}")

    def _answers(self) -> bool:
        """Whether a v2c GET of sysUpTime.0 gets an answer (hand-made packet: no client library needed)."""
        community = self.community.encode()
        oid = bytes([0x06, 0x08, 0x2B, 6, 1, 2, 1, 1, 3, 0])
        varbind = b"\x30" + bytes([len(oid) + 2]) + oid + b"\x05\x00"
        varbinds = b"\x30" + bytes([len(varbind)]) + varbind
        pdu_body = b"\x02\x01\x01\x02\x01\x00\x02\x01\x00" + varbinds
        pdu = b"\xa0" + bytes([len(pdu_body)]) + pdu_body
        body = b"\x02\x01\x01\x04" + bytes([len(community)]) + community + pdu
        message = b"\x30" + bytes([len(body)]) + body
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(message, (self.host, self.port))
                return bool(s.recv(2048))
            except OSError:
                return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log, lines)


@pytest.fixture(scope="session")
def snmpd(tmp_path_factory) -> Snmpd:
    """One Net-SNMP agent for the whole session (read-only: tests cannot disturb each other)."""
    agent = Snmpd(tmp_path_factory.mktemp("snmpd"))
    agent.start()
    yield agent
    agent.stop()
