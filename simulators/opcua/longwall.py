"""A longwall face's roof pressure (矿压), deterministic: the OPC UA simulator's physics.

``LongwallModel.values(t)`` gives every signal of a node map ``t`` seconds of face time
after the start. Everything is a pure function of (seed, t): the shearer's passes, the
support cycles and the weighting events come from seeded draws, so values can be
asked for in any order and always agree.

The shearer cuts bi-directionally, one web (0.8 m) per pass, then turns around; now
and then the face stands for a while (maintenance, belt stops). Each support goes
through one cycle per pass, a few supports behind the shearer:

    lower (P falls to a residual) → advance → set (P rises to the setting pressure,
    24-26 MPa) → loaded: P rises as the roof loads it (fast at first, then slowly),
    capped by the yield valve (38-40 MPa: when P reaches it the valve opens and P
    drops ~2 MPa, then rises again: a saw-tooth whose teeth are counted) → lower ...

Periodic weighting (周期来压) multiplies the load-rise rates by 3-5 across a stretch of
supports for a few passes, every ~16-24 passes (13-19 m of advance). Roof separation
in the gate roads grows as the face approaches a gauge (plus slow creep); anchor load
cells carry their pretension plus the abutment load, with noise.

:meth:`LongwallModel.cycle` returns a cycle's true figures (setting pressure, end
resistance, yield openings, weighting), against which derived metrics computed from
the sampled signals can be checked.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

from pydantic import BaseModel, ConfigDict, Field

from adapters.opcua.nodemap import SUPPORTS_GROUP, DataType, NodeMap, Signal
from simulators.physics import Noise, clamp

HOUR = 3600.0
LEGS = ("front", "rear")


class FaceParams(BaseModel):
    """How the face is worked and how its roof behaves. Ranges are (low, high) of a seeded draw."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    support_width_m: float = Field(1.5, gt=0, description="used when the node map gives no spacing")
    web_m: float = Field(0.8, gt=0, description="face advance per pass")
    shearer_speed_m_min: tuple[float, float] = (5.0, 7.0)
    turnaround_s: float = Field(600, ge=0, description="end of a pass to the start of the next")
    stop_probability: float = Field(0.3, ge=0, le=1, description="chance the face stands after a pass")
    stop_s: tuple[float, float] = (600, 3600)
    advance_lag_supports: int = Field(4, ge=1, description="supports advance this far behind the shearer")
    lower_s: float = Field(3, gt=0)
    advance_s: float = Field(6, gt=0)
    setting_s: float = Field(4, gt=0)
    residual_mpa: tuple[float, float] = (0.3, 1.5)
    setting_mpa: tuple[float, float] = (24.0, 26.0)
    yield_mpa: tuple[float, float] = (38.0, 40.0)
    yield_drop_mpa: tuple[float, float] = (1.5, 2.5)
    fast_rise_mpa: tuple[float, float] = (1.0, 3.0)  # bedding-in just after setting...
    fast_rise_tau_s: float = Field(600, gt=0)  # ...with this time constant
    slow_rise_mpa_h: tuple[float, float] = (0.5, 1.5)
    rear_leg_factor: tuple[float, float] = (0.7, 1.0)
    weighting_every_passes: tuple[int, int] = (16, 24)
    weighting_passes: int = Field(3, ge=1)
    weighting_factor: tuple[float, float] = (3.0, 5.0)
    weighting_span: tuple[float, float] = (0.3, 0.6)
    pressure_noise_mpa: float = Field(0.05, ge=0)


@dataclass(frozen=True)
class Pass:
    """One run of the shearer along the face; ``k`` 0 is under way at t = 0."""

    k: int
    start: float
    speed: float  # m/s
    cut_s: float
    direction: int  # +1: head gate → tail gate

    @property
    def end_of_cut(self) -> float:
        return self.start + self.cut_s


@dataclass(frozen=True)
class Weighting:
    """Load-rise rates × ``factor`` on supports ``first``..``last`` between ``t0`` and ``t1``."""

    t0: float
    t1: float
    first: int
    last: int
    factor: float


@dataclass(frozen=True)
class LegState:
    pressure: float
    yields: int  # yield-valve openings since setting


@dataclass(frozen=True)
class SupportCycle:
    """The truth about one support cycle (times in face seconds, pressures in MPa)."""

    support: int
    k: int
    lowered_at: float
    set_at: float  # setting finished: the loaded phase starts
    ended_at: float  # lowered again for the next advance
    setting: dict[str, float]
    end_resistance: dict[str, float]
    yields: dict[str, int]
    weighting_factor: float  # the largest rate factor during the loaded phase

    def load_rise_mpa_h(self, leg: str) -> float:
        """Mean rate over the loaded phase, yield drops included."""
        return (self.end_resistance[leg] - self.setting[leg]) / ((self.ended_at - self.set_at) / HOUR)


class LongwallModel:
    """The roof-pressure physics of one face, for the signals of ``nodemap``."""

    def __init__(self, nodemap: NodeMap, seed: int = 0, params: FaceParams | None = None):
        self.nodemap = nodemap
        self.p = params or FaceParams()
        self.noise = Noise(seed)
        supports = nodemap.group(SUPPORTS_GROUP)
        self.first = min((s.index for s in supports), default=1)
        self.supports = len({s.index for s in supports})
        width = next((b.location_m - a.location_m for a, b in pairwise(supports)
                      if a.index != b.index and a.location_m is not None and b.location_m is not None), None)
        self.width = width or self.p.support_width_m
        self.length = self.width * max(self.supports, 1)
        self._passes: list[Pass] = []
        self._starts: list[float] = []
        self._weightings: list[Weighting] = []
        self._next_weighting_pass = self._draw_int("weighting-first", 0, 2, self.p.weighting_every_passes[1])
        self._manual: list[Weighting] = []
        self._outputs = [(s.name, self._output(s)) for s in nodemap.expanded]
        self._first_passes()

    # -- public ---------------------------------------------------------------------------
    def values(self, t: float) -> dict[str, float | int | bool | str]:
        """Every signal of the node map at face time ``t`` (s), in engineering units."""
        return {name: output(t) for name, output in self._outputs}

    def leg_pressure(self, support: int, leg: str, t: float) -> float:
        """Pressure of one leg of support ``support`` (its node-map number) at ``t``, no sensor noise."""
        i = self.index_of(support)
        k = self.cycle_index(support, t)
        lowered = self._advance_time(i, k)
        tau = t - lowered
        p = self.p
        residual = self._draw("residual", i, k, *p.residual_mpa)
        if tau < p.lower_s:
            before = self._loaded(i, leg, k - 1, lowered).pressure
            return before + (residual - before) * tau / p.lower_s
        if tau < p.lower_s + p.advance_s:
            return residual
        setting = self._setting(i, leg, k)
        rising = tau - p.lower_s - p.advance_s
        if rising < p.setting_s:
            return residual + (setting - residual) * rising / p.setting_s
        return self._loaded(i, leg, k, t).pressure

    def cycle_index(self, support: int, t: float) -> int:
        """Which cycle (= pass) support ``support`` is in at ``t``: it began when the support was lowered."""
        i = self.index_of(support)
        k = self.pass_at(t).k
        return k if self._advance_time(i, k) <= t else k - 1

    def cycle(self, support: int, k: int) -> SupportCycle:
        """The true figures of cycle ``k`` of support ``support``."""
        i = self.index_of(support)
        lowered, ended = self._advance_time(i, k), self._advance_time(i, k + 1)
        set_at = self._set_time(i, k)
        end = {leg: self._loaded(i, leg, k, ended) for leg in LEGS}
        return SupportCycle(
            support=support, k=k, lowered_at=lowered, set_at=set_at, ended_at=ended,
            setting={leg: self._setting(i, leg, k) for leg in LEGS},
            end_resistance={leg: s.pressure for leg, s in end.items()},
            yields={leg: s.yields for leg, s in end.items()},
            weighting_factor=max((w.factor for w in self._weightings_on(i, set_at, ended)), default=1.0))

    def shearer_position(self, t: float) -> float:
        """Metres from the head gate."""
        pass_ = self.pass_at(t)
        travelled = min(t - pass_.start, pass_.cut_s) * pass_.speed
        return travelled if pass_.direction > 0 else self.length - travelled

    def face_advance(self, t: float) -> float:
        """Metres the face has advanced since the start line (pass 0 started on it)."""
        pass_ = self.pass_at(t)
        return self.p.web_m * (pass_.k + min(max(t - pass_.start, 0.0) / pass_.cut_s, 1.0))

    def pass_at(self, t: float) -> Pass:
        while self._starts[-1] <= t:
            self._add_pass()
        return self._passes[max(bisect.bisect_right(self._starts, t) - 1, 0)]

    def add_weighting(self, t0: float, duration: float, first: int, last: int, factor: float) -> Weighting:
        """A weighting event of our own (scenarios, demos) on supports ``first``..``last``."""
        w = Weighting(t0, t0 + duration, self.index_of(first), self.index_of(last), factor)
        self._manual.append(w)
        return w

    def weightings(self, until: float) -> list[Weighting]:
        """Weighting events starting by ``until`` (support indexes 0-based), injected ones included."""
        self._draw_weightings(until)
        return [w for w in self._weightings + self._manual if w.t0 <= until]

    # -- the shearer's passes -------------------------------------------------------------
    def _first_passes(self) -> None:
        first = self._make_pass(0, 0.0)
        first = Pass(0, -self._draw("phase", 0, 0, 0.0, 1.0) * first.cut_s, first.speed, first.cut_s, 1)
        before = self._make_pass(-1, 0.0)
        start = first.start - before.cut_s - self.p.turnaround_s
        self._passes = [Pass(-1, start, before.speed, before.cut_s, -1), first]
        self._starts = [p.start for p in self._passes]

    def _make_pass(self, k: int, start: float) -> Pass:
        speed = self._draw("speed", 0, k, *self.p.shearer_speed_m_min) / 60
        return Pass(k, start, speed, self.length / speed, 1 if k % 2 == 0 else -1)

    def _add_pass(self) -> None:
        last = self._passes[-1]
        stop = 0.0
        if self._draw("stops", 0, last.k, 0.0, 1.0) < self.p.stop_probability:
            stop = self._draw("stop-length", 0, last.k, *self.p.stop_s)
        self._passes.append(self._make_pass(last.k + 1, last.end_of_cut + self.p.turnaround_s + stop))
        self._starts.append(self._passes[-1].start)

    def _pass(self, k: int) -> Pass:
        if k < self._passes[0].k:
            raise ValueError(f"pass {k} is before the simulation's history (it starts at {self._passes[0].k})")
        while self._passes[-1].k < k:
            self._add_pass()
        return self._passes[k - self._passes[0].k]

    def _pass_start(self, k: int) -> float:
        return self._pass(k).start

    def _advance_time(self, i: int, k: int) -> float:
        """When support ``i`` (0-based) is lowered in pass ``k``: ``lag`` supports behind the
        shearer; those within ``lag`` of the far end follow one by one after the cut."""
        pass_ = self._pass(k)
        along = i if pass_.direction > 0 else self.supports - 1 - i
        target = (along + 0.5 + self.p.advance_lag_supports) * self.width
        if target <= self.length:
            return pass_.start + target / pass_.speed
        behind_end = (target - self.length) / self.width
        return pass_.end_of_cut + behind_end * self._support_cycle_s

    @property
    def _support_cycle_s(self) -> float:
        return self.p.lower_s + self.p.advance_s + self.p.setting_s

    def _set_time(self, i: int, k: int) -> float:
        return self._advance_time(i, k) + self._support_cycle_s

    # -- weighting ------------------------------------------------------------------------
    def _draw_weightings(self, until: float) -> None:
        """Every weighting event that starts by ``until``, so that which events exist never
        depends on the order in which times were asked for."""
        p = self.p
        while self._next_weighting_pass <= self.pass_at(until).k:
            j, k = len(self._weightings), self._next_weighting_pass
            span = self._draw("weighting-span", 0, j, *p.weighting_span) * self.supports
            centre = self._draw("weighting-centre", 0, j, span / 2, self.supports - span / 2)
            self._weightings.append(Weighting(
                self._pass_start(k), self._pass_start(k + p.weighting_passes),
                int(centre - span / 2), int(centre + span / 2),
                self._draw("weighting-factor", 0, j, *p.weighting_factor)))
            self._next_weighting_pass += self._draw_int("weighting-every", j, *p.weighting_every_passes)

    def _weightings_on(self, i: int, t0: float, t1: float) -> list[Weighting]:
        self._draw_weightings(t1)
        return [w for w in self._weightings + self._manual if w.first <= i <= w.last and w.t0 < t1 and w.t1 > t0]

    # -- one support ----------------------------------------------------------------------
    def _setting(self, i: int, leg: str, k: int) -> float:
        front = self._draw("setting", i, k, *self.p.setting_mpa)
        if leg == "front":
            return front
        return max(front - self._draw("setting-rear", i, k, 0.0, 1.0), self.p.setting_mpa[0])  # same pump, a bit less

    def _loaded(self, i: int, leg: str, k: int, t: float) -> LegState:
        """A leg in its loaded phase: setting pressure plus the roof's load, under the yield valve."""
        raw = self._setting(i, leg, k) + self._load(i, leg, self._set_time(i, k), t)
        valve = self._draw(f"yield-{leg}", i, 0, *self.p.yield_mpa)
        if raw < valve:
            return LegState(raw, 0)
        drop = self._draw(f"yield-drop-{leg}", i, 0, *self.p.yield_drop_mpa)
        excess = raw - valve
        return LegState(valve - drop + excess % drop, int(excess // drop) + 1)

    def _load(self, i: int, leg: str, set_at: float, t: float) -> float:
        """MPa the roof has added since ``set_at``: the load-rise rate integrated, weighting included."""
        if t <= set_at:
            return 0.0
        fast = self._draw("fast-rise", i, 0, *self.p.fast_rise_mpa)
        slow = self._draw("slow-rise", i, 0, *self.p.slow_rise_mpa_h) / HOUR
        tau = self.p.fast_rise_tau_s

        def integral(s: float) -> float:  # ∫0^s (fast/τ·e^(-u/τ) + slow) du
            return fast * (1 - math.exp(-s / tau)) + slow * s

        events = self._weightings_on(i, set_at, t)
        cuts = sorted({set_at, t, *(x for w in events for x in (w.t0, w.t1) if set_at < x < t)})
        total = 0.0
        for a, b in pairwise(cuts):
            factor = max((w.factor for w in events if w.t0 <= a < w.t1), default=1.0)
            total += factor * (integral(b - set_at) - integral(a - set_at))
        rear = self._draw("rear-factor", i, 0, *self.p.rear_leg_factor) if leg == "rear" else 1.0
        return total * rear

    # -- signals --------------------------------------------------------------------------
    def _output(self, s: Signal) -> Callable[[float], float]:
        role = s.role or ""
        if role in ("leg_front", "leg_rear") and s.index is not None:
            return self._leg_output(s, "front" if role == "leg_front" else "rear")
        if role in ("separation_deep", "separation_shallow"):
            return self._separation_output(s, deep=role == "separation_deep")
        if role in ("bolt_load", "cable_load"):
            return self._anchor_output(s, cable=role == "cable_load")
        return self._generic_output(s)

    def _leg_output(self, s: Signal, leg: str) -> Callable[[float], float]:
        key, noise = s.name, self.p.pressure_noise_mpa

        def pressure(t: float) -> float:
            p = self.leg_pressure(s.index, leg, t) + noise * self.noise.jitter(key, t, rate=1.0)
            return round(max(p, 0.0), 2)  # transducer resolution 0.01 MPa
        return pressure

    def _ahead(self, s: Signal, t: float) -> float:
        """Metres between the face and a gate-road sensor."""
        return (s.location_m or 0.0) - self.face_advance(t)

    def _separation_output(self, s: Signal, deep: bool) -> Callable[[float], float]:
        station = f"{s.group}:{s.index}" if s.group else s.name  # a gauge's two anchors share its draws
        total = self._draw_key(f"{station}-sep-max", 15.0, 60.0)
        share = 1.0 if deep else self._draw_key(f"{station}-shallow-share", 0.3, 0.7)
        creep = self._draw_key(f"{station}-creep", 0.1, 0.6) / (24 * HOUR)  # mm/s
        base = self._draw_key(f"{station}-base", 0.0, 3.0)

        def separation(t: float) -> float:
            approach = total / (1 + math.exp((self._ahead(s, t) - 30.0) / 8.0))
            return float(math.floor(share * (base + approach + creep * max(t, 0.0))))  # 1 mm resolution
        return separation

    def _anchor_output(self, s: Signal, cable: bool) -> Callable[[float], float]:
        pre = self._draw_key(f"{s.name}-pretension", *((150.0, 250.0) if cable else (60.0, 120.0)))
        abutment = self._draw_key(f"{s.name}-abutment", *((40.0, 120.0) if cable else (15.0, 60.0)))
        high = s.range[1] if s.range else 500.0

        def load(t: float) -> float:
            rise = abutment / (1 + math.exp((self._ahead(s, t) - 25.0) / 10.0))
            value = pre + rise + 0.5 * self.noise.jitter(s.name, t, rate=1.0)
            return round(clamp(value, 0.0, high), 1)  # 0.1 kN resolution
        return load

    def _generic_output(self, s: Signal) -> Callable[[float], float | int | bool | str]:
        """Signals the model knows nothing about: a slow wave inside the range."""
        if not s.type.is_numeric:
            return (lambda t: False) if s.type is DataType.BOOLEAN else (lambda t: "")
        low, high = s.range or (0.0, 100.0)
        integer = s.type.is_integer

        def wave(t: float) -> float | int:
            value = low + (high - low) * (0.5 + 0.25 * self.noise.wave(s.name, t, 120.0))
            return round(value) if integer else value
        return wave

    # -- seeded draws ---------------------------------------------------------------------
    def index_of(self, support: int) -> int:
        """0-based position of support number ``support`` along the face."""
        i = support - self.first
        if not 0 <= i < self.supports:
            raise ValueError(f"no support {support}: the face has {self.first}..{self.first + self.supports - 1}")
        return i

    def _draw(self, what: str, i: int, k: int, low: float, high: float) -> float:
        return low + (high - low) * self.noise.uniform(f"{what}:{i}", k)

    def _draw_int(self, what: str, k: int, low: int, high: int) -> int:
        return low + int(self.noise.uniform(what, k) * (high - low + 1))

    def _draw_key(self, key: str, low: float, high: float) -> float:
        return low + (high - low) * self.noise.uniform(key)

