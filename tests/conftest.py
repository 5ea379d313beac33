"""Shared fixtures: real Mosquitto brokers and InfluxDB servers on loopback (no mocks)."""
from __future__ import annotations

# matplotlib's FreeType first: once GStreamer's plugins (the camera simulators' RTSP streams) have
# brought the system FreeType into the process, importing matplotlib's aborts the process (the daily
# report's tests render PDFs in the same process; `minegw report` runs in a process of its own).
import matplotlib.ft2font  # noqa: F401
import base64
import getpass
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.util import OnFreshPorts, PortTaken, free_port, log_tail
from tests.snmpd import snmpd  # noqa: F401  (the Net-SNMP agent fixture)


def mosquitto_binary() -> str:
    """The mosquitto executable; skips the test (fails it in CI) when it is not installed."""
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)
    if found:
        return found
    message = "mosquitto is not installed (apt-get install mosquitto, or run scripts/test.sh)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class Mosquitto(OnFreshPorts):
    """One Mosquitto process on 127.0.0.1 with a config of our own; the port stays the same across restarts."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, *, persistence: bool = False, extra: tuple[str, ...] = ()):
        self.binary = mosquitto_binary()
        self.workdir = workdir
        self.port = free_port(self.host)
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.persistence = persistence
        self.extra = extra
        self.process: subprocess.Popen | None = None

    def _write_conf(self) -> None:
        anonymous = [] if any(x.startswith("allow_anonymous") for x in self.extra) else ["allow_anonymous true"]
        lines = [
            f"listener {self.port} {self.host}",
            *anonymous,
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.log}",
            "log_type all",
            f"user {getpass.getuser()}",  # as root, mosquitto would switch to user "mosquitto" and lose our files
            *self.extra,
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _take_fresh_ports(self) -> None:
        self.port = free_port(self.host)

    def _start_once(self, timeout: float = 5.0) -> None:
        self._write_conf()
        self.process = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, said = self.process.returncode, self.process.stderr.read().decode() + self.log_tail()
                self.stop()
                failure = PortTaken if "Address already in use" in said else RuntimeError
                raise failure(f"mosquitto exited with {code}: {said}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout} s{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stderr.close()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log, lines)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory) -> Mosquitto:
    """One broker for the whole session; tests keep apart by topic prefix."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


def _own_servers(server_class, tmp_path: Path):
    """A factory of servers for one test (each in its own workdir), and the list to stop at its end."""
    servers = []

    def make(**options):
        workdir = tmp_path / f"{server_class.__name__.lower()}-{len(servers)}"
        workdir.mkdir()
        server = server_class(workdir, **options)
        servers.append(server)
        server.start()
        return server

    return make, servers


@pytest.fixture
def make_mosquitto(tmp_path):
    """Factory for brokers of this test only (own config), all stopped at its end."""
    make, brokers = _own_servers(Mosquitto, tmp_path)
    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def fresh_mosquitto(make_mosquitto) -> Mosquitto:
    """A broker this test may stop and restart. Persistence is on, as on a production broker,
    so kept sessions (see MqttCollector(persistent=True)) survive ``restart()``."""
    return make_mosquitto(persistence=True)


# --- InfluxDB ------------------------------------------------------------------------------

def influxd_binary() -> str:
    """The influxd executable (1.x); skips the test (fails it in CI) when it is not installed."""
    found = shutil.which("influxd") or next(
        (p for p in ("/usr/bin/influxd", "/usr/local/bin/influxd") if os.access(p, os.X_OK)), None)
    if found:
        return found
    message = "influxd is not installed (apt-get install influxdb, or run scripts/test.sh)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class Influx(OnFreshPorts):
    """One influxd (1.x) on 127.0.0.1 with its data in ``workdir``; the ports stay the same across restarts.

    With ``auth=True`` authentication is on and ``admin`` (an admin user) exists.
    """

    host = "127.0.0.1"
    admin = ("admin", "admin-secret")
    ssl_context = None  # https: the context verifying the server (a subclass serving TLS sets it)

    def __init__(self, workdir: Path, *, auth: bool = False, max_body_size: int = 25_000_000):
        self.binary = influxd_binary()
        self.workdir = workdir
        self.port = free_port(self.host)
        self.rpc_port = free_port(self.host)  # the backup/restore service; default 8088 would clash
        self.conf = workdir / "influxdb.conf"
        self.log = workdir / "influxd.log"
        self.auth = auth
        self.max_body_size = max_body_size
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _write_conf(self) -> None:
        off = ("enabled = false",)
        sections = {
            "meta": (f'dir = "{self.workdir}/meta"', "logging-enabled = false"),
            "data": (f'dir = "{self.workdir}/data"', f'wal-dir = "{self.workdir}/wal"',
                     'wal-fsync-delay = "0s"', "query-log-enabled = false"),
            "monitor": ("store-enabled = false",),
            "http": (f'bind-address = "{self.host}:{self.port}"', f"auth-enabled = {str(self.auth).lower()}",
                     "log-enabled = false", f"max-body-size = {self.max_body_size}"),
            "logging": ('level = "warn"', "suppress-logo = true"),
            # nothing else runs: faster start, no other ports
            "continuous_queries": off, "retention": off, "shard-precreation": off, "subscriber": off,
            "[udp]": off, "[graphite]": off, "[opentsdb]": off, "[collectd]": off,
        }
        lines = ["reporting-disabled = true", f'bind-address = "{self.host}:{self.rpc_port}"']
        for name, settings in sections.items():
            lines += [f"[{name}]", *(f"  {s}" for s in settings)]
        self.conf.write_text("\n".join(lines) + "\n")

    def _take_fresh_ports(self) -> None:
        self.port, self.rpc_port = free_port(self.host), free_port(self.host)

    def _start_once(self, timeout: float = 10.0) -> None:
        self._write_conf()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([self.binary, "-config", str(self.conf)],
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                said = self.log_tail()
                failure = PortTaken if "address already in use" in said else RuntimeError
                raise failure(f"influxd exited with {self.process.returncode}{said}")
            try:
                self.request("GET", "/ping", auth=False)
                break
            except OSError:
                time.sleep(0.02)
        else:
            self.stop()
            raise RuntimeError(f"influxd did not answer /ping on {self.url} within {timeout} s{self.log_tail()}")
        if self.auth:  # with auth on and no user yet, 1.x lets anyone create the first admin
            user, password = self.admin
            self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def request(self, method: str, path: str, params: dict | None = None, body: bytes | None = None,
                auth: bool = True) -> tuple[int, bytes]:
        """One HTTP request (as admin when auth is on): status and body; HTTP errors are returned, not raised."""
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, data=body, method=method)
        if self.auth and auth:
            token = base64.b64encode(":".join(self.admin).encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.ssl_context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def query(self, q: str, db: str | None = None) -> list[dict]:
        """Run InfluxQL; the rows of every series as dicts (times in ns since the epoch, series tags included)."""
        params = {"q": q, "epoch": "ns", **({"db": db} if db else {})}
        status, body = self.request("POST", "/query", params)
        answer = json.loads(body or b"{}")
        errors = [answer.get("error")] + [r.get("error") for r in answer.get("results", [])]
        if status != 200 or any(errors):
            raise RuntimeError(f"{q}: HTTP {status}: {body.decode(errors='replace')}")
        rows = []
        for result in answer["results"]:
            for series in result.get("series", []):
                rows += [{**series.get("tags", {}), **dict(zip(series["columns"], values))}
                         for values in series["values"]]
        return rows

    def create_database(self, name: str) -> str:
        self.query(f'CREATE DATABASE "{name}"')
        return name

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log, lines)


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory) -> Influx:
    """One influxd (no auth) for the whole session; tests keep apart by database."""
    server = Influx(tmp_path_factory.mktemp("influxdb"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_influx(tmp_path):
    """Factory for influxd instances of this test only (own settings, may be stopped), all stopped at its end."""
    make, servers = _own_servers(Influx, tmp_path)
    yield make
    for server in servers:
        server.stop()
