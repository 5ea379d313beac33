"""The adapter's asyncio read transport against the simulator, a pymodbus server and hand-made
servers that misbehave (stall, hang up, answer with the wrong transaction id)."""
import asyncio
import struct
from contextlib import asynccontextmanager

import pytest
from pymodbus.constants import ExcCodes

from adapters.modbus.adapter import ModbusAdapter
from adapters.modbus.config import ModbusDeviceConfig
from adapters.modbus.transport import ExceptionResponse, LinkError, ModbusTcpReader, PymodbusReader
from gateway.core.model import DeviceStatus, Quality
from simulators.modbus.server import DeviceSimulator, ModbusSimServer
from tests.modbus_util import bits, raw_server, regs
from tests.util import free_port

HOST = "127.0.0.1"


@pytest.mark.parametrize("reader", [ModbusTcpReader, PymodbusReader])
async def test_reads_every_table_of_the_simulator_as_pymodbus_does(reader):
    sim = DeviceSimulator("belt", "belt_conveyor", unit_id=3, seed=4, clock=lambda: 12.0)
    async with ModbusSimServer(HOST, free_port(), [sim]) as server:
        link = reader(HOST, server.port, timeout=1)
        assert await link.connect() and link.connected
        speed = sim.profile.point("speed")
        words = await link.read(4, 3, 0, 21)
        assert len(words) == 42
        assert speed.decode(list(struct.unpack(">21H", words))[speed.address:][:2]) == sim.current_values()["speed"]
        assert len(await link.read(2, 3, 0, 10)) == 2
        assert await link.read(1, 3, 0, 3) == bytes([0b001])  # run_command on
        with pytest.raises(ExceptionResponse) as refused:
            await link.read(4, 3, 0, 125)  # past the end of the map
        assert refused.value.code == 2
        link.close()
        assert not link.connected


async def test_the_same_bytes_from_both_readers():
    sim = DeviceSimulator("shearer", "shearer", seed=8, clock=lambda: 40.0)
    async with ModbusSimServer(HOST, free_port(), [sim]) as server:
        ours, theirs = ModbusTcpReader(HOST, server.port), PymodbusReader(HOST, server.port)
        for function, count in ((1, 2), (2, 5), (3, 3), (4, 38)):
            assert await ours.read(function, 1, 0, count) == await theirs.read(function, 1, 0, count), function
        ours.close()
        theirs.close()


async def test_exception_response_from_a_pymodbus_server():
    async def refuse(fc, *_):
        return ExcCodes.DEVICE_FAILURE if fc == 4 else None

    async with raw_server(inputs=[regs(0, [1, 2, 3])], discrete=[bits(0, [True] * 16)], action=refuse) as (_, port):
        link = ModbusTcpReader(HOST, port, timeout=1)
        with pytest.raises(ExceptionResponse) as exc:
            await link.read(4, 1, 0, 3)
        assert exc.value.code == 4
        assert await link.read(2, 1, 0, 9) == bytes([0xFF, 0x01])  # the link is fine
        link.close()


@asynccontextmanager
async def hand_made_server(answer):
    """A TCP server whose ``answer(request) -> bytes | None`` handles each request frame;
    None hangs up."""
    async def serve(reader, writer):
        try:
            while request := await reader.readexactly(12):
                reply = answer(request)
                if reply is None:
                    break
                writer.write(reply)
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    server = await asyncio.start_server(serve, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def reply(request: bytes, words: list[int], tid_offset: int = 0) -> bytes:
    tid, _, _, unit, function = struct.unpack_from(">HHHBB", request)
    pdu = struct.pack(f">BB{len(words)}H", function, 2 * len(words), *words)
    return struct.pack(">HHHB", (tid + tid_offset) & 0xFFFF, 0, len(pdu) + 1, unit) + pdu


async def test_an_answer_with_another_transaction_id_is_ignored():
    # a stale answer first (another tid), then the right one, in one segment and split in two
    def answer(request):
        both = reply(request, [0xDEAD], tid_offset=7) + reply(request, [0x1234])
        return both

    async with hand_made_server(answer) as port:
        link = ModbusTcpReader(HOST, port, timeout=1)
        assert await link.read(3, 1, 0, 1) == b"\x12\x34"
        assert await link.read(3, 1, 0, 1) == b"\x12\x34"
        link.close()


async def test_a_device_that_stops_answering_times_out_and_a_closed_connection_is_a_link_error():
    asked = []

    def answer(request):
        asked.append(request)
        return b"" if len(asked) == 1 else None  # silence, then hang up

    async with hand_made_server(answer) as port:
        link = ModbusTcpReader(HOST, port, timeout=0.2, retries=0)
        with pytest.raises(TimeoutError):
            await link.read(4, 1, 0, 10)
        with pytest.raises(LinkError):
            await link.read(4, 1, 0, 10)
        assert not link.connected
    with pytest.raises(LinkError, match="cannot connect"):
        await link.read(4, 1, 0, 10)


async def test_a_retry_gets_the_answer_the_first_attempt_did_not():
    asked = []

    def answer(request):
        asked.append(request)
        return b"" if len(asked) == 1 else reply(request, [7, 8])

    async with hand_made_server(answer) as port:
        link = ModbusTcpReader(HOST, port, timeout=0.2, retries=1)
        assert await link.read(4, 1, 0, 2) == b"\x00\x07\x00\x08"
        assert len(asked) == 2 and asked[0][:2] != asked[1][:2]  # a fresh transaction id
        link.close()


async def test_garbage_and_an_answer_that_does_not_fit_are_link_errors():
    answers = iter([b"\x00\x01\x00\x07\x00\x03\x01\x03\x00", None])  # protocol id 7

    async with hand_made_server(lambda request: next(answers, None) or reply(request, [1])) as port:
        link = ModbusTcpReader(HOST, port, timeout=1)
        with pytest.raises(LinkError, match="not a Modbus TCP answer"):
            await link.read(3, 1, 0, 1)
        with pytest.raises(LinkError, match="does not fit"):
            await link.read(3, 1, 0, 2)  # one register for two
        link.close()


def config(port, **kw):
    return ModbusDeviceConfig(id="m1", area="a", profile="belt_conveyor", host=HOST, port=port,
                              timeout=0.3, retries=0, **kw)


async def test_the_adapter_goes_comm_fail_when_the_device_stops_answering_or_hangs_up():
    mode = {"now": "answer"}
    sim_words = [0] * 25

    def answer(request):
        if mode["now"] == "silent":
            return b""
        if mode["now"] == "hang up":
            return None
        _, _, _, _, function, _, count = struct.unpack(">HHHBBHH", request)
        if function <= 2:
            tid, _, _, unit = struct.unpack_from(">HHHB", request)
            size = (count + 7) // 8
            return struct.pack(">HHHBBB", tid, 0, 3 + size, unit, function, size) + bytes(size)
        return reply(request, sim_words[:count])

    async with hand_made_server(answer) as port:
        adapter = ModbusAdapter(config(port))
        assert await adapter._connect()
        reading = await adapter.poll_once()
        assert reading.qualities is None and reading.times is not None  # several blocks, all good
        for what in ("silent", "hang up"):
            mode["now"] = what
            assert await adapter.poll_once() is None
            assert adapter.state.status is DeviceStatus.OFFLINE and "no answer" in adapter.state.reason
            assert not adapter.client.connected
            mode["now"] = "answer"
            assert await adapter._connect() and await adapter.poll_once() is not None
        comm_fail = [e for e in drain(adapter) if getattr(e, "qualities", None)]
        assert len(comm_fail) == 2 and all(set(r.qualities) == {Quality.COMM_FAIL} for r in comm_fail)
        await adapter.stop()


def drain(adapter):
    events = []
    while not adapter._events.empty():
        events.append(adapter._events.get_nowait())
    return events


async def test_the_pymodbus_fallback_reads_the_same_reading():
    sim = DeviceSimulator("belt", "belt_conveyor", seed=5, clock=lambda: 40.0)
    async with ModbusSimServer(HOST, free_port(), [sim]) as server:
        ours = ModbusAdapter(config(server.port))
        theirs = ModbusAdapter(config(server.port, read_transport="pymodbus"))
        a, b = await ours.poll_once(), await theirs.poll_once()
        assert a.values == b.values and a.qualities == b.qualities and a.schema == b.schema
        assert a.values == [sim.current_values()[p.name] for p in ours.profile.points]
        await ours.stop()
        await theirs.stop()
