"""Seeded noise and small physics helpers shared by the simulated machines (Modbus) and the
longwall face (OPC UA): reproducible for a seed, whatever the process (``hash()`` is salted)."""
from __future__ import annotations

import math
import zlib

_MASK = (1 << 64) - 1


def _splitmix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def derive_seed(seed: int, key: str) -> int:
    """A seed of its own for ``key`` (a device id, say), fixed by ``seed``."""
    return _splitmix((seed & _MASK) ^ zlib.crc32(key.encode()))


class Noise:
    """Reproducible randomness for one seed (Python's ``hash()`` is salted per process)."""

    def __init__(self, seed: int):
        self.seed = _splitmix(seed & _MASK)

    def uniform(self, key: str, k: int = 0) -> float:
        """A number in [0, 1) fixed by (seed, key, k)."""
        h = _splitmix(_splitmix(self.seed ^ zlib.crc32(key.encode())) ^ (k & _MASK))
        return (h >> 11) / float(1 << 53)

    def wave(self, key: str, x: float, period: float) -> float:
        """Smooth noise in [-1, 1]: random knots every ``period``, eased together."""
        k = math.floor(x / period)
        f = x / period - k
        a, b = 2 * self.uniform(key, k) - 1, 2 * self.uniform(key, k + 1) - 1
        return a + (b - a) * f * f * (3 - 2 * f)

    def jitter(self, key: str, t: float, rate: float = 10.0) -> float:
        """White noise in [-1, 1], held for 1/``rate`` seconds (sensor noise)."""
        return 2 * self.uniform(key, math.floor(t * rate)) - 1


def approach(value: float, target: float, rate: float, dt: float) -> float:
    """Move towards ``target`` by at most ``rate * dt``: a rate-limited actuator or ramp."""
    step = rate * dt
    return min(value + step, target) if target > value else max(value - step, target)


def lag(value: float, target: float, tau: float, dt: float) -> float:
    """First-order lag with time constant ``tau``: thermal masses."""
    return target + (value - target) * math.exp(-dt / tau)


def triangle(x: float) -> float:
    """Triangle wave in [-1, 1], period 1."""
    f = x - math.floor(x)
    return 4 * f - 1 if f < 0.5 else 3 - 4 * f


def clamp(x: float, low: float, high: float) -> float:
    return min(max(x, low), high)
