"""Shared fixtures: real Mosquitto brokers on loopback (no mocks)."""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.util import free_port


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


class Mosquitto:
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

    def start(self, timeout: float = 5.0) -> None:
        self._write_conf()
        self.process = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: "
                                   f"{self.process.stderr.read().decode()}{self.log_tail()}")
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
        if not self.log.exists():
            return ""
        return "\n--- mosquitto.log ---\n" + "\n".join(self.log.read_text().splitlines()[-lines:])


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory) -> Mosquitto:
    """One broker for the whole session; tests keep apart by topic prefix."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def make_mosquitto(tmp_path):
    """Factory for brokers of this test only (own config), all stopped at its end."""
    brokers: list[Mosquitto] = []

    def make(**options) -> Mosquitto:
        workdir = tmp_path / f"mosquitto-{len(brokers)}"
        workdir.mkdir()
        broker = Mosquitto(workdir, **options)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def fresh_mosquitto(make_mosquitto) -> Mosquitto:
    """A broker this test may stop and restart. Persistence is on, as on a production broker,
    so kept sessions (see MqttCollector(persistent=True)) survive ``restart()``."""
    return make_mosquitto(persistence=True)
