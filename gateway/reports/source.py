"""Reads the historian for a report: InfluxQL through :class:`gateway.historian.influx.InfluxV1Writer`'s
``query`` (one HTTP client, the site file's credentials), rows flattened with their series' tags."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gateway.config import HistorianConfig
from gateway.core.errors import UserError
from gateway.historian.errors import HistorianError
from gateway.historian.influx import InfluxV1Writer

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def ident(name: str) -> str:
    """An InfluxQL identifier (measurement, tag, field), quoted."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(text: str) -> str:
    """An InfluxQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ns(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1) * 1000


def between(start: datetime, end: datetime) -> str:
    """``time >= start AND time < end``, exact to the nanosecond."""
    return f"time >= {ns(start)} AND time < {ns(end)}"


class Historian:
    """The InfluxDB a site writes to (``historian:``), read with InfluxQL (api v1 only: 1.x, or 1.8+/2.x's
    v1 compatibility endpoint)."""

    def __init__(self, cfg: HistorianConfig | None):
        if cfg is None:
            raise UserError("the site file has no historian: section: the report reads InfluxDB")
        if cfg.api != "v1":
            raise UserError("reports query with InfluxQL: they need historian.api v1 (InfluxDB 1.x, or the "
                            "v1 endpoint of 1.8+)")
        self.cfg = cfg
        self._client = InfluxV1Writer(cfg)

    def measurement(self, name: str) -> str:
        rp = ident(self.cfg.retention_policy) if self.cfg.retention_policy else ""
        return f"{ident(self.cfg.database)}.{rp}.{ident(name)}"

    async def rows(self, q: str) -> list[dict]:
        """The rows of every series: column -> value, the series' tags included, ``time`` a UTC datetime."""
        try:
            results = await self._client.query(q, db=self.cfg.database, epoch="u")
        except HistorianError as exc:
            raise UserError(f"InfluxDB at {self.cfg.url}: {exc}") from None
        rows = []
        for result in results:
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series["values"]:
                    row = {**tags, **dict(zip(series["columns"], values))}
                    row["time"] = _EPOCH + timedelta(microseconds=row["time"])
                    rows.append(row)
        return rows

    async def close(self) -> None:
        await self._client.close()
