"""A minimal SNMP agent for tests and benchmarks: pysnmp's own command responder, in-process, serving
a dict of ``{oid tuple: pysnmp value}`` that the test may change between polls (a UPS going on
battery, a counter wrapping, a switch restarting). v2c only; GET, GETNEXT and GETBULK.

The full simulated ring and UPS are the simulator's (simulators/); this one proves the adapter's
mappings for objects Net-SNMP's snmpd does not have (UPS-MIB, LLDP-MIB, IEC-62439-2-MIB).
"""
from __future__ import annotations

import bisect

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import cmdrsp, context
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.smi.instrum import AbstractMibInstrumController

Oid = tuple[int, ...]


def oid(text: str) -> Oid:
    return tuple(int(p) for p in text.strip(".").split("."))


class DictMib(AbstractMibInstrumController):
    """The agent's MIB: whatever ``values`` holds, in OID order."""

    def __init__(self, values: dict[Oid, object]):
        self.values = values

    def read_variables(self, *var_binds, **context):
        return [(name, self.values.get(tuple(name), rfc1905.noSuchObject)) for name, _ in var_binds]

    def read_next_variables(self, *var_binds, **context):
        keys = sorted(self.values)
        out = []
        for name, _ in var_binds:
            i = bisect.bisect_right(keys, tuple(name))
            out.append((rfc1902.ObjectName(keys[i]), self.values[keys[i]]) if i < len(keys)
                       else (name, rfc1905.endOfMibView))
        return out


class TestAgent:
    """``await start()`` on the running loop; ``values`` may change at any time; ``stop()``."""

    __test__ = False  # not a pytest class

    def __init__(self, values: dict[Oid, object], port: int, community: str = "public", host: str = "127.0.0.1"):
        self.values, self.host, self.port, self.community = values, host, port, community
        self.engine: engine.SnmpEngine | None = None

    def start(self) -> None:
        self.engine = eng = engine.SnmpEngine()
        config.add_transport(eng, udp.DOMAIN_NAME, udp.UdpAsyncioTransport().open_server_mode((self.host, self.port)))
        config.add_v1_system(eng, "test-area", self.community)
        config.add_vacm_user(eng, 2, "test-area", "noAuthNoPriv", (1,), (1,))
        ctx = context.SnmpContext(eng)
        ctx.unregister_context_name(b"")
        ctx.register_context_name(b"", DictMib(self.values))
        for responder in (cmdrsp.GetCommandResponder, cmdrsp.NextCommandResponder, cmdrsp.BulkCommandResponder):
            responder(eng, ctx)

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.close_dispatcher()
            self.engine = None


def ups_values(source: int = 3, battery: int = 2, minutes: int = 42, charge: int = 100, volts: int = 230,
               load: int = 35) -> dict[Oid, object]:
    """UPS-MIB objects of a UPS on mains (``source=5``: on battery)."""
    return {
        oid("1.3.6.1.2.1.1.3.0"): rfc1902.TimeTicks(123456),
        oid("1.3.6.1.2.1.33.1.2.1.0"): rfc1902.Integer(battery),
        oid("1.3.6.1.2.1.33.1.2.3.0"): rfc1902.Integer(minutes),
        oid("1.3.6.1.2.1.33.1.2.4.0"): rfc1902.Integer(charge),
        oid("1.3.6.1.2.1.33.1.3.3.1.3.1"): rfc1902.Integer(volts),
        oid("1.3.6.1.2.1.33.1.4.1.0"): rfc1902.Integer(source),
        oid("1.3.6.1.2.1.33.1.4.4.1.5.1"): rfc1902.Integer(load),
    }


IF_COLUMNS = {"oper": "1.3.6.1.2.1.2.2.1.8", "admin": "1.3.6.1.2.1.2.2.1.7", "discards": "1.3.6.1.2.1.2.2.1.13",
              "errors": "1.3.6.1.2.1.2.2.1.14", "speed": "1.3.6.1.2.1.31.1.1.1.15",
              "in_octets": "1.3.6.1.2.1.31.1.1.1.6", "out_octets": "1.3.6.1.2.1.31.1.1.1.10"}
MRP_STATE, MRP_OPEN_COUNT = oid("1.0.62439.1.1.1.1.10.1"), oid("1.0.62439.1.1.1.1.15.1")
LLDP_REM_PORT_ID, LLDP_REM_SYS_NAME = "1.0.8802.1.1.2.1.4.1.1.7", "1.0.8802.1.1.2.1.4.1.1.9"


def switch_values(ports: int, uptime: int = 100_000, mrp_state: bytes | None = b"\x00",
                  neighbors: dict[int, tuple[str, str]] | None = None) -> dict[Oid, object]:
    """A ring switch: IF-MIB rows 1..ports (up, 1000 Mbit/s, counters at 0), sysUpTime, MRP state and
    open count (absent when ``mrp_state`` is None), LLDP neighbours ``{local port: (sysName, portId)}``."""
    values: dict[Oid, object] = {oid("1.3.6.1.2.1.1.3.0"): rfc1902.TimeTicks(uptime)}
    for n in range(1, ports + 1):
        row = {"oper": rfc1902.Integer(1), "admin": rfc1902.Integer(1), "discards": rfc1902.Counter32(0),
               "errors": rfc1902.Counter32(0), "speed": rfc1902.Gauge32(1000),
               "in_octets": rfc1902.Counter64(0), "out_octets": rfc1902.Counter64(0)}
        for column, value in row.items():
            values[oid(IF_COLUMNS[column]) + (n,)] = value
    if mrp_state is not None:
        values[MRP_STATE] = rfc1902.OctetString(mrp_state)
        values[MRP_OPEN_COUNT] = rfc1902.Counter32(0)
    for i, (port, (name, port_id)) in enumerate(sorted((neighbors or {}).items())):
        row = (0, port, i + 1)  # timeMark, localPortNum, index
        values[oid(LLDP_REM_SYS_NAME) + row] = rfc1902.OctetString(name)
        values[oid(LLDP_REM_PORT_ID) + row] = rfc1902.OctetString(port_id)
    return values


def port_oid(column: str, port: int) -> Oid:
    return oid(IF_COLUMNS[column]) + (port,)
