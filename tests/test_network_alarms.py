"""The network watch and the alarm engine together: a cut link raises one ring_open that names it, a second cut the
island alarm, the comm-loss alarms of the devices cut off are suppressed by it and everything clears when the links
return. Readings are built as the SNMP adapter makes them; no network."""
from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.alarms import AlarmEngine, AlarmKind, AlarmRule, AlarmState
from gateway.config import ConfigError, parse_site
from gateway.core.model import DeviceState, DeviceStatus
from gateway.network.watch import NetworkWatch, network_alarm_ids
from tests.network_site import SWITCHES, T0, ring_site_dict, switch_reading, ups_reading

LINK_RULES = [{"id": f"{d}-link", "device": d, "kind": "comm_loss"} for d in ("belt-1", "shearer", "pump", "sw3", "sw4")]


class Net:
    """The watch and the engine as the router runs them; ``events`` collects every transition."""

    def __init__(self):
        self.site = parse_site(ring_site_dict(alarms=LINK_RULES))
        self.watch = NetworkWatch(self.site.network, self.site.devices)
        self.engine = AlarmEngine(self.site.alarms, {d.id: d.area for d in self.site.devices})
        self.events, self.rings = [], []

    def poll(self, t: float, down: dict[str, tuple[int, ...]] | None = None, silent: tuple[str, ...] = (), **kw):
        down = down or {}
        for sw in SWITCHES:
            if sw in silent:
                self.state(sw, t, online=False)
            else:
                self.state(sw, t, online=True)
                self.feed(self.watch.on_reading(switch_reading(sw, t, down=down.get(sw, ()), **kw.get(sw, {}))))

    def state(self, device: str, t: float, online: bool):
        state = DeviceState(device=device, status=DeviceStatus.ONLINE if online else DeviceStatus.OFFLINE,
                            reason="connected" if online else "timeout", since=T0 + timedelta(seconds=t))
        self.events += self.engine.on_state(device, state)
        if self.watch.follows(device):
            self.feed(self.watch.on_state(device, state))

    def feed(self, update):
        if update is not None:
            self.rings += update.rings
            self.events += self.engine.on_network(update.alarms, update.ts)

    def active(self) -> dict[str, tuple[str, str | None]]:
        return {a.alarm: (a.message, a.suppressed_by) for a in self.engine.alarms() if a.active}


def test_cut_second_cut_and_return():
    net = Net()
    net.poll(0)
    assert net.rings[-1].diagnosis.state == "closed" and net.active() == {}

    net.poll(10, down={"sw3": (2,), "sw4": (1,)})  # one cut
    assert net.rings[-1].diagnosis.state == "open"
    assert net.active() == {"net.ring-1.open": ("ring main ring: open at sw3 port 2 — sw4 port 1", None)}
    assert [e.kind for e in net.events if e.active] == [AlarmKind.RING_OPEN]  # one alarm, not one per end

    net.poll(20, down={"sw3": (2,), "sw4": (1,), "sw2": (2,), "sw5": (1,)}, silent=("sw3", "sw4"))  # second cut
    for device in ("shearer", "pump"):  # their simulators went dark with the island
        net.state(device, 21, online=False)
    d = net.rings[-1].diagnosis
    assert (d.state, d.cut_off_switches, d.cut_off_devices) == ("segmented", ["sw3", "sw4"], ["pump", "shearer"])
    active = net.active()
    assert active["net.ring-1.segmented"] == (
        "ring main ring: segmented into 2 islands [sw3 sw4 | sw5 sw6 sw1 sw2]; cut off: sw3, sw4 "
        "(devices: pump, shearer)", None)
    for alarm in ("shearer-link", "pump-link", "sw3-link", "sw4-link"):
        assert active[alarm][1] == "net.ring-1.segmented", alarm  # raised, but suppressed by the island alarm
    assert "belt-1-link" not in active
    unsuppressed = {a for a, (_, by) in active.items() if by is None}
    assert unsuppressed == {"net.ring-1.open", "net.ring-1.segmented"}  # the dispatcher sees the network only

    net.poll(30)  # links back, every switch answers
    for device in ("shearer", "pump"):
        net.state(device, 31, online=True)
    assert "net.ring-1.open" in net.active()  # cleared once the ring stayed whole for a poll round
    net.poll(40)
    assert net.rings[-1].diagnosis.state == "closed"
    assert net.active() == {}
    last = {e.alarm: e for e in net.events}
    assert last["shearer-link"].state is AlarmState.CLEARED_UNACK and not last["shearer-link"].suppressed
    assert last["net.ring-1.open"].state is AlarmState.CLEARED_UNACK


def test_a_device_that_stays_dark_after_the_links_return_is_no_longer_suppressed():
    net = Net()
    net.poll(0)
    net.poll(10, down={"sw3": (2,), "sw4": (1,), "sw2": (2,), "sw5": (1,)}, silent=("sw3", "sw4"))
    net.state("pump", 11, online=False)
    assert net.active()["pump-link"][1] == "net.ring-1.segmented"
    net.poll(20)
    net.poll(30)
    assert net.active()["pump-link"] == ("pump: communication lost", None)
    last = [e for e in net.events if e.alarm == "pump-link"][-1]
    assert last.active and not last.suppressed  # announced again, unsuppressed


def test_device_link_down_suppresses_its_comm_loss():
    net = Net()
    net.poll(0, down={"sw4": (5,)})
    net.state("pump", 1, online=False)
    assert net.active() == {"net.pump.link-down": ("pump: its link at sw4 port 5 is down", None),
                            "pump-link": ("pump: communication lost", "net.pump.link-down")}


def test_switch_unreachable_restarted_errors_and_ups():
    net = Net()
    net.poll(0)
    net.poll(10, silent=("sw5",))
    assert "net.sw5.unreachable" not in net.active()  # a poll round to tell unreachable from cut off
    net.poll(20, silent=("sw5",))
    assert net.active()["net.sw5.unreachable"][0] == "sw5: does not answer (SNMP), though reachable on paper"
    net.poll(25, sw2={"uptime": 5.0})  # uptime went back
    assert "net.sw2.restarted" in net.active() and "net.sw5.unreachable" not in net.active()
    for t, rate in ((30, 0.5), (40, 2.0), (50, 6.0)):
        net.poll(t, sw6={"errors": {1: rate}})
    assert net.active()["net.sw6.errors"][0] == "sw6: error rate climbing at port 1 (to sw5 port 2)"
    assert net.rings[-1].diagnosis.degraded_links[0]["errors_ps"] == 6.0
    net.feed(net.watch.on_reading(ups_reading(seconds=60, on_battery=True)))
    assert net.active()["net.ups-1.on-battery"][0] == "ups-1: on battery (mains lost)"
    net.feed(net.watch.on_reading(ups_reading(seconds=70, on_battery=False)))
    assert "net.ups-1.on-battery" not in net.active()


def test_restart_alarm_clears_after_the_hold_time():
    net = Net()
    net.poll(0)
    net.poll(10, sw2={"uptime": 5.0})
    assert "net.sw2.restarted" in net.active()
    net.poll(10 + net.watch.settings.restart_hold_s, sw2={"uptime": 600.0})
    assert "net.sw2.restarted" not in net.active()


def test_ring_status_is_announced_only_when_it_changes():
    net = Net()
    net.poll(0)
    net.poll(10)
    assert [r.diagnosis.state for r in net.rings] == ["unknown", "closed"]  # unknown: before the first answer


def test_every_network_alarm_the_site_can_raise_is_known_beforehand():
    net = Net()
    ids = {alarm for _, _, alarm in network_alarm_ids(net.site.network, net.site.devices)}
    net.poll(0, down={"sw4": (5,)})
    net.poll(10, down={"sw3": (2,), "sw4": (1, 5), "sw2": (2,), "sw5": (1,)}, silent=("sw6",), sw2={"uptime": 1.0})
    net.feed(net.watch.on_reading(ups_reading(seconds=20, on_battery=True)))
    raised = {e.alarm for e in net.events if e.alarm.startswith("net.")}
    assert raised <= ids and len(raised) >= 5


@pytest.mark.parametrize("rule, message", [
    ({"id": "x", "device": "sw1", "kind": "ring_open"}, "ring_open alarms are raised by the network diagnosis"),
    ({"id": "net.x", "device": "sw1", "kind": "comm_loss"}, "alarm ids starting with 'net.'"),
])
def test_rules_cannot_take_network_kinds_or_ids(rule, message):
    with pytest.raises(ConfigError) as err:
        parse_site(ring_site_dict(alarms=[rule]))
    assert any(message in p for p in err.value.problems)


def test_network_alarm_ack():
    net = Net()
    net.poll(0)
    net.poll(10, down={"sw3": (2,), "sw4": (1,)})
    event = net.engine.ack("net.ring-1.open", "li.na")
    assert event.state is AlarmState.ACTIVE_ACK and event.area == "network" and event.device == "ring-1"
    assert AlarmRule  # the rule model refuses network kinds; the engine makes their conditions itself
