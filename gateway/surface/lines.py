"""The gateways' historian lines on the surface: ``{prefix}/{site}/gateway/{gw}/historian`` → checked rows.

A gateway with ``historian.api: mqtt`` publishes the very lines its v1 writer would POST (InfluxDB
line protocol, UTF-8, joined by ``\\n``). The broker's ACL vouches for the topic only, so every line
is checked against what that gateway may write (its scope, the ``writers:`` section of ingest.yaml,
generated from the gateways' site files by ``minegw deploy writers``):

- the ``site`` tag is the topic's site;
- an ``area`` tag is one of its areas, a ``gateway`` tag its own id, a ``ring`` tag one of its rings,
  and at least one of them is there (the measurements the gateway sink writes name the one they need:
  :data:`SCOPE_TAGS`);
- no measurement only the ingest writes (``uplink_status``: the bridges' notifications).

The line must also be line protocol as the gateway writes it: measurement and tags, one space, fields,
one space, a nanosecond timestamp (a line without one would be stamped by the server at each retry).
Quoted string fields may hold newlines, as InfluxDB reads them. A refused line is named by its line
number in the message; the other lines of the message are kept.

The verdict on a line's measurement and tags is kept per gateway (a few hundred distinct heads per
gateway), so a line costs one regular-expression match and a dictionary look-up.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import Field

from gateway.config import Strict
from gateway.historian.sink import Row


INT64 = (-(2 ** 63), 2 ** 63 - 1)

# measurements the gateway's sink queues as events: the buffer drops them last when it is full
EVENTS = frozenset({"device_state", "device_inventory", "gateway_alarm", "alarm_event", "linkage_event",
                    "command_audit", "network_ring", "gateway_status"})
INGEST_ONLY = frozenset({"uplink_status"})  # written from the bridges' notifications, never by a gateway
# the scope tag each measurement of the gateway sink carries (docs/historian.md); others need one of them
SCOPE_TAGS = {"gateway_status": "gateway", "gateway_health": "gateway", "gateway_alarm": "gateway",
              "command_audit": "gateway", "network_ring": "ring", "device_state": "area",
              "device_inventory": "area", "device_health": "area", "alarm_event": "area", "linkage_event": "area"}


class GatewayScope(Strict):
    """What one gateway may write: its site file's areas and rings (its own id is the key above it)."""

    areas: list[str] = Field([], description="the gateway's areas (site file areas[].id)")
    rings: list[str] = Field([], description="the rings it watches (site file network.rings[].id)")


Writers = dict[str, dict[str, GatewayScope]]  # site -> gateway id -> scope


# ---- line protocol, as InfluxDB 1.x scans it (a backslash takes the next character with it) ----

_NAME = r"(?:[^\\ ,\n]|\\[^\n])+"  # measurement
_KEY = r"(?:[^\\ ,=\n]|\\[^\n])+"  # tag key, tag value, field key
_VALUE = (r'(?:"(?:[^"\\]|\\.)*"'  # string (may span lines)
          r"|-?\d+i|\d+u|-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"  # integer, unsigned, float
          r"|true|True|TRUE|t|T|false|False|FALSE|f|F)")
_FIELDS = rf"{_KEY}={_VALUE}(?:,{_KEY}={_VALUE})*"
_LINE = re.compile(rf"({_NAME}(?:,{_KEY}={_KEY})*) {_FIELDS} (-?\d{{1,19}})(?:\n|$)", re.DOTALL)
_HEAD = re.compile(rf"{_NAME}(?:,{_KEY}={_KEY})*")
_FIELDS_ONLY = re.compile(rf"{_FIELDS}(?: |$)", re.DOTALL)
_TAG = re.compile(rf",({_KEY})=({_KEY})")
_MEASUREMENT = re.compile(_NAME)  # of a head: up to the first unescaped comma
_UNESCAPE = re.compile(r"\\([, =])")


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(r"\1", text) if "\\" in text else text


def _malformed(line: str) -> str:
    """Why ``line`` is not a line as the gateway writes it."""
    head = _HEAD.match(line)
    if head is None:
        return "no measurement"
    rest = line[head.end():]
    if "=" not in rest:
        return "no fields"
    if not rest.startswith(" "):
        return f"measurement and tags not followed by a space at character {head.end() + 1}"
    fields = _FIELDS_ONLY.match(rest, 1)
    if fields is None:
        return "fields: not key=value pairs of line protocol"
    if not rest[fields.end():].strip():
        return "no timestamp"
    return "timestamp: not integer nanoseconds"


def split(text: str):
    """``(line number, line, head, timestamp, None)`` for every line of line protocol in ``text`` (head:
    measurement and tags, as written), ``(line number, the text, "", "", why)`` for each that is not; blank
    lines and ``#`` comments skipped. Line numbers count ``\\n`` (a string field may span lines)."""
    pos, number, end = 0, 1, len(text)
    while pos < end:
        if text[pos] == "\n":
            pos, number = pos + 1, number + 1
            continue
        match = _LINE.match(text, pos)
        if match is not None:
            line = match.group(0)
            yield number, line.rstrip("\n"), match.group(1), match.group(2), None
            pos = match.end()
            number += line.count("\n")
            continue
        stop = text.find("\n", pos)
        stop = end if stop < 0 else stop
        line = text[pos:stop]
        if not line.startswith("#"):
            yield number, line, "", "", _malformed(line)
        pos = stop


# ---- the check -----------------------------------------------------------------------------------

@dataclass
class Checked:
    """One message's lines: rows to buffer (readings and events apart) and the refusals, located."""

    readings: list[Row] = field(default_factory=list)
    events: list[Row] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)


class GatewayLines:
    """Checks the lines one gateway publishes against its scope (:class:`GatewayScope`)."""

    MAX_HEADS = 20_000  # distinct measurement+tags verdicts kept (cleared beyond: they come back)

    def __init__(self, site: str, gateway: str, scope: GatewayScope):
        self.site, self.gateway = site, gateway
        self.areas, self.rings = frozenset(scope.areas), frozenset(scope.rings)
        self._verdicts: dict[str, tuple[str | None, bool]] = {}  # head -> (why refused or None, is an event)

    def check(self, payload: bytes) -> Checked:
        out = Checked()
        try:
            text, suspect = payload.decode("utf-8"), False
        except UnicodeDecodeError:  # keep the lines that are UTF-8; name those that are not
            text, suspect = payload.decode("utf-8", "surrogateescape"), True
        verdicts = self._verdicts
        for number, line, head, ts, malformed in split(text):
            if malformed is not None:
                out.refused.append((number, f"sent a line that is not line protocol ({malformed})"))
                continue
            if suspect and not _utf8(line):
                out.refused.append((number, "sent a line that is not UTF-8"))
                continue
            verdict = verdicts.get(head)
            if verdict is None:
                if len(verdicts) >= self.MAX_HEADS:
                    verdicts.clear()
                verdict = verdicts[head] = self._verdict(head)
            why, event = verdict
            if why is not None:
                out.refused.append((number, why))
                continue
            ns = int(ts)
            if not INT64[0] < ns < INT64[1]:
                out.refused.append((number, "sent a timestamp outside InfluxDB's range (1677-2262)"))
                continue
            (out.events if event else out.readings).append((ns / 1e9, line))
        return out

    def _verdict(self, head: str) -> tuple[str | None, bool]:
        """(None, is an event) when the gateway may write a point of this measurement and tags, else (why, _)."""
        name = _MEASUREMENT.match(head)
        measurement = _unescape(name.group(0))
        if measurement in INGEST_ONLY:
            return f"may not write measurement {measurement!r} (only the ingest writes it)", False
        tags: dict[str, str] = {}
        for key, value in _TAG.findall(head, name.end()):
            key = _unescape(key)
            if key in tags:
                return f"sent a line with tag {key!r} twice", False
            tags[key] = _unescape(value)
        if "site" not in tags:
            return "sent a line without a site tag", False
        if tags["site"] != self.site:
            return f"may not write site {tags['site']!r}", False
        for key, allowed in (("area", self.areas), ("gateway", (self.gateway,)), ("ring", self.rings)):
            if key in tags and tags[key] not in allowed:
                return f"may not write {key} {tags[key]!r}", False
        needed = SCOPE_TAGS.get(measurement)
        if needed is not None and needed not in tags:
            return f"sent a {measurement} line without its {needed} tag", False
        if not tags.keys() & {"area", "gateway", "ring"}:
            return "sent a line naming none of its areas, its gateway id or its rings", False
        return None, measurement in EVENTS


def _utf8(line: str) -> bool:
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Scopes:
    """Every writer's :class:`GatewayLines`, by historian topic; and which data topics the writers cover."""

    def __init__(self, prefix: str, writers: Writers):
        self.prefix = prefix + "/"
        self.writers = {(site, gw): GatewayLines(site, gw, scope)
                        for site, gateways in writers.items() for gw, scope in gateways.items()}
        self._areas = {(site, area) for site, gateways in writers.items() for scope in gateways.values()
                       for area in scope.areas}
        self._covered: dict[str, bool] = {}

    def topics(self, sites: list[str]) -> list[str]:
        return [f"{self.prefix}{site}/gateway/+/historian" for site in sites]

    def of(self, topic: str) -> tuple[str, str, GatewayLines | None]:
        """(site, gateway, its checker, None when it is not a writer) of a historian topic."""
        parts = topic[len(self.prefix):].split("/")
        site, gateway = parts[0], parts[2] if len(parts) == 4 else ""
        return site, gateway, self.writers.get((site, gateway))

    def covers(self, topic: str) -> bool:
        """True for the data, state and gateway alarm topics of writers: their complete record comes as lines."""
        covered = self._covered.get(topic)
        if covered is None:
            parts = topic[len(self.prefix):].split("/")
            if len(parts) == 5 and parts[1] == "gateway" and parts[3] == "alarm":
                covered = (parts[0], parts[2]) in self.writers
            else:
                covered = len(parts) == 4 and parts[3] in ("data", "state") and (parts[0], parts[1]) in self._areas
            if len(self._covered) >= 100_000:
                self._covered.clear()
            self._covered[topic] = covered
        return covered
