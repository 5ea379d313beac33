"""Long-running entry points behind ``minegw run`` and ``minegw sim``."""
from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from gateway.config import SiteConfig
from gateway.core.errors import UserError
from gateway.core.heap import settle_delay, settle_heap, settle_heap_later
from gateway.mqtt import MqttSink
from gateway.runtime import Gateway
from gateway.systemd import notify_systemd

log = logging.getLogger("minegw")


async def until_signalled() -> None:
    """Wait for SIGINT or SIGTERM (systemd stops us with SIGTERM)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def build_sinks(site: SiteConfig) -> list:
    """MQTT always; the historian (durable buffer → InfluxDB) when the site file has one."""
    sinks: list = [MqttSink(site.mqtt, site)]
    if site.historian is not None:
        from gateway.historian.sink import HistorianSink

        sinks.append(HistorianSink(site.historian, site))
    return sinks


async def run_gateway(site: SiteConfig) -> None:
    gateway = Gateway(site, build_sinks(site))
    async with gateway, notify_systemd():  # READY and watchdog pings when run by systemd
        log.info("gateway %s/%s running: %d devices, broker %s:%d", site.site.id, site.site.gateway_id,
                 len(gateway.adapters), site.mqtt.host, site.mqtt.port)
        settle = asyncio.create_task(settle_heap_later(settle_delay([d.poll_interval for d in site.devices])))
        try:
            await until_signalled()
        finally:
            settle.cancel()
        log.info("stopping")


async def run_simulators(site: SiteConfig, scenario: Path | None, seed: int,
                         control: tuple[str, int], procs: int = 1, rtsp_port: int = 8554) -> None:
    from simulators.modbus.scenario import ScenarioError
    from simulators.procs import SiteProcesses

    try:
        sims = SiteProcesses(site, procs, seed=seed, scenario=scenario,
                             control_host=control[0], control_port=control[1], rtsp_port=rtsp_port)
        await sims.start()
    except ScenarioError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:  # a port is taken
        raise UserError(f"cannot start simulators: {exc}") from None
    settle_heap()  # the built devices out of the full collections' scans (a 1 000-device part: 0.3 s each)
    try:
        log.info("simulating %d devices; faults: minegw sim-fault --control %s:%d DEVICE FAULT",
                 len(site.devices), *control)
        await until_signalled()
    finally:
        await sims.stop()


async def inject_fault(control: tuple[str, int], device: str, fault: str | None, params: dict,
                       clear: bool) -> None:
    from simulators.site import ControlError, send_fault

    try:
        reply = await send_fault(*control, device=device, fault=fault, params=params, clear=clear)
    except ControlError as exc:
        raise UserError(f"simulator refused: {exc}") from None
    except OSError as exc:
        raise UserError(f"no simulator control endpoint at {control[0]}:{control[1]}: {exc.strerror or exc}") from None
    print(f"{device}: active faults {reply.get('faults') or 'none'}")
