"""gateway/core/backoff.py: the retry delays of device reconnects and historian writes."""
from __future__ import annotations

from gateway.core.backoff import Backoff


def test_reconnect_delays_double_with_jitter_around_the_nominal_up_to_the_most_and_reset():
    backoff = Backoff(1.0, 8.0)
    for nominal in (1, 2, 4, 8, 8, 8):
        assert nominal * 0.5 <= backoff.next() <= nominal * 1.5
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.5


def test_jitter_spreads_clients_that_failed_together():
    delays = {round(Backoff(2.0, 60.0).next(), 6) for _ in range(50)}
    assert len(delays) > 40 and min(delays) >= 1.0 and max(delays) <= 3.0


def test_historian_delays_never_exceed_the_nominal_and_honour_retry_after():
    backoff = Backoff(1.0, 60.0, jitter=(0.5, 1.0))
    delays = [backoff.next() for _ in range(2000)]  # an outage of a day and more: no overflow
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0 and 2.0 <= delays[2] <= 4.0
    assert all(30.0 <= d <= 60.0 for d in delays[6:])
    assert backoff.next(at_least=120.0) == 120.0
    backoff.reset()
    assert backoff.next() <= 1.0
