"""``minegw console`` driven headless (Textual's pilot) against a real Mosquitto: what a gateway publishes
(full and compact data, schemas, states, alarms, health, linkage, rings) shows on the screens; the ack key
sends a command the gateway's own CommandHandler accepts as signed; the area filter, the detail screen,
the caller's extra keys; the broker going away and coming back."""
import asyncio
import json
import time
import uuid
from datetime import timedelta
from types import SimpleNamespace

import paho.mqtt.client as paho
import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from gateway.commands import CommandHandler
from gateway.console.app import ConsoleApp, DeviceScreen, screen_text
from gateway.console.model import SiteModel
from gateway.contract import CompactPayloads, SchemaMessage, Topics, schema_version
from gateway.core.model import Quality, Reading, Schema, iso, utcnow
from gateway.operator import Operator
from tests.console_util import BELT, FACE, Publisher, console_site
from tests.mqtt_util import MqttCollector
from tests.util import Operators

SIZE = (170, 80)


async def until(pilot, check, timeout: float = 8.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}\n{screen_text(pilot.app)}")
        await pilot.pause(0.1)
    return result


async def shows(pilot, *texts: str, absent: tuple[str, ...] = (), timeout: float = 8.0) -> str:
    """Wait until every text is on the screen and none of ``absent``; the screen."""
    def check():
        screen = screen_text(pilot.app)
        return screen if all(t in screen for t in texts) and not any(t in screen for t in absent) else None
    return await until(pilot, check, timeout, f"{texts} on the screen" + (f", not {absent}" if absent else ""))


async def connected(pilot):
    await until(pilot, lambda: pilot.app.model.link.connected, what="the console's subscription")


@pytest.fixture
def site(mosquitto):
    return console_site(mosquitto, f"con-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def publisher(site):
    p = Publisher(site)
    yield p
    p.close()


def rows(app, table: str) -> list[str]:
    return [key.value for key in app.query_one(table).rows]


def strip_line(text: str) -> str:
    """The face strip's row of supports (between the panel's borders)."""
    return next(line for line in text.splitlines() if line.count("█") > 50).split("│")[1][1:]


@pytest.mark.parametrize("compact", [False, True], ids=["full", "compact"])
async def test_main_screen_shows_every_panel(site, publisher, compact):
    p = publisher
    p.state("shearer-1201", polls=42)
    p.alarm("belt-main-1", "belt-slip", priority=2, message="belt slipping", ts=utcnow() - timedelta(seconds=10))
    p.alarm("shearer-1201", "shearer-ch4", priority=1)  # the newer
    p.health(queued=7, dropped=3)
    p.send(Topics(site.mqtt.topic_prefix, site.site.id).gateway_status("gateway-1"), {
        "site": site.site.id, "gateway": "gateway-1", "status": "online", "reason": "connected", "version": "0.1.0",
        "started": iso(utcnow()), "devices": [], "ts": iso(utcnow())}, retain=True)
    p.send(f"{site.mqtt.topic_prefix}/{site.site.id}/network/ring/main", {
        "site": site.site.id, "ring": "main", "ts": iso(utcnow()), "state": "open",
        "open_links": [{"a": "sw-2", "a_port": 2, "b": "sw-3", "b_port": 1}], "islands": [],
        "cut_off_switches": [], "cut_off_devices": ["pump-3"]}, retain=True)
    p.send(f"{site.mqtt.topic_prefix}/{site.site.id}/{FACE}/linkage/shearer-ch4", {
        "site": site.site.id, "area": FACE, "alarm": "shearer-ch4", "device": "shearer-1201",
        "zones": [FACE, "escape-intake"], "message": "evacuation", "priority": 3,
        "nodes": {"bn-1": {"node": "bn-1", "zone": FACE, "confirmed": True, "reason": None, "confirm_ms": 412.5},
                  "bn-2": {"node": "bn-2", "zone": "escape-intake", "confirmed": False, "reason": "line fault",
                           "confirm_ms": None}},
        "ok": False, "trigger_ts": iso(utcnow()), "trigger_to_confirmed_ms": None, "broadcast_elapsed_ms": 5003.0,
        "snapshots": [], "snapshot_errors": {}, "error": "bn-2 not confirmed", "ts": iso(utcnow())}, retain=True)
    app = ConsoleApp(site, refresh=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        p.data("shearer-1201", {"support_number": 40, "haulage_speed": 6.2, "methane": 0.45}, compact=compact)
        p.data("shearer-1201", {"status": "running", "status_code": 1}, compact=compact, poll_ms=0.0, derived=True)
        p.data("afc-1201", {"status": "stopped", "status_code": 0}, compact=compact, poll_ms=0.0, derived=True)
        p.data("belt-main-1", {"speed": 3.15, "load": 812.0, "slip": True, "tear": False, "status_code": 3},
               compact=compact)
        p.face(pressures={3: (18.0, 25.0), 50: (36.5, 30.0), 41: (2.0, 3.0)}, below_setting=4, compact=compact)
        p.data("cam-1", {"online": True, "response_ms": 14.0, "stream_ok": True, "picture": "obscured",
                         "stream_fps": 15.0, "stream_kbps": 512.0}, compact=compact)  # stream health: docs/video.md
        p.data("cam-1", {"motion": True}, compact=compact, poll_ms=0.0)
        p.data("bn-1", {"playing": True, "playing_message": 1, "playing_priority": 3}, compact=compact)
        # a DataTable sizes its columns when the app is next idle, after a Static shows the same message:
        # wait for the widest cells too, and for each message published above (bn-1's is the last)
        await shows(pilot, "shearer at support 40", "motion at ", "speed=3.15",
                    "support_number=40  haulage_speed=6.2  methane=0.45", "obscured 15 fps 512 kbps",
                    "bn-1 ▶ evacuation (emergency)")
        screen = await until(pilot, lambda: next((t for t in [screen_text(pilot.app)]
                                                  if any(line.count("█") > 50 for line in t.splitlines())), None),
                             what="the face strip drawn")
        # areas: the worst machine status (running shearer + stopped AFC -> running; a belt in fault)
        assert any(f"{FACE}  running" in line for line in screen.splitlines())
        assert any(f"{BELT}  fault" in line for line in screen.splitlines())
        # the face: one cell per support, support n at column n - 1
        strip = strip_line(screen)
        assert (strip[2], strip[40], strip[49], strip[0]) == ("▒", "▁", "▲", "█")
        assert "below setting 4" in screen and "1 under setting, 1 near yield" in screen
        marker = next(line for line in screen.splitlines() if "▼" in line).split("│")[1][1:]
        assert marker.index("▼") == 39
        # machines, belts, cameras, broadcast, linkage, ring, gateway, alarms
        assert "support_number=40  haulage_speed=6.2  methane=0.45" in screen
        belt = next(line for line in screen.splitlines() if line.startswith("│ belt-main-1 ")).split("││")[0]
        assert belt.split() == ["│", "belt-main-1", "3.15", "812", "fault", "slip"]
        assert "obscured 15 fps 512 kbps" in screen  # the camera's stream health
        assert "bn-1 ▶ evacuation (emergency) ✔ confirmed 412.5 ms" in screen
        assert "bn-2 ? ✘ not confirmed: line fault" in screen
        assert "linkage shearer-ch4 → evacuation in face-1201, escape-intake: 1/2 confirmed" in screen
        assert "sw-2 p2 — sw-3 p1" in screen and "pump-3" in screen
        assert "gateway-1  online" in screen and "queued 7 · dropped 3 · delivered 1190/1200" in screen
        alarms = [line for line in screen.splitlines() if "active_unack" in line]
        assert "shearer-ch4" in alarms[0] and "belt-slip" in alarms[1]  # newest first
    # the compact payload gave the same values as the full one
    rp = app.model.devices["rp-1201"]
    assert rp.signals["support_003_front_leg_pressure"].value == 18.0
    assert rp.signals["supports_below_setting"].value == 4


def test_compact_message_waits_for_its_schema(site):
    """A compact message that comes before its retained schema is applied when the schema arrives."""
    model, topics = SiteModel(site), Topics(site.mqtt.topic_prefix, site.site.id)
    schema = Schema(["speed", "load"], ["m/s", "t/h"])
    reading = Reading("belt-main-1", utcnow(), 9.0, schema=schema, values=[2.5, None],
                      qualities=[Quality.GOOD, Quality.COMM_FAIL])
    assert not model.apply(topics.data(BELT, "belt-main-1"), CompactPayloads().build(reading))
    message = SchemaMessage(site=site.site.id, area=BELT, zone=BELT, device="belt-main-1", kind="belt_conveyor",
                            schemas={schema_version(schema.signals, schema.units):
                                     {"signals": list(schema.signals), "units": list(schema.units)}})
    assert model.apply(topics.schema(BELT, "belt-main-1"), message.model_dump_json().encode())
    belt = model.devices["belt-main-1"]
    assert (belt.signals["speed"].value, belt.signals["speed"].unit) == (2.5, "m/s")
    assert belt.signals["load"].quality == "comm-fail"
    assert not model.apply(topics.data(BELT, "belt-main-1"), b"{not json")  # a bad message: said, nothing lost
    assert "belt-main-1/data" in model.problems[-1] and belt.signals["speed"].value == 2.5


async def test_ack_key_sends_a_signed_command_the_gateway_accepts(mosquitto, tmp_path):
    operators = Operators(tmp_path, "alice")
    site = console_site(mosquitto, f"con-{uuid.uuid4().hex[:8]}", operators=operators.site_entry(),
                        replay_store=tmp_path / "ids.sqlite3")
    topics = Topics(site.mqtt.topic_prefix, site.site.id)
    acked: list[tuple[str, str]] = []

    def ack(alarm, by):  # the gateway's alarm engine, as CommandHandler calls it
        acked.append((alarm, by))
        return SimpleNamespace(state=SimpleNamespace(value="active_ack"))

    handler = CommandHandler(site.commands, {}, lambda entry: None, ack=ack)
    commands = MqttCollector(mosquitto.host, mosquitto.port, topics.alarm_ack())
    p = Publisher(site)
    try:
        p.alarm("shearer-1201", "shearer-ch4")
        app = ConsoleApp(site, refresh=0.2, operator=Operator(operators.files["alice"], "alice"))
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot)
            await shows(pilot, "shearer-ch4")
            pilot.app.query_one("#alarms").focus()
            await pilot.press("a")
            sent = await commands.until(lambda ms: ms[-1] if ms else None)
            reply = await handler.handle("ack", sent.payload)  # signature, freshness, replay: the gateway's checks
            assert reply.ok and reply.state == "active_ack", reply
            assert acked == [("shearer-ch4", "alice")]
            body = json.loads(sent.payload)
            assert body["key_id"] == "alice" and body["sig"]
            other = topics.command_reply("gw-elsewhere", body["request_id"], "alice")  # not this site file's gateway
            p.send(other, reply.model_copy(update={"ok": False, "error": "forged"}).model_dump_json())
            p.send(topics.command_reply(site.site.gateway_id, body["request_id"], "alice"), reply.model_dump_json())
            assert "forged" not in await shows(pilot, "ack shearer-ch4: ok, now active_ack")
            again = await handler.handle("ack", sent.payload)  # the same command twice: a replay
            assert not again.ok and "replay" in again.error
    finally:
        commands.close()
        p.close()
        handler.replays.close()


async def test_ack_without_a_key_says_how(site, publisher):
    publisher.alarm("shearer-1201", "shearer-ch4")
    async with ConsoleApp(site, refresh=0.2).run_test(size=SIZE) as pilot:
        await shows(pilot, "shearer-ch4")
        await pilot.press("a")
        await shows(pilot, "start the console with --key FILE")


async def test_area_filter_and_device_detail(mosquitto):
    site = console_site(mosquitto, f"con-{uuid.uuid4().hex[:8]}", protocol="3.1.1")
    p = Publisher(site, protocol=paho.MQTTv311)
    try:
        p.alarm("shearer-1201", "shearer-ch4", ts=utcnow() - timedelta(seconds=10))
        p.alarm("belt-main-1", "belt-slip", priority=2)  # the newer
        p.state("shearer-1201", polls=120, errors=2)
        app = ConsoleApp(site, refresh=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot)
            p.data("shearer-1201", {"left_cutting_current": 182.4, "haulage_speed": 6.2, "methane": None})
            await shows(pilot, "shearer-ch4", "belt-slip", "haulage_speed=6.2")
            await pilot.press("f")  # the first area
            await shows(pilot, f"filter: {FACE}")
            assert rows(app, "#alarms") == ["shearer-ch4"]
            assert rows(app, "#devices") == ["shearer-1201", "afc-1201", "rp-1201", "cam-1", "bn-1"]
            await pilot.press("f")
            await shows(pilot, f"filter: {BELT}")
            assert rows(app, "#alarms") == ["belt-slip"]
            assert rows(app, "#devices") == ["belt-main-1", "bn-2"]
            await pilot.press("f")
            await shows(pilot, "filter: all areas")
            assert rows(app, "#alarms") == ["belt-slip", "shearer-ch4"]

            devices = pilot.app.query_one("#devices")
            devices.focus()
            devices.move_cursor(row=0)  # shearer-1201
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(pilot.app.screen, DeviceScreen), what="the detail screen")
            screen = await shows(pilot, "left_cutting_current", "polls 120  errors 2")
            assert "182.4" in screen and "timeouts 2" in screen
            assert "methane" in screen and "good" in screen
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(pilot.app.screen, DeviceScreen), what="back")
    finally:
        p.close()


async def test_extra_actions_show_in_the_footer_and_run(site):
    calls = []

    async def inject():
        calls.append("slip")
        return "belt-main-1 slipping"

    async def broken():
        raise RuntimeError("simulator not reachable")

    app = ConsoleApp(site, refresh=0.2, actions=[("x", "inject slip", inject), ("y", "clear faults", broken)],
                     notes=["no InfluxDB: 12 lines buffered"])
    async with app.run_test(size=SIZE) as pilot:
        await shows(pilot, "inject slip", "clear faults")  # the footer
        await shows(pilot, "no InfluxDB: 12 lines buffered")  # the program's note, on the status line
        await pilot.press("x")
        await shows(pilot, "inject slip: belt-main-1 slipping")
        assert calls == ["slip"]
        await pilot.press("y")
        await shows(pilot, "clear faults: failed: simulator not reachable")


async def test_broker_down_banner_keeps_what_it_knew(make_mosquitto):
    broker = make_mosquitto()
    site = console_site(broker, f"con-{uuid.uuid4().hex[:8]}")
    p = Publisher(site)
    app = ConsoleApp(site, refresh=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        p.data("belt-main-1", {"speed": 3.15, "load": 640.0})
        await shows(pilot, "speed=3.15")
        p.close()
        broker.stop()
        screen = await shows(pilot, "connection to broker", "showing what was known")
        assert "speed=3.15" in screen and "NOT CONNECTED" in screen
        await asyncio.sleep(1.5)
        broker.start()
        await until(pilot, lambda: app.model.link.connected, timeout=15, what="the reconnection")
        # the banner hides by a CSS class, gone from the screen at its next layout: a frame after the status line
        await shows(pilot, " connected ·", absent=("showing what was known",))


async def test_unreachable_broker_from_the_start(site):
    site.mqtt.port = 1  # nothing listens there
    async with ConsoleApp(site, refresh=0.2).run_test(size=SIZE) as pilot:
        screen = await shows(pilot, "unreachable", "nothing received yet")
        assert "NOT CONNECTED" in screen


def test_cli_needs_a_broker(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text("site: {id: s}\nareas: [{id: face, kind: longwall_face}]\n")
    result = CliRunner().invoke(cli, ["console", "-c", str(path)])
    assert result.exit_code == 1 and "no mqtt: section" in result.output


@pytest.mark.parametrize("payload", ["full", "compact"])
async def test_a_real_gateway_over_simulators(mosquitto, payload):
    """What `minegw run` publishes for simulated machines (over Modbus TCP) is what the console shows."""
    from gateway.mqtt import MqttSink
    from gateway.runtime import Gateway
    from simulators.site import SiteSimulator
    from tests.sites import make_site, modbus, mqtt

    site = make_site(modbus("shearer-1", "shearer"), modbus("belt-1", "belt_conveyor", area="belt"),
                     areas={"face": "longwall_face", "belt": "belt_line"},
                     mqtt=mqtt(mosquitto, f"con-{uuid.uuid4().hex[:8]}", payload=payload))
    sims = SiteSimulator(site, seed=5)
    await sims.start()
    gateway = Gateway(site, [MqttSink(site.mqtt, site, health_interval=0.5)])
    await gateway.start()
    try:
        app = ConsoleApp(site, refresh=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: all(d.online and d.status_code is not None for d in app.model.devices.values()),
                        timeout=15, what="both machines online with a status")
            await shows(pilot, "gateway-1  online", "uplink connected")
            shearer = app.model.devices["shearer-1"]
            assert shearer.kind == "shearer" and "haulage_speed" in shearer.signals
            assert app.model.devices["belt-1"].signals["speed"].unit == "m/s"
            # the devices table lays its rows out when the app is next idle, after the panels above
            await until(pilot, lambda: any(line.split()[1:4] == ["shearer-1", "face", "shearer"]
                                           for line in screen_text(app).splitlines() if line.startswith("│  shearer-1")),
                        what="the shearer's row in the devices table")
            assert app.model.problems == []
    finally:
        await gateway.stop()
        await sims.stop()
