"""Adapter kinds by their ``adapter:`` name in the site file."""
from __future__ import annotations

from adapters.base import Adapter, DeviceConfig
from adapters.modbus.adapter import ModbusAdapter

ADAPTERS: dict[str, type[Adapter]] = {ModbusAdapter.kind: ModbusAdapter}


def build_adapter(device: DeviceConfig) -> Adapter:
    return ADAPTERS[device.adapter](device)
