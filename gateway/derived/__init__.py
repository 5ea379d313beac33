"""Derived signals: computed in the gateway from what adapters read, published and
historised like any signal (they travel as Readings of the device they come from)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from gateway.model import Reading

if TYPE_CHECKING:
    from gateway.config import SiteConfig


class Processor(Protocol):
    def process(self, reading: Reading) -> Reading | None: ...


def processor_for(device, site: "SiteConfig") -> Processor | None:
    """The processor a device's readings go through, if its kind has derived signals."""
    if device.equipment_kind == "roof_pressure" and getattr(device, "nodemap", None):
        from adapters.opcua.nodemap import load_nodemap
        from gateway.derived.roof_pressure import RoofPressureMetrics

        signals = load_nodemap(device.nodemap, device.supports).expanded
        return RoofPressureMetrics.for_nodemap(device.id, signals, site.roof_pressure)
    return None
