"""Site files for the tests: the usual shape (one site, its areas, devices, MQTT, historian) built in one place.

``make_site(...)`` returns the parsed :class:`gateway.config.SiteConfig`, ``site_dict(...)`` the mapping a site file
holds (to write as YAML or change before parsing). Tests that need an unusual site still write their own.
"""
from __future__ import annotations

from typing import Any

from gateway.config import SiteConfig, parse_site
from tests.util import free_port

HOST = "127.0.0.1"


def modbus(device_id: str, profile: str, area: str = "face", **settings: Any) -> dict:
    """A Modbus device on loopback, polled fast and given up on fast (a port of its own unless ``port=``)."""
    return {"id": device_id, "adapter": "modbus", "area": area, "profile": profile, "host": HOST,
            "port": free_port(), "poll_interval": 0.2, "timeout": 0.5, "retries": 0, **settings}


def mqtt(broker, prefix: str, **settings: Any) -> dict:
    """``mqtt:`` for a test broker (the ``mosquitto`` fixture), under a topic prefix of the test's own."""
    return {"host": broker.host, "port": broker.port, "topic_prefix": prefix, **settings}


def historian(influxdb, database: str, buffer, **settings: Any) -> dict:
    """``historian:`` for the ``influxdb`` fixture, flushing every 0.1 s, its buffer file at ``buffer``."""
    return {"url": influxdb.url, "database": database, "flush_interval": 0.1, "buffer": {"path": str(buffer)},
            **settings}


def site_dict(*devices: dict, site_id: str = "s1", gateway_id: str | None = None,
              areas: dict[str, str] | None = None, **sections: Any) -> dict:
    """``areas``: area id -> kind (default one longwall face, ``face``); ``sections``: the other keys
    of the file (``mqtt``, ``historian``, ``alarms``, ``broadcast``, ...); None ones are left out."""
    areas = {"face": "longwall_face"} if areas is None else areas
    head = {"id": site_id, **({"gateway_id": gateway_id} if gateway_id else {})}
    return {"site": head, "areas": [{"id": a, "kind": k} for a, k in areas.items()],
            "devices": list(devices), **{k: v for k, v in sections.items() if v is not None}}


def make_site(*devices: dict, **settings: Any) -> SiteConfig:
    """:func:`site_dict`, parsed."""
    return parse_site(site_dict(*devices, **settings))
