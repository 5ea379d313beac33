"""A bare pymodbus server with hand-set registers, for adapter edge cases
(the full simulators live in simulators/)."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

import yaml
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.util import free_port


def regs(address: int, words: list[int]) -> SimData:
    return SimData(address=address, values=words, datatype=DataType.REGISTERS)


def bits(address: int, values: list[bool]) -> SimData:
    return SimData(address=address, values=values, datatype=DataType.BITS)


@asynccontextmanager
async def raw_server(coils=None, discrete=None, holding=None, inputs=None, action=None, unit=1, port=None):
    """Serve the given blocks on loopback (a free port unless given); yields (host, port)."""
    port = port or free_port()
    device = SimDevice(id=unit, action=action, simdata=(
        coils or [bits(0, [False] * 16)], discrete or [bits(0, [False] * 16)],
        holding or [regs(0, [0])], inputs or [regs(0, [0])]))
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        yield "127.0.0.1", port
    finally:
        await server.shutdown()
        await asyncio.sleep(0)


def write_profile(tmp_path: Path, points: list[dict], kind: str = "test_machine") -> str:
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump({"kind": kind, "points": points}))
    return str(path)
