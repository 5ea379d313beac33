"""The SOAP bodies the simulated camera answers with, as templates.

Each template is the Body content of one ONVIF response, written against the WSDL/XSD that
onvif-zeep-async ships (devicemgmt.wsdl, media.wsdl, events.wsdl, onvif.xsd, b-2.xsd):
tests/test_onvif.py validates every answer with lxml against those schemas and parses it
with zeep, as the adapter's client does. Prefixes are those of :data:`.soap.NS`, declared
on the envelope. Values are escaped by :func:`_fill`.
"""
from __future__ import annotations

from datetime import datetime, timezone
from string import Template
from xml.sax.saxutils import escape, quoteattr

from . import configs
from .identity import CameraIdentity

NS_DEVICE = "http://www.onvif.org/ver10/device/wsdl"
NS_MEDIA = "http://www.onvif.org/ver10/media/wsdl"
NS_EVENTS = "http://www.onvif.org/ver10/events/wsdl"
NS_PTZ = "http://www.onvif.org/ver20/ptz/wsdl"
CONCRETE_SET = "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"


def _fill(template: Template, **values: object) -> str:
    """The template with every value XML-escaped (pre-built XML fragments end in ``_xml``)."""
    return template.substitute({k: v if k.endswith("_xml") else escape(str(v)) for k, v in values.items()})


def xml_time(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- device service --------------------------------------------------------------------------
SYSTEM_DATE_AND_TIME = Template(
    "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
    "<tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
    "<tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>"
    "<tt:UTCDateTime><tt:Time><tt:Hour>$hour</tt:Hour><tt:Minute>$minute</tt:Minute><tt:Second>$second</tt:Second>"
    "</tt:Time><tt:Date><tt:Year>$year</tt:Year><tt:Month>$month</tt:Month><tt:Day>$day</tt:Day></tt:Date>"
    "</tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>")

DEVICE_INFORMATION = Template(
    "<tds:GetDeviceInformationResponse><tds:Manufacturer>$manufacturer</tds:Manufacturer>"
    "<tds:Model>$model</tds:Model><tds:FirmwareVersion>$firmware</tds:FirmwareVersion>"
    "<tds:SerialNumber>$serial</tds:SerialNumber><tds:HardwareId>$hardware</tds:HardwareId>"
    "</tds:GetDeviceInformationResponse>")

SERVICE = Template(
    "<tds:Service><tds:Namespace>$namespace</tds:Namespace><tds:XAddr>$xaddr</tds:XAddr>"
    "<tds:Version><tt:Major>$major</tt:Major><tt:Minor>$minor</tt:Minor></tds:Version></tds:Service>")

CAPABILITIES = Template(
    "<tds:GetCapabilitiesResponse><tds:Capabilities>"
    "<tt:Device><tt:XAddr>$base/onvif/device_service</tt:XAddr></tt:Device>"
    "<tt:Events><tt:XAddr>$base/onvif/events_service</tt:XAddr>"
    "<tt:WSSubscriptionPolicySupport>false</tt:WSSubscriptionPolicySupport>"
    "<tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
    "<tt:WSPausableSubscriptionManagerInterfaceSupport>false</tt:WSPausableSubscriptionManagerInterfaceSupport>"
    "</tt:Events>"
    "<tt:Media><tt:XAddr>$base/onvif/media_service</tt:XAddr><tt:StreamingCapabilities>"
    "<tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP>"
    "</tt:StreamingCapabilities></tt:Media>$ptz_xml"
    "</tds:Capabilities></tds:GetCapabilitiesResponse>")


def system_date_and_time(now: datetime) -> str:
    now = now.astimezone(timezone.utc)
    return _fill(SYSTEM_DATE_AND_TIME, hour=now.hour, minute=now.minute, second=now.second,
                 year=now.year, month=now.month, day=now.day)


def device_information(camera: CameraIdentity) -> str:
    return _fill(DEVICE_INFORMATION, manufacturer=camera.manufacturer, model=camera.model,
                 firmware=camera.firmware, serial=camera.serial, hardware=f"{camera.model}-HW1")


def services(camera: CameraIdentity) -> str:
    offered = [(NS_DEVICE, "device_service", 2, 60), (NS_MEDIA, "media_service", 2, 60),
               (NS_EVENTS, "events_service", 2, 60)]
    if camera.ptz:
        offered.append((NS_PTZ, "ptz_service", 2, 60))
    body = "".join(_fill(SERVICE, namespace=ns, xaddr=f"{camera.base_url}/onvif/{path}", major=major, minor=minor)
                   for ns, path, major, minor in offered)
    return f"<tds:GetServicesResponse>{body}</tds:GetServicesResponse>"


def capabilities(camera: CameraIdentity) -> str:
    ptz = f"<tt:PTZ><tt:XAddr>{escape(camera.base_url)}/onvif/ptz_service</tt:XAddr></tt:PTZ>" if camera.ptz else ""
    return _fill(CAPABILITIES, base=camera.base_url, ptz_xml=ptz)


# -- media service ---------------------------------------------------------------------------
PROFILE = Template('<trt:Profiles token="$token" fixed="true"><tt:Name>$name</tt:Name>$source_xml$encoder_xml$ptz_xml'
                   "</trt:Profiles>")

PTZ_CONFIGURATION = Template(
    '<tt:PTZConfiguration token="ptz-1"><tt:Name>PTZ</tt:Name><tt:UseCount>$profiles</tt:UseCount>'
    "<tt:NodeToken>ptz-node-1</tt:NodeToken></tt:PTZConfiguration>")

MEDIA_URI = Template(
    "<trt:${operation}Response><trt:MediaUri><tt:Uri>$uri</tt:Uri>"
    "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>"
    "<tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:${operation}Response>")


def profiles(camera: CameraIdentity) -> str:
    count = len(camera.profiles)
    ptz = _fill(PTZ_CONFIGURATION, profiles=count) if camera.ptz else ""
    source = configs.video_source_configuration(camera, "tt:VideoSourceConfiguration")
    body = "".join(
        _fill(PROFILE, token=p.token, name=p.name, source_xml=source, ptz_xml=ptz,
              encoder_xml=configs.video_encoder_configuration(p, "tt:VideoEncoderConfiguration"))
        for p in camera.profiles)
    return f"<trt:GetProfilesResponse>{body}</trt:GetProfilesResponse>"


def media_uri(operation: str, uri: str) -> str:
    """``GetStreamUriResponse`` or ``GetSnapshotUriResponse``."""
    return _fill(MEDIA_URI, operation=operation, uri=uri)


# -- event service ---------------------------------------------------------------------------
EVENT_PROPERTIES = Template(
    "<tev:GetEventPropertiesResponse>"
    "<tev:TopicNamespaceLocation>http://www.onvif.org/onvif/ver10/topics/topicns.xml</tev:TopicNamespaceLocation>"
    "<wsnt:FixedTopicSet>true</wsnt:FixedTopicSet><wstop:TopicSet>$topics_xml</wstop:TopicSet>"
    "<wsnt:TopicExpressionDialect>http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet</wsnt:TopicExpressionDialect>"
    "<wsnt:TopicExpressionDialect>http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete</wsnt:TopicExpressionDialect>"
    "<tev:MessageContentFilterDialect>http://www.onvif.org/ver10/tev/messageContentFilter/ItemFilter"
    "</tev:MessageContentFilterDialect>"
    "<tev:MessageContentSchemaLocation>http://www.onvif.org/onvif/ver10/schema/onvif.xsd"
    "</tev:MessageContentSchemaLocation></tev:GetEventPropertiesResponse>")

CREATE_PULL_POINT = Template(
    "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference><wsa:Address>$address</wsa:Address>"
    "</tev:SubscriptionReference><wsnt:CurrentTime>$now</wsnt:CurrentTime>"
    "<wsnt:TerminationTime>$termination</wsnt:TerminationTime></tev:CreatePullPointSubscriptionResponse>")

PULL_MESSAGES = Template(
    "<tev:PullMessagesResponse><tev:CurrentTime>$now</tev:CurrentTime>"
    "<tev:TerminationTime>$termination</tev:TerminationTime>$messages_xml</tev:PullMessagesResponse>")

NOTIFICATION = Template(
    '<wsnt:NotificationMessage><wsnt:Topic Dialect="$dialect">$topic</wsnt:Topic><wsnt:Message>'
    '<tt:Message UtcTime="$utc" PropertyOperation="$operation"><tt:Source>$source_xml</tt:Source>'
    "<tt:Data>$data_xml</tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage>")

RENEW = Template(
    "<wsnt:RenewResponse><wsnt:TerminationTime>$termination</wsnt:TerminationTime>"
    "<wsnt:CurrentTime>$now</wsnt:CurrentTime></wsnt:RenewResponse>")

UNSUBSCRIBE = "<wsnt:UnsubscribeResponse/>"
SYNCHRONIZATION_POINT = "<tev:SetSynchronizationPointResponse/>"


def event_properties(topics: list[tuple[str, tuple[str, ...], str]]) -> str:
    """``topics``: (topic, source item names, data item name) per event, e.g.
    ``("tns1:RuleEngine/CellMotionDetector/Motion", ("Rule",), "IsMotion")``."""
    tree: dict = {}
    for topic, source, data in topics:
        node = tree
        for name in topic.split("/"):
            node = node.setdefault(name, {})
        node[None] = _description(source, data)  # the leaf: a topic a client may subscribe to
    return _fill(EVENT_PROPERTIES, topics_xml=_render_tree(tree))


def _render_tree(tree: dict) -> str:
    out = ""
    for name, node in tree.items():
        if name is None:
            continue
        leaf = ' wstop:topic="true"' if None in node else ""
        out += f"<{name}{leaf}>{node.get(None, '')}{_render_tree(node)}</{name}>"
    return out


def _description(source: tuple[str, ...], data: str) -> str:
    return ('<tt:MessageDescription IsProperty="true"><tt:Source>'
            + "".join(f'<tt:SimpleItemDescription Name={quoteattr(n)} Type="tt:ReferenceToken"/>' for n in source)
            + f'</tt:Source><tt:Data><tt:SimpleItemDescription Name={quoteattr(data)} Type="xs:boolean"/>'
            "</tt:Data></tt:MessageDescription>")


def create_pull_point(address: str, now: datetime, termination: datetime) -> str:
    return _fill(CREATE_PULL_POINT, address=address, now=xml_time(now), termination=xml_time(termination))


def pull_messages(now: datetime, termination: datetime, messages: list[str]) -> str:
    return _fill(PULL_MESSAGES, now=xml_time(now), termination=xml_time(termination), messages_xml="".join(messages))


def notification(topic: str, utc: datetime, operation: str, source: tuple[tuple[str, str], ...],
                 data: tuple[tuple[str, str], ...]) -> str:
    return _fill(NOTIFICATION, dialect=CONCRETE_SET, topic=topic, utc=xml_time(utc), operation=operation,
                 source_xml=_items(source), data_xml=_items(data))


def _items(items: tuple[tuple[str, str], ...]) -> str:
    return "".join(f"<tt:SimpleItem Name={quoteattr(n)} Value={quoteattr(v)}/>" for n, v in items)


def renew(now: datetime, termination: datetime) -> str:
    return _fill(RENEW, now=xml_time(now), termination=xml_time(termination))
