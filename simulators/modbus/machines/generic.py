"""The model of profiles without a machine of their own."""
from __future__ import annotations

import math
from typing import Any

from adapters.modbus.codec import DataType

from .base import MachineModel


class GenericModel(MachineModel):
    """For profiles without a machine model of their own (a site's custom register map):
    every numeric signal a slow sine wave well inside its range, with its own seeded
    phase and period; bits false; strings the profile's kind."""

    kind = "generic"

    def _init_state(self) -> None:
        u = self.noise.uniform
        self._fixed: dict[str, Any] = {}
        self._waves: list[tuple[str, float, float, float, float]] = []
        for p in self.profile.points:
            if not p.is_numeric:
                self._fixed[p.name] = False if p.type is DataType.BOOL else self.profile.kind[:p.length]
            else:
                low, high = p.range or (0.0, 1000.0)
                self._waves.append((p.name, (low + high) / 2, (high - low) * 0.4,
                                    2 * math.pi * u(p.name), 2 * math.pi / (20 + 100 * u(p.name, 1))))

    def _step(self, t: float, dt: float) -> None:
        pass  # stateless: a function of t

    def _outputs(self, t: float) -> dict[str, Any]:
        sin = math.sin
        out = {name: mid + amp * sin(omega * t + phase) for name, mid, amp, phase, omega in self._waves}
        out.update(self._fixed)
        return out
