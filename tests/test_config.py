import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config import ConfigError, load_site, parse_site

EXAMPLE = Path(__file__).parent.parent / "deploy" / "site.example.yaml"


@pytest.fixture
def example():
    return yaml.safe_load(EXAMPLE.read_text())


def problems(data):
    with pytest.raises(ConfigError) as err:
        parse_site(data, "site.yaml")
    return err.value.problems


def test_example_site_describes_a_face_a_heading_and_a_belt_line():
    site = load_site(EXAMPLE)
    assert {a.kind.value for a in site.areas} == {"longwall_face", "heading", "belt_line"}
    assert {d.equipment_kind for d in site.devices} == {
        "shearer", "face_conveyor", "roadheader", "belt_conveyor"}


def test_every_problem_is_reported_with_its_location(example):
    bad = copy.deepcopy(example)
    bad["devices"][3]["poll_interval"] = 30
    bad["devices"][0]["colour"] = "red"
    bad["devices"][2]["profile"] = "toaster"
    bad["mqtt"]["port"] = "x"
    found = problems(bad)
    assert "devices[3].poll_interval: must be ≤ 10 s" in found
    assert "devices[0].colour: unknown key" in found
    assert any(p.startswith("devices[2].profile: profile toaster: unknown profile") for p in found)
    assert any(p.startswith("mqtt.port:") for p in found)
    assert len(found) == 4


def test_cross_references_are_checked(example):
    bad = copy.deepcopy(example)
    bad["devices"][1]["area"] = "nowhere"
    bad["devices"][2]["id"] = bad["devices"][0]["id"]
    found = problems(bad)
    assert any(p.startswith("devices[1].area: unknown area 'nowhere'") for p in found)
    assert any(p.startswith("devices[2].id: 'shearer-1201' already used by devices[0]") for p in found)


def test_reserved_area_id(example):
    bad = copy.deepcopy(example)
    bad["areas"][0]["id"] = "gateway"
    assert any("reserved" in p for p in problems(bad))


def test_secrets_come_from_the_environment(example, monkeypatch):
    data = copy.deepcopy(example)
    data["mqtt"]["password"] = "${TEST_MQTT_SECRET}"
    monkeypatch.setenv("TEST_MQTT_SECRET", "s3cret")
    assert parse_site(data).mqtt.password.get_secret_value() == "s3cret"
    monkeypatch.delenv("TEST_MQTT_SECRET")
    assert problems(data) == ["mqtt.password: environment variable TEST_MQTT_SECRET is not set"]


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_site(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: x\nareas: [")
    with pytest.raises(ConfigError, match="line .*not valid YAML"):
        load_site(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_site(bad)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=60)


def test_config_check_cli(tmp_path, example):
    ok = run_cli("config", "check", str(EXAMPLE))
    assert ok.returncode == 0, ok.stderr
    assert "5 devices" in ok.stdout
    bad = copy.deepcopy(example)
    bad["devices"][3]["poll_interval"] = 30
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(bad))
    out = run_cli("config", "check", str(path))
    assert out.returncode == 1
    text = out.stdout + out.stderr
    assert "devices[3].poll_interval: must be ≤ 10 s" in text
    assert "Traceback" not in text
