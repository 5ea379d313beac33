"""Fault bookkeeping shared by every simulated device (Modbus machines, OPC UA faces, cameras)."""
from __future__ import annotations

from collections.abc import Callable
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


Listener = Callable[[Any, str, FaultParams | None], None]  # (device, fault, params or None: cleared)


class FaultHolder:
    """Which faults a device takes (``fault_kinds``), which are active, their checked parameters,
    and who hears of a change.

    Subclasses set ``device_id``, ``_faults`` and ``_listeners`` (a list), may refine
    ``_check_targets`` (e.g. that a fault names a signal the device has), and undo what a fault
    did in ``_fault_cleared``. Their ``set_fault`` ends with ``_notify``.
    """

    device_id: str
    _faults: dict[str, FaultParams]
    _listeners: list[Listener]
    _isolated = False  # cut off by the simulated network (simulators/snmp/network.py)

    @property
    def fault_kinds(self) -> dict[str, type[FaultParams]]:
        raise NotImplementedError

    @property
    def faults(self) -> dict[str, dict[str, Any]]:
        """Active faults and their parameters."""
        return {name: params.model_dump(mode="json") for name, params in self._faults.items()}

    @property
    def offline(self) -> bool:
        return "offline" in self._faults or self._isolated

    @property
    def isolated(self) -> bool:
        return self._isolated

    def set_isolated(self, isolated: bool) -> None:
        """Cut off from the gateway by the simulated ring (or reconnected): as if ``offline``, whatever
        the device's own faults, which it keeps. Listeners hear of it as an ``offline`` change."""
        if isolated == self._isolated:
            return
        was_offline = self.offline
        self._isolated = isolated
        if self.offline != was_offline:
            self._notify("offline", NoParams() if isolated else None)

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

    def clear_fault(self, name: str | None = None) -> None:
        """End one fault, or every fault. Clearing an inactive fault does nothing."""
        if name is not None:
            self.check_known(name)
        for gone in [name] if name else list(self._faults):
            if self._faults.pop(gone, None) is not None:
                self._fault_cleared(gone)
                self._notify(gone, None)

    def _fault_cleared(self, name: str) -> None:
        """Undo what fault ``name`` did (it has left ``faults``); listeners hear of it next."""

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(self, fault, params)`` after every fault change (params None: cleared)."""
        self._listeners.append(listener)

    def _notify(self, fault: str, params: FaultParams | None) -> None:
        for listener in self._listeners:
            listener(self, fault, params)
