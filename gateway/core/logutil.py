"""Logging helpers shared by the sinks."""
from __future__ import annotations

import logging
import time


class ThrottledWarning:
    """Counts events and logs one warning (or ``level``) about them at most every ``every`` seconds.

    ``text`` is a format string with ``{count}`` and ``{detail}``. Not thread-safe: callers hold a lock.
    """

    def __init__(self, logger: logging.Logger, text: str, every: float = 10.0, level: int = logging.WARNING):
        self.logger, self.text, self.every, self.level = logger, text, every, level
        self.count, self.detail, self._next = 0, "", 0.0

    def add(self, n: int = 1, detail: str = "") -> None:
        self.count += n
        self.detail = detail or self.detail
        self.flush()

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.count and (force or now >= self._next):
            self.logger.log(self.level, self.text.format(count=self.count, detail=self.detail))
            self.count, self._next = 0, now + self.every
