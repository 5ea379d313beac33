"""Process plumbing shared by the benchmarks: free ports, children in their own sessions, CPU and RSS
of a process group read from /proc. Loopback only."""
from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
HOST = "127.0.0.1"  # loopback only, always
PY = sys.executable


class BenchError(Exception):
    """A run that could not be carried out (not a slow gateway: a broken setup)."""


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports below the kernel's ephemeral range.

    A port from ``bind(0)`` is an ephemeral one: by the time a server binds it, one of
    the hundreds of client connections the benchmark opens (or one in TIME_WAIT from
    the previous run) may have taken it. Ports below the range are never handed out
    to clients. Each is checked by binding it; all are held until the choice is made, so
    ask for every port a run needs in ONE call: two calls may hand out the same port (a port
    chosen for a server that has not started yet is free again for the next call).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = list(range(10000, low)) if low > 11000 else []
    random.shuffle(candidates)
    socks, ports = [], []
    try:
        for port in candidates:
            if len(ports) == count:
                break
            s = socket.socket()
            try:
                s.bind((HOST, port))
            except OSError:
                s.close()
                continue
            socks.append(s)
            ports.append(port)
        while len(ports) < count:  # no room below the ephemeral range: fall back to any free port
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if not found:
        raise BenchError("mosquitto not found (apt-get install mosquitto)")
    return found


# -- processes ---------------------------------------------------------------------------
@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log: Path
    lines: "queue.Queue[dict]" = field(default_factory=queue.Queue)

    def expect(self, event: str, timeout: float) -> dict:
        """The next JSON line with this event; fails on timeout or if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name}: no {event!r} within {timeout:g} s{self.tail()}")
            try:
                msg = self.lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise BenchError(f"{self.name} exited ({self.proc.returncode}) before {event!r}{self.tail()}")
                continue
            if msg.get("event") == "error":
                raise BenchError(f"{self.name}: {msg.get('error')}{self.tail()}")
            if msg.get("event") == event:
                return msg

    def send(self, line: str) -> None:
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError, AttributeError):
            pass

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return ("\n  --- " + self.name + " log (" + str(self.log) + ") ---\n  " + "\n  ".join(text)) if text else ""


class Processes:
    """Every process the benchmark starts, each in its own session; stopped in reverse order."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.children: list[Child] = []
        self.groups: list[tuple[str, int]] = []  # sessions a child started on its own (Node-RED's node)

    def adopt_group(self, name: str, pgid: int) -> None:
        """Stop this process group too on the way out (a grandchild that left our child's session)."""
        self.groups.append((name, pgid))

    def stop_group(self, name: str, pgid: int, grace: float = 10.0) -> None:
        if (name, pgid) in self.groups:
            self.groups.remove((name, pgid))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and group_pids(pgid):
                time.sleep(0.1)
            if not group_pids(pgid):
                return
        print(f"warning: process group {pgid} ({name}) still alive", file=sys.stderr)

    def start(self, name: str, argv: list[str], json_stdout: bool = False, stdin: bool = False,
              cwd: Path | None = None) -> Child:
        log = self.workdir / f"{name}.log"
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   PYTHONUNBUFFERED="1")
        logf = open(log, "w")
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd or self.workdir, env=env, text=True, start_new_session=True,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if json_stdout else logf, stderr=logf)
        finally:
            logf.close()
        child = Child(name, proc, log)
        self.children.append(child)
        if json_stdout:
            threading.Thread(target=self._pump, args=(child,), daemon=True, name=f"read:{name}").start()
        return child

    @staticmethod
    def _pump(child: Child) -> None:
        with open(child.log, "a") as logf:
            for line in child.proc.stdout:
                line = line.strip()
                if not line:
                    continue
                try:
                    msg = json.loads(line)
                    child.lines.put(msg if isinstance(msg, dict) else {"event": "line", "value": msg})
                except ValueError:
                    logf.write(f"[stdout] {line}\n")
                    logf.flush()

    def stop(self, child: Child, grace: float = 10.0) -> None:
        """SIGTERM to the child's session, SIGKILL after ``grace`` seconds; it leaves the list."""
        if child in self.children:
            self.children.remove(child)
        p = child.proc
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # its own session: it and only its children
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        for stream in (p.stdin, p.stdout):
            try:
                stream and stream.close()
            except OSError:
                pass

    def stop_all(self) -> None:
        # A second Ctrl-C must not cut the clean-up short: it is delivered once everything is stopped.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for name, pgid in list(reversed(self.groups)):
                self.stop_group(name, pgid)
            self.groups.clear()
            for child in list(reversed(self.children)):
                try:
                    self.stop(child)
                except Exception as exc:  # noqa: BLE001 - keep stopping the others
                    print(f"warning: could not stop {child.name} (pid {child.proc.pid}): {exc}", file=sys.stderr)
            self.children.clear()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def wait_port(port: int, timeout: float, child: Child) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise BenchError(f"{child.name} exited ({child.proc.returncode}){child.tail()}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"{child.name}: nothing listens on {HOST}:{port} after {timeout:g} s{child.tail()}")


def _stat(pid: int | str) -> tuple[str, list[str]] | None:
    """/proc/PID/stat and its fields after the command name (field 3 on); None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat, stat[stat.rfind(")") + 2:].split()


def _group_stats(pgid: int) -> list[tuple[int, str, list[str]]]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (got := _stat(entry)) and int(got[1][2]) == pgid:  # field 5: pgrp
            out.append((int(entry), *got))
    return out


def group_pids(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    return [pid for pid, _stat, fields in _group_stats(pgid) if fields[0] != "Z"]


def group_cpu_seconds(pgid: int) -> float:
    """utime+stime of every live process in a process group (a child started in its own session)."""
    return sum(group_cpu_split(pgid))


def group_cpu_split(pgid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of every live process in a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = _group_stats(pgid)
    return (sum(int(f[11]) for _pid, _stat, f in stats) / tick,  # field 14: utime
            sum(int(f[12]) for _pid, _stat, f in stats) / tick)  # field 15: stime


def process_cpu_seconds(pid: int) -> float:
    """utime+stime of one process (one not in a session of its own: the bench's influxd); 0 once gone."""
    if (got := _stat(pid)) is None:
        return 0.0
    return (int(got[1][11]) + int(got[1][12])) / os.sysconf("SC_CLK_TCK")  # fields 14, 15: utime, stime


def group_rss_peak_kb(pgid: int) -> int:
    """Sum of VmHWM over a process group's processes (worker processes count; shared pages twice)."""
    total = 0
    for pid in group_pids(pgid):
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
        except OSError:
            continue
    return total
