"""Node maps: the OPC UA signals of a roof-pressure system (矿压监测), as data.

One YAML file per system under ``nodemaps/``. The same node map drives the adapter
(what to subscribe to, units, engineering ranges) and the simulator (which address
space to build, and which physical model feeds each variable: the signal's ``role``).

A signal is addressed either by a node id or by a browse path from the Objects folder::

    node: "s=Support001.FrontLegPressure"        # or "ns=2;s=...", "nsu=urn:...;i=1042"
    path: "Longwall/Headgate/Gauge01/Deep"       # elements "Name" or "<ns index>:Name"

Node ids and path elements that name no namespace use the map's ``namespace`` URI; the
adapter looks its index up in the server's namespace array at every connect (indices
may change when a server is reconfigured, URIs do not).

Repeated equipment is written once. A group has a ``count`` and signal templates in
which ``{n}`` is the index, in Python format syntax (``{n:03d}`` gives ``001``)::

    groups:
      - name: supports
        count: 150
        location: {along: face, start_m: 0.75, spacing_m: 1.5}
        signals:
          - {name: "support_{n:03d}_front_leg_pressure", node: "s=Support{n:03d}.FrontLegPressure",
             role: leg_front, unit: MPa, type: Float, range: [0, 60]}

This module does not import asyncua: loading a site file stays fast.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

NODEMAP_DIR = Path(__file__).parent / "nodemaps"
SUPPORTS_GROUP = "supports"  # the group a device's ``supports:`` setting resizes

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_NODE_ID = re.compile(rf"^(?:ns=(?P<ns>\d+);|nsu=(?P<nsu>[^;]+);)?(?P<id>i=\d+|s=.+|g={_GUID}|b=.+)$")
_PATH_ELEMENT = re.compile(r"^(?:(?P<ns>\d+):)?(?P<name>[^/:]+)$")


class NodeMapError(ValueError):
    """A node map that cannot be used; ``problems`` lists each with its location."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        super().__init__(f"{source}: " + "; ".join(problems))


class DataType(str, Enum):
    """OPC UA built-in types a signal may have (the simulator serves exactly this type)."""

    BOOLEAN = "Boolean"
    INT16 = "Int16"
    UINT16 = "UInt16"
    INT32 = "Int32"
    UINT32 = "UInt32"
    INT64 = "Int64"
    UINT64 = "UInt64"
    FLOAT = "Float"
    DOUBLE = "Double"
    STRING = "String"

    @property
    def is_numeric(self) -> bool:
        return self not in (DataType.BOOLEAN, DataType.STRING)

    @property
    def is_integer(self) -> bool:
        return self.is_numeric and self not in (DataType.FLOAT, DataType.DOUBLE)


class Along(str, Enum):
    """Where a located signal sits: along the face, or along one of its gate roads."""

    FACE = "face"
    HEADGATE = "headgate"
    TAILGATE = "tailgate"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignalTemplate(_Strict):
    """One signal as written in the file; inside a group its strings may hold ``{n}``."""

    name: str
    node: str | None = Field(None, description="node id: [ns=<index>; | nsu=<uri>;] i=|s=|g=|b=<identifier>")
    path: str | None = Field(None, description="browse path from Objects: Name/Name/... (or <ns>:Name)")
    type: DataType = DataType.DOUBLE
    unit: str = ""
    range: tuple[float, float] | None = Field(None, description="engineering range: outside is out-of-range")
    role: str | None = Field(None, description="what it measures, for the simulator (leg_front, ...)")
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> SignalTemplate:
        if (self.node is None) == (self.path is None):
            raise ValueError("give exactly one of node (a node id) or path (a browse path)")
        if self.range is not None:
            if not self.type.is_numeric:
                raise ValueError(f"a {self.type.value} signal cannot have a range")
            if self.range[0] >= self.range[1]:
                raise ValueError("range must be [low, high] with low < high")
        return self


class Location(_Strict):
    """Positions of a group's members: ``start_m + i * spacing_m`` metres along ``along``."""

    along: Along
    start_m: float = 0.0
    spacing_m: float = Field(gt=0)


class Group(_Strict):
    """``count`` repetitions of ``signals``, numbered from ``first``."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    count: int = Field(ge=1, le=2000)
    first: int = Field(1, ge=0)
    location: Location | None = None
    signals: list[SignalTemplate] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Signal:
    """One concrete signal of an expanded node map."""

    name: str
    type: DataType
    unit: str
    range: tuple[float, float] | None
    role: str | None
    description: str
    namespace: str | int  # URI, or an explicit index when the file wrote ns=<index>
    node_id: str | None  # "s=..." / "i=..." without namespace; None when addressed by path
    path: tuple[tuple[str | int, str], ...] | None  # (namespace, browse name) from Objects
    group: str | None = None
    index: int | None = None  # the group index {n}
    along: Along | None = None
    location_m: float | None = None

    @property
    def address(self) -> str:
        """The node id or browse path as written in the node map (for messages)."""
        if self.node_id is not None:
            ns = f"ns={self.namespace};" if isinstance(self.namespace, int) else f"nsu={self.namespace};"
            return ns + self.node_id
        return "/".join(name if isinstance(ns, str) else f"{ns}:{name}" for ns, name in self.path)


class NodeMap(_Strict):
    kind: str = Field("roof_pressure", description="equipment kind: names historian measurements")
    description: str = ""
    namespace: str = Field(min_length=1, description="namespace URI of node ids and path elements naming none")
    root: str = Field("Longwall", description="folder under Objects where the simulator puts node-id signals")
    signals: list[SignalTemplate] = []
    groups: list[Group] = []

    _signals: list[Signal] = PrivateAttr(default_factory=list)
    _by_name: dict[str, Signal] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _expand(self) -> NodeMap:
        problems: list[str] = []
        expanded = [s for i, t in enumerate(self.signals)
                    if (s := _concrete(self, t, f"signals[{i}]", problems)) is not None]
        for g, group in enumerate(self.groups):
            expanded += _expand_group(self, group, f"groups[{g}]", problems)
        problems += _duplicates(expanded)
        if not expanded and not problems:
            problems.append("no signals: give signals or groups")
        if problems:
            raise ValueError("\n".join(problems))
        self._signals = expanded
        self._by_name = {s.name: s for s in expanded}
        return self

    @property
    def expanded(self) -> list[Signal]:
        """Every signal, groups expanded, in file order."""
        return self._signals

    def signal(self, name: str) -> Signal:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"node map {self.kind!r} has no signal {name!r}") from None

    def group(self, name: str) -> list[Signal]:
        return [s for s in self._signals if s.group == name]


# -- expansion ----------------------------------------------------------------------------
def _expand_group(nodemap: NodeMap, group: Group, where: str, problems: list[str]) -> list[Signal]:
    unnumbered = [f"{where}.signals[{i}].{field}: needs {{n}} (the group repeats {group.count} times)"
                  for i, t in enumerate(group.signals) for field in ("name", "node", "path")
                  if group.count > 1 and getattr(t, field) is not None and "{n" not in getattr(t, field)]
    if unnumbered:
        problems += unnumbered
        return []
    out: list[Signal] = []
    for k in range(group.count):
        n = group.first + k
        location = group.location.start_m + k * group.location.spacing_m if group.location else None
        for i, t in enumerate(group.signals):
            signal = _concrete(nodemap, t, f"{where}.signals[{i}]", problems, n=n, group=group.name,
                               along=group.location.along if group.location else None, location_m=location)
            if signal is None:
                return out  # the same template fails for every n: say it once
            out.append(signal)
    return out


def _concrete(nodemap: NodeMap, t: SignalTemplate, where: str, problems: list[str], *,
              n: int | None = None, group: str | None = None, along: Along | None = None,
              location_m: float | None = None) -> Signal | None:
    """The signal a template gives for index ``n`` (None: problems appended)."""
    try:
        name, node, path, description = (_fill(text, n) for text in (t.name, t.node, t.path, t.description))
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None
    if not _NAME.match(name):
        problems.append(f"{where}.name: {name!r} is not a signal name (letters, digits, _; not starting with a digit)")
        return None
    try:
        namespace, node_id = _parse_node(node, nodemap.namespace) if node else (nodemap.namespace, None)
        elements = _parse_path(path, nodemap.namespace) if path else None
    except ValueError as exc:
        problems.append(f"{where}.{'node' if node else 'path'}: {exc}")
        return None
    return Signal(name=name, type=t.type, unit=t.unit, range=t.range, role=t.role,
                  description=description, namespace=namespace, node_id=node_id, path=elements,
                  group=group, index=n, along=along, location_m=location_m)


def _fill(template: str | None, n: int | None) -> str | None:
    if template is None or n is None:
        return template
    try:
        return template.format(n=n)
    except KeyError as exc:
        raise ValueError(f"{template!r}: unknown placeholder {{{exc.args[0]}}}; templates know only {{n}}") from None
    except IndexError:
        raise ValueError(f"{template!r}: write {{n}}, not {{}}") from None
    except ValueError as exc:
        raise ValueError(f"{template!r}: {exc}") from None


def _parse_node(text: str, default_namespace: str) -> tuple[str | int, str]:
    m = _NODE_ID.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a node id ([ns=<index>; | nsu=<uri>;] i=<number> | s=<text> | "
                         "g=<guid> | b=<base64>)")
    namespace: str | int = int(m["ns"]) if m["ns"] is not None else (m["nsu"] or default_namespace)
    return namespace, m["id"]


def _parse_path(text: str, default_namespace: str) -> tuple[tuple[str | int, str], ...]:
    elements = []
    for part in text.strip("/").split("/"):
        m = _PATH_ELEMENT.match(part)
        if not m:
            raise ValueError(f"{text!r}: {part!r} is not a browse name (Name or <ns index>:Name)")
        elements.append((int(m["ns"]) if m["ns"] is not None else default_namespace, m["name"]))
    return tuple(elements)


def _duplicates(signals: list[Signal]) -> list[str]:
    problems, names, addresses = [], {}, {}
    for s in signals:
        if s.name in names:
            problems.append(f"duplicate signal name {s.name!r}")
        names.setdefault(s.name, s)
        key = (s.namespace, s.node_id, s.path)
        if key in addresses:
            problems.append(f"{s.name} and {addresses[key]} have the same address {s.address!r}")
        addresses.setdefault(key, s.name)
    return problems


# -- loading ------------------------------------------------------------------------------
def available_nodemaps() -> list[str]:
    return sorted(p.stem for p in NODEMAP_DIR.glob("*.yaml"))


def nodemap_path(name: str) -> Path:
    path = Path(name) if name.endswith((".yaml", ".yml")) else NODEMAP_DIR / f"{name}.yaml"
    if not path.is_file():
        raise NodeMapError(name, [f"unknown node map; built-in: {', '.join(available_nodemaps())}, "
                                  "or a path to a .yaml file"])
    return path


def parse_nodemap(data: Any, source: str = "<nodemap>", supports: int | None = None) -> NodeMap:
    """A validated node map from parsed YAML; ``supports`` resizes the ``supports`` group."""
    if not isinstance(data, dict):
        raise NodeMapError(source, ["a node map is a mapping (namespace:, signals:, groups:)"])
    if supports is not None:
        data = _resize_supports(data, supports, source)
    try:
        return NodeMap.model_validate(data)
    except ValidationError as exc:
        raise NodeMapError(source, _problems(exc)) from None


@cache
def load_nodemap(name: str, supports: int | None = None) -> NodeMap:
    """A built-in node map by name, or a YAML file by path (raises NodeMapError)."""
    path = nodemap_path(name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise NodeMapError(str(path), [f"cannot read: {exc}"]) from None
    return parse_nodemap(data, str(path), supports)


def _resize_supports(data: dict, supports: int, source: str) -> dict:
    groups = data.get("groups")
    if not isinstance(groups, list) or not any(isinstance(g, dict) and g.get("name") == SUPPORTS_GROUP
                                               for g in groups):
        raise NodeMapError(source, [f"supports: the node map has no group named {SUPPORTS_GROUP!r} to resize"])
    resized = [{**g, "count": supports} if isinstance(g, dict) and g.get("name") == SUPPORTS_GROUP else g
               for g in groups]
    return {**data, "groups": resized}


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        out += [line if not loc else f"{loc}: {line}" for line in msg.splitlines()]
    return out
