"""Modbus TCP device simulators on pymodbus's simulator API.

A :class:`DeviceSimulator` is one device (one unit id): a dynamics model, the faults
injected into it, and the pymodbus ``SimDevice`` that serves it. Like a PLC's scan, the
device samples its model once per ``tick`` (0.1 s) of model time, and only when a request
comes: it keeps an encoded image per table (simulators/modbus/image.py) and re-encodes
only the points whose value changed since the last sample; a write or a fault change
makes the next request sample afresh. pymodbus calls the device's action on every request
with its live register store; the action copies the addresses asked for from the image
into the store, passes writes on to the model as commands, and applies the faults.

A :class:`ModbusSimServer` is one TCP endpoint (host:port) with one or more units, like
a Modbus gateway in front of an RS485 line.
"""
from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from collections.abc import Callable
from typing import Any

from pydantic import Field
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from adapters.modbus.profile import Point, Profile, Table, load_profile

from simulators.faults import FaultError, FaultHolder, FaultParams, Listener, NoParams
from simulators.lifecycle import FaultFollowingServer

from .image import TableImage
from .machines import make_model

log = logging.getLogger(__name__)

FC_TABLE: dict[int, Table] = {
    1: Table.COIL, 5: Table.COIL, 15: Table.COIL,
    2: Table.DISCRETE_INPUT,
    4: Table.INPUT_REGISTER,
    **{fc: Table.HOLDING_REGISTER for fc in (3, 6, 16, 22, 23)},
}
READ_FCS = frozenset({1, 2, 3, 4})
# the order of SimDevice's non-shared simdata tuple
SIM_TABLES = (Table.COIL, Table.DISCRETE_INPUT, Table.HOLDING_REGISTER, Table.INPUT_REGISTER)

Image = dict[Table, list]  # per table, from address 0: registers, or bools for bit tables


# -- faults the server side applies (model faults live in machines/) ------------------------
class SlowParams(FaultParams):
    delay: float = Field(1.0, gt=0, le=60, description="seconds added before every response")


class ExceptionParams(FaultParams):
    code: ExcCodes = Field(ExcCodes.DEVICE_FAILURE, description="Modbus exception code to answer with")
    table: Table | None = Field(None, description="only requests to this table; default: every table")


class OutOfRangeParams(FaultParams):
    signal: str = Field(description="numeric signal with a range")
    value: float | None = Field(None, description="value served; default: 10 % of the span above the range")


class UnreadableParams(FaultParams):
    signal: str = Field(description="register signal whose registers no read may touch (illegal data address)")


SERVER_FAULTS: dict[str, type[FaultParams]] = {
    "offline": NoParams,  # connection refused (or exception 0x0B while other units share the port)
    "slow": SlowParams,
    "exception": ExceptionParams,
    "stuck": NoParams,  # every value frozen where it was
    "out_of_range": OutOfRangeParams,
    # Register maps with holes, as many PLCs have: reads that touch them get illegal data address.
    "strict_map": NoParams,  # a register no point owns
    "unreadable": UnreadableParams,  # the registers of one point
}


# -- register images ----------------------------------------------------------------------
def table_sizes(profile: Profile) -> dict[Table, int]:
    """Registers (or bits) served per table: from 0 up to the end of its last point."""
    sizes = dict.fromkeys(Table, 0)
    for p in profile.points:
        sizes[p.table] = max(sizes[p.table], p.address + p.width)
    return sizes


def _block(table: Table, size: int) -> SimData:
    """One block per table from address 0, so every address up to the last point answers
    (unused ones as 0). pymodbus needs a block even where the profile has no point; the
    action refuses requests to such a table."""
    count = max(size, 1)
    if table.is_bit:
        return SimData(0, values=[False] * count, datatype=DataType.BITS)
    return SimData(0, values=[0] * count, datatype=DataType.REGISTERS)


_GONE = object()


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The points that must be encoded again: a different value, or a zero of the other sign."""
    return [n for n, v in new.items() if (o := old.get(n, _GONE)) != v or (v == 0 and repr(o) != repr(v))]


def _monotonic_clock() -> Callable[[], float]:
    start = time.monotonic()
    return lambda: time.monotonic() - start


# -- one device ---------------------------------------------------------------------------
class DeviceSimulator(FaultHolder):
    """One simulated device: a seeded model of its profile's kind, plus injected faults.

    ``clock`` gives the model time in seconds (default: seconds since construction). The
    model is sampled at multiples of ``tick`` seconds (the latest at or before the clock;
    0: at the clock's exact time, every request).
    """

    def __init__(self, device_id: str, profile: str | Profile, unit_id: int = 1, seed: int = 0,
                 clock: Callable[[], float] | None = None, tick: float = 0.1):
        self.device_id = device_id
        self.unit_id = unit_id
        self.seed = seed
        self.profile = profile if isinstance(profile, Profile) else load_profile(profile)
        self.model = make_model(self.profile, seed)
        missing = [p.name for p in self.profile.points if p.name not in self.model.signals]
        if missing:
            raise ValueError(f"{device_id}: the {self.profile.kind} model has no signal(s) {', '.join(missing)}")
        self.clock = clock or _monotonic_clock()
        self.sizes = table_sizes(self.profile)
        self._owner = {(p.table, a): p for p in self.profile.points for a in range(p.address, p.address + p.width)}
        self._faults: dict[str, FaultParams] = {}
        self.tick = tick
        self._tables = {t: TableImage(t, self.profile.points, self.sizes[t]) for t in Table}
        self._sampled_at: float | None = None  # model time of the image; None: sample at the next request
        self._served: dict[str, Any] | None = None  # the values the image encodes
        self._frozen: dict[Table, tuple[list, list[int]]] | None = None  # (words or bits, packed) while stuck
        self._listeners: list[Listener] = []
        self.read_requests = 0  # FC 1-4 requests served (or refused): what a poll costs the device

    def __repr__(self) -> str:
        return f"DeviceSimulator({self.device_id!r}, {self.profile.kind}, unit {self.unit_id})"

    # -- faults ---------------------------------------------------------------------------
    @property
    def fault_kinds(self) -> dict[str, type[FaultParams]]:  # type: ignore[override]
        """Every fault this device takes, with its parameter model."""
        return {**SERVER_FAULTS, **self.model.FAULTS}

    def _check_targets(self, name: str, params: FaultParams) -> FaultParams:
        if isinstance(params, UnreadableParams):
            self._check_unreadable(params)
        return self._check_out_of_range(params) if isinstance(params, OutOfRangeParams) else params

    def _check_unreadable(self, p: UnreadableParams) -> None:
        try:
            point = self.profile.point(p.signal)
        except KeyError as exc:
            raise FaultError(f"{self.device_id}: unreadable: {exc.args[0]}") from None
        if point.table.is_bit:  # pymodbus tells the action packed registers, not the bits asked for
            raise FaultError(f"{self.device_id}: unreadable: {p.signal} is a bit; only registers can be unreadable")

    def set_fault(self, name: str, **params: Any) -> FaultParams:
        """Inject a fault now (replacing the same fault's earlier parameters)."""
        checked = self.check_fault(name, params)
        now = self.clock()
        if name in self.model.FAULTS:
            self.model.set_fault(name, t=now, **checked.model_dump())
        elif name == "stuck" and self._frozen is None:
            self._refresh()
            self._frozen = {t: (list(img.words), list(img.packed)) for t, img in self._tables.items()}
        self._faults[name] = checked
        self._sampled_at = None
        self._notify(name, checked)
        return checked

    def _fault_cleared(self, name: str) -> None:
        if name in self.model.FAULTS:
            self.model.clear_fault(name, t=self.clock())
        elif name == "stuck":
            self._frozen = None
        self._sampled_at = None

    def _check_out_of_range(self, p: OutOfRangeParams) -> OutOfRangeParams:
        try:
            point = self.profile.point(p.signal)
        except KeyError as exc:
            raise FaultError(f"{self.device_id}: out_of_range: {exc.args[0]}") from None
        if not point.is_numeric or point.range is None:
            raise FaultError(f"{self.device_id}: out_of_range: {p.signal} has no range to leave")
        low, high = point.range
        value = p.value if p.value is not None else high + (0.1 * (high - low) or 1.0)
        if low <= value <= high:
            raise FaultError(f"{self.device_id}: out_of_range: {value:g} is inside "
                             f"{p.signal}'s range {low:g}..{high:g}")
        try:
            point.encode(value)
        except (struct.error, OverflowError) as exc:
            raise FaultError(f"{self.device_id}: out_of_range: {value:g} does not fit "
                             f"{p.signal} ({point.type.value}): {exc}") from None
        return p.model_copy(update={"value": value})

    # -- values ---------------------------------------------------------------------------
    def served_values(self, t: float) -> dict[str, Any]:
        """The model's values at ``t`` with the sensor faults applied (before encoding)."""
        values = self.model.values(t)
        if oor := self._faults.get("out_of_range"):
            values[oor.signal] = oor.value
        return values

    def image(self) -> Image:
        """The registers and bits served right now, per table."""
        if self._frozen is not None:
            return {t: list(words) for t, (words, _) in self._frozen.items()}
        self._refresh()
        return {t: list(img.words) for t, img in self._tables.items()}

    def current_values(self) -> dict[str, Any]:
        """What the device serves right now, in engineering units, exactly as a client
        decodes it (scale and float32 quantisation included)."""
        image = self.image()
        return {p.name: p.decode(image[p.table][p.address:p.address + p.width])
                for p in self.profile.points}

    def model_time(self, t: float) -> float:
        """The model time sampled at clock time ``t``: the latest multiple of ``tick``."""
        if not self.tick:
            return t
        return round(math.floor(t / self.tick + 1e-9) * self.tick, 9)

    def _refresh(self) -> None:
        """Sample the model if the tick moved on (or a write or fault asked to), and re-encode
        the points whose value changed."""
        t = self.model_time(self.clock())
        if t == self._sampled_at:
            return
        values = self.served_values(t)
        old = self._served
        changed = None if old is None else _changed(old, values)
        if changed is not None and len(changed) == len(values):
            changed = None  # every point: no table need pick its own out of the list
        self._served = None  # a value that does not fit its type: encode everything again next time
        for image in self._tables.values():
            image.update(values, changed)
        self._served, self._sampled_at = values, t

    def full_image(self, t: float) -> Image:
        """The image at model time ``t`` encoded point by point from scratch (what the kept image must equal)."""
        values = self.served_values(t)
        image: Image = {table: [False if table.is_bit else 0] * self.sizes[table] for table in Table}
        for p in self.profile.points:
            image[p.table][p.address:p.address + p.width] = p.encode(values[p.name])
        return image

    # -- pymodbus -------------------------------------------------------------------------
    def sim_device(self) -> SimDevice:
        """A fresh pymodbus device (non-shared tables, bit addressing) driven by this simulator."""
        blocks = tuple([_block(table, self.sizes[table])] for table in SIM_TABLES)
        return SimDevice(id=self.unit_id, simdata=blocks, action=self._on_request)

    async def _on_request(self, function_code: int, start_address: int, address: int, count: int,
                          registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        """pymodbus's per-request hook. ``registers`` is the live store of the table
        addressed (bit tables packed 16 to a register); ``set_values`` is what a write
        request brings, applied by pymodbus after this returns."""
        table = FC_TABLE.get(function_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        reading = function_code in READ_FCS
        self.read_requests += reading
        if refusal := self._refusal(table) or (reading and self._hole_in(table, address, count)):
            return refusal
        slow = self._faults.get("slow")
        if slow and (set_values is not None or function_code in READ_FCS):  # once per request:
            await asyncio.sleep(slow.delay)  # FC 5/6/23 call again to read back after writing
        if not self.sizes[table]:
            return ExcCodes.ILLEGAL_ADDRESS
        if set_values is not None and (error := self._write(table, address, list(set_values))):
            return error
        self._load(table, registers, address, count)
        return None

    def _refusal(self, table: Table) -> ExcCodes | None:
        if self.offline:  # only reached while other units keep the port open
            return ExcCodes.GATEWAY_NO_RESPONSE
        exception = self._faults.get("exception")
        if exception and exception.table in (None, table):
            return exception.code
        return None

    def _hole_in(self, table: Table, address: int, count: int) -> ExcCodes | None:
        """Illegal data address for a register read that touches a ``strict_map`` or ``unreadable`` hole."""
        unreadable = self._faults.get("unreadable")
        if table.is_bit or not (unreadable or "strict_map" in self._faults):
            return None
        owners = [self._owner.get((table, a)) for a in range(address, address + count)]
        if ("strict_map" in self._faults and None in owners) or (
                unreadable and any(o is not None and o.name == unreadable.signal for o in owners)):
            return ExcCodes.ILLEGAL_ADDRESS
        return None

    def _load(self, table: Table, registers: list[int], address: int, count: int) -> None:
        """Copy what the request reads from the image into pymodbus's store (bit tables whole,
        packed: they are a few registers)."""
        if self._frozen is not None:
            packed = self._frozen[table][1]
        else:
            self._refresh()
            packed = self._tables[table].packed
        if table.is_bit:
            registers[:len(packed)] = packed
        else:
            registers[address:address + count] = packed[address:address + count]

    def _write(self, table: Table, address: int, values: list) -> ExcCodes | None:
        """Pass a write on to the model; refuse it unless it covers writable points only."""
        end = address + len(values)
        points: dict[str, Point] = {}
        for a in range(address, end):
            point = self._owner.get((table, a))
            if point is None or not point.writable:
                return ExcCodes.ILLEGAL_ADDRESS
            points[point.name] = point
        now = self.clock()
        self._refresh()
        words = list(self._tables[table].words)
        words[address:end] = values
        decoded = {name: p.decode(words[p.address:p.address + p.width]) for name, p in points.items()}
        for name, value in decoded.items():
            low, high = points[name].range or (value, value)
            if points[name].is_numeric and not low <= value <= high:  # NaN fails too
                return ExcCodes.ILLEGAL_VALUE
        for name, value in decoded.items():
            self.model.command(name, value, t=now)
        self._sampled_at = None
        return None


async def _no_such_unit(*_request: Any) -> ExcCodes:
    return ExcCodes.GATEWAY_NO_RESPONSE


# -- one TCP endpoint ---------------------------------------------------------------------
class _LoopRequestHandler(ServerRequestHandler):
    """pymodbus's connection handler, with each request run as a task of the loop.

    pymodbus hands every request to its own loop through ``run_coroutine_threadsafe``, as if
    from another thread: a concurrent future, a self-pipe write and one more wake-up of the
    loop per request. The handler always runs on the loop's thread, so a task does the same.
    """

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._tasks: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    def handle_later(self) -> None:
        task = self.loop.create_task(self.handle_request())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _SimTcpServer(ModbusTcpServer):
    """pymodbus's TCP server, each connection served by a :class:`_LoopRequestHandler`."""

    def callback_new_connection(self) -> ServerRequestHandler:
        return _LoopRequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class ModbusSimServer(FaultFollowingServer):
    """One host:port serving one ``SimDevice`` per unit id.

    The port closes (connection refused) while every unit on it is ``offline``, and
    opens again when one comes back. An offline unit on a port that stays open answers
    exception 0x0B (gateway target failed to respond), as a real TCP/RTU gateway does;
    so do unit ids nobody simulates.
    """

    def __init__(self, host: str, port: int, simulators: list[DeviceSimulator]):
        if not simulators:
            raise ValueError(f"{host}:{port}: no devices to serve")
        units = [s.unit_id for s in simulators]
        if len(set(units)) != len(units):
            raise ValueError(f"{host}:{port}: unit ids must differ, got {units}")
        self.host, self.port = host, port
        self.simulators = list(simulators)
        self._server: ModbusTcpServer | None = None
        super().__init__()
        for sim in self.simulators:
            sim.subscribe(self._fault_changed)

    def __repr__(self) -> str:
        return f"ModbusSimServer({self.host}:{self.port}, units {[s.unit_id for s in self.simulators]})"

    @property
    def listening(self) -> bool:
        return self._server is not None

    def _fault_changed(self, _sim: DeviceSimulator, _fault: str, _params: FaultParams | None) -> None:
        self._schedule()

    def _all_offline(self) -> bool:
        return all(s.offline for s in self.simulators)

    async def _open(self) -> None:
        self._server = await self._listen()

    async def _shut(self) -> None:
        server, self._server = self._server, None
        await server.shutdown()  # closes the listening socket and every connection

    async def _listen(self) -> _SimTcpServer:
        devices = [s.sim_device() for s in self.simulators]
        if all(s.unit_id != 0 for s in self.simulators):  # pymodbus' id 0 catches unknown unit ids
            sizes = {t: max(s.sizes[t] for s in self.simulators) for t in SIM_TABLES}
            blocks = tuple([_block(t, sizes[t])] for t in SIM_TABLES)
            devices.append(SimDevice(id=0, simdata=blocks, action=_no_such_unit))
        server = _SimTcpServer(devices, address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError:
            raise OSError(f"cannot listen on {self.host}:{self.port} "
                          "(port in use, or not an address of this host)") from None
        return server
