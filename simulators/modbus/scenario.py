"""Fault scenarios: a YAML list of timed fault injections, checked before anything runs.

    - {at: 10, device: belt-main-1, fault: misalignment, mm: 20, duration: 30}
    - {at: 60, device: belt-main-2, fault: slip, params: {ratio: 0.45}}

``at`` is seconds after the simulator started; every other key except ``device``,
``fault`` and ``duration`` is a parameter of the fault (inline, or under ``params:``).
Without ``duration`` the fault stays.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .server import DeviceSimulator, FaultError

log = logging.getLogger(__name__)


class ScenarioStep(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    at: float = Field(ge=0, description="seconds after the simulator started")
    device: str
    fault: str
    duration: float | None = Field(None, gt=0, description="seconds until the fault clears; absent: it stays")

    @property
    def params(self) -> dict[str, Any]:
        extra = dict(self.model_extra or {})
        nested = extra.pop("params", None)
        return {**(nested if isinstance(nested, dict) else {}), **extra}


class ScenarioError(Exception):
    """A scenario that cannot run; ``problems`` lists each with its step."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        super().__init__(f"{source}: " + "; ".join(problems))


_STEPS = TypeAdapter(list[ScenarioStep])


class Scenario:
    def __init__(self, steps: list[ScenarioStep], source: str = "<scenario>"):
        self.steps = steps
        self.source = source

    @classmethod
    def parse(cls, data: Any, source: str = "<scenario>") -> Scenario:
        if not isinstance(data, list):
            raise ScenarioError(source, ["a scenario is a list of steps: {at, device, fault, ...}"])
        try:
            return cls(_STEPS.validate_python(data), source)
        except ValidationError as exc:
            problems = [f"[{e['loc'][0]}]" + "".join(f".{part}" for part in e["loc"][1:]) + f": {e['msg']}"
                        for e in exc.errors()]
            raise ScenarioError(source, problems) from None

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ScenarioError(str(path), [f"cannot read: {exc.strerror}"]) from None
        except yaml.YAMLError as exc:
            raise ScenarioError(str(path), [f"not valid YAML: {exc}"]) from None
        return cls.parse(data, str(path))

    def without(self, devices: set[str]) -> Scenario:
        """The steps on every device but these."""
        return Scenario([s for s in self.steps if s.device not in devices], self.source)

    def check(self, simulators: Mapping[str, DeviceSimulator]) -> None:
        """Raise :class:`ScenarioError` unless every step names a simulated device and a
        fault it takes, with valid parameters."""
        problems = []
        for i, step in enumerate(self.steps):
            sim = simulators.get(step.device)
            if sim is None:
                problems.append(f"[{i}].device: {step.device!r} is not simulated "
                                f"(known: {', '.join(simulators)})")
                continue
            try:
                sim.check_fault(step.fault, step.params)
            except FaultError as exc:
                problems.append(f"[{i}]: {exc}")
        if problems:
            raise ScenarioError(self.source, problems)

    def timeline(self) -> list[tuple[float, str, ScenarioStep]]:
        """(time, "set" | "clear", step) in order; at equal times clears go first."""
        actions = []
        for i, step in enumerate(self.steps):
            actions.append((step.at, 1, i, "set", step))
            if step.duration is not None:
                actions.append((step.at + step.duration, 0, i, "clear", step))
        return [(t, action, step) for t, _, _, action, step in sorted(actions, key=lambda a: a[:3])]


async def run_scenario(scenario: Scenario, simulators: Mapping[str, DeviceSimulator],
                       clock: Callable[[], float],
                       settle: Callable[[], Awaitable[None]] | None = None) -> None:
    """Apply the scenario's steps at their times on ``clock``; returns after the last one."""
    for when, action, step in scenario.timeline():
        await asyncio.sleep(max(0.0, when - clock()))
        sim = simulators[step.device]
        if action == "set":
            sim.set_fault(step.fault, **step.params)
        else:
            sim.clear_fault(step.fault)
        log.info("scenario t=%.1f s: %s %s %s", clock(), step.device, action, step.fault)
        if settle is not None:
            await settle()
