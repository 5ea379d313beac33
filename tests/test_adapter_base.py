"""What every adapter shares (adapters/base.py)."""
from __future__ import annotations

from adapters.base import ReconnectBackoff


def test_reconnect_backoff_doubles_with_jitter_up_to_the_most_and_resets():
    backoff = ReconnectBackoff(1.0, 8.0)
    for base in (1, 2, 4, 8, 8, 8):
        assert base * 0.5 <= backoff.next() <= base * 1.5
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.5


def test_reconnect_backoff_jitter_spreads_devices_that_failed_together():
    delays = {round(ReconnectBackoff(2.0, 60.0).next(), 6) for _ in range(50)}
    assert len(delays) > 40 and min(delays) >= 1.0 and max(delays) <= 3.0
