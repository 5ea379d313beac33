import codecs
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from adapters.base import Adapter
from adapters.registry import ADAPTER_KINDS, DEFAULT_KIND, KINDS, build_adapter
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
        "shearer", "face_conveyor", "roadheader", "belt_conveyor", "network_switch", "ups", "camera"}
    assert [s.device for s in site.network.rings[0].switches] == [f"sw-{i}" for i in range(1, 7)]


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
    assert f"ok {EXAMPLE}: site" in ok.stdout and "13 devices\n" in ok.stdout  # one line, a long path too
    bad = copy.deepcopy(example)
    bad["devices"][3]["poll_interval"] = 30
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(bad))
    out = run_cli("config", "check", str(path))
    assert out.returncode == 1
    text = out.stdout + out.stderr
    assert "devices[3].poll_interval: must be ≤ 10 s" in text
    assert "Traceback" not in text


# -- files as people save them ---------------------------------------------------------------
CHINESE_NAME = EXAMPLE.read_text().replace("name: Demo colliery", "name: 示范煤矿")


def check_file(tmp_path, content: bytes, name="site.yaml"):
    path = tmp_path / name
    path.write_bytes(content)
    return run_cli("config", "check", str(path))


def one_problem(result) -> str:
    """The single problem line of a failed `config check`; no traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].endswith("1 problem(s)"), result.stderr
    assert len(lines) == 2, result.stderr
    return lines[1].strip()


def test_utf8_with_a_bom_is_accepted(tmp_path):
    result = check_file(tmp_path, codecs.BOM_UTF8 + CHINESE_NAME.encode())
    assert result.returncode == 0, result.stderr
    assert load_site(tmp_path / "site.yaml").site.name.startswith("示范煤矿")


@pytest.mark.parametrize("encoding, expected", [
    ("gbk", "line 6, column 10: not UTF-8 (byte 0xB7; it looks like GBK): save the file as UTF-8"),
    ("utf-16", "line 1, column 1: saved as UTF-16: save the file as UTF-8"),
    ("utf-16-le", "line 1, column 2: a NUL byte (UTF-16 without a BOM, or not a text file): save the file as UTF-8"),
])
def test_other_encodings_get_one_located_line_naming_utf8(tmp_path, encoding, expected):
    assert one_problem(check_file(tmp_path, CHINESE_NAME.encode(encoding))) == expected


def test_binary_garbage_gets_one_located_line(tmp_path):
    garbage = b"site:\n  id: \x89PNG\r\n\x1a\n" + bytes(range(1, 256))
    assert one_problem(check_file(tmp_path, garbage)) == "line 2, column 7: not UTF-8 (byte 0x89): save the file as UTF-8"
    control = b"site:\n  id: x\x1b[0m\n"
    assert one_problem(check_file(tmp_path, control)) == \
        "line 2, column 8: control character U+001B (not a text file?): save the file as UTF-8 text"


def test_a_duplicated_key_names_both_lines(tmp_path):
    text = EXAMPLE.read_text()
    qos_line = text[:text.index("  qos: 1\n")].count("\n") + 1
    doubled = text.replace("  qos: 1\n", "  qos: 1\n  qos: 2\n")
    assert one_problem(check_file(tmp_path, doubled.encode())) == \
        f"line {qos_line + 1}: key 'qos' repeats line {qos_line}: keep one"


def test_merge_keys_may_be_overridden(tmp_path):
    text = EXAMPLE.read_text().replace("  qos: 1\n", "  <<: {qos: 0, keepalive: 60}\n  qos: 1\n")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    assert load_site(path).mqtt.qos == 1


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    # 10^6 strings once expanded from 7 small lines; a real bomb has a few more levels
    levels = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 6)]
    bomb = EXAMPLE.read_text() + "\n".join(levels) + "\n"
    l4 = bomb.count("\n") - 1  # 111 111 values: the first to expand past the limit
    problem = one_problem(check_file(tmp_path, bomb.encode()))  # run_cli's timeout: 60 s
    assert problem == f"line {l4}, column 5: aliases (*name) expand this to more than 100000 values (an alias bomb?)"


def test_a_recursive_alias_is_refused(tmp_path):
    assert one_problem(check_file(tmp_path, b"site: &s {id: x, more: *s}\n")) == \
        "line 1, column 24: an alias (*name) inside the node it names"


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path):
    assert one_problem(check_file(tmp_path, b"#" * 5_000_000)) == "larger than 1 MB: not a configuration file"


def test_broker_port_comes_from_the_environment_and_a_port_in_the_host_is_refused(monkeypatch):
    monkeypatch.setenv("MINEGW_MQTT_PORT", "18830")
    assert load_site(EXAMPLE).mqtt.port == 18830
    monkeypatch.setenv("MINEGW_MQTT_HOST", "127.0.0.1:18830")
    with pytest.raises(ConfigError) as err:
        load_site(EXAMPLE)
    assert err.value.problems == ["mqtt.host: '127.0.0.1:18830' has a port in it: "
                                  "give the host (127.0.0.1) and the port (18830) separately"]


@pytest.mark.parametrize("host, problem", [
    ("10.1.20.11:502", "'10.1.20.11:502' has a port in it: give the host (10.1.20.11) and the port (502) separately"),
    ("http://10.1.20.11", "'http://10.1.20.11' is a URL: give the host name or address only"),
    ("plc 1", "'plc 1' is not a host name or IP address"),
])
def test_device_hosts_are_host_names_or_addresses(example, host, problem):
    bad = copy.deepcopy(example)
    bad["devices"][0]["host"] = host
    assert problems(bad) == [f"devices[0].host: {problem}"]
    good = copy.deepcopy(example)
    good["devices"][0]["host"], good["devices"][1]["host"] = "fe80::1", "plc-1.face.mine"
    parse_site(good)


def test_a_device_without_adapter_is_modbus_as_the_docs_say(example):
    data = copy.deepcopy(example)
    del data["devices"][0]["adapter"]
    assert parse_site(data).devices[0].adapter == "modbus"
    row = next(line for line in (EXAMPLE.parent.parent / "docs" / "config.md").read_text().splitlines()
               if line.startswith("| `adapter` |"))
    assert row.split("|")[2:4] == [" " + ", ".join(f"`{kind}`" for kind in ADAPTER_KINDS) + " ", f" `{DEFAULT_KIND}` "]


async def test_the_adapter_table_gives_each_kind_its_settings_and_its_adapter(example):
    assert ADAPTER_KINDS == ("modbus", "opcua", "onvif", "snmp") and DEFAULT_KIND in ADAPTER_KINDS
    for kind, entry in KINDS.items():
        adapter = entry.adapter()
        assert issubclass(adapter, Adapter) and adapter.kind == kind
        assert entry.config.model_fields["adapter"].default == kind
    device = parse_site(example).devices[0]
    assert type(build_adapter(device)) is KINDS[device.adapter].adapter()


def test_reading_a_site_file_imports_no_protocol_client():
    code = ("import sys, gateway.config; gateway.config.load_site(sys.argv[1]); "
            "print(sorted({'pymodbus', 'asyncua', 'onvif', 'pysnmp'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code, str(EXAMPLE)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_historian_docs_example_lines_use_the_profile_s_fields():
    from adapters.modbus.profile import load_profile

    docs = (EXAMPLE.parent.parent / "docs" / "historian.md").read_text()
    names = {p.name for p in load_profile("shearer").points} | {"status", "status_code"}  # derived status
    lines = [line for line in docs.splitlines() if line.startswith("shearer,")]
    assert lines
    for line in lines:
        fields = line.split(" ")[1].split(",")
        used = {f.split("=")[0].removesuffix("__quality").removesuffix("__value") for f in fields}
        assert used <= names, used - names
