"""The SNMP adapter's entry in the table of adapter kinds (adapters/registry.py)."""
from __future__ import annotations

from adapters.base import Adapter, AdapterKind

from .config import SnmpDeviceConfig


def load_adapter() -> type[Adapter]:
    from .adapter import SnmpAdapter  # pysnmp: only when a device is built
    return SnmpAdapter


SNMP = AdapterKind("snmp", SnmpDeviceConfig, load_adapter)
