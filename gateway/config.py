"""Site configuration: one YAML file describes a site, its areas, devices, MQTT and historian.

``load_site`` returns a validated :class:`SiteConfig` or raises :class:`ConfigError`
carrying every problem with its location (``devices[3].poll_interval: ...``).
Strings may name environment variables as ``${NAME}`` or ``${NAME:-default}``
so secrets stay out of the file.

Whose settings live where: a feature's own settings stay in the feature's module (``AlarmRule`` in
gateway/alarms.py, ``BroadcastConfig`` in gateway/broadcast.py, ``LinkageRule`` in gateway/linkage.py,
``RoofPressureConfig`` in gateway/derived/roof_pressure.py) and this module assembles them into
:class:`SiteConfig`. So imports run one way: those modules never import this one (nor gateway.runtime);
whoever builds them passes them the part of the site they need.
"""
from __future__ import annotations

import codecs
import os
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from gateway.core.device import HostName
from adapters.modbus.config import ModbusDeviceConfig
from adapters.onvif.config import SnapshotConfig
from adapters.registry import ADAPTER_KINDS, AnyDeviceConfig
from gateway.alarms import AlarmEngine, AlarmRule
from gateway.broadcast import BroadcastConfig
from gateway.linkage import LinkageRule
from gateway.network.config import NetworkConfig, check_network
from gateway.derived.roof_pressure import RoofPressureConfig
from gateway.reports.config import ReportsConfig
from gateway.signing import parse_public_key
from gateway.video.config import VideoConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


ID_PATTERN = r"^[A-Za-z0-9_-]+$"  # ids that become topic levels and tag values


class AreaKind(str, Enum):
    LONGWALL_FACE = "longwall_face"
    HEADING = "heading"
    BELT_LINE = "belt_line"
    ROADWAY = "roadway"
    SURFACE = "surface"


class Site(Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    gateway_id: str = Field("gateway-1", pattern=ID_PATTERN,
                            description="this gateway, when a site runs several")
    district: str | None = Field(None, pattern=ID_PATTERN,
                                 description="the district broker (and bridge) this gateway publishes to: "
                                             "`minegw deploy acl` groups gateways by it")


RESERVED_AREA_IDS = ("gateway", "command", "network")  # third level of the gateway's and the command topics


class Area(Strict):
    id: str = Field(pattern=ID_PATTERN, description="'gateway', 'command' and 'network' are reserved")
    kind: AreaKind
    name: str = ""
    zones: list[str] = []

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_AREA_IDS:
            raise ValueError(f"{v!r} is reserved for the gateway's own topics")
        return v


class Tls(Strict):
    ca_file: Path | None = None
    cert_file: Path | None = Field(None, description="a client certificate (PEM): an operator's, CN = its name")
    key_file: Path | None = Field(None, description="the client certificate's private key (PEM)")
    insecure: bool = Field(False, description="skip hostname verification (test benches only)")

    @model_validator(mode="after")
    def _key_with_its_certificate(self) -> Tls:
        if self.key_file and not self.cert_file:
            raise ValueError("key_file without cert_file: the client certificate the key belongs to")
        return self


class BufferConfig(Strict):
    """The durable store-and-forward buffer in front of the historian (SQLite, WAL)."""

    path: Path = Path("/var/lib/minegw/buffer.sqlite3")
    max_bytes: int = Field(2_000_000_000, ge=1_000_000, description="disk budget; oldest dropped beyond it")
    max_age_days: float = Field(30, gt=0, description="lines waiting longer than this are dropped, counted")


class HistorianBufferConfig(BufferConfig):
    """The historian's buffer: a :class:`BufferConfig` and how long a line waits at most for its commit."""

    commit_interval: float = Field(0.05, ge=0, le=1, description="seconds a line waits at most for its commit; "
                                   "a commit runs once the lines stop coming for 5 ms or the first waited this "
                                   "long, at least 3/4 of this after the previous one began")


MAX_SILENCE_S = 25.0  # the mine's polling rule: every signal reaches the surface at least this often


class ReportByException(Strict):
    """``mqtt.report_by_exception``: a sample is published when it moved more than its deadband since the
    last value sent, when its quality changed, or when it was last sent ``max_silence`` ago (docs/mqtt.md)."""

    enabled: bool = False
    max_silence: float = Field(MAX_SILENCE_S, gt=0, description="seconds; at most 25 (the mine's polling rule)")
    deadband: float = Field(0.0, ge=0, description="default, absolute, in the signal's unit")
    deadbands: dict[str, Annotated[float, Field(ge=0)]] = Field(
        {}, description="per signal: 'signal' or 'device/signal' (this wins) -> absolute deadband")

    @field_validator("max_silence")
    @classmethod
    def _polling_rule(cls, value: float) -> float:
        if value > MAX_SILENCE_S:
            raise ValueError(f"{value:g} s is above {MAX_SILENCE_S:g} s: the mine's polling rule wants every "
                             f"signal at the surface at least every {MAX_SILENCE_S:g} s")
        return value


class MqttConfig(Strict):
    host: HostName = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    tls: Tls | None = None
    topic_prefix: str = Field("minegw", pattern=r"^[^#+]+$")
    qos: Literal[0, 1, 2] = 1
    keepalive: int = Field(30, ge=5, le=600)
    queue_limit: int = Field(10000, ge=10, description="messages held while the broker is away")
    spool: BufferConfig | None = Field(None, description="data the broker has not acknowledged, kept on disk")
    payload: Literal["full", "compact"] = Field("full", description="data messages: full, or compact with a "
                                                "retained schema per device (docs/mqtt.md)")
    report_by_exception: ReportByException = ReportByException()


class HistorianConfig(Strict):
    """Where the historian sink writes: InfluxDB (api v1, v2), or the surface broker (api mqtt: the
    lines go to the gateway's historian topic, ``minegw ingest`` writes them; docs/historian.md)."""

    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2", "mqtt"] = "v1"
    database: str = Field("minegw", min_length=1)
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    org: str | None = None
    bucket: str | None = None
    ca_file: Path | None = Field(None, description="https, mqtts: the CA that signed the server's certificate (the "
                                                   "mine's CA); none: the system's trusted CAs")
    timeout: float = Field(10, gt=0, le=120, description="seconds per write request")
    batch_lines: int = Field(5000, ge=1, le=100_000, description="points per write request")
    flush_interval: float = Field(1.0, gt=0, le=60, description="seconds between writes when few points")
    buffer: HistorianBufferConfig = HistorianBufferConfig()

    @field_validator("buffer", mode="before")
    @classmethod
    def _plain_buffer(cls, value):
        """A plain :class:`BufferConfig` (as for the MQTT spool) is taken with the default commit interval."""
        if isinstance(value, BufferConfig) and not isinstance(value, HistorianBufferConfig):
            return value.model_dump()
        return value

    @model_validator(mode="after")
    def _api_settings(self) -> "HistorianConfig":
        if self.api == "v2" and not (self.org and self.bucket):
            raise ValueError("api v2 needs org and bucket")
        mqtt_url = self.url.split("://", 1)[0] in ("mqtt", "mqtts")
        if self.api == "mqtt" and not (mqtt_url and urlsplit(self.url).hostname):
            raise ValueError(f"url {self.url!r}: api mqtt needs mqtts://host:8883 (or mqtt://127.0.0.1:1883 on "
                             "loopback)")
        if self.api != "mqtt" and mqtt_url:
            raise ValueError(f"url {self.url!r} is a broker: set api: mqtt (InfluxDB takes http(s)://)")
        return self


class CommandsConfig(Strict):
    """The command path: writes, broadcast commands, alarm acknowledgements (docs/mqtt.md#commands)."""
    rate: float = Field(1.0, gt=0, description="writes per second per device, sustained")
    burst: int = Field(5, ge=1, description="writes per device allowed at once")
    global_rate: float = Field(5.0, gt=0, description="writes per second for the whole gateway")
    global_burst: int = Field(20, ge=1)
    allowed_users: list[str] = Field([], description="who may send commands (the signer); empty: every operator")
    operators: dict[str, str] = Field({}, description="operator name -> 'ed25519 BASE64' or a PEM public key path")
    require_signature: bool = Field(True, description="false: unsigned commands run too (see docs/mqtt.md)")
    max_age: float = Field(30.0, gt=0, le=3600, description="seconds a command stays valid after issued_at")
    max_skew: float = Field(5.0, ge=0, le=300, description="seconds issued_at may lie in the future")
    max_payload: int = Field(8192, ge=512, le=1_000_000, description="largest command payload, bytes")
    replay_store: Path = Field(Path("/var/lib/minegw/command-ids.sqlite3"),
                               description="request ids seen within max_age, kept across restarts")

    @field_validator("operators")
    @classmethod
    def _keys_parse(cls, operators: dict[str, str]) -> dict[str, str]:
        for name, text in operators.items():
            if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name):
                raise ValueError(f"operator name {name!r}: letters, digits and _.@- only, at most 64")
            try:
                parse_public_key(text)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return operators

    def public_keys(self) -> dict:
        return {name: parse_public_key(text) for name, text in self.operators.items()}


class SiteConfig(Strict):
    site: Site
    areas: list[Area] = Field(min_length=1)
    devices: list[AnyDeviceConfig] = []
    mqtt: MqttConfig | None = Field(None, description="absent: `minegw demo` embeds a broker")
    historian: HistorianConfig | None = None
    roof_pressure: RoofPressureConfig = Field(default_factory=RoofPressureConfig,
                                              description="thresholds of the derived roof-pressure metrics")
    snapshots: SnapshotConfig = Field(SnapshotConfig(), description="camera snapshots taken on alarms")
    alarms: list[AlarmRule] = Field([], description="alarm rules, see docs/alarms.md")
    broadcast: BroadcastConfig | None = Field(None, description="emergency broadcast zones, see docs/broadcast.md")
    commands: CommandsConfig = Field(CommandsConfig(), description="device writes, see docs/mqtt.md")
    linkage: list[LinkageRule] = Field([], description="alarm -> broadcast + snapshots, see docs/broadcast.md")
    network: NetworkConfig = Field(NetworkConfig(), description="ring networks, see docs/network.md")
    reports: ReportsConfig = Field(default_factory=ReportsConfig, description="daily reports, see docs/reports.md")
    video: VideoConfig | None = Field(None, description="the video relay, see docs/video.md")

    @model_validator(mode="after")
    def _cross_check(self) -> "SiteConfig":
        problems: list[str] = []
        area_ids = {a.id for a in self.areas}
        seen: dict[str, int] = {}
        endpoints: dict[tuple, str] = {}
        for i, d in enumerate(self.devices):
            if d.id in seen:
                problems.append(f"devices[{i}].id: {d.id!r} already used by devices[{seen[d.id]}]")
            seen.setdefault(d.id, i)
            if d.area not in area_ids:
                problems.append(f"devices[{i}].area: unknown area {d.area!r} (known: {', '.join(sorted(area_ids))})")
            if not isinstance(d, ModbusDeviceConfig):
                continue
            key = (d.host, d.port, d.unit_id)  # a Modbus unit answers one device only
            if key in endpoints:
                problems.append(f"devices[{i}]: {d.host}:{d.port} unit {d.unit_id} is also {endpoints[key]!r}")
            endpoints.setdefault(key, d.id)
        problems += self._check_alarms(seen)
        problems += self._check_linkage()
        problems += check_network(self.network, self.devices)
        problems += [f"video.cameras[{i}].device: unknown device {c.device!r}"
                     for i, c in enumerate(self.video.cameras if self.video else []) if c.device not in seen]
        if (self.mqtt and self.mqtt.spool and self.historian
                and self.mqtt.spool.path.resolve() == self.historian.buffer.path.resolve()):
            problems.append(f"mqtt.spool.path: {self.mqtt.spool.path} is the historian's buffer file; "
                            "give each its own file")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _check_alarms(self, devices: dict[str, int]) -> list[str]:
        problems, ids = [], {}
        for i, rule in enumerate(self.alarms):
            if rule.device not in devices:
                problems.append(f"alarms[{i}].device: unknown device {rule.device!r}")
            elif rule.signal and (signals := _signals(self.devices[devices[rule.device]])) is not None \
                    and rule.signal not in signals:
                problems.append(f"alarms[{i}].signal: {rule.device!r} has no signal {rule.signal!r}")
            for alarm_id in AlarmEngine.alarm_ids(rule):
                if alarm_id in ids:
                    problems.append(f"alarms[{i}].id: {alarm_id!r} already used by alarms[{ids[alarm_id]}]")
                ids.setdefault(alarm_id, i)
        return problems

    def _check_linkage(self) -> list[str]:
        if not self.linkage:
            return []
        if self.broadcast is None:
            return ["linkage: needs a broadcast: section"]
        known = {m.name for m in self.broadcast.messages}
        reserved = ["devices: device id 'linkage' is reserved for the linkage topics"] \
            if any(d.id == "linkage" for d in self.devices) else []
        return reserved + [f"linkage[{i}].message: unknown message {r.message!r}"
                           for i, r in enumerate(self.linkage) if r.message not in known]

    def area(self, area_id: str) -> Area:
        return next(a for a in self.areas if a.id == area_id)


def _signals(device) -> set[str] | None:
    """The signal names a device is known to have, or None when they cannot be told from the file."""
    if not isinstance(device, ModbusDeviceConfig):
        return None
    try:
        from adapters.modbus.profile import load_profile
        return {p.name for p in load_profile(device.profile).points}
    except Exception:  # noqa: BLE001 - the profile's own check reports it
        return None


class ConfigError(Exception):
    """A site file that cannot be used; ``problems`` lists each with its location."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path, self.problems = str(path), problems
        super().__init__(f"{path}: " + "; ".join(problems))


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(node: Any, where: str, problems: list[str]) -> Any:
    """``node`` with every ``${NAME}`` / ``${NAME:-default}`` in its strings replaced from the environment;
    a variable not set is appended to ``problems`` (``where``: the location of ``node`` in the file)."""
    if isinstance(node, dict):
        return {k: expand_env(v, f"{where}.{k}" if where else str(k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_env(v, f"{where}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, str):
        def sub(m: re.Match) -> str:
            value = os.environ.get(m[1], m[2])
            if value is None:
                problems.append(f"{where}: environment variable {m[1]} is not set")
                return ""
            return value
        return _ENV.sub(sub, node)
    return node


def error_location(loc: tuple) -> str:
    """A pydantic error's ``loc`` as people write it: ``devices[3].port``."""
    out = ""
    for i, part in enumerate(loc):
        if i and isinstance(loc[i - 1], int) and part in ADAPTER_KINDS:
            continue  # the union's tag (devices[3].modbus.port): the adapter key says it already
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("function-after",) and not str(part).startswith("function-"):
            out += f".{part}" if out else str(part)
    return out


def error_message(err: dict) -> str:
    """A pydantic error's message in the words of a site file (one or more lines)."""
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "unknown_adapter":
        given = err["input"].get("adapter") if isinstance(err["input"], dict) else None
        return f"unknown adapter {given!r} (known: {', '.join(ADAPTER_KINDS)})"
    if err["type"] == "less_than_equal":
        return f"must be ≤ {err['ctx']['le']:g}" + (" s" if err["loc"][-1] in _SECONDS else "")
    return msg


_SECONDS = {"poll_interval", "timeout", "backoff_initial", "backoff_max", "sampling_interval",
            "publishing_interval"}


def parse_site(data: Any, path: str | Path = "<site>") -> SiteConfig:
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(path, ["the file must hold a mapping (site:, areas:, devices:, ...)"])
    data = expand_env(data, "", problems)
    try:
        site = SiteConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = error_location(err["loc"]) + (".adapter" if err["type"] == "unknown_adapter" else "")
            for line in error_message(err).splitlines():
                problems.append(line if line.startswith("devices[") or not loc else f"{loc}: {line}")
    if problems:
        raise ConfigError(path, problems)
    return site


def load_site(path: str | Path) -> SiteConfig:
    return parse_site(read_config_file(path), path)


# -- reading a YAML file as people write it ----------------------------------------------
MAX_FILE_BYTES = 1_000_000  # a large site file is ~100 kB; beyond this it is the wrong file
MAX_VALUES = 100_000  # values a file may hold once its aliases (*name) are expanded: stops alias bombs
_MERGE_TAG = "tag:yaml.org,2002:merge"


def read_config_file(path: str | Path) -> Any:
    """The YAML content of a configuration file, or :class:`ConfigError` with located problems.

    UTF-8 with or without BOM only (editors on Chinese Windows save GBK or UTF-16 unless told);
    duplicated keys and alias bombs are refused.
    """
    path = Path(path)
    loader = _StrictLoader(_decode(_read_capped(path), path))
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(path, [_yaml_problem(exc)]) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise ConfigError(path, loader.duplicates)
    return data


def _read_capped(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(path, [f"larger than {MAX_FILE_BYTES // 1_000_000} MB: not a configuration file"])
    return raw


def _decode(raw: bytes, path: Path) -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError(path, ["line 1, column 1: saved as UTF-16: save the file as UTF-8"])
    if (nul := raw.find(b"\0")) >= 0:
        raise ConfigError(path, [f"{_byte_position(raw, nul)}: a NUL byte (UTF-16 without a BOM, or not a text "
                                 "file): save the file as UTF-8"])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        looks = "; it looks like GBK" if _is_gbk(raw) else ""
        raise ConfigError(path, [f"{_byte_position(raw, exc.start)}: not UTF-8 (byte 0x{raw[exc.start]:02X}{looks}): "
                                 "save the file as UTF-8"]) from None
    if bad := yaml.reader.Reader.NON_PRINTABLE.search(text):
        offset = len(text[:bad.start()].encode()) + (len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0)
        raise ConfigError(path, [f"{_byte_position(raw, offset)}: control character U+{ord(bad[0]):04X} "
                                 "(not a text file?): save the file as UTF-8 text"])
    return text


def _is_gbk(raw: bytes) -> bool:
    try:
        raw.decode("gb18030")
    except UnicodeDecodeError:
        return False
    return True


def _byte_position(raw: bytes, offset: int) -> str:
    line, line_start = raw.count(b"\n", 0, offset) + 1, raw.rfind(b"\n", 0, offset) + 1
    return f"line {line}, column {len(raw[line_start:offset].decode('utf-8', 'replace')) + 1}"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    if isinstance(exc, _Refused):
        return f"{where}{exc.problem}"
    return f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}"


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that a configuration file must not hold (an alias bomb)."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, hooked to count what aliases expand to and to note duplicated keys."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.duplicates: list[str] = []
        self._values: dict[int, int] = {}  # id(node) -> values it holds with its aliases expanded

    def compose_node(self, parent, index):
        event = self.peek_event()
        node = super().compose_node(parent, index)
        if isinstance(event, yaml.AliasEvent):
            if id(node) not in self._values:
                raise _Refused(problem="an alias (*name) inside the node it names", problem_mark=event.start_mark)
            return node
        children = ([] if isinstance(node, yaml.ScalarNode) else
                    [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value)
        total = 1 + sum(self._values[id(child)] for child in children)
        if total > MAX_VALUES:
            raise _Refused(problem=f"aliases (*name) expand this to more than {MAX_VALUES} values "
                                   "(an alias bomb?)", problem_mark=event.start_mark)
        self._values[id(node)] = total
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self._note_duplicates(node)
        return super().construct_mapping(node, deep=deep)

    def _note_duplicates(self, node: yaml.MappingNode) -> None:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # merged keys (<<: *defaults) may be overridden: that is what they are for
            key, line = self.construct_object(key_node), key_node.start_mark.line + 1
            if key in first:
                self.duplicates.append(f"line {line}: key {key!r} repeats line {first[key]}: keep one")
            first.setdefault(key, line)
