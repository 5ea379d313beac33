"""The Modbus read path on its own: CPU per read request and per decoded point, before and after.

    python bench/bench_modbus_read.py --reads 5000

- **transport**: ``--reads`` reads of 100 input registers, one at a time, against a pymodbus
  server in another process (so this process's CPU time is the client's alone), through
  pymodbus' ``AsyncModbusTcpClient`` as the adapter used it and through the adapter's own
  asyncio transport; CPU µs (process time) per read, rounds alternated so drift hits both.
- **decode**: a 100-point block (the profile of ``bench_gateway.py``: uint16/int16/float32,
  scaled, ranged) decoded point by point as before (``decode_point`` + a ``Sample``) and by
  the compiled block decoder into a columnar ``Reading``; CPU µs per point.

``--profile`` prints cProfile's top functions of the pymodbus read, to see where it goes.
A benchmark, not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import pstats
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.base import PollColumns  # noqa: E402
from adapters.modbus.adapter import decode_point  # noqa: E402
from adapters.modbus.codec import DataType, encode  # noqa: E402
from adapters.modbus.plan import ReadPlan  # noqa: E402
from adapters.modbus.profile import Profile  # noqa: E402
from adapters.modbus.transport import ModbusTcpReader, PymodbusReader  # noqa: E402
from bench.bench_gateway import make_profile  # noqa: E402
from gateway.core.model import Quality, Sample, Schema, utcnow  # noqa: E402

HOST = "127.0.0.1"
REGISTERS = 100


def serve(port: int, ready) -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType as SimType, SimData, SimDevice

    async def main():
        regs = SimData(address=0, values=list(range(1, 126)), datatype=SimType.REGISTERS)
        bits = SimData(address=0, values=[False] * 16, datatype=SimType.BITS)
        server = ModbusTcpServer(SimDevice(id=1, simdata=([bits], [bits], [regs], [regs])), address=(HOST, port))
        await server.serve_forever(background=True)
        ready.set()
        await asyncio.Event().wait()
    asyncio.run(main())


async def cpu_per_read(reader, reads: int) -> float:
    await reader.read(4, 1, 0, REGISTERS)  # connected and warm
    started = time.process_time()
    for _ in range(reads):
        await reader.read(4, 1, 0, REGISTERS)
    return (time.process_time() - started) / reads * 1e6


async def transport(port: int, reads: int, rounds: int, profile: bool) -> dict[str, float]:
    readers = {"pymodbus AsyncModbusTcpClient": PymodbusReader(HOST, port, timeout=2),
               "asyncio transport (ModbusTcpReader)": ModbusTcpReader(HOST, port, timeout=2)}
    best = {name: float("inf") for name in readers}
    for _ in range(rounds):
        for name, reader in readers.items():
            best[name] = min(best[name], await cpu_per_read(reader, reads // rounds))
    if profile:
        reader = readers["pymodbus AsyncModbusTcpClient"]
        profiler = cProfile.Profile()
        profiler.enable()
        await cpu_per_read(reader, reads // rounds)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    for reader in readers.values():
        reader.close()
    return best


def decode(repeat: int) -> dict[str, float]:
    profile = Profile.model_validate(make_profile(100))
    points = profile.points
    plan = ReadPlan(points)
    words = [0] * (max(p.address + p.width for p in points))
    for i, p in enumerate(points):
        raw = {DataType.UINT16: 100 + i, DataType.INT16: -i, DataType.FLOAT32: i * 1.5}[p.type]
        words[p.address:p.address + p.width] = encode(raw, p.type, p.order)
    data = struct.pack(f">{len(words)}H", *words)
    schema = Schema([p.name for p in points], [p.unit for p in points])

    def before():  # the adapter's old loop: slice, decode_point, one Sample per point
        now, late, out = utcnow(), False, []
        for block in plan.blocks:
            block_words = list(struct.unpack(f">{len(data) // 2}H", data))[block.address:block.address + block.count]
            for p in block.points:
                at = p.address - block.address
                value, quality = decode_point(p, block_words[at:at + p.width])
                if late and quality is Quality.GOOD:
                    quality = Quality.STALE
                out.append(Sample(signal=p.name, value=value, unit=p.unit, quality=quality, ts=now))
        return out

    def after():  # the compiled decoders into one columnar reading
        poll = PollColumns(len(points))
        for block in plan.blocks:
            now = utcnow()
            chunk = data[2 * block.address:2 * (block.address + block.count)]
            marks = block.decoder.decode(chunk, poll.values)
            if marks:
                poll.marks += marks
            poll.stamps.append((now, block.decoder.slots))
        return poll.reading("d", now, 1.0, schema)

    assert [s.value for s in before()] == after().values
    out = {}
    for name, fn in (("point by point + Sample (before)", before), ("compiled block decoder (after)", after)):
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            for _ in range(repeat):
                fn()
            best = min(best, (time.process_time() - started) / repeat / len(points) * 1e6)
        out[name] = best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=5000, help="reads per transport (split into rounds)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--decodes", type=int, default=500, help="100-point blocks decoded per round")
    parser.add_argument("--profile", action="store_true", help="cProfile the pymodbus read")
    args = parser.parse_args()
    from tests.util import free_port
    port = free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(20):
            raise SystemExit("the pymodbus server did not start")
        reads = asyncio.run(transport(port, args.reads, args.rounds, args.profile))
    finally:
        server.terminate()
        server.join(5)
    print(f"\nread of {REGISTERS} input registers, CPU µs per read (best of {args.rounds} rounds):")
    for name, us in reads.items():
        print(f"  {name:40s} {us:8.1f}")
    print(f"\ndecode of a {REGISTERS}-point block, CPU µs per point (best of 5):")
    for name, us in decode(args.decodes).items():
        print(f"  {name:40s} {us:8.3f}")


if __name__ == "__main__":
    main()
