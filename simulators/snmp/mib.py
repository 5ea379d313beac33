"""The MIB objects the simulated switches and UPS serve, and a live view of them for pysnmp's agent.

A device describes its MIB as a mapping ``OID tuple → getter``; :class:`LiveMib` answers GET and
GETNEXT (pysnmp's GETBULK responder repeats GETNEXT) from it, calling each getter when asked, so
counters and uptimes are the model's values at the request's time. When the set of objects
changes (an LLDP neighbour appears or goes), the device bumps its ``layout`` number and the view
sorts the OIDs again.

The OIDs are the ones adapters/snmp reads (the signals in docs/network.md): SNMPv2-MIB system,
IF-MIB ifTable/ifXTable, LLDP-MIB lldpRemTable, IEC-62439-2-MIB mrpDomainTable, UPS-MIB (RFC 1628).
"""
from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pysnmp.proto import rfc1902, rfc1905

Oid = tuple[int, ...]
Getter = Callable[[], Any]

# SNMPv2-MIB system group (.0 instances)
SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 1, 0), (1, 3, 6, 1, 2, 1, 1, 2, 0), (1, 3, 6, 1, 2, 1, 1, 3, 0)
SYS_CONTACT, SYS_NAME, SYS_LOCATION = (1, 3, 6, 1, 2, 1, 1, 4, 0), (1, 3, 6, 1, 2, 1, 1, 5, 0), (1, 3, 6, 1, 2, 1, 1, 6, 0)
SYS_SERVICES = (1, 3, 6, 1, 2, 1, 1, 7, 0)
# IF-MIB
IF_NUMBER = (1, 3, 6, 1, 2, 1, 2, 1, 0)
IF_ENTRY = (1, 3, 6, 1, 2, 1, 2, 2, 1)  # + column + ifIndex
IF_X_ENTRY = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
IF_COLUMNS = {"ifIndex": 1, "ifDescr": 2, "ifType": 3, "ifMtu": 4, "ifSpeed": 5, "ifPhysAddress": 6,
              "ifAdminStatus": 7, "ifOperStatus": 8, "ifLastChange": 9, "ifInOctets": 10,
              "ifInDiscards": 13, "ifInErrors": 14, "ifOutOctets": 16}
IF_X_COLUMNS = {"ifName": 1, "ifHCInOctets": 6, "ifHCOutOctets": 10, "ifHighSpeed": 15, "ifAlias": 18}
UP, DOWN = 1, 2  # ifAdminStatus / ifOperStatus
# LLDP-MIB lldpRemTable: + column + lldpRemTimeMark + lldpRemLocalPortNum + lldpRemIndex
LLDP_REM_ENTRY = (1, 0, 8802, 1, 1, 2, 1, 4, 1, 1)
LLDP_COLUMNS = {"lldpRemChassisIdSubtype": 4, "lldpRemChassisId": 5, "lldpRemPortIdSubtype": 6,
                "lldpRemPortId": 7, "lldpRemPortDesc": 8, "lldpRemSysName": 9}
LLDP_CHASSIS_LOCAL, LLDP_PORT_LOCAL = 7, 7  # subtypes: locally assigned text (the port number, "2")
# IEC-62439-2-MIB mrpDomainEntry, first domain (index 1): the instances adapters/snmp reads
MRP_DOMAIN_ENTRY = (1, 0, 62439, 1, 1, 1, 1)
MRP_COLUMNS = {"mrpDomainName": 3, "mrpDomainOperRole": 5, "mrpDomainRingPort1": 6, "mrpDomainRingPort1State": 7,
               "mrpDomainRingPort2": 8, "mrpDomainRingPort2State": 9, "mrpDomainState": 10,
               "mrpDomainRingOpenCount": 15}
MRP_STATE_CLOSED, MRP_STATE_OPEN = b"\x00", b"\x20"  # BITS: no bit = closed; ringOpen(2) = 0x20
MRP_ROLE_MANAGER, MRP_ROLE_CLIENT = 2, 1
MRP_PORT_BLOCKED, MRP_PORT_FORWARDING, MRP_PORT_NOT_CONNECTED = 2, 3, 4
# UPS-MIB (RFC 1628)
UPS = (1, 3, 6, 1, 2, 1, 33, 1)
UPS_IDENT_MANUFACTURER, UPS_IDENT_MODEL, UPS_IDENT_NAME = UPS + (1, 1, 0), UPS + (1, 2, 0), UPS + (1, 5, 0)
UPS_BATTERY_STATUS, UPS_SECONDS_ON_BATTERY = UPS + (2, 1, 0), UPS + (2, 2, 0)
UPS_MINUTES_REMAINING, UPS_CHARGE_REMAINING = UPS + (2, 3, 0), UPS + (2, 4, 0)
UPS_BATTERY_VOLTAGE = UPS + (2, 5, 0)  # 0.1 V
UPS_INPUT_NUM_LINES, UPS_INPUT_FREQUENCY_1, UPS_INPUT_VOLTAGE_1 = UPS + (3, 2, 0), UPS + (3, 3, 1, 2, 1), UPS + (3, 3, 1, 3, 1)
UPS_OUTPUT_SOURCE, UPS_OUTPUT_FREQUENCY, UPS_OUTPUT_NUM_LINES = UPS + (4, 1, 0), UPS + (4, 2, 0), UPS + (4, 3, 0)
UPS_OUTPUT_VOLTAGE_1, UPS_OUTPUT_LOAD_1 = UPS + (4, 4, 1, 2, 1), UPS + (4, 4, 1, 5, 1)
UPS_SOURCE_NORMAL, UPS_SOURCE_BATTERY = 3, 5  # upsOutputSource
UPS_BATTERY_NORMAL, UPS_BATTERY_LOW, UPS_BATTERY_DEPLETED = 2, 3, 4  # upsBatteryStatus

COUNTER32 = 1 << 32
COUNTER64 = 1 << 64

# value constructors, so the models need not know pysnmp's types
Integer, Gauge32, TimeTicks, OctetString = rfc1902.Integer32, rfc1902.Gauge32, rfc1902.TimeTicks, rfc1902.OctetString
ObjectIdentifier = rfc1902.ObjectIdentifier


def counter32(value: float) -> rfc1902.Counter32:
    return rfc1902.Counter32(int(value) % COUNTER32)


def counter64(value: float) -> rfc1902.Counter64:
    return rfc1902.Counter64(int(value) % COUNTER64)


def timeticks(seconds: float) -> rfc1902.TimeTicks:
    return rfc1902.TimeTicks(int(seconds * 100) % COUNTER32)


class MibSource(Protocol):
    """A simulated device as its agent sees it."""

    device_id: str
    layout: int  # bumped whenever the set of OIDs changes

    def mib(self) -> Mapping[Oid, Getter]: ...


class LiveMib:
    """pysnmp's MIB instrumentation interface (``read_variables``, ``read_next_variables``) over a
    :class:`MibSource`. Access control is the community / USM user check pysnmp does before."""

    def __init__(self, source: MibSource):
        self.source = source
        self._layout = -1
        self._objects: Mapping[Oid, Getter] = {}
        self._keys: list[Oid] = []

    def _refresh(self) -> None:
        if self._layout != self.source.layout:
            self._layout = self.source.layout
            self._objects = self.source.mib()
            self._keys = sorted(self._objects)

    def read_variables(self, *var_binds: tuple[Any, Any], **_context: Any) -> list[tuple[Any, Any]]:
        self._refresh()
        answers = []
        for name, _ in var_binds:
            getter = self._objects.get(tuple(name))
            answers.append((name, getter() if getter else rfc1905.noSuchInstance))
        return answers

    def read_next_variables(self, *var_binds: tuple[Any, Any], **_context: Any) -> list[tuple[Any, Any]]:
        self._refresh()
        answers = []
        for name, _ in var_binds:
            i = bisect.bisect_right(self._keys, tuple(name))
            if i < len(self._keys):
                oid = self._keys[i]
                answers.append((rfc1902.ObjectName(oid), self._objects[oid]()))
            else:
                answers.append((name, rfc1905.endOfMibView))
        return answers
