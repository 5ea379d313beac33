"""Per-device poll health over one health interval, from the readings the historian sink receives.

Written every health tick as one ``device_health`` point per device that had readings
(``lineprotocol.device_health_line``), then started again. See docs/historian.md.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.core.model import Quality, Reading, Value


@dataclass
class _Polls:
    area: str
    polls: int = 0
    failed_polls: int = 0
    samples_not_good: int = 0
    timed: int = 0  # readings with a poll time (> 0 ms)
    poll_ms_total: float = 0.0
    poll_ms_max: float = 0.0

    def fields(self) -> dict[str, Value]:
        fields: dict[str, Value] = {"polls": self.polls, "failed_polls": self.failed_polls,
                                    "samples_not_good": self.samples_not_good}
        if self.timed:  # event-driven readings (OPC UA subscriptions, camera events) have none
            fields["poll_ms_mean"] = self.poll_ms_total / self.timed
            fields["poll_ms_max"] = self.poll_ms_max
        return fields


class DeviceHealth:
    """Accumulates, per device: readings (``polls``), those with a comm-fail sample (``failed_polls``),
    samples not good (``samples_not_good``), mean and max ``poll_ms`` of the readings that have one.

    Derived readings (``reading.derived``: computed in the gateway, poll_ms 0) are not polls and
    are not counted.
    """

    def __init__(self) -> None:
        self._devices: dict[str, _Polls] = {}

    def take_with_reach(self, reach: Mapping[str, object], areas: Mapping[str, str],
                        by_polls: Iterable[str] = ()) -> list[tuple[str, str, dict[str, Value]]]:
        """:meth:`take`, with ``reachable`` and ``reach_ms`` from ``reach`` (device id -> ``Reach``), also for
        devices without readings (that is when it matters). ``by_polls``: devices whose own polls say it
        (SNMP is UDP: it answered at least once in the interval; ``reach_ms`` its mean poll time)."""
        taken = {device: (area, fields) for area, device, fields in self.take()}
        for device in by_polls:
            if device in taken and device not in reach:
                fields = taken[device][1]
                fields["reachable"] = fields["polls"] > fields["failed_polls"]
                if "poll_ms_mean" in fields and fields["reachable"]:
                    fields["reach_ms"] = fields["poll_ms_mean"]
        for device, result in reach.items():
            if device not in areas:
                continue
            area, fields = taken.setdefault(device, (areas[device], {}))
            fields["reachable"] = result.reachable
            if result.ms is not None:
                fields["reach_ms"] = float(result.ms)
        return [(area, device, fields) for device, (area, fields) in taken.items()]

    def add(self, area: str, reading: Reading) -> None:
        if reading.derived:
            return
        polls = self._devices.get(reading.device)
        if polls is None:
            polls = self._devices[reading.device] = _Polls(area)
        polls.polls += 1
        qualities = reading.qualities  # None: every sample good
        if qualities is not None:
            polls.samples_not_good += len(qualities) - qualities.count(Quality.GOOD)
            polls.failed_polls += Quality.COMM_FAIL in qualities
        if reading.poll_ms > 0:
            polls.timed += 1
            polls.poll_ms_total += reading.poll_ms
            polls.poll_ms_max = max(polls.poll_ms_max, float(reading.poll_ms))

    def take(self) -> list[tuple[str, str, dict[str, Value]]]:
        """(area, device, fields) of every device with readings since the last take; starts over."""
        devices, self._devices = self._devices, {}
        return [(polls.area, device, polls.fields()) for device, polls in devices.items()]
