"""Equipment profiles: a machine's register map, as data.

One YAML file per equipment kind under ``profiles/``. The same profile drives the
adapter (what to read and how to decode it) and the simulator (what to serve).
"""
from __future__ import annotations

from decimal import Decimal
from enum import Enum
from functools import cache, cached_property
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from . import codec
from .codec import DataType, Order, register_count

PROFILE_DIR = Path(__file__).parent / "profiles"


class Table(str, Enum):
    COIL = "coil"
    DISCRETE_INPUT = "discrete_input"
    INPUT_REGISTER = "input_register"
    HOLDING_REGISTER = "holding_register"

    @property
    def is_bit(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE_INPUT)

    @property
    def writable(self) -> bool:
        return self in (Table.COIL, Table.HOLDING_REGISTER)


_INTEGER_TYPES = frozenset({DataType.UINT16, DataType.INT16, DataType.UINT32, DataType.INT32})


def exact_ratio(scale: float, offset: float) -> tuple[int, int] | None:
    """``(n, k)`` with scale = 1/n and offset = k/n exactly as written (decimal), else None."""
    divisor = 1 / Decimal(repr(scale))
    shift = Decimal(repr(offset)) * divisor
    if divisor != divisor.to_integral_value() or shift != shift.to_integral_value() or divisor > 10 ** 9:
        return None
    return int(divisor), int(shift)


class Point(BaseModel):
    """One signal in a register map."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    unit: str = ""
    table: Table
    address: int = Field(ge=0, le=65535)
    type: DataType = DataType.UINT16
    order: Order = Order.ABCD
    length: int = Field(0, ge=0, description="characters, for strings")
    scale: float = 1.0
    offset: float = 0.0
    range: tuple[float, float] | None = None  # engineering range: outside is out-of-range
    writable: bool = False

    @model_validator(mode="after")
    def _check(self) -> "Point":
        if self.table.is_bit and self.type is not DataType.BOOL:
            raise ValueError(f"{self.table.value} points must be bool, not {self.type.value}")
        if self.type is DataType.STRING and self.length == 0:
            raise ValueError("string points need a length")
        if self.writable and not self.table.writable:
            raise ValueError(f"{self.table.value} is read-only in Modbus; cannot be writable")
        if self.range and self.range[0] > self.range[1]:
            raise ValueError("range must be [low, high]")
        return self

    @property
    def width(self) -> int:
        """Registers (or bits) the point occupies."""
        return 1 if self.table.is_bit else register_count(self.type, self.length)

    @property
    def is_numeric(self) -> bool:
        return self.type not in (DataType.BOOL, DataType.STRING)

    @cached_property
    def ratio(self) -> tuple[int, int] | None:
        """``(divisor, shift)`` when the value is ``(raw + shift) / divisor`` exactly: an integer point scaled by
        1/n (0.1, 0.01, 0.5, …) with an offset a whole number of steps. One division then gives the float
        nearest the true value (47.4), where ``raw * 0.1`` gives binary noise (47.400000000000006)."""
        if self.type not in _INTEGER_TYPES or not 0 < self.scale < 1:
            return None
        return exact_ratio(self.scale, self.offset)

    def to_engineering(self, raw: int | float) -> int | float:
        if self.scale == 1 and self.offset == 0:
            return raw  # counters and enumerations stay integers
        if (ratio := self.ratio) is not None and isinstance(raw, int):
            return (raw + ratio[1]) / ratio[0]
        return raw * self.scale + self.offset

    def to_raw(self, value: float) -> float:
        return (value - self.offset) / self.scale

    def encode(self, value) -> list:
        """Engineering value -> the registers (or bit) that carry it."""
        if self.table.is_bit:
            return [bool(value)]
        if not self.is_numeric:
            return codec.encode(value, self.type, self.order, self.length)
        return codec.encode(self.to_raw(value), self.type, self.order)

    def decode(self, words: list) -> bool | int | float | str:
        """The registers (or bit) -> engineering value; raises codec.DecodeError."""
        if self.table.is_bit:
            return bool(words[0])
        raw = codec.decode(list(words), self.type, self.order)
        return self.to_engineering(raw) if self.is_numeric else raw


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    description: str = ""
    points: list[Point]

    @model_validator(mode="after")
    def _no_overlap(self) -> "Profile":
        names: set[str] = set()
        used: dict[tuple[Table, int], str] = {}
        for p in self.points:
            if p.name in names:
                raise ValueError(f"duplicate point name {p.name!r}")
            names.add(p.name)
            for a in range(p.address, p.address + p.width):
                if (p.table, a) in used:
                    raise ValueError(f"{p.name} overlaps {used[p.table, a]} at {p.table.value} {a}")
                used[p.table, a] = p.name
        return self

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(f"profile {self.kind!r} has no signal {name!r}")


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


@cache
def load_profile(name: str) -> Profile:
    """A built-in profile by kind name, or a YAML file by path."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"unknown profile {name!r}; built-in: {', '.join(available_profiles())}")
    return Profile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
