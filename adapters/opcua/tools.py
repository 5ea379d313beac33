"""OPC UA tools behind ``minegw opcua ...``: browse, read, make a client certificate.

The CLI wires these to typer; they are plain async functions returning data.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import Client, ua

from .certs import make_certificate
from .client import Security, open_client

CLIENT_URI_PREFIX = "urn:minegw:gateway:"


@dataclass(frozen=True)
class BrowseRow:
    """One node of a browse tree; ``depth`` 0 is the start node."""

    depth: int
    node_id: str
    browse_name: str
    node_class: str
    data_type: str | None = None
    value: Any = None
    status: str | None = None


async def browse(url: str, node: str | None = None, depth: int = 3, security: Security | None = None,
                 timeout: float = 4.0) -> list[BrowseRow]:
    """The tree under ``node`` (default: Objects), ``depth`` levels deep, with variables' values."""
    async with open_client(url, security or Security(), timeout) as client:
        start = client.get_node(node) if node else client.nodes.objects
        rows: list[BrowseRow] = []
        await _walk(client, start, 0, depth, rows)
        return rows


async def _walk(client: Client, node, level: int, depth: int, rows: list[BrowseRow]) -> None:
    rows.append(await _describe(client, node, level))
    if level >= depth:
        return
    for child in await node.get_children():
        await _walk(client, child, level + 1, depth, rows)


async def _describe(client: Client, node, level: int) -> BrowseRow:
    name, node_class = await asyncio.gather(node.read_browse_name(), node.read_node_class())
    row = BrowseRow(level, node.nodeid.to_string(), name.to_string(), node_class.name)
    if node_class is not ua.NodeClass.Variable:
        return row
    data_type_id = await node.read_data_type()
    data_type = await client.get_node(data_type_id).read_browse_name()
    value = await node.read_data_value(raise_on_bad_status=False)
    payload = value.Value.Value if value.Value is not None else None
    return BrowseRow(level, row.node_id, row.browse_name, row.node_class, data_type.Name,
                     _plain(payload), value.StatusCode.name if value.StatusCode else "Good")


def _plain(value: Any) -> Any:
    """Values a table can show: structures become their text."""
    if value is None or isinstance(value, (bool, int, float, str, dt.datetime)):
        return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value)


async def read(url: str, node: str, security: Security | None = None,
               timeout: float = 4.0) -> tuple[Any, str, dt.datetime | None]:
    """One node's (value, status name, source timestamp)."""
    async with open_client(url, security or Security(), timeout) as client:
        value = await client.get_node(node).read_data_value(raise_on_bad_status=False)
        status = value.StatusCode.name if value.StatusCode else "Good"
        payload = value.Value.Value if value.Value is not None else None
        return _plain(payload), status, value.SourceTimestamp or value.ServerTimestamp


def make_client_certificate(directory: str | Path, common_name: str = "minegw") -> tuple[Path, Path]:
    """A self-signed application instance certificate for this gateway (``minegw opcua cert``).

    Writes ``<common_name>.der`` and ``<common_name>.key.pem`` into ``directory``; the
    certificate's application URI is ``urn:minegw:gateway:<common_name>``. Give both to
    the device (``certificate:``, ``private_key:``) and trust the certificate on the server.
    """
    return make_certificate(directory, common_name, CLIENT_URI_PREFIX + common_name, server=False)


