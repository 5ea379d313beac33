"""The demo's MQTT broker: a Mosquitto of this machine when there is one (MQTT 5), else amqtt in-process (3.1.1)."""
from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from gateway.config import MqttConfig
from gateway.core.errors import UserError
from gateway.demo.site import HOST, free_port

SBIN = "/usr/local/sbin:/usr/sbin"  # Debian's mosquitto lives there, off a normal user's PATH


@dataclass
class Broker:
    kind: str  # "mosquitto" or "amqtt"
    mqtt: MqttConfig

    def describe(self) -> str:
        return f"{self.kind} (MQTT {self.mqtt.protocol}) on {self.mqtt.host}:{self.mqtt.port}"

    def tail_hint(self) -> str:
        protocol = " --protocol 3.1.1" if self.mqtt.protocol == "3.1.1" else ""
        return f"minegw mqtt tail{protocol} --port {self.mqtt.port} 'minegw/#'"


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or shutil.which("mosquitto", path=SBIN)


async def start_broker(stack: AsyncExitStack, state_dir: Path, kind: str = "auto") -> Broker:
    """Start the broker ``kind`` (auto: mosquitto when found, else amqtt); it stops with ``stack``."""
    port = free_port()
    mosquitto = find_mosquitto() if kind in ("auto", "mosquitto") else None
    if kind == "mosquitto" and mosquitto is None:
        raise UserError("--embedded mosquitto: no mosquitto on the PATH (apt-get install mosquitto)")
    try:
        if mosquitto:
            await _start_mosquitto(stack, mosquitto, port, state_dir)
            return Broker("mosquitto", MqttConfig(host=HOST, port=port, protocol="5"))
        await _start_amqtt(stack, port)
    except (OSError, TimeoutError) as exc:
        raise UserError(f"cannot start the embedded MQTT broker on {HOST}:{port}: {exc}") from None
    return Broker("amqtt", MqttConfig(host=HOST, port=port, protocol="3.1.1"))  # all amqtt speaks


async def _start_mosquitto(stack: AsyncExitStack, binary: str, port: int, state_dir: Path) -> None:
    conf = state_dir / "mosquitto.conf"
    conf.write_text(f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
                    f"log_dest file {state_dir / 'mosquitto.log'}\n")
    proc = await asyncio.create_subprocess_exec(binary, "-c", str(conf), stdin=subprocess.DEVNULL,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                start_new_session=True)  # Ctrl-C is ours to handle
    stack.push_async_callback(_stop_process, proc)
    for _ in range(100):
        if proc.returncode is not None:
            raise OSError(f"mosquitto exited ({proc.returncode}); see {state_dir / 'mosquitto.log'}")
        try:
            _, writer = await asyncio.open_connection(HOST, port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError("mosquitto did not open its port within 5 s")


async def _stop_process(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 5)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _start_amqtt(stack: AsyncExitStack, port: int) -> None:
    from amqtt.broker import Broker as AmqttBroker

    broker = AmqttBroker({"listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{port}"}},
                          "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}})
    try:
        await broker.start()
    except Exception as exc:  # noqa: BLE001 - amqtt raises broker-specific errors on bind failure
        raise OSError(str(exc)) from None
    stack.push_async_callback(broker.shutdown)
    # amqtt logs every client it turns away (an MQTT 5 one, say) over the screen; the client is told.
    logging.getLogger("amqtt").setLevel(logging.CRITICAL)
