"""Camera events as samples: ONVIF notifications (WS-BaseNotification) → signal names and values."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from lxml import etree

from gateway.core.model import Sample, Value, utcnow

TOPICS_NS = "http://www.onvif.org/ver10/topics"
WSTOP_TOPIC = "{http://docs.oasis-open.org/wsn/t-1}topic"
TT = "{http://www.onvif.org/ver10/schema}"


def event_samples(message: Any, clock_offset: dt.timedelta) -> list[Sample]:
    """One notification → a sample per data item, stamped with the event time on the gateway's clock."""
    topic = str(getattr(message.Topic, "_value_1", message.Topic) or "").strip()
    content = message.Message._value_1
    when, operation, items = _message_content(content)
    if operation == "Deleted" or not topic:
        return []
    ts = (when or utcnow()) - clock_offset
    return [Sample(signal=event_signal(topic, name, single=len(items) == 1), value=_value(value), ts=ts)
            for name, value in items]


def _message_content(content: Any) -> tuple[dt.datetime | None, str | None, list[tuple[str, str]]]:
    """(UtcTime, PropertyOperation, data items) of a tt:Message, parsed by zeep or left as XML."""
    if isinstance(content, etree._Element):
        items = [(i.get("Name"), i.get("Value")) for i in content.iterfind(f"{TT}Data/{TT}SimpleItem")]
        when = content.get("UtcTime")
        return _parse_time(when) if when else None, content.get("PropertyOperation"), items
    data = getattr(content, "Data", None)
    items = [(i.Name, i.Value) for i in (getattr(data, "SimpleItem", None) or [])]
    when = getattr(content, "UtcTime", None)
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when, getattr(content, "PropertyOperation", None), items


def event_signal(topic: str, item: str, single: bool = True) -> str:
    """The signal name of an event topic: ``motion`` and ``tamper`` for the well-known ones,
    otherwise the topic in snake case (``tns1:Device/Trigger/DigitalInput`` → ``device_trigger_digital_input``),
    with the data item's name appended when the message holds several."""
    path = "/".join(part.rpartition(":")[2] for part in topic.split("/"))
    if "Motion" in path:
        return "motion"
    if "Tamper" in path or "GlobalSceneChange" in path:
        return "tamper"
    name = "_".join(_snake(part) for part in path.split("/"))
    return name if single else f"{name}.{_snake(item)}"


def _snake(text: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|[^A-Za-z0-9]+", "_", text).strip("_").lower()


def _value(text: Any) -> Value:
    if not isinstance(text, str):
        return text
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _parse_time(text: str) -> dt.datetime | None:
    try:
        ts = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.timezone.utc)


def topic_paths(element: etree._Element, parent: str = "") -> list[str]:
    """Topic paths under one TopicSet element (``tns1:RuleEngine/CellMotionDetector/Motion``)."""
    name = etree.QName(element)
    part = f"tns1:{name.localname}" if name.namespace == TOPICS_NS else name.localname
    path = f"{parent}/{part}" if parent else part
    found = [path] if element.get(WSTOP_TOPIC) == "true" else []
    for child in element:
        if isinstance(child.tag, str) and not child.tag.startswith(TT):  # not the MessageDescription
            found += topic_paths(child, path)
    return found
