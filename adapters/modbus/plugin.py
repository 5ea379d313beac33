"""The Modbus TCP adapter's entry in the table of adapter kinds (adapters/registry.py)."""
from __future__ import annotations

from adapters.base import Adapter, AdapterKind

from .config import ModbusDeviceConfig


def load_adapter() -> type[Adapter]:
    from .adapter import ModbusAdapter  # pymodbus: only when a device is built
    return ModbusAdapter


MODBUS = AdapterKind("modbus", ModbusDeviceConfig, load_adapter)
