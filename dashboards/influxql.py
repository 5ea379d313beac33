"""An InfluxQL query for Grafana's InfluxDB data source, as a grafana-foundation-sdk dataquery.

The SDK has builders for many data sources but none for InfluxDB, so this is the small
piece it lacks: a ``Dataquery`` variant that serialises to the target JSON the InfluxDB
data source reads in raw-query mode (InfluxQL: runs on InfluxDB 1.x, on 2.x through its
v1 compatibility API, and on 3.x), and a builder in the SDK's style.
"""
from __future__ import annotations

import typing

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

ResultFormat = typing.Literal["time_series", "table", "logs"]


class InfluxQLQuery(cogvariants.Dataquery):
    """One InfluxQL target of a panel (raw query mode)."""

    def __init__(self, query: str = "", ref_id: str = "", result_format: ResultFormat = "time_series",
                 alias: str | None = None, hide: bool | None = None,
                 datasource: dashboard.DataSourceRef | None = None) -> None:
        self.query = query
        self.ref_id = ref_id
        self.result_format = result_format
        self.alias = alias
        self.hide = hide
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {"refId": self.ref_id, "query": self.query, "rawQuery": True,
                                      "resultFormat": self.result_format}
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.hide is not None:
            payload["hide"] = self.hide
        if self.datasource is not None:
            payload["datasource"] = self.datasource.to_json()
        return payload

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> typing.Self:
        ds = data.get("datasource")
        return cls(query=data.get("query", ""), ref_id=data.get("refId", ""),
                   result_format=data.get("resultFormat", "time_series"), alias=data.get("alias"),
                   hide=data.get("hide"), datasource=dashboard.DataSourceRef.from_json(ds) if ds else None)


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder: ``InfluxQL('SELECT mean("speed") FROM ...').ref_id("A").alias("$tag_device")``."""

    def __init__(self, query: str = "") -> None:
        self._internal = InfluxQLQuery(query=query)

    def build(self) -> InfluxQLQuery:
        return self._internal

    def query(self, query: str) -> typing.Self:
        self._internal.query = query
        return self

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def table(self) -> typing.Self:
        """Rows and columns (tables, bar charts of the last values) instead of time series."""
        self._internal.result_format = "table"
        return self

    def alias(self, alias: str) -> typing.Self:
        """Series name; ``$tag_device``, ``$col`` and ``$measurement`` are filled in by Grafana."""
        self._internal.alias = alias
        return self

    def hide(self, hide: bool = True) -> typing.Self:
        self._internal.hide = hide
        return self

    def datasource(self, datasource: dashboard.DataSourceRef) -> typing.Self:
        self._internal.datasource = datasource
        return self
