"""Delays between retries: doubling from ``first`` up to ``most``, each scaled by a random
factor so that many clients that failed together (devices on one switch, gateways behind
one uplink) do not all retry at the same moment."""
from __future__ import annotations

import random


class Backoff:
    """``next()`` gives the delay before the next attempt, ``reset()`` after a success.

    ``jitter`` is the range of the random factor: (0.5, 1.5) spreads around the nominal delay
    (device reconnects), (0.5, 1.0) never waits longer than it (historian writes).
    """

    def __init__(self, first: float, most: float, jitter: tuple[float, float] = (0.5, 1.5)):
        self.first, self.most, self.jitter = first, most, jitter
        self._nominal = first

    def next(self, at_least: float | None = None) -> float:
        """The next delay; a server's ``at_least`` (Retry-After) wins if longer."""
        delay = min(self._nominal, self.most) * random.uniform(*self.jitter)
        self._nominal = min(self._nominal * 2, self.most)
        return max(delay, at_least or 0.0)

    def reset(self) -> None:
        self._nominal = self.first
