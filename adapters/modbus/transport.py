"""A thin asyncio Modbus TCP transport for reads (function codes 1-4).

The adapter polls through it: one request in flight per device, MBAP framing and
transaction ids done by hand on an ``asyncio.Protocol``, a time-out per request on the
loop's shared ticker (``adapters/base.py`` ``expire_later``), and the answer handed back
as its data bytes (registers big-endian as on the wire, bits packed as Modbus packs
them), which the compiled block decoders read directly. No PDU object,
no framer, no lock, no log call unless asked for: pymodbus' client spends about five
times as much CPU on the same read (bench/README.md, "Modbus read transport").

Writes, and devices that need pymodbus' client for reads (``read_transport: pymodbus``),
go through :class:`PymodbusReader` (the same interface over ``AsyncModbusTcpClient``).

With ``MINEGW_PYMODBUS_LOG=DEBUG`` every frame and every timeout is logged on the
``pymodbus.logging`` logger, as pymodbus' client logs them: that setting is the switch
for the wire log of the whole Modbus side.
"""
from __future__ import annotations

import asyncio
import logging
import struct

from pymodbus.client import AsyncModbusTcpClient

from adapters.base import expire_later

wire_log = logging.getLogger("pymodbus.logging")  # the wire log MINEGW_PYMODBUS_LOG switches on

READ_COILS, READ_DISCRETE_INPUTS, READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS = 1, 2, 3, 4
_REQUEST = struct.Struct(">HHHBBHH")  # tid, protocol 0, length 6, unit, function, address, count
_HEADER = struct.Struct(">HHHB")  # tid, protocol, length (unit + PDU), unit
MAX_FRAME = 260  # MBAP header (7) + the longest PDU (253)


class ExceptionResponse(Exception):
    """The device answered with a Modbus exception code."""

    def __init__(self, code: int):
        super().__init__(f"exception response code {code}")
        self.code = code


class LinkError(ConnectionError):
    """The connection broke, or carried something that is not a Modbus TCP answer."""


def _hex(frame: bytes) -> str:
    return " ".join(hex(b) for b in frame)


class _Protocol(asyncio.Protocol):
    """The connection: frames answers out of the byte stream, resolves the pending request."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.tid = -1  # the pending request's transaction id
        self.waiter: asyncio.Future | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.transport = None
        self._fail(LinkError(f"connection lost: {exc}" if exc else "connection closed by the device"))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        while len(buffer) >= 7:
            tid, protocol, length, _unit = _HEADER.unpack_from(buffer)
            if protocol != 0 or not 2 <= length <= MAX_FRAME - 6:
                self.buffer = b""
                self._fail(LinkError(f"not a Modbus TCP answer: {_hex(buffer[:7])}"))
                transport, self.transport = self.transport, None  # not connected from now on
                if transport is not None:
                    transport.close()
                return
            end = 6 + length
            if len(buffer) < end:
                break
            frame, buffer = buffer[:end], buffer[end:]
            if wire_log.isEnabledFor(logging.DEBUG):
                wire_log.debug("recv: %s", _hex(frame))
            if tid == self.tid and self.waiter is not None:  # any other: a late answer, not ours
                waiter, self.waiter = self.waiter, None
                if not waiter.done():
                    waiter.set_result(frame)
        self.buffer = buffer


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class ModbusTcpReader:
    """Reads over one TCP connection to a device (or a Modbus gateway in front of several)."""

    def __init__(self, host: str, port: int, timeout: float = 1.0, retries: int = 0):
        self.host, self.port, self.timeout, self.retries = host, port, timeout, retries
        self._protocol: _Protocol | None = None
        self._next_tid = 0

    @property
    def connected(self) -> bool:
        return self._protocol is not None and self._protocol.transport is not None

    async def connect(self) -> bool:
        """Open the connection; False if the device cannot be reached."""
        if self.connected:
            return True
        self.close()
        loop = asyncio.get_running_loop()
        try:
            _, self._protocol = await asyncio.wait_for(
                loop.create_connection(_Protocol, self.host, self.port), self.timeout)
        except (OSError, asyncio.TimeoutError):
            return False
        return True

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    async def read(self, function: int, unit: int, address: int, count: int) -> bytes:
        """The data bytes of one read answer. Raises :class:`ExceptionResponse` for an exception
        code, ``TimeoutError`` when no answer came in time (after ``retries`` more attempts),
        :class:`LinkError` when the connection broke or could not be opened."""
        if not self.connected and not await self.connect():
            raise LinkError(f"cannot connect to {self.host}:{self.port}")
        protocol = self._protocol
        loop = asyncio.get_running_loop()
        for _attempt in range(self.retries + 1):
            self._next_tid = tid = (self._next_tid + 1) & 0xFFFF
            request = _REQUEST.pack(tid, 0, 6, unit, function, address, count)
            waiter = protocol.waiter = loop.create_future()
            protocol.tid = tid
            if wire_log.isEnabledFor(logging.DEBUG):
                wire_log.debug("send: %s", _hex(request))
            if protocol.transport is None:
                raise LinkError("connection closed by the device")
            protocol.transport.write(request)
            expire_later(self.timeout, _expire, waiter)  # the loop's shared ticker: nothing to cancel
            try:
                frame = await waiter
            except TimeoutError:
                continue
            finally:
                protocol.waiter = None
            return self._data(frame, function, count)
        if wire_log.isEnabledFor(logging.DEBUG):
            wire_log.error("No response received after %d retries, continue with next request", self.retries)
        raise TimeoutError(f"no answer within {self.timeout:g} s from {self.host}:{self.port}")

    @staticmethod
    def _data(frame: bytes, function: int, count: int) -> bytes:
        code = frame[7]
        if code == function | 0x80 and len(frame) >= 9:
            raise ExceptionResponse(frame[8])
        size = (count + 7) // 8 if function <= READ_DISCRETE_INPUTS else 2 * count
        if code != function or len(frame) != 9 + size or frame[8] != size:
            raise LinkError(f"answer does not fit the request (function {function}, {count}): {_hex(frame)}")
        return frame[9:]


def _pack_bits(bits: list[bool]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


class PymodbusReader:
    """The same reads through pymodbus' client (``read_transport: pymodbus``); also the writer."""

    def __init__(self, host: str, port: int, timeout: float = 1.0, retries: int = 0):
        self.client = AsyncModbusTcpClient(host, port=port, timeout=timeout, retries=retries,
                                           reconnect_delay=0)  # reconnects are the adapter's

    @property
    def connected(self) -> bool:
        return self.client.connected

    async def connect(self) -> bool:
        return await self.client.connect()

    def close(self) -> None:
        self.client.close()

    async def read(self, function: int, unit: int, address: int, count: int) -> bytes:
        c = self.client
        if not c.connected and not await c.connect():
            raise LinkError(f"cannot connect to {c.comm_params.host}:{c.comm_params.port}")
        call = {READ_COILS: c.read_coils, READ_DISCRETE_INPUTS: c.read_discrete_inputs,
                READ_HOLDING_REGISTERS: c.read_holding_registers, READ_INPUT_REGISTERS: c.read_input_registers}
        rr = await call[function](address, count=count, device_id=unit)
        if rr.isError():
            raise ExceptionResponse(getattr(rr, "exception_code", 0))
        if function <= READ_DISCRETE_INPUTS:
            return _pack_bits(rr.bits[:count])
        if len(rr.registers) != count:
            raise LinkError(f"answer does not fit the request: {len(rr.registers)} registers for {count}")
        return struct.pack(f">{count}H", *rr.registers)
