"""The alarm engine without any network: rule kinds, deadband, delays, ISA-18.2 lifecycle, methane table."""
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from gateway.alarms import AlarmEngine, AlarmRule, AlarmState, Priority
from gateway.config import ConfigError, parse_site
from gateway.historian.lineprotocol import alarm_event_line
from gateway.contract import AckCommand, AlarmMessage
from gateway.core.model import DeviceState, DeviceStatus, Quality, Reading, Sample

T0 = datetime(2025, 3, 14, 6, 0, tzinfo=timezone.utc)
S = AlarmState


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def reading(t: float, quality: Quality = Quality.GOOD, device: str = "d1", **values) -> Reading:
    return Reading(device=device, ts=at(t), poll_ms=1.0,
                   samples=[Sample(signal=k, value=v, quality=quality, ts=at(t)) for k, v in values.items()])


def engine(**rule) -> AlarmEngine:
    rule = {"id": "a1", "device": "d1", **rule}
    return AlarmEngine([AlarmRule(**rule)], {"d1": "face-1"})


def feed(eng: AlarmEngine, series, signal="x", quality=Quality.GOOD) -> list:
    """Feed (t, value) pairs; return the states of the events, in order."""
    events = []
    for t, v in series:
        events += eng.on_reading("d1", reading(t, quality, **{signal: v}))
    return [(e.alarm, e.state, e.ts, e.value) for e in events]


def test_high_raises_at_the_limit_and_clears_below_the_deadband():
    eng = engine(signal="x", kind="high", limit=10, deadband=1)
    assert feed(eng, [(0, 9.9)]) == []
    assert feed(eng, [(1, 10.0)]) == [("a1", S.ACTIVE_UNACK, at(1), 10.0)]
    assert feed(eng, [(2, 9.5), (3, 9.01), (4, 11)]) == []  # inside the deadband: still active
    assert feed(eng, [(5, 9.0)]) == []  # the clear needs to get below 9 (limit - deadband), not to it
    assert feed(eng, [(6, 8.99)]) == [("a1", S.CLEARED_UNACK, at(6), 8.99)]


def test_low_and_low_low_mirror_high():
    eng = engine(signal="p", kind="low_low", limit=16, deadband=0.5)
    assert feed(eng, [(0, 17), (1, 16.0)], "p") == [("a1", S.ACTIVE_UNACK, at(1), 16.0)]
    assert feed(eng, [(2, 16.5)], "p") == []
    assert feed(eng, [(3, 16.6)], "p") == [("a1", S.CLEARED_UNACK, at(3), 16.6)]
    assert engine(signal="p", kind="low_low", limit=1).ids == ["a1"]


def test_priority_defaults_by_kind_and_accepts_names():
    assert AlarmRule(id="a", device="d", signal="x", kind="high_high", limit=1).effective_priority is Priority.HIGH
    assert AlarmRule(id="a", device="d", signal="x", kind="high", limit=1).effective_priority is Priority.MEDIUM
    assert AlarmRule(id="a", device="d", signal="x", kind="high", limit=1, priority="critical").priority == 1
    assert AlarmRule(id="a", device="d", signal="x", kind="high", limit=1, priority=4).priority is Priority.LOW
    with pytest.raises(ValidationError, match="unknown priority"):
        AlarmRule(id="a", device="d", signal="x", kind="high", limit=1, priority="urgent")
    with pytest.raises(ValidationError):
        AlarmRule(id="a", device="d", signal="x", kind="high", limit=1, priority=5)


@pytest.mark.parametrize("rule, problem", [
    ({"kind": "high"}, "needs a signal"),
    ({"kind": "high", "signal": "x"}, "needs a limit"),
    ({"kind": "comm_loss", "signal": "x"}, "leave signal out"),
    ({"kind": "methane", "signal": "ch4"}, "needs a location"),
    ({"kind": "high", "signal": "x", "limit": 1, "location": "face"}, "methane rules only"),
    ({"kind": "high", "signal": "x", "limit": 1, "deadband": -1}, "greater than or equal"),
])
def test_rule_validation(rule, problem):
    with pytest.raises(ValidationError, match=problem):
        AlarmRule(id="a", device="d", **rule)


def test_on_delay_in_sample_time_and_a_dip_restarts_it():
    eng = engine(signal="x", kind="high", limit=10, on_delay=5)
    assert feed(eng, [(0, 11), (3, 12), (4, 9), (5, 11), (9, 11)]) == []  # the dip at 4 s restarted the delay
    assert feed(eng, [(10, 13)]) == [("a1", S.ACTIVE_UNACK, at(10), 13)]


def test_off_delay_in_sample_time():
    eng = engine(signal="x", kind="high", limit=10, off_delay=4)
    assert feed(eng, [(0, 11)]) == [("a1", S.ACTIVE_UNACK, at(0), 11)]
    assert feed(eng, [(1, 5), (3, 5), (4, 11), (5, 5), (8, 5)]) == []  # back over at 4 s: the delay restarts
    assert feed(eng, [(9, 4)]) == [("a1", S.CLEARED_UNACK, at(9), 4)]


def test_lifecycle_ack_while_active_then_clear_goes_to_normal():
    eng = engine(signal="x", kind="high", limit=10)
    feed(eng, [(0, 11)])
    ack = eng.ack("a1", "shift-boss", ts=at(1))
    assert (ack.state, ack.acked_by, ack.acked_at, ack.raised_at, ack.value) == (S.ACTIVE_ACK, "shift-boss", at(1),
                                                                                  at(0), 11)
    assert eng.ack("a1", "again", ts=at(2)) is None  # nothing left to acknowledge
    assert feed(eng, [(3, 5)]) == [("a1", S.NORMAL, at(3), 5)]
    assert eng.alarms() == []


def test_lifecycle_clear_before_ack_waits_for_the_ack():
    eng = engine(signal="x", kind="high", limit=10)
    feed(eng, [(0, 11), (1, 5)])
    assert eng.state("a1") is S.CLEARED_UNACK
    [listed] = eng.alarms()
    assert listed.state is S.CLEARED_UNACK and listed.cleared_at == at(1)
    ack = eng.ack("a1", "op", ts=at(2))
    assert ack.state is S.NORMAL and eng.alarms() == []
    assert eng.ack("a1", "op") is None


def test_lifecycle_returning_while_cleared_unacknowledged_is_active_unacknowledged_again():
    eng = engine(signal="x", kind="high", limit=10)
    feed(eng, [(0, 11), (1, 5)])
    assert feed(eng, [(2, 12)]) == [("a1", S.ACTIVE_UNACK, at(2), 12)]
    [listed] = eng.alarms()
    assert listed.raised_at == at(2) and listed.cleared_at is None


def test_ack_of_an_unknown_alarm_raises_key_error():
    with pytest.raises(KeyError):
        engine(signal="x", kind="high", limit=10).ack("nope", "op")


def test_samples_without_a_value_hold_the_alarm():
    eng = engine(signal="x", kind="high", limit=10)
    feed(eng, [(0, 11)])
    assert feed(eng, [(1, None)], quality=Quality.COMM_FAIL) == []
    assert feed(eng, [(2, 3.0)], quality=Quality.BAD) == []
    assert eng.state("a1") is S.ACTIVE_UNACK
    assert feed(eng, [(3, 20.0)], quality=Quality.OUT_OF_RANGE) == []  # still evaluated: still active
    assert feed(eng, [(4, 1.0)], quality=Quality.STALE) == [("a1", S.CLEARED_UNACK, at(4), 1.0)]
    assert eng.on_reading("other", reading(5, device="other", x=99)) == []


def test_state_bit_alarm_belt_tear_and_inverted_bit():
    eng = engine(signal="tear", kind="state", priority="critical")
    assert feed(eng, [(0, False)], "tear") == []
    [(_, state, _, value)] = feed(eng, [(1, True)], "tear")
    assert state is S.ACTIVE_UNACK and value is True
    assert feed(eng, [(2, False)], "tear") == [("a1", S.CLEARED_UNACK, at(2), False)]
    inverted = engine(signal="healthy", kind="state", active_value=False)
    assert feed(inverted, [(0, True), (1, 0)], "healthy") == [("a1", S.ACTIVE_UNACK, at(1), 0)]


def test_rate_of_rise_per_hour_over_a_window():
    # roof load-rise rate: > 2 MPa/h
    eng = engine(signal="p", kind="rate", limit=2, window=600, deadband=0.5)
    assert feed(eng, [(0, 30.0)], "p") == []  # one sample: no rate yet
    assert feed(eng, [(300, 30.1)], "p") == []  # 1.2 MPa/h
    [(_, state, ts, _)] = feed(eng, [(600, 30.4)], "p")  # 2.4 MPa/h over 600 s
    assert (state, ts) == (S.ACTIVE_UNACK, at(600))
    assert feed(eng, [(900, 30.65)], "p") == []  # since 300 s: 3.3 MPa/h
    assert feed(eng, [(1200, 30.68)], "p") == []  # since 600 s: 1.68 MPa/h, inside the deadband (> 1.5)
    assert feed(eng, [(1500, 30.70)], "p") == [("a1", S.CLEARED_UNACK, at(1500), 30.70)]  # 0.3 MPa/h


def test_comm_loss_from_device_states_with_on_delay_counted_by_readings():
    eng = engine(kind="comm_loss", on_delay=10)
    assert eng.on_state("d1", DeviceState(device="d1", since=at(0))) == []  # "not polled yet" is no loss
    online = DeviceState(device="d1", status=DeviceStatus.ONLINE, reason="polling", since=at(1))
    assert eng.on_state("d1", online) == []
    down = DeviceState(device="d1", status=DeviceStatus.OFFLINE, reason="no answer: timeout", since=at(5))
    assert eng.on_state("d1", down) == []  # the delay runs
    assert eng.on_reading("d1", reading(10, Quality.COMM_FAIL, x=None)) == []
    [raised] = eng.on_reading("d1", reading(15, Quality.COMM_FAIL, x=None))
    assert (raised.state, raised.ts, raised.value, raised.priority) == (S.ACTIVE_UNACK, at(15),
                                                                        "no answer: timeout", Priority.HIGH)
    assert "communication lost" in raised.message and raised.signal is None and raised.area == "face-1"
    [cleared] = eng.on_state("d1", online.model_copy(update={"since": at(20)}))
    assert (cleared.state, cleared.ts) == (S.CLEARED_UNACK, at(20))


def test_comm_loss_without_delay_is_immediate():
    eng = engine(kind="comm_loss")
    [e] = eng.on_state("d1", DeviceState(device="d1", reason="cannot connect", since=at(3)))
    assert e.state is S.ACTIVE_UNACK and e.ts == at(3)


@pytest.mark.parametrize("location, alarm, cut", [("face", 1.0, 1.5), ("upper_corner", 1.0, 1.5),
                                                  ("return", 1.0, 1.0), ("machine", 1.0, 1.5),
                                                  ("heading", 1.0, 1.5)])
def test_methane_settings_from_the_reference_table(location, alarm, cut):
    eng = engine(signal="ch4", kind="methane", location=location)
    assert eng.ids == ["a1", "a1-cut"]
    assert feed(eng, [(0, alarm - 0.01)], "ch4") == []
    raised = feed(eng, [(1, alarm)], "ch4")
    assert ("a1", S.ACTIVE_UNACK, at(1), alarm) in raised
    assert (("a1-cut", S.ACTIVE_UNACK, at(1), alarm) in raised) == (cut == alarm)
    if cut != alarm:
        assert feed(eng, [(2, cut - 0.01)], "ch4") == []
        assert feed(eng, [(3, cut)], "ch4") == [("a1-cut", S.ACTIVE_UNACK, at(3), cut)]
    # restore: below 1.0, for both levels (no restore at 1.2 after a cut)
    assert feed(eng, [(4, 1.2 if cut > 1.2 else 1.0)], "ch4") == []
    assert feed(eng, [(5, 1.0)], "ch4") == []
    cleared = feed(eng, [(6, 0.99)], "ch4")
    assert {(a, s) for a, s, *_ in cleared} == {("a1", S.CLEARED_UNACK), ("a1-cut", S.CLEARED_UNACK)}


def test_methane_cut_level_is_critical():
    eng = engine(signal="ch4", kind="methane", location="machine", message="shearer methane")
    events = []
    for t, v in [(0, 1.6)]:
        events += eng.on_reading("d1", reading(t, ch4=v))
    by_id = {e.alarm: e for e in events}
    assert by_id["a1"].priority is Priority.HIGH and by_id["a1-cut"].priority is Priority.CRITICAL
    assert "power-cut level 1.5" in by_id["a1-cut"].message and by_id["a1"].message.startswith("shearer methane")


def test_events_serialise_to_the_mqtt_message_and_the_historian_line():
    eng = engine(signal="tear", kind="state")
    [e] = eng.on_reading("d1", reading(1, tear=True))
    msg = AlarmMessage.model_validate_json(AlarmMessage(site="s", **e.model_dump()).model_dump_json())
    assert (msg.state, msg.priority, msg.value, msg.area, msg.raised_at) == ("active_unack", 3, True, "face-1", at(1))
    line = alarm_event_line("s", e)
    assert line.startswith("alarm_event,site=s,area=face-1,device=d1,alarm=a1 ")
    assert 'state="active_unack"' in line and "priority=3i" in line and "value=1.0" in line
    with pytest.raises(ValidationError):
        AckCommand.model_validate_json(b'{"request_id": "r1", "issued_at": "2026-01-01T00:00:00Z", "alarm": ""}')


def site_with(alarms):
    return {"site": {"id": "s"}, "areas": [{"id": "face", "kind": "longwall_face"}],
            "devices": [{"id": "shearer-1", "area": "face", "profile": "shearer", "host": "127.0.0.1", "port": 5020}],
            "alarms": alarms}


def test_site_file_rules_are_checked_against_devices_and_signals():
    site = parse_site(site_with([{"id": "ch4", "device": "shearer-1", "signal": "methane", "kind": "methane",
                                  "location": "machine"},
                                 {"id": "link", "device": "shearer-1", "kind": "comm_loss", "priority": "high"}]))
    assert [r.id for r in site.alarms] == ["ch4", "link"]
    with pytest.raises(ConfigError) as exc:
        parse_site(site_with([{"id": "a", "device": "nope", "kind": "comm_loss"},
                              {"id": "b", "device": "shearer-1", "signal": "nope", "kind": "high", "limit": 1},
                              {"id": "ch4-cut", "device": "shearer-1", "kind": "comm_loss"},
                              {"id": "ch4", "device": "shearer-1", "signal": "methane", "kind": "methane",
                               "location": "face"}]))
    text = "\n".join(exc.value.problems)
    assert "alarms[0].device: unknown device 'nope'" in text
    assert "alarms[1].signal: 'shearer-1' has no signal 'nope'" in text
    assert "'ch4-cut' already used by alarms[2]" in text
    with pytest.raises(ConfigError) as exc:
        parse_site(site_with([{"id": "c", "device": "shearer-1", "signal": "methane", "kind": "rocket"}]))
    assert any(p.startswith("alarms[0].kind") for p in exc.value.problems)


def test_mqtt_sink_clears_retained_alarms_of_an_earlier_run_at_connect():
    from gateway.mqtt import MqttSink

    site = parse_site({**site_with([{"id": "ch4", "device": "shearer-1", "signal": "methane", "kind": "methane",
                                     "location": "machine"}]), "mqtt": {"topic_prefix": "p"}})
    sink = MqttSink(site.mqtt, site)
    assert {t: p for t, p in sink._latest_states.items() if "/alarm/" in t} == {
        "p/s/face/shearer-1/alarm/ch4": b"", "p/s/face/shearer-1/alarm/ch4-cut": b""}


# ---- end to end: Modbus simulator → gateway → Mosquitto + InfluxDB, ack through the CLI ----

async def test_methane_alarm_end_to_end(mosquitto, influxdb, tmp_path):
    import asyncio
    import json
    import uuid

    from typer.testing import CliRunner

    from gateway.cli import app
    from gateway.historian.sink import HistorianSink
    from gateway.mqtt import MqttSink
    from gateway.runtime import Gateway
    from simulators.site import SiteSimulator
    from tests.mqtt_util import MqttCollector
    from tests.sites import historian, make_site, modbus, mqtt
    from tests.util import Operators

    prefix = f"alarm-e2e-{uuid.uuid4().hex[:8]}"
    operators = Operators(tmp_path, "tester", "op")
    db = prefix.replace("-", "_")
    site = make_site(
        modbus("shearer-1", "shearer"),
        alarms=[{"id": "ch4", "device": "shearer-1", "signal": "methane", "kind": "methane", "location": "machine"}],
        mqtt=mqtt(mosquitto, prefix), historian=historian(influxdb, db, tmp_path / "b.sqlite3"),
        commands={"operators": operators.site_entry(), "replay_store": str(tmp_path / "ids.sqlite3")})
    topic = f"{prefix}/s1/face/shearer-1/alarm/ch4"
    broker = ["--host", mosquitto.host, "--port", str(mosquitto.port), "--prefix", prefix, "--site", "s1"]

    def latest(messages, t=topic):
        ours = [m for m in messages if m.topic == t]
        return ours[-1] if ours else None

    def state_is(state, t=topic):
        def check(messages):
            m = latest(messages, t)
            return m if m and m.payload and json.loads(m.payload)["state"] == state else None
        return check

    sims = SiteSimulator(site, seed=3)
    await sims.start()
    try:
        with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/#") as sub:
            async with Gateway(site, [MqttSink(site.mqtt, site), HistorianSink(site.historian, site)]):
                await sub.until(lambda ms: any(m.topic.endswith("/data") for m in ms), timeout=10)
                assert all(m.payload == b"" for m in sub.on(topic))  # methane normal: cleared at connect only
                sims.simulator("shearer-1").set_fault("out_of_range", signal="methane", value=4.4)
                raised = await sub.until(state_is("active_unack"), timeout=10)
                msg = AlarmMessage.model_validate_json(raised.payload)
                assert msg.value == pytest.approx(4.4) and msg.priority == 2  # retained: `alarm list` finds it
                await sub.until(state_is("active_unack", f"{prefix}/s1/face/shearer-1/alarm/ch4-cut"), timeout=5)

                listed = await asyncio.to_thread(CliRunner().invoke, app, ["alarm", "list", *broker])
                assert listed.exit_code == 0, listed.output
                assert "ch4 " in listed.output and "ch4-cut" in listed.output and "2 alarm(s)" in listed.output

                tester = ["--key", str(operators.files["tester"])]
                acked = await asyncio.to_thread(CliRunner().invoke, app, ["alarm", "ack", "ch4", *tester, *broker])
                assert acked.exit_code == 0, acked.output
                assert "ok: ch4 acknowledged, now active_ack" in acked.output
                ack_msg = AlarmMessage.model_validate_json((await sub.until(state_is("active_ack"))).payload)
                assert ack_msg.acked_by == "tester" and ack_msg.raised_at == msg.raised_at
                again = await asyncio.to_thread(CliRunner().invoke, app, ["alarm", "ack", "ch4", *tester, *broker])
                assert again.exit_code == 1 and "nothing to acknowledge" in again.output, again.output
                unknown = await asyncio.to_thread(CliRunner().invoke, app, ["alarm", "ack", "nope", *tester, *broker])
                assert unknown.exit_code == 1 and "refused: no alarm 'nope' is active" in unknown.output

                # malformed and unsigned commands are refused, the gateway goes on
                sub.client.publish(f"{prefix}/s1/command/alarm/ack", b"{not json", qos=1)
                sub.client.publish(f"{prefix}/s1/command/alarm/ack", b'{"alarm": "ch4-cut", "by": "x"}', qos=1)
                # the cut level is acknowledged through the MQTT command directly
                cmd = operators.sign("op", {"request_id": "ack-cut", "alarm": "ch4-cut"})
                sub.client.publish(f"{prefix}/s1/command/alarm/ack", json.dumps(cmd).encode(), qos=1)
                await sub.until(state_is("active_ack", f"{prefix}/s1/face/shearer-1/alarm/ch4-cut"))

                sims.simulator("shearer-1").clear_fault("out_of_range")
                await sub.until(lambda ms: (m := latest(ms)) is not None and m.payload == b"", timeout=10)
                rows = []
                for _ in range(50):
                    rows = influxdb.query('SELECT "state", "priority", "value", "acked_by" FROM "alarm_event" '
                                          "WHERE \"alarm\" = 'ch4'", db)
                    if len(rows) == 3:
                        break
                    await asyncio.sleep(0.1)
                assert [r["state"] for r in rows] == ["active_unack", "active_ack", "normal"]
                assert rows[0]["value"] == pytest.approx(4.4) and rows[1]["acked_by"] == "tester"
                assert rows[2]["value"] < 1.0
            # retained: a late subscriber finds no alarm left on the broker
            with MqttCollector(mosquitto.host, mosquitto.port, f"{prefix}/s1/+/+/alarm/+") as late:
                await asyncio.sleep(0.3)
                assert [m.topic for m in late.messages if m.payload] == []
    finally:
        await sims.stop()
