"""The OPC UA adapter's entry in the table of adapter kinds (adapters/registry.py)."""
from __future__ import annotations

from adapters.base import Adapter, AdapterKind

from .config import OpcUaDeviceConfig


def load_adapter() -> type[Adapter]:
    from .adapter import OpcUaAdapter  # asyncua: only when a device is built
    return OpcUaAdapter


OPCUA = AdapterKind("opcua", OpcUaDeviceConfig, load_adapter)
