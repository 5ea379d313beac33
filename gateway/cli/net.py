"""``minegw net``: the mine's network from the engineer's laptop (SNMP switches and UPS).

A plain typer group: ``walk`` here; more commands (``ring``, ``reach``) register on ``net_app``
from their own modules.
"""
from __future__ import annotations

from typing import Optional

import typer

from gateway.cli.common import fail, out, run
from gateway.core.errors import UserError

net_app = typer.Typer(no_args_is_help=True, help="Look at the network: SNMP walks, rings, reachability.")


@net_app.command("walk")
def net_walk(host: str = typer.Argument(..., help="the switch or UPS (name or address)"),
             oid: str = typer.Argument("1.3.6.1.2.1", help="subtree or instance (numeric; default: mib-2)"),
             port: int = typer.Option(161, min=1, max=65535),
             community: str = typer.Option("public", envvar="MINEGW_SNMP_COMMUNITY", help="SNMP v2c community"),
             v3_user: Optional[str] = typer.Option(None, help="SNMPv3 user (instead of a community)"),
             auth_key: Optional[str] = typer.Option(None, envvar="MINEGW_SNMP_AUTH_KEY", help="v3 auth key"),
             auth_protocol: str = typer.Option("SHA", help="MD5, SHA, SHA224, SHA256, SHA384, SHA512"),
             priv_key: Optional[str] = typer.Option(None, envvar="MINEGW_SNMP_PRIV_KEY",
                                                    help="v3 privacy key (authPriv); none: authNoPriv"),
             priv_protocol: str = typer.Option("AES", help="AES, AES192, AES256, DES"),
             timeout: float = typer.Option(2.0, help="seconds per request"),
             retries: int = typer.Option(1, min=0, max=5)) -> None:
    """Walk an SNMP agent's subtree (GETBULK) and print "OID = TYPE: value" lines like snmpwalk."""
    from adapters.snmp.client import AUTH, PRIV, SnmpClient, credentials
    from adapters.snmp.profile import parse_oid
    from adapters.snmp.tools import walk_command

    if auth_protocol not in AUTH or priv_protocol not in PRIV:
        fail(f"--auth-protocol one of {', '.join(AUTH)}; --priv-protocol one of {', '.join(PRIV)}")
    try:
        parse_oid(oid)
        auth = credentials("3" if v3_user else "2c", community=community, user=v3_user, auth_protocol=auth_protocol,
                           auth_key=auth_key, priv_protocol=priv_protocol, priv_key=priv_key)
    except (ValueError, UserError) as exc:
        fail(str(exc))
    client = SnmpClient(host, port, auth, timeout=timeout, retries=retries)
    run(walk_command(lambda line: out.print(line, highlight=False, markup=False), client, oid))
