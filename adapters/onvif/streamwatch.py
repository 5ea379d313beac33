"""The camera's stream, watched (``stream_health: true``): :class:`~gateway.video.health.StreamHealth`
on one of its profiles, each report a reading of the camera device (names in docs/video.md).

The stream is the one GetStreamUri answers for ``stream_profile`` (default: the profile
with the smallest picture: the cheapest to decode), logged in with the camera's user when
it has one; a new inventory with another URI moves the watch there. Readings never carry
the URI.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from gateway.core.model import Inventory, MediaProfile, Quality, Reading, Sample
from gateway.video.picture import VERDICTS

from .config import OnvifDeviceConfig

if TYPE_CHECKING:
    from gateway.video.health import HealthSample, StreamHealth

log = logging.getLogger(__name__)


def watched_profile(config: OnvifDeviceConfig, inventory: Inventory) -> MediaProfile | None:
    profiles = [p for p in inventory.profiles if p.stream_uri]
    if config.stream_profile is not None:
        return next((p for p in profiles if p.token == config.stream_profile), None)
    return min(profiles, key=lambda p: (p.width or 0) * (p.height or 0), default=None)


def with_login(uri: str, username: str | None, password: str | None) -> str:
    """``uri`` with ``user:password@`` (RTSP cameras take the ONVIF user's login)."""
    if not username:
        return uri
    parts = urlsplit(uri)
    login = quote(username, safe="") + (f":{quote(password, safe='')}" if password else "")
    return urlunsplit(parts._replace(netloc=f"{login}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")))


VERDICT_FLAGS = {f"picture_{verdict}": verdict for verdict in VERDICTS if verdict != "ok"}  # for state alarms
MEASURED = {"stream_fps": "fps", "stream_kbps": "kbit/s", "keyframe_interval_s": "s", "picture": "",
            **dict.fromkeys(VERDICT_FLAGS, ""), "picture_luma": "", "picture_contrast": "",
            "picture_sharpness": "", "picture_motion": ""}


def health_samples(sample: HealthSample) -> list[Sample]:
    """A report as samples. A broken stream makes what it cannot measure ``comm-fail``; what a
    working one has not measured yet (no frame judged so far) is left out."""
    ts = sample.ts
    always = [Sample(signal="stream_ok", value=sample.stream_ok, ts=ts),
              Sample(signal="stream_problem", value="; ".join(sample.problems), ts=ts),
              Sample(signal="stream_stalls", value=sample.stalls, ts=ts)]
    if not sample.stream_ok:
        return always + [Sample(signal=name, value=None, unit=unit, quality=Quality.COMM_FAIL, ts=ts)
                         for name, unit in MEASURED.items()]
    m = sample.measured
    values = {"stream_fps": sample.fps, "stream_kbps": sample.kbps, "keyframe_interval_s": sample.keyframe_interval_s,
              "picture": sample.picture, "picture_luma": m and round(m.luma, 1),
              **{flag: None if sample.picture is None else sample.picture == verdict
                 for flag, verdict in VERDICT_FLAGS.items()},
              "picture_contrast": m and round(m.contrast, 1), "picture_sharpness": m and round(m.sharpness, 3),
              "picture_motion": None if sample.motion is None else round(sample.motion, 3)}
    return always + [Sample(signal=name, value=values[name], unit=unit, ts=ts)
                     for name, unit in MEASURED.items() if values[name] is not None]


class StreamWatch:
    """Keeps one :class:`StreamHealth` on the camera's watched stream; ``emit`` gets the readings."""

    def __init__(self, config: OnvifDeviceConfig, emit: Callable[[Reading], None]):
        self.config, self.emit = config, emit
        self.uri: str | None = None
        self._task: asyncio.Task | None = None

    def follow(self, inventory: Inventory | None) -> None:
        """Watch the stream this inventory names (start, or move when its URI changed)."""
        profile = watched_profile(self.config, inventory) if inventory else None
        if profile is None:
            if inventory is not None and self.uri is None:
                log.warning("%s: stream health: no stream%s", self.config.id,
                            f" for profile {self.config.stream_profile!r}" if self.config.stream_profile else "")
            return
        if profile.stream_uri == self.uri and self._task is not None and not self._task.done():
            return
        from gateway.video.health import StreamHealth  # PyAV: loaded only where a stream is watched

        self.stop()
        self.uri = profile.stream_uri
        source = with_login(profile.stream_uri, self.config.username, self.config.secret)
        health = StreamHealth(source, rules=self.config.health_rules, report_every=self.config.health_interval,
                              sample_every=min(2.0, self.config.health_interval), timeout=self.config.timeout,
                              retry=(self.config.backoff_initial, self.config.backoff_max), name=self.config.id)
        self._task = asyncio.get_running_loop().create_task(self._relay(health), name=f"health:{self.config.id}")

    async def _relay(self, health: StreamHealth) -> None:
        try:
            async for sample in health.watch():
                self.emit(Reading(device=self.config.id, ts=sample.ts, poll_ms=0.0, samples=health_samples(sample)))
        except Exception:
            log.exception("%s: stream health stopped", self.config.id)
            raise

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()  # the watch's worker thread ends at its next packet or timeout
            self._task = None
