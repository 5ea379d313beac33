"""The site file's network section: rings of SNMP switches, devices hung on switch ports (located errors)."""
from __future__ import annotations

import copy

import pytest

from gateway.config import ConfigError, parse_site
from tests.network_site import ring_site_dict


def problems(data) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_site(data, "site.yaml")
    return err.value.problems


def test_a_ring_site_loads():
    site = parse_site(ring_site_dict())
    assert [s.device for s in site.network.rings[0].switches] == ["sw1", "sw2", "sw3", "sw4", "sw5", "sw6"]


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["network"]["rings"][0]["switches"][2].update(device="sw9"),
     "network.rings[0].switches[2].device: 'sw9' is not a device of this site"),
    (lambda d: d["network"]["rings"][0]["switches"][2].update(device="belt-1"),
     "network.rings[0].switches[2].device: 'belt-1' is not a switch (adapter: modbus; "
     "a ring switch is adapter: snmp, profile: ring_switch)"),
    (lambda d: d["network"]["rings"][0]["switches"][2].update(device="ups-1"),
     "network.rings[0].switches[2].device: 'ups-1' is not a switch (profile: ups)"),
    (lambda d: d["network"]["rings"][0]["switches"][3].update(ports=[1, 9]),
     "network.rings[0].switches[3].ports: port 9 is not among sw4's ports (1..8)"),
    (lambda d: d["network"]["rings"][0]["switches"][3].update(ports=[2, 2]),
     "network.rings[0].switches[3].ports: the two ring ports are both 2"),
    (lambda d: d["network"]["rings"][0]["switches"][4].update(device="sw2"),
     "network.rings[0].switches[4].device: 'sw2' is already in this ring at switches[1]"),
    (lambda d: d["network"].update(gateway_switch="core-9"), "network.gateway_switch: unknown device 'core-9'"),
    (lambda d: d["devices"][7]["network"].update(switch="sw7"),
     "devices[7].network.switch: 'sw7' is not a device of this site"),
    (lambda d: d["devices"][7]["network"].update(port=2),
     "devices[7].network.port: sw3 port 2 is used twice (also at network.rings[0].switches[2].ports)"),
    (lambda d: d["devices"][7]["network"].update(port=12),
     "devices[7].network.port: port 12 is not among sw3's ports (1..8)"),
])
def test_network_problems_are_located(change, expected):
    data = copy.deepcopy(ring_site_dict())
    change(data)
    found = problems(data)
    assert found == [expected]


def test_two_rings_may_not_share_a_port_nor_an_id():
    data = ring_site_dict()
    data["network"]["rings"].append({"id": "ring-1", "switches": [{"device": "sw1", "ports": [1, 3]},
                                                                   {"device": "sw2", "ports": [3, 4]}]})
    assert problems(data) == [
        "network.rings[1].id: 'ring-1' already used by network.rings[0]",
        "network.rings[1].switches[0].ports: sw1 port 1 is used twice (also at network.rings[0].switches[0].ports)"]
