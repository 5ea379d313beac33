"""SNMP tools behind ``minegw net walk``: walk a subtree and print it the way snmpwalk does.

Plain async functions; the CLI (gateway/cli/net.py) wires them to typer.
"""
from __future__ import annotations

from collections.abc import Callable

from .client import SnmpClient, is_missing
from .profile import parse_oid

# pysnmp class name -> the type word snmpwalk prints
TYPE_WORDS = {"Integer": "INTEGER", "Integer32": "INTEGER", "Counter32": "Counter32", "Counter64": "Counter64",
              "Gauge32": "Gauge32", "Unsigned32": "Gauge32", "TimeTicks": "Timeticks", "IpAddress": "IpAddress",
              "ObjectIdentifier": "OID", "ObjectName": "OID", "Opaque": "Opaque", "Bits": "BITS"}
MISSING = {"NoSuchObject": "No Such Object available on this agent at this OID",
           "NoSuchInstance": "No Such Instance currently exists at this OID",
           "EndOfMibView": "No more variables left in this MIB View (It is past the end of the MIB tree)"}


def timeticks_text(ticks: int) -> str:
    """Hundredths of a second as snmpwalk shows them: ``(123456) 0:20:34.56``."""
    seconds, hundredths = divmod(ticks, 100)
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    return f"({ticks}) {days}:{h:02d}:{m:02d}:{s:02d}.{hundredths:02d}" if days else \
        f"({ticks}) {h}:{m:02d}:{s:02d}.{hundredths:02d}"


def format_varbind(oid: tuple[int, ...], value) -> str:
    """``OID = TYPE: value``, as snmpwalk -On prints it."""
    name = ".".join(map(str, oid))
    kind = type(value).__name__
    if is_missing(value):
        return f"{name} = {MISSING.get(kind, kind)}"
    if kind == "OctetString":
        raw = value.asOctets()
        if raw and all(32 <= b < 127 or b in (9, 10, 13) for b in raw):
            return f'{name} = STRING: "{raw.decode("ascii")}"'
        return f"{name} = Hex-STRING: {raw.hex(' ').upper()}" if raw else f'{name} = ""'
    if kind == "TimeTicks":
        return f"{name} = Timeticks: {timeticks_text(int(value))}"
    return f"{name} = {TYPE_WORDS.get(kind, kind)}: {value.prettyPrint()}"


async def walk_command(emit: Callable[[str], None], client: SnmpClient, root: str) -> int:
    """Print every instance under ``root`` (one line each); how many there were."""
    count = 0
    await client.open()
    try:
        async for oid, value in client.walk(parse_oid(root)):
            emit(format_varbind(oid, value))
            count += 1
    finally:
        client.close()
    if not count:
        emit(f"{root}: no objects under this OID on {client.host}:{client.port}")
    return count
