"""Roof-pressure metrics of a longwall face (矿压监测), from the leg pressures of its supports.

Each leg follows the support cycle: lowered (pressure near zero) → set (the pump raises
it to the setting pressure) → loaded (the roof presses it up, the yield valve caps it)
→ lowered again to advance. Per leg and cycle this gives:

- ``setting_load`` (初撑力, MPa): the pressure once setting has finished: the sample the
  fast pump rise ended on (the next one rises less than ``setting_rise_mpa``);
- ``end_resistance`` (末阻力, MPa): the pressure where the fall that ended in lowering the
  support began: the last loaded pressure;
- ``load_rise_rate`` (MPa/h): (end resistance − setting load) / loaded time; above about
  2 MPa/h in the fast phase it signals periodic weighting;
- ``yield_openings``: the yield valve's saw-tooth: a fall of ≥ ``yield_drop_mpa`` from at or
  above ``yield_open_mpa`` that ends by rising again.

A cycle's figures are emitted when it ends. Every reading also updates the face summary
``supports_below_setting``: supports whose latest setting load (either leg) is under the
required setting pressure (初撑力不足).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from gateway.core.model import Quality, Reading, Schema

LEG_ROLES = {"leg_front": "front", "leg_rear": "rear"}
LOWERED, SETTING, LOADED = "lowered", "setting", "loaded"


class RoofPressureConfig(BaseModel):
    """Thresholds of the metrics (site file: ``roof_pressure:``); defaults fit a 24–26 MPa
    setting pressure and a 38–40 MPa yield valve."""

    model_config = ConfigDict(extra="forbid")

    required_setting_mpa: float = Field(24.0, gt=0, description="setting load below this: under-set support")
    lowered_mpa: float = Field(5.0, gt=0, description="below this a leg is lowered (advancing)")
    setting_rise_mpa: float = Field(1.0, gt=0, description="per-sample rise that still counts as pump setting")
    yield_open_mpa: float = Field(35.0, gt=0, description="falls from at or above this can be yield-valve openings")
    yield_drop_mpa: float = Field(1.0, gt=0, description="the fall that counts as one opening")


@dataclass
class CycleResult:
    setting_load: float
    end_resistance: float
    load_rise_rate: float  # MPa/h
    yield_openings: int
    ended: datetime


@dataclass
class LegCycle:
    """One leg's position in its support cycle, fed one pressure sample at a time."""

    cfg: RoofPressureConfig
    phase: str = LOWERED
    last: tuple[float, datetime] | None = None  # the previous sample
    setting: tuple[float, datetime] | None = None  # setting load and when it was reached
    decline_from: tuple[float, datetime] | None = None  # where the current fall began
    yields: int = 0
    known: bool = False  # seen lowered once: a cycle joined half-way is not reported

    def feed(self, pressure: float, ts: datetime) -> CycleResult | None:
        previous, self.last = self.last, (pressure, ts)
        if pressure < self.cfg.lowered_mpa:
            return self._lowered(previous, ts)
        if self.phase == LOWERED:
            self.phase = SETTING
        elif self.phase == SETTING:
            if previous[0] >= self.cfg.lowered_mpa and pressure - previous[0] < self.cfg.setting_rise_mpa:
                self.phase, self.setting, self.yields = LOADED, previous, 0
                self._loaded(pressure, previous)
        else:
            self._loaded(pressure, previous)
        return None

    def _loaded(self, pressure: float, previous: tuple[float, datetime]) -> None:
        # Where the current fall began: if it ends with the support lowered, that was the end
        # resistance; if it ends by rising again after a drop from the valve's pressure, the
        # yield valve opened once (a fall that ends in lowering is never a yield).
        if pressure < previous[0]:
            self.decline_from = self.decline_from or previous
            return
        top = self.decline_from
        if top and top[0] >= self.cfg.yield_open_mpa and top[0] - previous[0] >= self.cfg.yield_drop_mpa:
            self.yields += 1
        self.decline_from = None

    def _lowered(self, previous: tuple[float, datetime] | None, ts: datetime) -> CycleResult | None:
        result = None
        if self.phase == LOADED and self.known:
            end, end_ts = self.decline_from or previous
            setting, set_ts = self.setting
            hours = max((end_ts - set_ts).total_seconds(), 1.0) / 3600
            result = CycleResult(setting, end, (end - setting) / hours, self.yields, ts)
        self.phase, self.known, self.decline_from = LOWERED, True, None
        return result


class RoofPressureMetrics:
    """The processor for one roof-pressure device: readings in, derived readings out."""

    def __init__(self, device_id: str, legs: dict[str, tuple[int, str]], cfg: RoofPressureConfig):
        self.device_id = device_id
        self.legs = legs  # signal name -> (support number, "front"|"rear")
        self.cfg = cfg
        self.cycles = {name: LegCycle(cfg) for name in legs}
        self.latest_setting: dict[int, float] = {}  # support -> lowest setting load of its legs' latest cycles
        self._leg_setting: dict[tuple[int, str], float] = {}
        self._schema: Schema | None = None  # the schema _legs was made for
        self._legs: list[tuple[int, str, tuple[int, str], LegCycle]] = []

    @classmethod
    def for_nodemap(cls, device_id: str, signals, cfg: RoofPressureConfig) -> "RoofPressureMetrics":
        legs = {s.name: (s.index, LEG_ROLES[s.role]) for s in signals if s.role in LEG_ROLES}
        return cls(device_id, legs, cfg)

    def process(self, reading: Reading) -> Reading | None:
        signals, units, values, ended = [], [], [], []
        qualities, times = reading.qualities, reading.times
        for i, name, leg, cycle in self._legs_in(reading.schema):
            value = reading.values[i]
            if value is None or (qualities is not None and qualities[i] not in (Quality.GOOD, Quality.OUT_OF_RANGE)):
                continue
            result = cycle.feed(float(value), reading.ts if times is None else times[i])
            if result:
                self._cycle_values(*leg, result, signals, units, values, ended)
        if not signals and not self._leg_setting:
            return None
        signals.append("supports_below_setting")
        units.append("")
        values.append(self.below_setting())
        ended.append(reading.ts)
        return Reading(device=self.device_id, ts=reading.ts, poll_ms=0.0, schema=Schema(signals, units),
                       values=values, times=ended if len(ended) > 1 else None, derived=True)

    def _legs_in(self, schema: Schema) -> list[tuple[int, str, tuple[int, str], LegCycle]]:
        """(index, signal, leg, its cycle) of the legs a schema carries, in the schema's order: once per schema."""
        if self._schema is not schema:
            self._schema = schema
            self._legs = [(i, name, self.legs[name], self.cycles[name])
                          for i, name in enumerate(schema.signals) if name in self.legs]
        return self._legs

    def below_setting(self) -> int:
        return sum(1 for setting in self.latest_setting.values() if setting < self.cfg.required_setting_mpa)

    def _cycle_values(self, support: int, leg: str, r: CycleResult, signals: list, units: list, values: list,
                      ended: list) -> None:
        self._leg_setting[support, leg] = r.setting_load
        self.latest_setting[support] = min(v for (s, _), v in self._leg_setting.items() if s == support)
        prefix = f"support_{support:03d}_{leg}_leg_"
        signals += (prefix + "setting_load", prefix + "end_resistance", prefix + "load_rise_rate",
                    prefix + "yield_openings")
        units += ("MPa", "MPa", "MPa/h", "")
        values += (round(r.setting_load, 3), round(r.end_resistance, 3), round(r.load_rise_rate, 3), r.yield_openings)
        ended += (r.ended,) * 4
