"""SNMP device profiles: which MIB objects a kind of device is read for, as data.

One YAML file per kind under ``profiles/`` (``ring_switch``, ``ups``), or a file of one's own
by path. A profile has three lists:

- ``scalars``: one instance each (``sysUpTime.0``), read with one GET;
- ``ports``: table columns indexed by ifIndex, read for each configured port N with GETBULK
  walks; the signal name carries ``{n}`` (``port{n}_oper_up``);
- ``neighbors``: LLDP-MIB remote-table columns (index ``timeMark.localPort.remIndex``): the text
  of the neighbour on local port N, ``""`` when none.

A signal turns the raw value into the engineering one by its ``type`` and one of: ``scale``
(numbers), ``true_when`` (bool), ``enum`` (text from an INTEGER), ``bits`` (text from a BITS
value: the lowest set bit named; ``no_bits`` when none is set), or ``rate: true`` (a counter's
increase per second, times ``scale``).
"""
from __future__ import annotations

from enum import Enum
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.core.errors import UserError

PROFILE_DIR = Path(__file__).parent / "profiles"


class SnmpType(str, Enum):
    INTEGER = "integer"
    GAUGE = "gauge"
    COUNTER32 = "counter32"
    COUNTER64 = "counter64"
    TIMETICKS = "timeticks"
    TEXT = "text"
    BITS = "bits"

    @property
    def counter_modulus(self) -> int | None:
        """Where the counter wraps, or None if the type is not a counter."""
        return {SnmpType.COUNTER32: 2**32, SnmpType.COUNTER64: 2**64}.get(self)


def parse_oid(text: str) -> tuple[int, ...]:
    """``1.3.6.1.2.1.1.3.0`` (a leading dot allowed) -> (1, 3, 6, 1, 2, 1, 1, 3, 0)."""
    parts = text.strip().lstrip(".").split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{text!r} is not a numeric OID (like 1.3.6.1.2.1.1.3.0)")
    return tuple(int(p) for p in parts)


class Signal(BaseModel):
    """One MIB object and how its value becomes a signal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_{}]+$")
    oid: tuple[int, ...]
    type: SnmpType
    unit: str = ""
    description: str = ""
    scale: float = 1.0
    rate: bool = False
    true_when: tuple[int, ...] | None = None
    enum: dict[int, str] | None = None
    bits: dict[int, str] | None = None
    no_bits: str | None = None

    @field_validator("oid", mode="before")
    @classmethod
    def _oid(cls, value):
        return parse_oid(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_mapping(self) -> Signal:
        maps = [k for k in ("true_when", "enum", "bits") if getattr(self, k) is not None]
        maps += ["rate"] if self.rate else []
        if len(maps) > 1:
            raise ValueError(f"{self.name}: one of true_when, enum, bits, rate; not {' and '.join(maps)}")
        if self.rate and self.type.counter_modulus is None:
            raise ValueError(f"{self.name}: rate needs a counter32 or counter64, not {self.type.value}")
        if (self.true_when is not None or self.enum is not None) and self.type is not SnmpType.INTEGER:
            raise ValueError(f"{self.name}: true_when and enum map an integer, not {self.type.value}")
        if (self.bits is not None) != (self.type is SnmpType.BITS):
            raise ValueError(f"{self.name}: a bits signal needs bits: {{bit: name}}, and bits: needs type bits")
        if self.no_bits is not None and self.bits is None:
            raise ValueError(f"{self.name}: no_bits goes with bits")
        return self

    @property
    def is_text(self) -> bool:
        return self.type in (SnmpType.TEXT, SnmpType.BITS) or self.enum is not None


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    description: str = ""
    scalars: list[Signal] = []
    ports: list[Signal] = []
    neighbors: list[Signal] = []

    @model_validator(mode="after")
    def _names(self) -> Profile:
        seen: set[str] = set()
        for where, signals in (("scalars", self.scalars), ("ports", self.ports), ("neighbors", self.neighbors)):
            for s in signals:
                per_port = "{n}" in s.name
                if per_port != (where != "scalars"):
                    raise ValueError(f"{where}: {s.name}: " + ("a per-port signal's name needs {n}" if not per_port
                                                                else "{n} belongs to ports and neighbors only"))
                if s.name in seen:
                    raise ValueError(f"duplicate signal name {s.name!r}")
                seen.add(s.name)
                if where == "neighbors" and s.type is not SnmpType.TEXT:
                    raise ValueError(f"neighbors: {s.name}: LLDP neighbours are text, not {s.type.value}")
        return self

    def signal_names(self, ports: list[int]) -> list[str]:
        """Every signal a device with these ports has, in reading order."""
        return [s.name for s in self.scalars] + [s.name.format(n=n) for n in ports for s in self.ports + self.neighbors]


class ProfileError(UserError):
    """A profile file that cannot be used; the message says where."""


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


@cache
def load_profile(name: str) -> Profile:
    """A built-in profile by name, or a YAML file by path; :class:`ProfileError` names the place of a mistake."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ProfileError(f"unknown SNMP profile {name!r}; built-in: {', '.join(available_profiles())}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not YAML: {exc}") from None
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_location(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        raise ProfileError(f"{path}: " + "; ".join(problems)) from None


def _location(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"
