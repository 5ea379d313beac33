"""``minegw modbus``, ``mqtt``, ``onvif``, ``opcua``: look at devices and brokers from the field."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from adapters.modbus.codec import DataType, Order
from adapters.modbus.profile import Table
from gateway.cli.common import HOST_OPT, PORT_OPT, broker, fail, load, out, run
from gateway.core.errors import UserError

modbus_app = typer.Typer(no_args_is_help=True, help="Probe Modbus TCP devices.")
mqtt_app = typer.Typer(no_args_is_help=True, help="Look at an MQTT broker.")
onvif_app = typer.Typer(no_args_is_help=True, help="Find and probe ONVIF cameras.")
opcua_app = typer.Typer(no_args_is_help=True, help="Browse and read OPC UA servers.")


@modbus_app.command("read")
def modbus_read(host: str = typer.Argument(...),
                address: int = typer.Argument(..., min=0, max=65535),
                port: int = typer.Option(502, min=1, max=65535),
                unit: int = typer.Option(1, min=0, max=255, help="unit (slave) id"),
                table: Table = typer.Option(Table.HOLDING_REGISTER),
                count: int = typer.Option(1, min=1, max=125, help="values to read"),
                type: DataType = typer.Option(DataType.UINT16, "--type"),
                order: Order = typer.Option(Order.ABCD, help="word/byte order of 32/64-bit values"),
                length: int = typer.Option(0, help="characters, for --type string"),
                timeout: float = typer.Option(2.0)) -> None:
    """Read and decode values from a Modbus TCP device."""
    from gateway.probes import modbus_read as probe

    run(probe(out, host, port, unit, table, address, count, type, order, length, timeout))


@mqtt_app.command("tail")
def mqtt_tail(topic: str = typer.Argument("minegw/#"),
              host: Optional[str] = HOST_OPT, port: Optional[int] = PORT_OPT,
              protocol: Optional[str] = typer.Option(
                  None, help="MQTT version, 5 or 3.1.1 (the demo's embedded broker) [default: the site file's, else 5]"),
              config: Optional[Path] = typer.Option(None, help="take broker settings from a site file"),
              count: Optional[int] = typer.Option(None, help="stop after N messages"),
              timeout: Optional[float] = typer.Option(None, help="stop after N seconds")) -> None:
    """Print messages from the broker as they arrive."""
    from gateway.probes import mqtt_tail as probe

    cfg, _ = broker(config, host=host, port=port, protocol=protocol)
    try:
        probe(out, cfg, topic, count, timeout)
    except UserError as exc:
        fail(str(exc))


@onvif_app.command("discover")
def onvif_discover(addresses: list[str] = typer.Argument(None, help="HOST[:PORT] to probe by unicast too"),
                   timeout: float = typer.Option(3.0, help="seconds to wait for answers"),
                   multicast: bool = typer.Option(True, help="probe 239.255.255.250:3702 on every interface")) -> None:
    """Send a WS-Discovery probe (UDP 3702) and list the ONVIF devices that answer."""
    from adapters.onvif.tools import discover_command

    run(discover_command(out, addresses or [], timeout, multicast))


@onvif_app.command("info")
def onvif_info(url: str = typer.Argument(..., help="http://HOST[:PORT] or HOST[:PORT]"),
               user: Optional[str] = typer.Option(None, "--user", "-u"),
               password: Optional[str] = typer.Option(None, envvar="MINEGW_ONVIF_PASSWORD",
                                                      help="or $MINEGW_ONVIF_PASSWORD"),
               timeout: float = typer.Option(5.0)) -> None:
    """Print what the gateway reads from one camera: device, services, profiles, stream URIs."""
    from adapters.onvif.tools import info_command

    run(info_command(out, url, user, password, timeout))


@onvif_app.command("snapshot")
def onvif_snapshot(camera: str = typer.Argument(..., help="camera id in the site file"),
                   config: Path = typer.Option(..., "--config", "-c", help="site file"),
                   directory: Optional[Path] = typer.Option(None, "--dir", help="default: the site's snapshots.directory")
                   ) -> None:
    """Take a JPEG snapshot into the snapshot store; print its reference."""
    from adapters.onvif.tools import snapshot_command

    site = load(config)
    run(snapshot_command(out, site.devices, site.snapshots, camera, directory))


_USER_OPT = typer.Option(None, "--user", help="username (default: anonymous)")
_PASSWORD_OPT = typer.Option(None, "--password", envvar="MINEGW_OPCUA_PASSWORD", help="or $MINEGW_OPCUA_PASSWORD")


async def _opcua(call, url: str, *args, user: Optional[str], password: Optional[str]):
    from adapters.opcua.client import Security

    try:
        return await call(url, *args, security=Security(username=user, password=password))
    except Exception as exc:  # asyncua raises many kinds; each is one line for a field engineer
        name = type(exc).__name__
        raise UserError(f"{url}: {name}: {exc}" if str(exc) else f"{url}: {name}") from None


@opcua_app.command("browse")
def opcua_browse(url: str = typer.Argument(..., help="opc.tcp://host:port"),
                 node: Optional[str] = typer.Argument(None, help="start node id (default: Objects)"),
                 depth: int = typer.Option(3, min=0, max=10), user: Optional[str] = _USER_OPT,
                 password: Optional[str] = _PASSWORD_OPT) -> None:
    """Print the address space tree with node ids, data types and current values."""
    from adapters.opcua.tools import browse

    async def go():
        rows = await _opcua(browse, url, node, depth, user=user, password=password)
        for r in rows:
            value = "" if r.node_class != "Variable" else f" = {r.value!r} [{r.data_type}, {r.status}]"
            out.print(f"{'  ' * r.depth}{r.browse_name}  [dim]{r.node_id}[/]{value}", highlight=False)
    run(go())


@opcua_app.command("read")
def opcua_read(url: str = typer.Argument(..., help="opc.tcp://host:port"),
               node: str = typer.Argument(..., help="node id, e.g. ns=2;s=Longwall.Support001.FrontLegPressure"),
               user: Optional[str] = _USER_OPT, password: Optional[str] = _PASSWORD_OPT) -> None:
    """Read one node: value, status, source timestamp."""
    from adapters.opcua.tools import read

    async def go():
        value, status, ts = await _opcua(read, url, node, user=user, password=password)
        out.print(f"{node} = {value!r}  status {status}  source {ts.isoformat() if ts else '-'}", highlight=False)
    run(go())


@opcua_app.command("cert")
def opcua_cert(directory: Path = typer.Argument(..., help="where to write the certificate and key"),
               name: str = typer.Option("minegw", help="common name; URI urn:minegw:gateway:NAME")) -> None:
    """Create this gateway's OPC UA client certificate and private key."""
    from adapters.opcua.tools import make_client_certificate

    cert, key = make_client_certificate(directory, name)
    out.print(f"certificate {cert}\nprivate key {key} (keep it private: mode 0600)\n"
              "set them as certificate: and private_key: of the device, and trust the certificate on the server")


