"""Fault bookkeeping shared by every simulated device (Modbus machines, OPC UA faces, cameras)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class FaultParams(BaseModel):
    """Parameters of an injected fault; subclasses document their fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(FaultParams):
    pass


class FaultError(ValueError):
    """A fault the device does not know, or parameters it cannot take."""


def describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors())


class FaultHolder:
    """Which faults a device takes (``fault_kinds``), which are active, and their checked parameters.

    Subclasses set ``device_id`` and ``_faults`` and may refine ``_check_targets`` (e.g. that a
    fault names a signal the device has).
    """

    device_id: str
    _faults: dict[str, FaultParams]

    @property
    def fault_kinds(self) -> dict[str, type[FaultParams]]:
        raise NotImplementedError

    @property
    def faults(self) -> dict[str, dict[str, Any]]:
        """Active faults and their parameters."""
        return {name: params.model_dump(mode="json") for name, params in self._faults.items()}

    @property
    def offline(self) -> bool:
        return "offline" in self._faults

    def check_fault(self, name: str, params: dict[str, Any] | None = None) -> FaultParams:
        """Validated parameters of a fault, or :class:`FaultError` saying what is wrong."""
        self.check_known(name)
        try:
            checked = self.fault_kinds[name](**(params or {}))
        except ValidationError as exc:
            raise FaultError(f"{self.device_id}: {name}: {describe(exc)}") from None
        return self._check_targets(name, checked)

    def check_known(self, name: str) -> None:
        if name not in self.fault_kinds:
            raise FaultError(f"{self.device_id}: unknown fault {name!r} (known: {', '.join(self.fault_kinds)})")

    def _check_targets(self, name: str, params: FaultParams) -> FaultParams:
        return params
