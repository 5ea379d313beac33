"""Modbus TCP adapter: polls one device by its profile.

Reads go through the thin asyncio transport of ``transport.py`` (or pymodbus' client with
``read_transport: pymodbus``) and come back as each block's data bytes, which the block's
compiled decoder (``decoder.py``) turns into values and qualities straight into the
columns of a :class:`Reading`. Writes go through pymodbus' client.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from adapters.base import PollColumns, PolledAdapter, next_poll_due, sleep_until
from gateway.core.backoff import Backoff
from gateway.core.model import Quality, Reading, Schema, Value, WriteResult, utcnow

from . import codec
from .config import ModbusDeviceConfig
from .plan import Block, Hole, ReadPlan, halve
from .profile import Point, Table, load_profile
from .transport import ExceptionResponse, ModbusTcpReader, PymodbusReader

log = logging.getLogger(__name__)


class _QuietTimeouts(logging.Filter):
    """pymodbus logs every unanswered request at ERROR, followed by its last 20 frames in hex.
    The adapter reports a device that stops answering itself, as one state-change line: unless
    pymodbus is logged at DEBUG (asked for), drop those records and the frame dumps of others."""

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return True
        message = record.getMessage()
        if message.startswith("No response received"):
            return False
        record.msg, record.args = message.split("\n>>>>> ", 1)[0], ()
        return True


logging.getLogger("pymodbus.logging").addFilter(_QuietTimeouts())  # the logger of pymodbus' Log class


ILLEGAL_ADDRESS = 2
GATEWAY_CODES = {10: "gateway path unavailable", 11: "gateway target failed to respond"}
FUNCTION = {Table.COIL: 1, Table.DISCRETE_INPUT: 2, Table.HOLDING_REGISTER: 3, Table.INPUT_REGISTER: 4}


class TargetUnreachable(Exception):
    """A Modbus gateway (serial converter) answered that the device behind it did not."""


def decode_point(point: Point, words: list[int] | list[bool]) -> tuple[Value, Quality]:
    """Registers or bits of one point -> engineering value and its quality."""
    try:
        value = point.decode(words)
    except codec.DecodeError:
        return None, Quality.BAD
    if not point.is_numeric:
        return value, Quality.GOOD
    if not math.isfinite(value):
        return None, Quality.BAD
    if point.range and not point.range[0] <= value <= point.range[1]:
        return value, Quality.OUT_OF_RANGE
    return value, Quality.GOOD


class ModbusAdapter(PolledAdapter):
    kind = "modbus"
    config: ModbusDeviceConfig

    def __init__(self, config: ModbusDeviceConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.profile = load_profile(config.profile)
        points = self.profile.points
        self.schema = Schema([p.name for p in points], [p.unit for p in points])  # one for every reading
        self.plan = ReadPlan(points, max_gap_registers=config.max_gap, retry_after=config.hole_retry)
        reader = ModbusTcpReader if config.read_transport == "asyncio" else PymodbusReader
        self.client = reader(config.host, config.port, timeout=config.timeout, retries=config.retries)
        self._writer: AsyncModbusTcpClient | None = None  # pymodbus' client, opened on the first write
        self._write_lock = asyncio.Lock()
        self._retrying: Hole | None = None  # the learned hole this poll tries again

    # -- polling -------------------------------------------------------------------------
    async def _run(self) -> None:
        interval = self.config.poll_interval
        backoff = Backoff(self.config.backoff_initial, self.config.backoff_max)
        await asyncio.sleep(self.first_poll_delay())
        next_due = time.monotonic()
        while not self.stopping:
            if not self.client.connected and not await self._connect():
                await asyncio.sleep(backoff.next())
                next_due = time.monotonic()
                continue
            backoff.reset()
            await self.poll_once(deadline=next_due + interval)
            next_due = next_poll_due(next_due, interval)
            await sleep_until(next_due, interval)  # one timer for all devices (adapters/base.py PollTicker)

    async def _connect(self) -> bool:
        started, started_at = time.monotonic(), utcnow()
        try:
            ok = await self.client.connect()
        except (OSError, ModbusException) as exc:
            ok, why = False, str(exc)
        else:
            why = f"cannot connect to {self.config.host}:{self.config.port}"
        if ok:
            self.state.reconnects += 1 if self.state.polls else 0
            return True
        self._poll_failed(why, timeout=False)
        self._emit(self._comm_fail_reading(started_at, started))
        return False

    async def poll_once(self, deadline: float | None = None) -> Reading | None:
        """Read every block once and emit one reading; ``None`` if the link failed."""
        started, started_at = time.monotonic(), utcnow()
        self._retrying = self.plan.retry_oldest()
        poll = PollColumns(len(self.schema))
        try:
            await self._read_planned(poll, self.plan.blocks, self.plan.unreadable, deadline)
        except TargetUnreachable as exc:  # the TCP link is fine: keep it
            self._poll_failed(str(exc), timeout=True)
            self._emit(self._comm_fail_reading(started_at, started))
            return None
        except (ModbusException, OSError, asyncio.TimeoutError) as exc:
            self.client.close()
            self._poll_failed(f"no answer: {exc}", timeout=True)
            self._emit(self._comm_fail_reading(started_at, started))
            return None
        reading = poll.reading(self.id, started_at, (time.monotonic() - started) * 1000, self.schema)
        if self._retrying is not None:  # read across without a refusal
            log.info("%s: %s %s no longer refused", self.id, self._retrying.table.value,
                     self._retrying.point or self._retrying.address)
        self._poll_succeeded(reading.poll_ms)
        self._emit(reading)
        return reading

    async def _read_planned(self, poll: PollColumns, blocks: list[Block], unreadable: list[Point],
                            deadline: float | None) -> None:
        self._bad(poll, unreadable)
        for block in blocks:
            await self._read_block(poll, block, deadline)

    async def _read_block(self, poll: PollColumns, block: Block, deadline: float | None) -> bool:
        """Read and decode one block into the poll; whether the device answered it as one request."""
        try:
            data = await self.client.read(FUNCTION[block.table], self.config.unit_id, block.address, block.count)
        except ExceptionResponse as exc:
            if exc.code in GATEWAY_CODES:
                raise TargetUnreachable(f"unit {self.config.unit_id}: {GATEWAY_CODES[exc.code]}") from None
            self.state.exception_responses += 1
            if exc.code == ILLEGAL_ADDRESS:
                await self._read_refused(poll, block, deadline)
            else:
                self._bad(poll, block.points)
            return False
        now = utcnow()
        decoder = (block.decoder or self.plan.compiled(block).decoder)
        marks = decoder.decode(data, poll.values)
        if deadline is not None and time.monotonic() > deadline:  # late: what is good is stale
            marked = {slot for slot, _ in marks}
            marks += [(slot, Quality.STALE) for slot in decoder.slots if slot not in marked]
        if marks:
            poll.marks += marks
        poll.stamps.append((now, decoder.slots))
        return True

    async def _read_refused(self, poll: PollColumns, block: Block, deadline: float | None) -> None:
        """A block the device refused as an illegal address: read it in halves, down to single
        points, so what it can read still comes out in this poll, and learn where the hole is."""
        retried = self._retrying
        if retried is not None and retried.within(block):  # still there: back into the plan at once
            self._retrying = None
            self._learn(retried, "refused again")
            await self._read_planned(poll, *self.plan.plan(block.points), deadline)
            return
        if len(block.points) == 1:
            point = block.points[0]
            self._learn(Hole(block.table, point.address, point.name),
                        f"{point.name} at {point.address} refused alone: reported bad without asking")
            self._bad(poll, block.points)
            return
        first, second = halve(block)
        first_whole = await self._read_block(poll, first, deadline)
        second_whole = await self._read_block(poll, second, deadline)
        if first_whole and second_whole:  # each half reads alone: the hole lies between them
            self._learn(Hole(block.table, second.address),
                        f"{block.address}+{block.count} refused across {second.address}: read as two requests")

    def _learn(self, hole: Hole, what: str) -> None:
        # Logged once; a hole that comes back after its retry is old news.
        level = logging.DEBUG if hole in self.plan.ever_learned else logging.INFO
        log.log(level, "%s: illegal data address: %s %s", self.id, hole.table.value, what)
        self.plan.learn(hole)

    def _bad(self, poll: PollColumns, points) -> None:
        if not points:
            return
        slots = tuple(self.plan.slots[p.name] for p in points)
        poll.bad(slots)
        poll.stamps.append((utcnow(), slots))

    # -- writes --------------------------------------------------------------------------
    async def write(self, signal: str, value: Value) -> WriteResult:
        """Write one writable signal; the answer says why when it cannot."""
        try:
            point = self.profile.point(signal)
            words = self._encode_for_write(point, value)
            async with self._write_lock:
                writer = self._open_writer()
                if not writer.connected and not await writer.connect():
                    raise ConnectionError(f"{self.config.host}:{self.config.port} unreachable")
                uid = self.config.unit_id
                if point.table is Table.COIL:
                    rr = await writer.write_coil(point.address, bool(words[0]), device_id=uid)
                else:
                    rr = await writer.write_registers(point.address, words, device_id=uid)
            if rr.isError():
                raise ExceptionResponse(getattr(rr, "exception_code", 0))
        except (KeyError, ValueError, TypeError, ConnectionError, ExceptionResponse,
                ModbusException, OSError, asyncio.TimeoutError) as exc:
            why = exc.args[0] if isinstance(exc, KeyError) else str(exc)  # KeyError's str() adds quotes
            return WriteResult(device=self.id, signal=signal, ok=False, value=value, error=why)
        return WriteResult(device=self.id, signal=signal, ok=True, value=value)

    def _open_writer(self) -> AsyncModbusTcpClient:
        if self._writer is None:
            c = self.config
            self._writer = AsyncModbusTcpClient(c.host, port=c.port, timeout=c.timeout, retries=c.retries,
                                                reconnect_delay=0)  # reconnects are ours
        return self._writer

    @staticmethod
    def _encode_for_write(point: Point, value: Value) -> list[int]:
        if not point.writable:
            raise ValueError(f"{point.name} is read-only")
        if point.table is Table.COIL:
            if not isinstance(value, (bool, int)) or value not in (0, 1):
                raise ValueError(f"{point.name} takes true/false, not {value!r}")
            return [int(value)]
        if point.type is codec.DataType.STRING:
            return codec.encode(str(value), point.type, point.order, point.length)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{point.name} takes a number, not {value!r}")
        if point.range and not point.range[0] <= value <= point.range[1]:
            raise ValueError(f"{point.name}={value} outside {point.range[0]}..{point.range[1]} {point.unit}")
        try:
            return codec.encode(point.to_raw(value), point.type, point.order)
        except Exception as exc:  # struct.error: does not fit the register type
            raise ValueError(f"{point.name}={value} does not fit {point.type.value}") from exc

    async def stop(self) -> None:
        # Drop the link before the poll is cancelled: a reply to the cancelled request would
        # otherwise arrive on it and pymodbus logs "received pdu without a corresponding request".
        self._close_links()
        await super().stop()

    async def _close(self) -> None:
        self._close_links()

    def _close_links(self) -> None:
        self.client.close()
        if self._writer is not None:
            self._writer.close()
