"""Small helpers shared by the tests."""
import asyncio
import os
import random
import socket
import time
from pathlib import Path

from gateway.sinks import Sink


def log_tail(log, lines: int = 20) -> str:
    """The end of a test server's log file, for an assertion message ("" when it has none yet)."""
    if not log.exists():
        return ""
    return f"\n--- {log.name} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])



async def until(condition, timeout: float = 20.0, what: str = "", step: float = 0.05):
    """Wait until ``condition()`` is truthy (its value), checking every ``step`` s; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        await asyncio.sleep(step)
    return result


_HANDED_OUT: set[int] = set()
_PICK = random.Random()  # its own: tests that seed the module's random get the same ports problem-free
PORTS_FROM = 10_000


def _ephemeral_low() -> int:
    """Where the kernel's ephemeral ports begin: what it gives client sockets (connect, sendto) of any process."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _worker_ports() -> range:
    """This pytest worker's share of the ports below the ephemeral range (all of them without pytest-xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    size = (_ephemeral_low() - PORTS_FROM) // count
    return range(PORTS_FROM + index * size, PORTS_FROM + (index + 1) * size)


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port free now (TCP, or UDP with ``kind=socket.SOCK_DGRAM``), not handed out before in this session.

    Picked below the kernel's ephemeral range, in this worker's share of it: a port the kernel handed out
    (``bind(0)``) could be given to another process's client socket before the server that was to bind it
    does, and another worker never picks from this share."""
    ports = _worker_ports()
    for _ in range(10 * len(ports)):
        port = _PICK.choice(ports)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port in {ports}")


class PortTaken(RuntimeError):
    """A server could not bind its port: another process (the other pytest worker's client, say) took it
    between ``free_port()`` finding it free and the server binding it."""


class OnFreshPorts:
    """A test server's first ``start()`` tries other free ports when its own was taken (``PortTaken``), up to
    ``PORT_TRIES`` times; once it has run, a restart keeps its port (the tests hold its address).
    Subclasses implement ``_start_once(...)`` (what ``start`` is given) and ``_take_fresh_ports()``."""

    PORT_TRIES = 3
    _has_run = False

    def start(self, *args, **options) -> None:
        for attempt in range(1, self.PORT_TRIES + 1):
            try:
                self._start_once(*args, **options)
            except PortTaken:
                if self._has_run or attempt == self.PORT_TRIES:
                    raise
                self._take_fresh_ports()
            else:
                self._has_run = True
                return


class Operators:
    """Operators' signing keys for the command path: key files, the site file's ``commands.operators``,
    and signed commands (gateway/signing.py)."""

    def __init__(self, directory, *names: str):
        from pathlib import Path

        from gateway import signing

        self.keys = {name: signing.new_private_key() for name in names}
        self.files = {}
        for name, key in self.keys.items():
            path = Path(directory) / f"{name}.key"
            path.write_bytes(signing.private_pem(key))
            self.files[name] = path

    def site_entry(self) -> dict[str, str]:
        from gateway import signing

        return {name: signing.public_text(key) for name, key in self.keys.items()}

    def sign(self, name: str, body: dict, age: float = 0.0) -> dict:
        """``body`` with ``issued_at`` (``age`` seconds ago, unless it has one) and ``key_id``/``sig`` of ``name``."""
        from datetime import timedelta

        from gateway import signing
        from gateway.core.model import utcnow

        issued = (utcnow() - timedelta(seconds=age)).isoformat().replace("+00:00", "Z")
        return signing.sign({"issued_at": issued, **body}, self.keys[name], name)


class RecordingSink(Sink):
    """A sink that keeps everything the gateway routes to it, in order (the path under test is the router's).

    ``counters`` is what ``health()`` returns: set ``counters["dropped"]`` to stand in for a sink losing data.
    """

    def __init__(self, name: str = "recorder"):
        self.name = name
        self.readings: list = []  # gateway.core.model.Reading
        self.states: list = []  # gateway.core.model.DeviceState
        self.inventories: list = []  # gateway.core.model.Inventory
        self.alarms: list = []  # gateway.core.model.GatewayAlarm
        self.alarm_events: list = []  # gateway.alarms.AlarmEvent
        self.linkages: list = []  # gateway.linkage.LinkageEvent
        self.audits: list = []  # gateway.commands.AuditEntry
        self.counters: dict = {}

    def on_reading(self, device, reading) -> None:
        self.readings.append(reading)

    def on_state(self, device, state) -> None:
        self.states.append(state)

    def on_inventory(self, device, inventory) -> None:
        self.inventories.append(inventory)

    def on_alarm(self, alarm) -> None:
        self.alarms.append(alarm)

    def on_alarm_event(self, event) -> None:
        self.alarm_events.append(event)

    def on_linkage_event(self, event) -> None:
        self.linkages.append(event)

    def on_command_audit(self, entry) -> None:
        self.audits.append(entry)

    def health(self) -> dict:
        return dict(self.counters)
