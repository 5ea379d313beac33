"""A simulated UPS (UPS-MIB, RFC 1628) feeding the ring's switches.

Faults:

- ``on_battery`` (``runtime_min`` default 45, ``time_scale`` default 1): mains lost. Output source
  battery, input voltage 0, minutes remaining and charge falling (``time_scale`` times faster than
  the clock), battery status low under 10 min, depleted at 0. Cleared: mains back, the battery
  recharges (2 %/min, scaled the same).
- ``unreachable`` (or ``offline``): the agent stops answering.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from simulators.faults import FaultHolder, FaultParams, Listener, NoParams
from simulators.physics import Noise

from . import mib
from .mib import Getter, Oid

LOW_BATTERY_MIN = 10.0
RECHARGE_PERCENT_PER_MIN = 2.0


class OnBatteryParams(FaultParams):
    runtime_min: float = Field(45.0, gt=0, le=1440, description="minutes the full battery lasts at this load")
    time_scale: float = Field(1.0, gt=0, le=3600, description="battery time runs this many times faster")


UPS_FAULTS: dict[str, type[FaultParams]] = {"on_battery": OnBatteryParams, "unreachable": NoParams, "offline": NoParams}


class UpsSimulator(FaultHolder):
    """One UPS: mains normal with a seeded load, until ``on_battery``."""

    def __init__(self, device_id: str, seed: int, clock: Callable[[], float], location: str = ""):
        self.device_id, self.location, self.clock = device_id, location, clock
        self.noise = Noise(seed)
        self.load_percent = 25 + 30 * self.noise.uniform("load")
        self.layout = 0
        self._faults: dict[str, FaultParams] = {}
        self._listeners: list[Listener] = []
        self._battery: OnBatteryParams | None = None  # while on battery
        self._runtime_min, self._scale = 45.0, 1.0
        self._charge_at, self._charge_since = 100.0, 0.0  # the charge at a time; it moves at _rate() since

    def __repr__(self) -> str:
        return f"UpsSimulator({self.device_id!r})"

    @property
    def fault_kinds(self) -> dict[str, type[FaultParams]]:
        return UPS_FAULTS

    @property
    def offline(self) -> bool:
        return super().offline or "unreachable" in self._faults

    def set_fault(self, name: str, **params: Any) -> FaultParams:
        """Inject a fault now (replacing the same fault's earlier parameters)."""
        checked = self.check_fault(name, params)
        if isinstance(checked, OnBatteryParams):
            self._rebase()
            self._battery, self._runtime_min, self._scale = checked, checked.runtime_min, checked.time_scale
        self._faults[name] = checked
        self._notify(name, checked)
        return checked

    def _fault_cleared(self, name: str) -> None:
        if name == "on_battery":
            self._rebase()
            self._battery = None

    def _rebase(self) -> None:
        self._charge_at, self._charge_since = self.charge_percent(), self.clock()

    # -- live values ------------------------------------------------------------------------
    @property
    def on_battery(self) -> bool:
        return self._battery is not None

    def charge_percent(self) -> float:
        rate = -100.0 / self._battery.runtime_min if self._battery else RECHARGE_PERCENT_PER_MIN  # % per minute
        minutes = (self.clock() - self._charge_since) * self._scale / 60
        return min(100.0, max(0.0, self._charge_at + rate * minutes))

    def minutes_remaining(self) -> float:
        return self._runtime_min * self.charge_percent() / 100

    def seconds_on_battery(self) -> float:
        return (self.clock() - self._charge_since) * self._scale if self.on_battery else 0.0

    def battery_status(self) -> int:
        minutes = self.minutes_remaining()
        if minutes <= 0:
            return mib.UPS_BATTERY_DEPLETED
        return mib.UPS_BATTERY_LOW if minutes < LOW_BATTERY_MIN else mib.UPS_BATTERY_NORMAL

    def input_voltage(self) -> float:
        return 0.0 if self.on_battery else 220 + 4 * self.noise.wave("mains", self.clock(), 20.0)

    def load(self) -> float:
        return self.load_percent + 3 * self.noise.wave("load", self.clock(), 15.0)

    def mib(self) -> dict[Oid, Getter]:
        return {
            mib.SYS_DESCR: lambda: mib.OctetString("minegw simulated UPS"),
            mib.SYS_UPTIME: lambda: mib.timeticks(self.clock()),
            mib.SYS_NAME: lambda: mib.OctetString(self.device_id),
            mib.SYS_LOCATION: lambda: mib.OctetString(self.location),
            mib.UPS_IDENT_MANUFACTURER: lambda: mib.OctetString("minegw"),
            mib.UPS_IDENT_MODEL: lambda: mib.OctetString("SIM-UPS 3kVA"),
            mib.UPS_IDENT_NAME: lambda: mib.OctetString(self.device_id),
            mib.UPS_BATTERY_STATUS: lambda: mib.Integer(self.battery_status()),
            mib.UPS_SECONDS_ON_BATTERY: lambda: mib.Integer(int(self.seconds_on_battery())),
            mib.UPS_MINUTES_REMAINING: lambda: mib.Integer(round(self.minutes_remaining())),
            mib.UPS_CHARGE_REMAINING: lambda: mib.Integer(round(self.charge_percent())),
            mib.UPS_BATTERY_VOLTAGE: lambda: mib.Integer(round(480 + 60 * self.charge_percent() / 100)),
            mib.UPS_INPUT_NUM_LINES: lambda: mib.Integer(1),
            mib.UPS_INPUT_FREQUENCY_1: lambda: mib.Integer(0 if self.on_battery else 500),
            mib.UPS_INPUT_VOLTAGE_1: lambda: mib.Integer(round(self.input_voltage())),
            mib.UPS_OUTPUT_SOURCE: lambda: mib.Integer(mib.UPS_SOURCE_BATTERY if self.on_battery else mib.UPS_SOURCE_NORMAL),
            mib.UPS_OUTPUT_FREQUENCY: lambda: mib.Integer(500),
            mib.UPS_OUTPUT_NUM_LINES: lambda: mib.Integer(1),
            mib.UPS_OUTPUT_VOLTAGE_1: lambda: mib.Integer(220),
            mib.UPS_OUTPUT_LOAD_1: lambda: mib.Integer(round(self.load())),
        }
