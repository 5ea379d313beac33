"""What the Modbus simulators cost: CPU seconds of `minegw sim` per second of serving.

    python bench/bench_simulators.py --devices 200 1000 --procs 1 2 --seconds 20

For each (N, procs) it writes a site of N devices, one port each, serving the bench's
profile (``--registers`` uint16 input registers at 0..R-1, the generic model), starts
``python -m gateway.cli sim SITE --procs P`` in its own session (``--repo`` picks the
source tree, to measure another commit side by side), and reads every device once a
second with one read of all R registers from a thin asyncio reader in this process (raw
Modbus TCP frames, no pymodbus on this side). After ``--warmup`` seconds it measures,
over ``--seconds``, the CPU time (user + system) of every process of the simulator's
session, and prints CPU seconds per second and per 1000 requests, and requests answered
against requests sent. A benchmark: it asserts nothing about speed.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent


def group_cpu(pgid: int) -> float:
    """utime + stime of every live process in process group ``pgid``."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state ppid pgrp ...; utime, stime at 11, 12
            total += int(fields[11]) + int(fields[12])
    return total / tick


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_site(workdir: Path, n: int, registers: int) -> tuple[Path, list[int], int]:
    profile = {"kind": "bench_sim", "points": [
        {"name": f"u{i:03d}", "unit": "A", "type": "uint16", "scale": 0.1, "range": [0, 6553.5],
         "table": "input_register", "address": i} for i in range(registers)]}
    (workdir / "profile.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    *ports, control = free_ports(n + 1)
    site = {"site": {"id": "bench-sim"}, "areas": [{"id": "bench", "kind": "roadway"}],
            "devices": [{"id": f"d{i:04d}", "adapter": "modbus", "area": "bench", "host": HOST, "port": port,
                         "unit_id": 1, "profile": str(workdir / "profile.yaml")} for i, port in enumerate(ports)]}
    path = workdir / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path, ports, control


class Reader:
    """One connection per device; one FC 4 read of every register a second."""

    def __init__(self, ports: list[int], registers: int):
        self.ports, self.registers = ports, registers
        self.sent = self.answered = self.errors = 0

    async def device(self, port: int, phase: float, stop: float) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        request = struct.pack(">HHHBBHH", 0, 0, 6, 1, 4, 0, self.registers)
        next_at = time.monotonic() + phase
        tid = 0
        try:
            while next_at < stop:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += 1.0
                tid = (tid + 1) & 0xFFFF
                writer.write(struct.pack(">H", tid) + request[2:])
                self.sent += 1
                head = await reader.readexactly(7)
                body = await reader.readexactly(struct.unpack(">H", head[4:6])[0] - 1)
                if body[0] == 4 and body[1] == 2 * self.registers:
                    self.answered += 1
                else:
                    self.errors += 1
        finally:
            writer.close()

    async def run(self, seconds: float) -> None:
        stop = time.monotonic() + seconds
        n = len(self.ports)
        await asyncio.gather(*(self.device(p, i / n, stop) for i, p in enumerate(self.ports)))


def wait_ports(ports: list[int], proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the simulator exited ({proc.returncode})")
            try:
                socket.create_connection((HOST, port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"nothing listens on {port} after {timeout:g} s") from None
                time.sleep(0.1)


def measure(n: int, procs: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        site, ports, control = write_site(Path(tmp), n, args.registers)
        argv = [sys.executable, "-m", "gateway.cli", "sim", str(site), "--control", f"{HOST}:{control}"]
        if procs > 1:
            argv += ["--procs", str(procs)]
        env = dict(os.environ, PYTHONPATH=str(Path(args.repo).resolve()))
        with open(Path(tmp) / "sim.log", "w") as log:
            proc = subprocess.Popen(argv, cwd=args.repo, env=env, stdout=log, stderr=log, start_new_session=True)
        try:
            wait_ports(ports, proc, 120)
            reader = Reader(ports, args.registers)

            async def window() -> tuple[float, float, int, int]:
                task = asyncio.create_task(reader.run(args.warmup + args.seconds + 1))
                await asyncio.sleep(args.warmup)
                spy = None
                if args.py_spy:  # a profile of the simulator's main process over the window
                    spy = subprocess.Popen(["py-spy", "record", "-p", str(proc.pid), "-d", str(int(args.seconds)),
                                            "-f", "raw", "-o", f"{args.py_spy}.n{n}.p{procs}.txt"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                cpu0, t0, sent0, ok0 = group_cpu(proc.pid), time.monotonic(), reader.sent, reader.answered
                await asyncio.sleep(args.seconds)
                cpu1, t1 = group_cpu(proc.pid), time.monotonic()
                sent, ok = reader.sent - sent0, reader.answered - ok0
                await task
                if spy:
                    spy.wait()
                return (cpu1 - cpu0) / (t1 - t0), (t1 - t0), sent, ok

            cpu_per_s, span, sent, ok = asyncio.run(window())
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    return {"devices": n, "procs": procs, "registers": args.registers, "cpu_s_per_s": round(cpu_per_s, 3),
            "requests_per_s": round(sent / span, 1), "answered": ok, "sent": sent,
            "cpu_ms_per_1k_requests": round(1e6 * cpu_per_s / max(sent / span, 1e-9), 1),
            "errors": reader.errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, nargs="+", default=[200, 1000])
    ap.add_argument("--procs", type=int, nargs="+", default=[1])
    ap.add_argument("--registers", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--py-spy", help="record a py-spy profile (raw) of the simulator to FILE.nN.pP.txt")
    ap.add_argument("--repo", default=str(REPO), help="source tree whose `minegw sim` to measure")
    args = ap.parse_args()
    for n in args.devices:
        for p in args.procs:
            print("BENCH_JSON", json.dumps(measure(n, p, args)), flush=True)


if __name__ == "__main__":
    main()
