"""A small SNMP manager over pysnmp 7's asyncio API (``pysnmp.hlapi.v3arch.asyncio``).

GET for scalars, GETBULK walks for table columns, SNMP v2c or v3 (USM: SHA/AES). MIBs are never
loaded: requests go to pysnmp's command generators with numeric OIDs (what ``get_cmd`` and
``bulk_cmd`` do after resolving every OID through a MIB view, which costs as much as the rest),
answers come back as (OID tuple, ASN.1 value); a poll costs the BER encode and decode of its
requests and little more. The decode is most of it, so walks ask for the rows they need.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from pysnmp.entity.rfc3413 import cmdgen
from pysnmp.hlapi.v3arch.asyncio import CommunityData, ContextData, SnmpEngine, UdpTransportTarget, UsmUserData
from pysnmp.hlapi.v3arch.asyncio import auth as usm
from pysnmp.hlapi.v3arch.asyncio.lcd import CommandGeneratorLcdConfigurator
from pysnmp.proto import errind
from pysnmp.proto.rfc1902 import Null, ObjectName
from pysnmp.proto.rfc1905 import EndOfMibView

from gateway.core.errors import UserError

Oid = tuple[int, ...]

AUTH = {"MD5": usm.USM_AUTH_HMAC96_MD5, "SHA": usm.USM_AUTH_HMAC96_SHA, "SHA224": usm.USM_AUTH_HMAC128_SHA224,
        "SHA256": usm.USM_AUTH_HMAC192_SHA256, "SHA384": usm.USM_AUTH_HMAC256_SHA384,
        "SHA512": usm.USM_AUTH_HMAC384_SHA512}
PRIV = {"DES": usm.USM_PRIV_CBC56_DES, "AES": usm.USM_PRIV_CFB128_AES, "AES192": usm.USM_PRIV_CFB192_AES,
        "AES256": usm.USM_PRIV_CFB256_AES}
HINTS = {errind.WrongDigest: "the v3 auth key or auth protocol is wrong",
         errind.UnknownUserName: "the agent has no such v3 user",
         errind.DecryptionError: "the v3 priv key or priv protocol is wrong",
         errind.UnsupportedSecurityLevel: "the v3 user is set up on the agent for another security level"}
MAX_REPETITIONS = 64  # rows per GETBULK at most; agents cut a response short when it would not fit anyway
LCD = CommandGeneratorLcdConfigurator()  # the engine's target and credentials tables, as hlapi keeps them
NULL = Null("")


class SnmpError(UserError):
    """The agent answered with an error, or the request could not be made."""


class SnmpTimeout(SnmpError):
    """No answer in time (after the retries): host down, wrong community or v3 credentials, filtered."""


def credentials(version: str, community: str = "public", user: str | None = None, auth_protocol: str = "SHA",
                auth_key: str | None = None, priv_protocol: str = "AES", priv_key: str | None = None):
    """pysnmp's credentials object for v2c (community) or v3 (USM user; authPriv when ``priv_key``)."""
    if version == "2c":
        return CommunityData(community, mpModel=1)
    if not user or not auth_key:
        raise SnmpError("SNMPv3 needs a user and an auth key")
    return UsmUserData(user, auth_key, priv_key, authProtocol=AUTH[auth_protocol],
                       privProtocol=PRIV[priv_protocol] if priv_key else usm.USM_PRIV_NONE)


def is_missing(value) -> bool:
    """noSuchObject, noSuchInstance, endOfMibView: the agent has no value there."""
    return value.tagSet[0][0] == 0x80  # context class: the three exception values of RFC 3416


class SnmpClient:
    """One agent: ``get`` instances, ``walk_columns`` of a table, ``walk`` a subtree. ``open()`` first."""

    def __init__(self, host: str, port: int, auth, timeout: float = 2.0, retries: int = 1):
        self.host, self.port, self.auth = host, port, auth
        self.timeout, self.retries = timeout, retries
        self.engine: SnmpEngine | None = None
        self.target: UdpTransportTarget | None = None
        self.context = ContextData()
        self._addr_name: str | None = None
        self._get, self._bulk = cmdgen.GetCommandGenerator(), cmdgen.BulkCommandGenerator()

    async def open(self) -> None:
        if self.engine is None:
            self.engine = SnmpEngine()
        try:
            self.target = await UdpTransportTarget.create((self.host, self.port), timeout=self.timeout,
                                                          retries=self.retries)
        except Exception as exc:  # pysnmp raises its own error for a name that does not resolve
            raise SnmpError(f"{self.host}:{self.port}: {exc}") from None

    def close(self) -> None:
        engine, self.engine, self._addr_name = self.engine, None, None
        if engine is not None:
            engine.close_dispatcher()

    async def get(self, oids: Sequence[Oid]) -> list[tuple[Oid, object]]:
        """The values at these exact instances, in order (missing ones as noSuchObject/noSuchInstance)."""
        return await self._request("GET", self._get, (), oids)

    async def bulk(self, oids: Sequence[Oid], repetitions: int) -> list[tuple[Oid, object]]:
        """One GETBULK: up to ``repetitions`` successors of each OID, interleaved row by row."""
        return await self._request("GETBULK", self._bulk, (0, repetitions), oids)

    async def _request(self, what: str, generator, counts: tuple, oids: Sequence[Oid]) -> list[tuple[Oid, object]]:
        if self._addr_name is None:
            self._addr_name, _ = LCD.configure(self.engine, self.auth, self.target, self.context.contextName)
        future = asyncio.get_running_loop().create_future()

        def answered(engine, handle, indication, status, index, varbinds, _):
            if not future.done():
                future.set_result((indication, status, index, varbinds))

        generator.send_varbinds(self.engine, self._addr_name, self.context.contextEngineId,
                                self.context.contextName, *counts, [(ObjectName(o), NULL) for o in oids], answered)
        return self._varbinds(await future, what)

    async def walk_columns(self, columns: Sequence[Oid], after: Oid = (), last: Oid | None = None,
                           rows: int = MAX_REPETITIONS) -> dict[Oid, dict[Oid, object]]:
        """Rows of table columns by GETBULK: ``{column: {row index: value}}`` for rows after ``after``
        up to ``last`` (a row index, inclusive; None: to the column's end). Columns are walked
        together, each dropping out when it leaves its column or passes ``last``. ``rows``: how
        many to ask for per request (the rows expected, plus one to see the end, is cheapest)."""
        found: dict[Oid, dict[Oid, object]] = {c: {} for c in columns}
        cursor = {c: c + after for c in columns}
        rows = max(1, min(rows, MAX_REPETITIONS))
        while cursor:
            asked = list(cursor)
            varbinds = await self.bulk([cursor[c] for c in asked], rows)
            if not varbinds:
                break
            done: set[Oid] = set()
            for i, (oid, value) in enumerate(varbinds):
                column = asked[i % len(asked)]
                if column in done:
                    continue
                n = len(column)
                row = oid[n:]
                if oid[:n] != column or isinstance(value, EndOfMibView) or (last is not None and row > last) \
                        or oid <= cursor[column]:  # left the column, or an agent that does not advance
                    done.add(column)
                    continue
                found[column][row] = value
                cursor[column] = oid
                if last is not None and row >= last:  # got the last row asked for: no need to look further
                    done.add(column)
            for column in done:
                cursor.pop(column, None)
        return found

    async def walk(self, root: Oid) -> AsyncIterator[tuple[Oid, object]]:
        """Every instance under ``root`` in order (the subtree; ``root`` itself if it is an instance)."""
        exact = await self.get([root])
        if exact and not is_missing(exact[0][1]):
            yield exact[0]
            return
        rows = await self.walk_columns([root])
        for row, value in rows[root].items():
            yield root + row, value

    def _varbinds(self, answer, what: str) -> list[tuple[Oid, object]]:
        indication, status, index, varbinds = answer
        where = f"{self.host}:{self.port}"
        if isinstance(indication, errind.RequestTimedOut):
            raise SnmpTimeout(f"{where}: no answer to {what} within {self.timeout:g} s × {self.retries + 1} "
                              "(host down, wrong community or v3 credentials, or filtered)")
        if indication:
            hint = HINTS.get(type(indication))
            raise SnmpError(f"{where}: {what}: {indication}" + (f" ({hint})" if hint else ""))
        if status:
            at = f" at {varbinds[int(index) - 1][0]}" if index and int(index) <= len(varbinds) else ""
            raise SnmpError(f"{where}: {what}: {status.prettyPrint()}{at}")
        return [(tuple(oid), value) for oid, value in varbinds]
