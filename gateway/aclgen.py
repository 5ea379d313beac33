"""The brokers' ACL files, generated from the gateways' site files: ``minegw deploy acl``.

Every grant is derived from what the site files say (areas, gateway ids, rings, operators), so
the ACL cannot drift from the sites (docs/deploy.md, "Security"):

- a gateway writes its own areas' device topics, its own ``gateway/{id}`` topics and its own
  rings' topics; it reads the site's three command topics and its areas' device commands; it
  answers under its own ``gateway/{id}/reply/{operator}/`` (so no gateway can answer for another)
  and reads no reply;
- a district's bridge (on the surface) writes what its district's gateways may write, reads
  the commands for their areas (and their replies), and never writes a command;
- an operator (``commands.operators``, or ``commands.allowed_users`` when set) is an MQTT user
  of the same name (a client certificate's CN with ``use_identity_as_username``): it sends
  the site's commands and reads everything but replies, its own (``gateway/+/reply/{operator}/#``) excepted;
- integrations read the same, and send nothing;
- a gateway whose historian publishes to the surface broker (``historian.api: mqtt``) has a user there
  (``historian.username``) that writes its own ``gateway/{id}/historian`` topic and nothing else; the
  ingest workers read those topics (docs/deploy.md, "Who writes the historian").

Mosquitto's ``%u`` patterns cannot say "the areas of this gateway", hence a block per user.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.config import Area, ConfigError, Site, read_config_file

COMMANDS = ("command/write", "command/broadcast", "command/alarm/ack")
DEVICE_TOPICS = ("data", "schema", "state", "inventory", "alarm/+")
RESERVED_OPERATOR_NAMES = {"data", "schema", "state", "inventory", "alarm", "linkage", "command", "reply"}
INGEST_USER = "minegw-ingest"


@dataclass(frozen=True)
class GatewaySite:
    """What one gateway's site file says about the topics it may use."""

    path: Path
    prefix: str
    site: str
    gateway: str
    district: str | None
    username: str
    areas: tuple[str, ...]
    rings: tuple[str, ...]
    operators: tuple[str, ...]
    historian_user: str | None = None  # historian.api mqtt: its user on the surface broker

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}"

    @property
    def historian_topic(self) -> str:
        return f"{self.base}/gateway/{self.gateway}/historian"  # gateway.contract.Topics.historian


def read_gateway_site(path: Path) -> GatewaySite:
    """The ACL-relevant parts of a site file, without expanding its secrets (``${...}``)."""
    data = read_config_file(path)
    try:
        site = Site.model_validate(data.get("site") or {})
        areas = tuple(Area.model_validate(a).id for a in data.get("areas") or [])
        mqtt = data.get("mqtt") or {}
        commands = data.get("commands") or {}
        operators = tuple(commands.get("allowed_users") or sorted(commands.get("operators") or {}))
        rings = tuple(r["id"] for r in (data.get("network") or {}).get("rings") or [])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(path, [f"cannot read the site, areas, network or commands sections: {exc}"]) from None
    username = str(mqtt.get("username") or "")
    problems = []
    if not username or "$" in username:
        problems.append("mqtt.username: the ACL needs the gateway's MQTT user written out, not from the environment")
    historian = data.get("historian") or {}
    historian_user = str(historian.get("username") or "") if historian.get("api") == "mqtt" else None
    if historian_user is not None and (not historian_user or "$" in historian_user):
        problems.append("historian.username: api mqtt: the ACL needs the gateway's surface broker user written out")
    problems += [f"commands.operators: {name!r} is reserved (a topic level)" for name in operators
                 if name in RESERVED_OPERATOR_NAMES]
    if problems:
        raise ConfigError(path, problems)
    return GatewaySite(path, str(mqtt.get("topic_prefix") or "minegw"), site.id, site.gateway_id, site.district,
                       username, areas, rings, operators, historian_user)


def gateway_writes(gw: GatewaySite) -> list[str]:
    """Every topic a gateway (and its district's bridge on the surface) may publish."""
    topics = [f"{gw.base}/{area}/+/{t}" for area in gw.areas for t in DEVICE_TOPICS]
    topics += [f"{gw.base}/{area}/linkage/+" for area in gw.areas]
    topics += [f"{gw.base}/gateway/{gw.gateway}/{t}" for t in ("status", "health", "alarm/+")]
    topics += [t for ring in gw.rings for t in (f"{gw.base}/network/ring/{ring}", f"{gw.base}/network/{ring}/alarm/+")]
    return topics


def reply_writes(gateways: list[GatewaySite]) -> list[str]:
    """Each gateway answers under its own gateway topics, one level per operator of its site."""
    return [f"{g.base}/gateway/{g.gateway}/reply/{op}/+" for g in gateways for op in g.operators]


def command_reads(gateways: list[GatewaySite]) -> list[str]:
    topics = [f"{g.base}/{c}" for g in gateways for c in COMMANDS]
    return _unique(topics + [f"{g.base}/{area}/+/command/#" for g in gateways for area in g.areas])


def observer_reads(base: str) -> list[str]:
    """Everything of a site but the command replies (operators read their own only), which no grant here
    matches: ``gateway/{id}/reply/{operator}/{request id}`` has five levels, these three or four."""
    return [f"topic read {base}/+/+/{t}" for t in DEVICE_TOPICS] + [
        f"topic read {base}/+/linkage/+", f"topic read {base}/gateway/+/status", f"topic read {base}/gateway/+/health",
        f"topic read {base}/network/ring/+", f"topic read {base}/bridge/+"]


def _unique(items) -> list:
    return list(dict.fromkeys(items))


def _block(title: str, user: str, lines: list[str]) -> list[str]:
    return [f"# --- {title} " + "-" * max(3, 92 - len(title)), f"user {user}", *lines, ""]


def _write(topics: list[str]) -> list[str]:
    return [f"topic write {t}" for t in topics]


def _read(topics: list[str]) -> list[str]:
    return [f"topic read {t}" for t in topics]


def _header(broker: str, gateways: list[GatewaySite]) -> list[str]:
    files = " ".join(f"-c {g.path.name}" for g in gateways)
    return [f"# minegw — ACL of the {broker} broker: /etc/mosquitto/acl (Mosquitto 2.0).",
            "# GENERATED from the gateways' site files: do not edit, regenerate (docs/deploy.md, \"Security\"):",
            f"#   minegw deploy acl {broker} {files}",
            "# Nothing is allowed that is not granted here; a deny wins over every grant, for reading too.",
            "# Then `systemctl reload mosquitto` (SIGHUP: passwd and acl re-read, no client dropped).", ""]


def _check_one_site(gateways: list[GatewaySite]) -> None:
    if not gateways:
        raise ConfigError("minegw deploy acl", ["give every gateway's site file with -c"])
    for key in ("username", "historian_user"):
        seen: dict[str, Path] = {}
        for g in gateways:
            if (user := getattr(g, key)) is None:
                continue
            if user in seen:
                setting = "mqtt.username" if key == "username" else "historian.username"
                raise ConfigError(g.path, [f"{setting} {user!r} is also {seen[user]}'s: one MQTT user per gateway"])
            seen[user] = g.path


def underground_acl(gateways: list[GatewaySite]) -> str:
    """The district broker's ACL: the district's gateways and a read-only integration user."""
    _check_one_site(gateways)
    districts = {g.district for g in gateways}
    if len(districts) != 1 or None in districts:
        raise ConfigError(gateways[0].path, [f"site.district: one district broker per ACL, the files name "
                                             f"{sorted(map(str, districts))}"])
    district = districts.pop()
    out = _header("underground", gateways)
    for g in gateways:
        out += _block(f"gateway {g.gateway} ({', '.join(g.areas)})", g.username,
                      _write(gateway_writes(g) + reply_writes([g])) + _read(command_reads([g])))
    reads = [line for base in _unique(g.base for g in gateways) for line in observer_reads(base)]
    out += _block("read-only integration (district display, local HMI)", f"integration-{district}", reads)
    return "\n".join(out).rstrip() + "\n"


def surface_acl(gateways: list[GatewaySite]) -> str:
    """The surface broker's ACL: a bridge per district, the operators, integrations, ingest, ops."""
    _check_one_site(gateways)
    out = _header("surface", gateways)
    by_district: dict[str, list[GatewaySite]] = {}
    for g in gateways:
        if g.district is None:
            raise ConfigError(g.path, ["site.district: which district's bridge carries this gateway"])
        by_district.setdefault(g.district, []).append(g)
    for district, members in by_district.items():
        base = members[0].base
        writes = [t for g in members for t in gateway_writes(g)] + reply_writes(members)
        out += _block(f"bridge of {members[0].site}, {district} ({', '.join(g.gateway for g in members)})",
                      f"bridge.{members[0].site}.{district}",
                      _write(writes) + [f"topic readwrite {base}/bridge/{district}"] + _read(command_reads(members)))
    operators = _unique((g.base, op) for g in gateways for op in g.operators)
    for op in _unique(op for _, op in operators):
        bases = [base for base, name in operators if name == op]
        sends = [f"{base}/{c}" for base in bases for c in COMMANDS]
        sends += _unique(f"{g.base}/{a}/+/command/#" for g in gateways if g.base in bases for a in g.areas)
        out += _block(f"operator {op} (client certificate CN={op}; signs with its own key)", op,
                      _write(sends) + _read([f"{base}/gateway/+/reply/{op}/#" for base in bases])
                      + [line for base in bases for line in observer_reads(base)])
    for g in gateways:
        if g.historian_user is not None:
            out += _block(f"gateway {g.gateway}: its historian lines for the ingest workers (historian.api mqtt)",
                          g.historian_user, _write([g.historian_topic]))
    reads = [line for base in _unique(g.base for g in gateways) for line in observer_reads(base)]
    out += _block("read-only integrations (SCADA, reporting, the mine's data platform)", "integration-scada", reads)
    prefixes = _unique(g.prefix for g in gateways)
    historians = _unique(f"{g.base}/gateway/+/historian" for g in gateways if g.historian_user is not None)
    ingest = [f"{p}/+/+/+/{t}" for p in prefixes for t in ("data", "schema", "state")]
    out += _block("historian ingest workers ($share/minegw-ingest/...: checked after the group name)", INGEST_USER,
                  _read(ingest + [f"{p}/+/gateway/+/alarm/+" for p in prefixes]
                        + [f"{p}/+/gateway/+/status" for p in prefixes]  # gateway_status (docs/historian.md)
                        + [f"{p}/+/bridge/+" for p in prefixes]  # uplink_status: the bridges' notifications
                        + historians))  # the gateways' historian lines (checked against the writers: section)
    out += _block("operations: broker statistics", "ops", ["topic read $SYS/#"])
    return "\n".join(out).rstrip() + "\n"


BROKERS = {"underground": underground_acl, "surface": surface_acl}


def generate_acl(broker: str, site_files: list[Path]) -> str:
    return BROKERS[broker]([read_gateway_site(Path(p)) for p in site_files])
