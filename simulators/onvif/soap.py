"""SOAP 1.2 envelopes for the simulated camera: read a request, write a response or a fault.

Faults follow the ONVIF Core specification (§5.11): ``env:Sender`` or ``env:Receiver``
with an ONVIF subcode such as ``ter:NotAuthorized``; HTTP 400 for sender faults and 500
for receiver faults, as the SOAP 1.2 HTTP binding says.
"""
from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from .auth import UsernameToken, find_token

SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS = {
    "s": SOAP,
    "tt": "http://www.onvif.org/ver10/schema",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tev": "http://www.onvif.org/ver10/events/wsdl",
    "tptz": "http://www.onvif.org/ver20/ptz/wsdl",
    "ter": "http://www.onvif.org/ver10/error",
    "wsnt": "http://docs.oasis-open.org/wsn/b-2",
    "wstop": "http://docs.oasis-open.org/wsn/t-1",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "tns1": "http://www.onvif.org/ver10/topics",
    "xs": "http://www.w3.org/2001/XMLSchema",
}
CONTENT_TYPE = "application/soap+xml; charset=utf-8"
_DECLARATIONS = " ".join(f"xmlns:{prefix}={quoteattr(uri)}" for prefix, uri in NS.items())
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


class SoapFault(Exception):
    """Answer with a SOAP fault; ``subcodes`` are ONVIF ones, outermost first
    (``"ter:InvalidArgVal", "ter:NoProfile"``)."""

    def __init__(self, *subcodes: str, reason: str, sender: bool = True):
        super().__init__(f"{'/'.join(subcodes)}: {reason}")
        self.subcodes, self.reason, self.sender = subcodes, reason, sender

    @property
    def status(self) -> int:
        return 400 if self.sender else 500

    def envelope(self) -> bytes:
        code = "s:Sender" if self.sender else "s:Receiver"
        subcodes = "".join(f"<s:Subcode><s:Value>{c}</s:Value>" for c in self.subcodes) + \
            "</s:Subcode>" * len(self.subcodes)
        return envelope(
            f"<s:Fault><s:Code><s:Value>{code}</s:Value>{subcodes}</s:Code>"
            f"<s:Reason><s:Text xml:lang=\"en\">{escape(self.reason)}</s:Text></s:Reason></s:Fault>")


def not_authorized() -> SoapFault:
    # The wording ONVIF gives; the camera does not tell a client which part was wrong.
    return SoapFault("ter:NotAuthorized", reason="Sender not Authorized")


def not_supported(operation: str) -> SoapFault:
    return SoapFault("ter:ActionNotSupported", reason=f"Optional Action Not Implemented: {operation}", sender=False)


def invalid_arg(subcode: str, reason: str) -> SoapFault:
    return SoapFault("ter:InvalidArgVal", f"ter:{subcode}", reason=reason)


@dataclass(frozen=True)
class Request:
    """One SOAP request: the operation (the Body's first element) and the login it carries."""

    operation: str
    namespace: str
    body: etree._Element
    token: UsernameToken | None

    def text(self, path: str, default: str | None = None) -> str | None:
        """Text of a descendant of the operation element, e.g. ``trt:ProfileToken``."""
        found = self.body.find(path, NS)
        return found.text.strip() if found is not None and found.text else default


def parse_request(data: bytes) -> Request:
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise SoapFault("ter:WellFormed", reason=f"not well-formed XML: {exc}") from None
    if root.tag != f"{{{SOAP}}}Envelope":
        raise SoapFault("ter:WellFormed", reason="not a SOAP 1.2 envelope")
    body = root.find("s:Body", NS)
    operation = next((e for e in body if isinstance(e.tag, str)), None) if body is not None else None
    if operation is None:
        raise SoapFault("ter:MissingAttr", reason="empty SOAP body")
    qname = etree.QName(operation)
    return Request(qname.localname, qname.namespace or "", operation, find_token(root.find("s:Header", NS)))


def envelope(body: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<s:Envelope {_DECLARATIONS}>'
            f"<s:Body>{body}</s:Body></s:Envelope>").encode()
