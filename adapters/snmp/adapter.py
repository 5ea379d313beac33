"""SNMP adapter: polls one ring switch or UPS by its profile (v2c or v3).

A poll is one GET (the profile's scalars and sysUpTime), GETBULK walks of the per-port columns
over the configured ifIndexes, and a walk of the LLDP remote table when the profile has
neighbours. The answers fill the columns of one :class:`Reading`; counters become rates
(``plan.Rates``). No answer after the retries: the device is offline, every sample comm-fail.
"""
from __future__ import annotations

import asyncio
import logging
import time

from adapters.base import PollColumns, PolledAdapter, next_poll_due, sleep_until
from gateway.core.backoff import Backoff
from gateway.core.model import Quality, Reading, Value, WriteResult, utcnow

from .client import SnmpClient, SnmpError, credentials, is_missing
from .config import SnmpDeviceConfig
from .plan import Column, PollPlan, Rates, fill
from .profile import load_profile

log = logging.getLogger(__name__)


def client_for(config: SnmpDeviceConfig) -> SnmpClient:
    """An :class:`SnmpClient` with the device's address, credentials, timeout and retries."""
    if config.version == "3":
        v3 = config.v3
        auth = credentials("3", user=v3.user, auth_protocol=v3.auth_protocol,
                           auth_key=v3.auth_key.get_secret_value(), priv_protocol=v3.priv_protocol,
                           priv_key=v3.priv_key.get_secret_value() if v3.priv_key else None)
    else:
        auth = credentials("2c", community=config.community.get_secret_value())
    return SnmpClient(config.host, config.port, auth, timeout=config.timeout, retries=config.retries)


class SnmpAdapter(PolledAdapter):
    kind = "snmp"
    config: SnmpDeviceConfig

    def __init__(self, config: SnmpDeviceConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.plan = PollPlan(load_profile(config.profile), config.port_indexes)
        self.schema = self.plan.schema
        self.client = client_for(config)
        self.rates = Rates()
        self.missing_ports: set[int] = set()  # configured ifIndexes the device does not have
        self._neighbor_rows = 4  # rows per GETBULK of the LLDP walk: learnt from the last one

    # -- polling -------------------------------------------------------------------------
    async def _run(self) -> None:
        interval = self.config.poll_interval
        backoff = Backoff(min(1.0, interval), max(interval, 10.0))
        await asyncio.sleep(self.first_poll_delay())
        await self.client.open()
        next_due = time.monotonic()
        while not self.stopping:
            reading = await self.poll_once(deadline=next_due + interval)
            if reading is None:  # no answer: try again later, less often while it lasts
                await asyncio.sleep(backoff.next())
                next_due = time.monotonic()
                continue
            backoff.reset()
            next_due = next_poll_due(next_due, interval)
            await sleep_until(next_due, interval)  # one timer for all devices (adapters/base.py PollTicker)

    async def poll_once(self, deadline: float | None = None) -> Reading | None:
        """Ask the device once and emit one reading; ``None`` if it did not answer."""
        started, started_at = time.monotonic(), utcnow()
        poll = PollColumns(len(self.schema))
        try:
            if self.client.engine is None:
                await self.client.open()
            await self._read_scalars(poll)
            if self.plan.port_columns:
                await self._read_ports(poll)
            if self.plan.neighbor_columns:
                await self._read_neighbors(poll)
        except SnmpError as exc:
            self._poll_failed(str(exc), timeout=True)
            self._emit(self._comm_fail_reading(started_at, started))
            return None
        if deadline is not None and time.monotonic() > deadline:  # late: what is good is stale
            poll.mark_stale()
        reading = poll.reading(self.id, started_at, (time.monotonic() - started) * 1000, self.schema)
        self._poll_succeeded(reading.poll_ms)
        self._emit(reading)
        return reading

    async def _read_scalars(self, poll: PollColumns) -> None:
        plan = self.plan
        answers = [value for _, value in await self.client.get(plan.get_oids)]
        poll.stamps.append((utcnow(), plan.scalar_slots))
        uptime = answers[plan.uptime_at]
        if self.rates.start_poll(None if is_missing(uptime) else int(uptime), time.monotonic()):
            log.warning("%s: restarted (sysUpTime went back): rates start again next poll", self.id)
        for at, slot, _, convert in plan.scalars:
            fill(poll.values, poll.marks, slot, answers[at], convert)

    async def _read_ports(self, poll: PollColumns) -> None:
        plan = self.plan
        after, last = plan.port_range
        table = await self.client.walk_columns([c.oid for c in plan.port_columns], after, last,
                                               rows=last[0] - after[0])
        poll.stamps.append((utcnow(), plan.port_slots))
        seen: set[int] = set()
        for column in plan.port_columns:
            rows = table[column.oid]
            seen.update(row[0] for row in rows if len(row) == 1)
            self._fill_column(poll, column, rows)
        self._note_missing_ports(set(plan.ports) - seen)

    def _fill_column(self, poll: PollColumns, column: Column, rows: dict) -> None:
        signal, values, marks = column.signal, poll.values, poll.marks
        modulus = signal.type.counter_modulus if signal.rate else None
        for port, slot in column.slots.items():
            raw = rows.get((port,))
            if modulus is None or raw is None or is_missing(raw):
                fill(values, marks, slot, raw, column.convert)
                continue
            values[slot] = value = self.rates.rate(slot, int(raw), modulus, signal.scale)
            if value is None:
                marks.append((slot, Quality.BAD))

    async def _read_neighbors(self, poll: PollColumns) -> None:
        plan = self.plan
        table = await self.client.walk_columns([c.oid for c in plan.neighbor_columns], rows=self._neighbor_rows)
        poll.stamps.append((utcnow(), plan.neighbor_slots))
        # Ask for as many rows as the table had, and one more to see its end: a switch hears few neighbours.
        self._neighbor_rows = max(len(rows) for rows in table.values()) + 1
        for column in plan.neighbor_columns:
            by_port: dict[int, object] = {}
            for row, value in table[column.oid].items():  # row: timeMark.localPortNum.index
                if len(row) >= 3:
                    by_port.setdefault(row[1], value)
            for port, slot in column.slots.items():
                if port in self.missing_ports:
                    poll.bad((slot,))
                elif port in by_port:
                    fill(poll.values, poll.marks, slot, by_port[port], column.convert)
                else:
                    poll.values[slot] = ""  # no neighbour heard on this port

    def _note_missing_ports(self, missing: set[int]) -> None:
        if missing != self.missing_ports:
            if missing - self.missing_ports:
                log.warning("%s: port(s) %s not on the device (no such ifIndex): their signals are bad",
                            self.id, ", ".join(map(str, sorted(missing - self.missing_ports))))
            self.missing_ports = missing

    def _poll_succeeded(self, poll_ms: float) -> None:
        if self.state.consecutive_errors and self.state.polls:  # answering again after an outage
            self.state.reconnects += 1
        super()._poll_succeeded(poll_ms)

    # -- writes --------------------------------------------------------------------------
    async def write(self, signal: str, value: Value) -> WriteResult:
        return WriteResult(device=self.id, signal=signal, ok=False, value=value,
                           error="SNMP devices are read-only in minegw (no SET)")

    async def _close(self) -> None:
        self.client.close()
