"""One device's data messages on MQTT: the payload the site chose (``mqtt.payload``), report by exception
(``mqtt.report_by_exception``) and, for the compact payload, the retained schema message; see docs/mqtt.md.

Only MQTT sees this: the historian is given every poll whatever is chosen here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import isnan

from gateway.config import MqttConfig, ReportByException
from gateway.contract import CompactPayloads, DataPayloads, SchemaMessage, SchemaVersion, Topics
from gateway.core.device import DeviceConfig
from gateway.core.model import Quality, Reading, Schema

NUMBERS = (int, float)  # bool is a type of its own here: any change of it is sent
JITTER_MARGIN = 1.5  # poll intervals ahead a sample must be re-sent so the next poll cannot come too late


def moved(value, last, deadband: float) -> bool:
    """Whether ``value`` differs from the last value sent by more than ``deadband`` (numbers) or at all (others).

    NaN after NaN is no change; a change of type (number to text, 1 to true) always is."""
    if value == last and type(value) is type(last):
        return False
    if type(value) in NUMBERS and type(last) in NUMBERS:
        delta = abs(value - last)
        return delta > deadband or (isnan(delta) and not (isnan(value) and isnan(last)))
    return True


@dataclass
class _Sent:
    """What was last sent of each signal of one schema, and when (the readings' clock, seconds)."""

    deadbands: list[float]
    values: list = field(default_factory=list)
    qualities: list[Quality] = field(default_factory=list)
    at: list[float] = field(default_factory=list)
    previous: float = 0.0  # the last reading's time, to know the poll interval


class ChangeFilter:
    """Report by exception for one device: which samples of a reading to send (docs/mqtt.md)."""

    def __init__(self, cfg: ReportByException, device: str):
        self.cfg, self.device = cfg, device
        self._sent: dict[Schema, _Sent] = {}

    def _deadband(self, signal: str) -> float:
        found = self.cfg.deadbands.get(f"{self.device}/{signal}")
        return self.cfg.deadbands.get(signal, self.cfg.deadband) if found is None else found

    def select(self, reading: Reading) -> list[int] | None:
        """The indexes of the samples to send, or None for all of them (polls only: a derived reading or a
        camera event, ``poll_ms`` 0, is sent whole)."""
        if reading.derived or not reading.poll_ms:
            return None
        now = reading.ts.timestamp()
        qualities = reading.qualities or [Quality.GOOD] * len(reading.values)
        sent = self._sent.get(reading.schema)
        if sent is None:
            sent = self._sent[reading.schema] = _Sent([self._deadband(s) for s in reading.schema.signals],
                                                      list(reading.values), list(qualities), [now] * len(qualities))
            sent.previous = now
            return None
        due = now + JITTER_MARGIN * max(0.0, now - sent.previous) - self.cfg.max_silence  # sent before: re-send now
        sent.previous = now
        chosen = [i for i, (value, last, quality, last_quality, at, deadband) in enumerate(zip(
                      reading.values, sent.values, qualities, sent.qualities, sent.at, sent.deadbands))
                  if at <= due or quality is not last_quality or moved(value, last, deadband)]
        for i in chosen:
            sent.values[i], sent.qualities[i], sent.at[i] = reading.values[i], qualities[i], now
        return None if len(chosen) == len(qualities) else chosen


class DevicePublisher:
    """Builds one device's data messages, and its retained schema message when the compact payload is chosen."""

    MAX_VERSIONS = 16  # live schema versions kept in the retained message (a camera's event list may grow)

    def __init__(self, cfg: MqttConfig, topics: Topics, site: str, device: DeviceConfig):
        self.data_topic = topics.data(device.area, device.id)
        self.schema_topic = topics.schema(device.area, device.id)
        self._full = DataPayloads(site, device.area, device.zone, device.equipment_kind)
        self._compact = CompactPayloads() if cfg.payload == "compact" else None
        rbe = cfg.report_by_exception
        self._filter = ChangeFilter(rbe, device.id) if rbe.enabled else None
        self._schema = SchemaMessage(site=site, area=device.area, zone=device.zone, device=device.id,
                                     kind=device.equipment_kind, schemas={})

    def build(self, reading: Reading) -> tuple[bytes | None, bytes | None]:
        """(the new schema message if this reading brings a version, the data message or None if nothing
        changed)."""
        indexes = None if self._filter is None else self._filter.select(reading)
        if indexes is not None and not indexes:
            return None, None
        if self._compact is None:
            return None, self._full.build(reading) if indexes is None else self._full.build_only(reading, indexes)
        return self._schema_update(reading), self._compact.build(reading, indexes)

    def _schema_update(self, reading: Reading) -> bytes | None:
        version = self._compact.version(reading.schema)
        schemas = self._schema.schemas
        if version in schemas:
            return None
        if len(schemas) >= self.MAX_VERSIONS:
            del schemas[next(iter(schemas))]
        schemas[version] = SchemaVersion(signals=list(reading.schema.signals), units=list(reading.schema.units),
                                         derived=reading.derived)
        return self.schema_payload()

    def schema_payload(self) -> bytes:
        return self._schema.model_dump_json(exclude_defaults=True).encode()
