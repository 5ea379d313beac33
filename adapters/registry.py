"""Adapter kinds by their ``adapter:`` name in the site file."""
from __future__ import annotations

from adapters.base import Adapter
from gateway.core.device import DeviceConfig
from adapters.modbus.adapter import ModbusAdapter
from adapters.onvif.adapter import OnvifAdapter
from adapters.opcua.adapter import OpcUaAdapter

ADAPTERS: dict[str, type[Adapter]] = {ModbusAdapter.kind: ModbusAdapter, OpcUaAdapter.kind: OpcUaAdapter,
                                      OnvifAdapter.kind: OnvifAdapter}


def build_adapter(device: DeviceConfig) -> Adapter:
    return ADAPTERS[device.adapter](device)
