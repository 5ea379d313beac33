"""``minegw``: the field engineer's command line. One module per command group:

- :mod:`.site`: ``config check``, ``run``, ``sim``, ``sim-fault``, ``demo``, ``ingest``
- :mod:`.probes`: ``modbus``, ``mqtt``, ``onvif``, ``opcua``
- :mod:`.historian`: ``historian``, ``buffer``
- :mod:`.commands`: ``write``, ``alarm``, ``broadcast``, ``keys``
- :mod:`.dashboards`: ``dashboards build|push``
- :mod:`.net`: ``net walk`` (SNMP); :mod:`.net_ring`: ``net ring``, ``net reach``
- :mod:`.reports`: ``report daily``
- :mod:`.deploy`: ``deploy acl``
- :mod:`.console`: ``console`` (the live view of a site)
- :mod:`.video`: ``video probe``; :mod:`.video_relay`: ``video relay status``
"""
from __future__ import annotations

import typer

from gateway.cli import (commands, console, dashboards, deploy, historian, net, net_ring, probes, reports, site, video,
                         video_relay)

net_ring.register(net.net_app)  # net ring, net reach
video_relay.register(video.video_app)  # video relay status
app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="minegw: underground mine gateway (Modbus, OPC UA, ONVIF, broadcast → MQTT, InfluxDB)")
app.add_typer(site.commands)  # run, sim, sim-fault, demo, ingest
app.add_typer(commands.commands)  # write
app.add_typer(console.commands)  # console
for group, name in ((site.config_app, "config"), (historian.historian_app, "historian"),
                    (historian.buffer_app, "buffer"), (probes.opcua_app, "opcua"), (probes.modbus_app, "modbus"),
                    (probes.mqtt_app, "mqtt"), (probes.onvif_app, "onvif"), (commands.alarm_app, "alarm"),
                    (commands.broadcast_app, "broadcast"), (dashboards.dashboards_app, "dashboards"),
                    (commands.keys_app, "keys"), (net.net_app, "net"), (reports.report_app, "report"),
                    (deploy.deploy_app, "deploy"), (video.video_app, "video")):
    app.add_typer(group, name=name)


def main() -> None:
    app()
