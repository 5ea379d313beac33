"""The table of adapter kinds: the one place that lists them.

Each protocol declares its kind, its device settings and its adapter class in its own package
(``adapters/<protocol>/plugin.py``, an :class:`AdapterKind`); adding a protocol is that file and
one entry in ``TABLE``. The site file's device union (:data:`AnyDeviceConfig`), the list of kinds
and :func:`build_adapter` all come from it.
"""
from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Discriminator, Tag

from adapters.base import Adapter, AdapterKind
from adapters.modbus.plugin import MODBUS
from adapters.onvif.plugin import ONVIF
from adapters.opcua.plugin import OPCUA
from adapters.snmp.plugin import SNMP
from gateway.core.device import DeviceConfig

TABLE: tuple[AdapterKind, ...] = (MODBUS, OPCUA, ONVIF, SNMP)
KINDS: dict[str, AdapterKind] = {entry.kind: entry for entry in TABLE}
if len(KINDS) != len(TABLE):
    raise TypeError("two adapter kinds with the same name")
ADAPTER_KINDS: tuple[str, ...] = tuple(KINDS)
DEFAULT_KIND = "modbus"  # site files written before there was a choice omit ``adapter:``


def _adapter_of(device: Any) -> str | None:
    if isinstance(device, dict):
        return device.get("adapter", DEFAULT_KIND)
    return getattr(device, "adapter", None)


# One entry of ``devices[]`` in the site file: the settings of whichever kind its ``adapter:`` names.
# An unknown name is a ``unknown_adapter`` error (gateway/config.py words it with the known kinds).
AnyDeviceConfig = Annotated[
    Union[tuple(Annotated[entry.config, Tag(entry.kind)] for entry in TABLE)],
    Discriminator(_adapter_of, custom_error_type="unknown_adapter",
                  custom_error_message="unknown adapter", custom_error_context={}),
]


def build_adapter(device: DeviceConfig) -> Adapter:
    return KINDS[device.adapter].build(device)
