"""Derived signals: computed in the gateway from what adapters read, published and
historised like any signal (they travel as Readings of the device they come from, marked
``derived``: not polls).

- roof-pressure devices (OPC UA node map): support-cycle metrics (:mod:`gateway.derived.roof_pressure`);
- Modbus machines whose profile has a ``running`` bit: the normalised status (:mod:`gateway.derived.status`).

Their settings (:class:`gateway.derived.roof_pressure.RoofPressureConfig`) live here and the site file
(gateway/config.py) takes them from here: nothing in this package imports the site configuration.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from gateway.core.model import Reading

if TYPE_CHECKING:
    from gateway.derived.roof_pressure import RoofPressureConfig

log = logging.getLogger(__name__)


class Processor(Protocol):
    def process(self, reading: Reading) -> Reading | None: ...


def processor_for(device, roof_pressure: RoofPressureConfig) -> Processor | None:
    """The processor a device's readings go through, if its kind has derived signals
    (``roof_pressure``: the site's thresholds, ``SiteConfig.roof_pressure``)."""
    if device.equipment_kind == "roof_pressure" and getattr(device, "nodemap", None):
        from adapters.opcua.nodemap import load_nodemap
        from gateway.derived.roof_pressure import RoofPressureMetrics

        signals = load_nodemap(device.nodemap, device.supports).expanded
        return RoofPressureMetrics.for_nodemap(device.id, signals, roof_pressure)
    if device.adapter == "modbus":
        return _status_processor(device)
    return None


def _status_processor(device) -> Processor | None:
    """Machines (shearer, roadheader, conveyors) have a ``running`` status bit; broadcast nodes do not."""
    from adapters.modbus.profile import load_profile
    from gateway.derived.status import SIGNALS, EquipmentStatus

    names = {point.name for point in load_profile(device.profile).points}
    if "running" not in names:
        return None
    if clash := sorted(names & set(SIGNALS)):
        log.warning("%s: no derived status: its profile has signal(s) %s of its own", device.id, ", ".join(clash))
        return None
    return EquipmentStatus(device.id)
