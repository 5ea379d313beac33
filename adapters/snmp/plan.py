"""What one SNMP poll asks and how the answers fill a reading's columns.

Built once per device from its profile and ports: the :class:`Schema`, the OIDs of the one GET,
the table columns to walk, each signal's slot and a converter per signal; and :class:`Rates`,
which turns counters into per-second rates across polls (wrap and device restart handled).
"""
from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.model import Quality, Schema, Value

from .client import Oid, is_missing
from .profile import Profile, Signal, SnmpType

SYS_UPTIME: Oid = (1, 3, 6, 1, 2, 1, 1, 3, 0)  # the device's clock: rates and restarts
Convert = Callable[[object], Value]  # raises ValueError/TypeError for a value it cannot take
_PRINTABLE = set(string.printable.encode()) - set(b"\x0b\x0c")


def text_of(value) -> str:
    """An OCTET STRING as text; bytes that are not printable ASCII (a MAC address) as hex ``aa:bb:..``."""
    raw = value.asOctets()
    if all(b in _PRINTABLE for b in raw):
        return raw.decode("ascii").rstrip("\x00")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return ":".join(f"{b:02x}" for b in raw)


def lowest_bit(value) -> int | None:
    """The lowest-numbered bit set in a BITS value (bit 0 = 0x80 of the first octet); None if none.
    An INTEGER (a non-conforming agent) counts as the number of its one set bit."""
    if not hasattr(value, "asOctets"):
        return int(value)
    for i, octet in enumerate(value.asOctets()):
        if octet:
            return i * 8 + (8 - octet.bit_length())
    return None


def converter(signal: Signal) -> Convert:
    """The function from a raw SNMP value to this signal's engineering value (rates excepted)."""
    if signal.true_when is not None:
        true = frozenset(signal.true_when)
        return lambda v: int(v) in true
    if signal.enum is not None:
        names = signal.enum
        return lambda v: names[int(v)]  # KeyError (a value the MIB does not name): bad
    if signal.bits is not None:
        bits, none = signal.bits, signal.no_bits
        def named_bit(v):
            bit = lowest_bit(v)
            if bit is None and none is not None:
                return none
            return bits[bit]
        return named_bit
    if signal.type is SnmpType.TEXT:
        return text_of
    scale = signal.scale
    if scale == 1:
        return int
    return lambda v: int(v) * scale


@dataclass(frozen=True)
class Column:
    """A table column read for several rows: its OID, the signal, the slot of each port's value."""

    oid: Oid
    signal: Signal
    slots: dict[int, int]  # port -> slot
    convert: Convert


class PollPlan:
    """The signals of one device and where each comes from."""

    def __init__(self, profile: Profile, ports: list[int]):
        self.profile, self.ports = profile, sorted(set(ports))
        names = profile.signal_names(self.ports)
        per_port = profile.ports + profile.neighbors
        units = [s.unit for s in profile.scalars] + [s.unit for _ in self.ports for s in per_port]
        self.schema = Schema(names, units)
        index = self.schema.index
        # One GET: every scalar OID once (on_battery and output_source share one), sysUpTime always.
        self.get_oids: list[Oid] = list(dict.fromkeys([s.oid for s in profile.scalars] + [SYS_UPTIME]))
        self.uptime_at = self.get_oids.index(SYS_UPTIME)
        self.scalars: list[tuple[int, int, Signal, Convert]] = [  # (answer position, slot, signal, convert)
            (self.get_oids.index(s.oid), index[s.name], s, converter(s)) for s in profile.scalars]
        self.port_columns = [self._column(s) for s in profile.ports]
        self.neighbor_columns = [self._column(s) for s in profile.neighbors]
        self.scalar_slots = tuple(slot for _, slot, _, _ in self.scalars)
        self.port_slots = tuple(slot for c in self.port_columns for slot in c.slots.values())
        self.neighbor_slots = tuple(slot for c in self.neighbor_columns for slot in c.slots.values())

    def _column(self, signal: Signal) -> Column:
        slots = {n: self.schema.index[signal.name.format(n=n)] for n in self.ports}
        return Column(signal.oid, signal, slots, converter(signal))

    @property
    def port_range(self) -> tuple[Oid, Oid]:
        """The row indexes to walk the port columns over: after the one before the first port, to the last."""
        return (self.ports[0] - 1,), (self.ports[-1],)


class Rates:
    """Counter values of the last poll, to turn the next ones into rates.

    The time between two polls is the device's (sysUpTime) when it has one, else the gateway's:
    the agent's clock is not stretched by a slow network. sysUpTime going back means the device
    restarted: its counters started again from 0, so no rate this poll, fresh baselines.
    A Counter32 lower than before wrapped at 2^32; a Counter64 never wraps in practice, so one
    lower than before was reset (cleared by hand): no rate for that one this poll.
    """

    def __init__(self):
        self.previous: dict[int, int] = {}  # slot -> raw counter
        self.clock: float | None = None  # seconds, on the clock below
        self.uptime: int | None = None  # hundredths of a second
        self.interval: float | None = None  # seconds since the last poll

    def start_poll(self, uptime: int | None, now: float) -> bool:
        """Note this poll's time; whether the device restarted since the last one."""
        restarted = uptime is not None and self.uptime is not None and uptime < self.uptime
        if restarted:
            self.previous.clear()
        if uptime is not None and self.uptime is not None and not restarted and uptime > self.uptime:
            self.interval = (uptime - self.uptime) / 100
        elif self.clock is not None and not restarted:
            self.interval = now - self.clock
        else:
            self.interval = None
        self.uptime, self.clock = uptime, now
        return restarted

    def rate(self, slot: int, raw: int, modulus: int, scale: float) -> Value:
        """Per second since the last poll, times ``scale``; None when there is no baseline."""
        before = self.previous.get(slot)
        self.previous[slot] = raw
        if before is None or not self.interval:
            return None
        delta = raw - before
        if delta < 0:
            if modulus != 2**32:
                return None
            delta += modulus
        return delta / self.interval * scale


def fill(values: list[Value], marks: list[tuple[int, Quality]], slot: int, raw, convert: Convert) -> None:
    """Convert one raw value into its slot; a missing or unconvertible one marks the slot bad."""
    if raw is None or is_missing(raw):
        values[slot] = None
        marks.append((slot, Quality.BAD))
        return
    try:
        values[slot] = convert(raw)
    except (ValueError, TypeError, KeyError, AttributeError):
        values[slot] = None
        marks.append((slot, Quality.BAD))
