"""The Modbus adapter against real pymodbus servers over loopback TCP."""
import asyncio
import math
import os
import signal
import sys
from pathlib import Path

import pytest
import yaml
from pymodbus.constants import ExcCodes

from adapters.modbus.adapter import ModbusAdapter
from adapters.modbus.codec import DataType, Order, encode
from adapters.modbus.config import ModbusDeviceConfig
from gateway.core.model import DeviceStatus, Quality, Reading
from simulators.modbus.server import DeviceSimulator, ModbusSimServer
from tests.modbus_util import bits, raw_server, regs, write_profile
from tests.util import free_port

POINTS = [
    {"name": "temp", "unit": "°C", "table": "input_register", "address": 0, "type": "int16", "scale": 0.1,
     "range": [-20, 155]},
    {"name": "flow", "unit": "L/min", "table": "input_register", "address": 1, "type": "float32", "order": "CDAB",
     "offset": 10, "range": [0, 200]},
    {"name": "pressure", "unit": "MPa", "table": "input_register", "address": 3, "type": "float32", "range": [0, 25]},
    {"name": "current", "unit": "A", "table": "input_register", "address": 5, "type": "uint16", "range": [0, 400]},
    {"name": "plate", "table": "input_register", "address": 6, "type": "string", "length": 4},
    {"name": "running", "table": "discrete_input", "address": 3, "type": "bool"},
    {"name": "speed_set", "unit": "m/min", "table": "holding_register", "address": 0, "type": "int16",
     "scale": 0.01, "range": [-15, 15], "writable": True},
    {"name": "start", "table": "coil", "address": 0, "type": "bool", "writable": True},
]


def input_words(pressure=12.5):
    return ([0xFF9C]  # -100 → -10.0 °C
            + encode(32.5, DataType.FLOAT32, Order.CDAB)  # + offset 10 → 42.5
            + encode(pressure, DataType.FLOAT32)
            + [450]  # 450 A: out of range
            + [0xFFFE, 0xFFFF])  # not ASCII


def device(profile, port, **kw):
    return ModbusDeviceConfig(id=kw.pop("id", "m1"), area="a", profile=profile, host="127.0.0.1", port=port,
                              timeout=kw.pop("timeout", 0.5), retries=0, **kw)


def by_signal(reading: Reading):
    return {s.signal: s for s in reading.samples}


async def test_decodes_scales_and_grades_every_point(tmp_path):
    profile = write_profile(tmp_path, POINTS)
    async with raw_server(inputs=[regs(0, input_words())], discrete=[bits(0, [False, False, False, True] + [False] * 12)],
                          holding=[regs(0, [0x0190])]) as (_, port):
        adapter = ModbusAdapter(device(profile, port))
        assert await adapter._connect()
        s = by_signal(await adapter.poll_once())
        assert (s["temp"].value, s["temp"].quality, s["temp"].unit) == (pytest.approx(-10.0), Quality.GOOD, "°C")
        assert s["flow"].value == pytest.approx(42.5) and s["flow"].quality is Quality.GOOD
        assert s["pressure"].value == pytest.approx(12.5)
        assert (s["current"].value, s["current"].quality) == (450, Quality.OUT_OF_RANGE)
        assert (s["plate"].value, s["plate"].quality) == (None, Quality.BAD)
        assert s["running"].value is True
        assert s["speed_set"].value == pytest.approx(4.0)
        assert s["start"].value is False
        assert all(x.ts.tzinfo is not None for x in s.values())
        assert adapter.state.status is DeviceStatus.ONLINE and adapter.state.last_good_poll
        await adapter.stop()


async def test_a_sample_carries_when_its_answer_arrived_even_when_one_answer_carries_the_poll(tmp_path):
    profile = write_profile(tmp_path, POINTS[:5])  # input registers only: one block, one answer
    async with raw_server(inputs=[regs(0, input_words())]) as (_, port):
        adapter = ModbusAdapter(device(profile, port))
        assert await adapter._connect()
        reading = await adapter.poll_once()
        arrived = {x.ts for x in reading.samples}
        assert len(arrived) == 1 and arrived.pop() > reading.ts  # after the request went out (docs/mqtt.md)
        await adapter.stop()


@pytest.mark.parametrize("garbage", [math.nan, math.inf, -math.inf])
async def test_non_finite_floats_are_bad_not_a_crash(tmp_path, garbage):
    profile = write_profile(tmp_path, POINTS)
    async with raw_server(inputs=[regs(0, input_words(pressure=garbage))]) as (_, port):
        adapter = ModbusAdapter(device(profile, port))
        await adapter._connect()
        s = by_signal(await adapter.poll_once())
        assert (s["pressure"].value, s["pressure"].quality) == (None, Quality.BAD)
        assert s["temp"].quality is Quality.GOOD
        await adapter.stop()


async def test_exception_response_marks_its_block_bad_and_the_rest_good(tmp_path):
    profile = write_profile(tmp_path, POINTS)

    async def refuse_inputs(fc, *_):
        return ExcCodes.DEVICE_FAILURE if fc == 4 else None

    async with raw_server(inputs=[regs(0, input_words())], action=refuse_inputs) as (_, port):
        adapter = ModbusAdapter(device(profile, port))
        await adapter._connect()
        s = by_signal(await adapter.poll_once())
        assert {s[n].quality for n in ("temp", "flow", "pressure", "current", "plate")} == {Quality.BAD}
        assert s["running"].quality is Quality.GOOD and s["speed_set"].quality is Quality.GOOD
        assert adapter.state.exception_responses == 1
        assert adapter.state.status is DeviceStatus.ONLINE  # it answered
        await adapter.stop()


async def test_a_hole_the_device_refuses_is_read_around_in_the_same_poll(tmp_path):
    points = [{"name": "a", "table": "input_register", "address": 0},
              {"name": "b", "table": "input_register", "address": 5}]
    profile = write_profile(tmp_path, points)
    # Only registers 0 and 5 exist: the merged read 0..5 is refused with illegal address.
    async with raw_server(inputs=[regs(0, [7]), regs(5, [9])]) as (_, port):
        adapter = ModbusAdapter(device(profile, port))
        await adapter._connect()
        for _ in range(2):
            s = by_signal(await adapter.poll_once())
            assert (s["a"].value, s["b"].value) == (7, 9)
            assert {x.quality for x in s.values()} == {Quality.GOOD}
        assert [(b.address, b.count) for b in adapter.plan.blocks] == [(0, 1), (5, 1)]
        await adapter.stop()


async def poll_counting(adapter, sim):
    """One poll: its samples by signal, and how many read requests the device served."""
    before = sim.read_requests
    reading = await adapter.poll_once()
    return by_signal(reading), sim.read_requests - before


async def test_refused_ranges_are_learned_so_polls_need_few_requests(tmp_path):
    # A shearer whose map has a hole (input registers 30-31) and a point that cannot be read at all.
    sim = DeviceSimulator("s1", "shearer")
    sim.set_fault("strict_map")
    sim.set_fault("unreadable", signal="haulage_speed")
    async with ModbusSimServer("127.0.0.1", free_port(), [sim]) as server:
        adapter = ModbusAdapter(device("shearer", server.port, id="s1"))
        await adapter._connect()
        assert len(adapter.plan.blocks) == 4  # one request per table
        for _ in range(3):  # the first poll finds the holes; all three read every other point
            s, requests = await poll_counting(adapter, sim)
            assert (s["haulage_speed"].value, s["haulage_speed"].quality) == (None, Quality.BAD)
            assert {x.quality for n, x in s.items() if n != "haulage_speed"} == {Quality.GOOD}
        assert requests == 6  # input registers in 3 requests: below, above the point; past the hole
        adapter.plan.retry_after = 0  # a hole is retried every poll: one request more, nothing lost
        s, requests = await poll_counting(adapter, sim)
        assert requests == 7 and s["haulage_speed"].quality is Quality.BAD
        assert {x.quality for n, x in s.items() if n != "haulage_speed"} == {Quality.GOOD}
        sim.clear_fault()  # the device's map was updated: the retries find out
        for _ in range(2):
            s, requests = await poll_counting(adapter, sim)
        s, requests = await poll_counting(adapter, sim)
        assert requests == 4 and {x.quality for x in s.values()} == {Quality.GOOD}
        await adapter.stop()


async def next_event(adapter, kind, timeout=10.0):
    async def find():
        async for event in adapter.stream():
            if isinstance(event, kind):
                return event
    return await asyncio.wait_for(find(), timeout)


async def test_dead_device_goes_offline_with_comm_fail_then_recovers(tmp_path):
    profile = write_profile(tmp_path, POINTS)
    port = free_port()
    adapter = ModbusAdapter(device(profile, port, poll_interval=0.2, backoff_initial=0.1, backoff_max=0.4))
    await adapter.start()
    reading = await next_event(adapter, Reading)
    assert {x.quality for x in reading.samples} == {Quality.COMM_FAIL}
    assert all(x.value is None for x in reading.samples)
    assert adapter.state.status is DeviceStatus.OFFLINE
    assert f"127.0.0.1:{port}" in adapter.state.reason
    assert adapter.state.errors >= 1
    await adapter.stop()


async def test_reconnects_when_the_device_comes_back(tmp_path):
    profile = write_profile(tmp_path, POINTS)
    async with raw_server(inputs=[regs(0, input_words())]) as (_, port):
        adapter = ModbusAdapter(device(profile, port, poll_interval=0.2, backoff_initial=0.1, backoff_max=0.3))
        await adapter.start()
        reading = await next_event(adapter, Reading)
        assert reading.samples[0].quality is Quality.GOOD
    # server gone: the adapter notices and goes offline
    while adapter.state.status is not DeviceStatus.OFFLINE:
        await next_event(adapter, Reading)
    async with raw_server(inputs=[regs(0, input_words())], port=port):
        async def back_online():
            while (await next_event(adapter, Reading)).samples[0].quality is not Quality.GOOD:
                pass
        await asyncio.wait_for(back_online(), 10)
        assert adapter.state.status is DeviceStatus.ONLINE
        assert adapter.state.reconnects >= 1
        await adapter.stop()


async def test_a_slow_device_does_not_delay_the_others(tmp_path):
    profile = write_profile(tmp_path, POINTS[:1])

    async def stall(*_):
        await asyncio.sleep(5)

    async with raw_server(inputs=[regs(0, [100])], action=stall) as (_, slow_port), \
            raw_server(inputs=[regs(0, [100])]) as (_, fast_port):
        slow = ModbusAdapter(device(profile, slow_port, id="slow", poll_interval=0.2, timeout=2))
        fast = ModbusAdapter(device(profile, fast_port, id="fast", poll_interval=0.2))
        await slow.start()
        await fast.start()
        await asyncio.sleep(1.5)
        # While the slow device has not answered once, the fast one kept its 5 Hz rhythm.
        assert slow.state.last_good_poll is None
        assert fast.state.polls >= 5
        assert fast.state.consecutive_errors == 0
        await asyncio.gather(slow.stop(), fast.stop())


async def test_writes_are_checked_then_reach_the_device(tmp_path):
    profile = write_profile(tmp_path, POINTS)
    async with raw_server(inputs=[regs(0, input_words())], holding=[regs(0, [0])]) as (_, port):
        adapter = ModbusAdapter(device(profile, port))
        ok = await adapter.write("speed_set", -3.5)
        assert ok.ok, ok.error
        assert (await adapter.write("start", True)).ok
        s = by_signal(await adapter.poll_once())
        assert s["speed_set"].value == pytest.approx(-3.5) and s["start"].value is True
        refused = {
            "temp": (12, "read-only"),
            "speed_set": (99, "outside -15.0..15.0"),
            "start": ("yes", "true/false"),
            "nope": (1, "no signal 'nope'"),
        }
        for signal, (value, why) in refused.items():
            result = await adapter.write(signal, value)
            assert not result.ok and why in result.error, (signal, result.error)
        await adapter.stop()


async def test_gateway_target_failure_is_comm_fail_not_bad_data(tmp_path):
    profile = write_profile(tmp_path, POINTS)

    async def target_silent(*_):
        return ExcCodes.GATEWAY_NO_RESPONSE

    async with raw_server(inputs=[regs(0, input_words())], action=target_silent) as (_, port):
        adapter = ModbusAdapter(device(profile, port))
        await adapter._connect()
        assert await adapter.poll_once() is None
        reading = await next_event(adapter, Reading)
        assert {x.quality for x in reading.samples} == {Quality.COMM_FAIL}
        assert adapter.state.status is DeviceStatus.OFFLINE
        assert "gateway target failed to respond" in adapter.state.reason
        assert adapter.client.connected  # the TCP link to the gateway stays up
        await adapter.stop()


async def lines_until(stream, wanted: str, seen: list[str], timeout: float = 20.0) -> None:
    """Read log lines into ``seen`` until one contains ``wanted``."""
    async def scan():
        while wanted not in (line := (await stream.readline()).decode()):
            assert line, f"log ended before {wanted!r}:\n" + "".join(seen)
            seen.append(line)
        seen.append(line)
    await asyncio.wait_for(scan(), timeout)


@pytest.mark.parametrize("pymodbus_log", [None, "debug"])
async def test_a_device_timing_out_during_a_run_logs_one_line_per_state_change(mosquitto, tmp_path, pymodbus_log):
    stalling = asyncio.Event()

    async def stall_while_asked(*_):
        if stalling.is_set():
            await asyncio.sleep(1)  # past the adapter's timeout

    async with raw_server(inputs=[regs(0, [100])], action=stall_while_asked) as (_, port):
        site = {"site": {"id": "mine"}, "areas": [{"id": "a", "kind": "belt_line"}],
                "devices": [{"id": "m1", "adapter": "modbus", "area": "a", "profile": write_profile(tmp_path, POINTS[:1]),
                             "host": "127.0.0.1", "port": port, "poll_interval": 0.2, "timeout": 0.3,
                             "retries": 0, "backoff_initial": 0.1, "backoff_max": 0.2}],
                "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "topic_prefix": "log-test"}}
        (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway.cli", "run", str(tmp_path / "site.yaml"),
                                                    cwd=Path(__file__).parent.parent, stderr=asyncio.subprocess.PIPE,
                                                    env=os.environ | ({"MINEGW_PYMODBUS_LOG": pymodbus_log}
                                                                      if pymodbus_log else {}))
        seen: list[str] = []
        try:
            await lines_until(proc.stderr, "m1: online", seen)
            stalling.set()
            await lines_until(proc.stderr, "m1: offline", seen)
            await asyncio.sleep(2)  # several more polls time out
            stalling.clear()
            await lines_until(proc.stderr, "m1: online", seen)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, rest = await asyncio.wait_for(proc.communicate(), 15)
        log = "".join(seen) + rest.decode()
        if pymodbus_log:  # asked for: every frame and every timeout
            assert "DEBUG pymodbus.logging: send: 0x" in log and "ERROR pymodbus.logging: No response received" in log
        else:
            assert "pymodbus" not in log and ">>>>>" not in log, log
        assert [line.split("m1: ")[1].split(":")[0] for line in log.splitlines() if "m1: o" in line] == \
            ["online", "offline", "online"], log
