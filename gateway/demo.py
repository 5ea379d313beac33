"""``minegw demo``: simulators, gateway and an MQTT broker on this machine, with a live view.

Needs nothing installed but minegw: without ``--broker`` it embeds amqtt (MQTT 3.1.1).
The live view shows what a subscriber receives from the broker, so it proves the
whole path: simulator → Modbus → gateway → MQTT → subscriber.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from contextlib import AsyncExitStack

import paho.mqtt.client as paho
from rich.console import Console
from rich.live import Live
from rich.table import Table

from gateway.config import MqttConfig, SiteConfig, parse_site
from gateway.core.errors import UserError
from gateway.mqtt import MqttSink, make_client
from gateway.runtime import Gateway

# A few signals worth watching per machine kind.
HIGHLIGHTS = {
    "shearer": ["position", "haulage_speed", "left_cutting_current", "methane"],
    "face_conveyor": ["head_current", "chain_speed", "chain_tension"],
    "roadheader": ["mode", "cutting_current", "oil_temperature", "methane"],
    "belt_conveyor": ["speed", "load", "misalignment", "slip"],
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def demo_site(mqtt: MqttConfig, host: str = "127.0.0.1") -> SiteConfig:
    """One longwall face, one heading and one belt line, on free local ports."""
    def dev(id_, area, profile, unit=1, port=None):
        return {"id": id_, "adapter": "modbus", "area": area, "zone": area, "profile": profile,
                "host": host, "port": port or free_port(host), "unit_id": unit, "poll_interval": 1}
    belt_port = free_port(host)
    return parse_site({
        "site": {"id": "demo-mine", "name": "minegw demo"},
        "areas": [{"id": "face-1201", "kind": "longwall_face"}, {"id": "heading-1203", "kind": "heading"},
                  {"id": "belt-main", "kind": "belt_line"}],
        "devices": [dev("shearer-1201", "face-1201", "shearer"), dev("afc-1201", "face-1201", "face_conveyor"),
                    dev("roadheader-1203", "heading-1203", "roadheader"),
                    dev("belt-main-1", "belt-main", "belt_conveyor", 1, belt_port),
                    dev("belt-main-2", "belt-main", "belt_conveyor", 2, belt_port)],
        "mqtt": mqtt.model_dump(),
    }, "<demo>")


async def start_embedded_broker(host: str, port: int):
    from amqtt.broker import Broker

    broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
                     "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}})
    await broker.start()
    return broker


class Watcher:
    """Subscribes like any integration would and keeps the latest message per device."""

    def __init__(self, mqtt: MqttConfig, site: SiteConfig):
        self.data: dict[str, dict] = {}
        self.state: dict[str, dict] = {}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.client = make_client(mqtt, f"minegw-demo-view-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        prefix = f"{mqtt.topic_prefix}/{site.site.id}/+/+/"
        self.client.on_connect = lambda c, *_: (c.subscribe(prefix + "data", 1), c.subscribe(prefix + "state", 1))
        self.client.connect_async(mqtt.host, mqtt.port)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, msg: paho.MQTTMessage) -> None:
        payload = json.loads(msg.payload)
        with self._lock:
            if msg.topic.endswith("/data"):
                self.data[payload["device"]] = payload
                self.counts[payload["device"]] = self.counts.get(payload["device"], 0) + 1
            else:
                self.state[payload["device"]] = payload

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def table(self, site: SiteConfig) -> Table:
        view = Table(title=f"minegw demo: site {site.site.id} (as received from MQTT)", expand=True)
        for col in ("device", "kind", "area", "state", "msgs", "values"):
            view.add_column(col)
        with self._lock:
            for d in site.devices:
                state = self.state.get(d.id, {})
                status = state.get("status", "…")
                colour = "green" if status == "online" else "red"
                reason = "" if status == "online" else f" ({state.get('reason', '')})"
                samples = self.data.get(d.id, {}).get("samples", {})
                values = "  ".join(_fmt(name, samples[name]) for name in HIGHLIGHTS[d.equipment_kind]
                                   if name in samples)
                view.add_row(d.id, d.equipment_kind, d.area, f"[{colour}]{status}[/]{reason}",
                             str(self.counts.get(d.id, 0)), values)
        return view


def _fmt(name: str, sample: dict) -> str:
    v = sample["value"]
    text = f"{v:.2f}" if isinstance(v, float) else str(v)
    mark = "" if sample["quality"] == "good" else f"[yellow]({sample['quality']})[/]"
    return f"{name}={text}{sample['unit']}{mark}"


async def run_demo(duration: float | None, broker: tuple[str, int] | None, seed: int) -> None:
    from simulators.site import SiteSimulator

    host = "127.0.0.1"
    console = Console()
    async with AsyncExitStack() as stack:
        if broker is None:
            port = free_port(host)
            try:
                embedded = await start_embedded_broker(host, port)
            except Exception as exc:  # amqtt raises broker-specific errors on bind failure
                raise UserError(f"cannot start the embedded MQTT broker on {host}:{port}: {exc}") from None
            stack.push_async_callback(embedded.shutdown)
            # amqtt logs every client it turns away (an MQTT 5 one, say) over the live view; the client is told.
            logging.getLogger("amqtt").setLevel(logging.CRITICAL)
            mqtt = MqttConfig(host=host, port=port, protocol="3.1.1")  # all amqtt speaks
            console.print(f"embedded MQTT broker (amqtt) on {host}:{port}; try: "
                          f"minegw mqtt tail --protocol 3.1.1 --port {port} 'minegw/#'", soft_wrap=True)
        else:
            mqtt = MqttConfig(host=broker[0], port=broker[1])
        site = demo_site(mqtt, host)
        sims = SiteSimulator(site, seed=seed)
        await sims.start()
        stack.push_async_callback(sims.stop)
        gateway = Gateway(site, [MqttSink(mqtt, site)])
        await stack.enter_async_context(gateway)
        watcher = Watcher(mqtt, site)
        stack.callback(watcher.close)
        deadline = time.monotonic() + duration if duration else None
        with Live(watcher.table(site), console=console, refresh_per_second=2) as live:
            while deadline is None or time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                live.update(watcher.table(site))
