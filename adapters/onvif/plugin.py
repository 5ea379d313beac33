"""The ONVIF camera adapter's entry in the table of adapter kinds (adapters/registry.py)."""
from __future__ import annotations

from adapters.base import Adapter, AdapterKind

from .config import OnvifDeviceConfig


def load_adapter() -> type[Adapter]:
    from .adapter import OnvifAdapter  # onvif-zeep-async: only when a device is built
    return OnvifAdapter


ONVIF = AdapterKind("onvif", OnvifDeviceConfig, load_adapter)
