"""The simulated camera's two logins: WS-Security UsernameToken (SOAP) and HTTP Digest (snapshots).

UsernameToken (WS-Security UsernameToken Profile 1.0, as ONVIF requires):
``PasswordDigest = Base64(SHA-1(nonce + created + password))``. The camera refuses a
token whose ``Created`` is further than ``tolerance`` seconds from *its own* clock, and a
nonce it has seen within that window (a replay). That is why a client must correct for
the camera's clock offset (GetSystemDateAndTime) before it can log in.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone

from lxml import etree

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_PASSWORD_TEXT = "#PasswordText"
MAX_NONCES = 10_000


@dataclass(frozen=True)
class UsernameToken:
    username: str
    password: str  # the digest (Base64) or, for PasswordText, the password itself
    digest: bool
    nonce: bytes
    created: str


def find_token(header: etree._Element | None) -> UsernameToken | None:
    """The UsernameToken in a SOAP header, if any."""
    if header is None:
        return None
    token = header.find(f"{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
    if token is None:
        return None
    password = token.find(f"{{{WSSE}}}Password")
    nonce = token.findtext(f"{{{WSSE}}}Nonce") or ""
    try:
        nonce_bytes = base64.b64decode(nonce, validate=True)
    except ValueError:
        nonce_bytes = b""
    return UsernameToken(
        username=token.findtext(f"{{{WSSE}}}Username") or "",
        password=(password.text or "") if password is not None else "",
        digest=password is None or not (password.get("Type") or "").endswith(_PASSWORD_TEXT),
        nonce=nonce_bytes, created=token.findtext(f"{{{WSU}}}Created") or "")


class TokenChecker:
    """Checks UsernameTokens against ``users`` (name → password) and the camera's clock."""

    def __init__(self, users: dict[str, str], tolerance: float = 10.0):
        self.users = users
        self.tolerance = tolerance
        self._nonces: OrderedDict[bytes, float] = OrderedDict()  # nonce → when seen (monotonic)

    def refusal(self, token: UsernameToken | None, camera_now: datetime) -> str | None:
        """Why the token is refused (for the camera's log), or None when it is good (or no login is needed)."""
        if not self.users:
            return None
        if token is None:
            return "no UsernameToken"
        expected = self.users.get(token.username)
        if expected is None:
            return f"unknown user {token.username!r}"
        if not token.digest:
            return None if hmac.compare_digest(token.password, expected) else "wrong password"
        created = _parse_time(token.created)
        if created is None:
            return f"unreadable Created {token.created!r}"
        skew = (created - camera_now).total_seconds()
        if abs(skew) > self.tolerance:
            return f"Created is {skew:+.0f} s from the camera's clock (tolerance {self.tolerance:g} s)"
        digest = base64.b64encode(hashlib.sha1(token.nonce + token.created.encode() + expected.encode()).digest())
        if not hmac.compare_digest(digest.decode(), token.password.strip()):
            return "wrong password"
        return self._replayed(token.nonce)

    def _replayed(self, nonce: bytes) -> str | None:
        now = time.monotonic()
        while self._nonces and (len(self._nonces) > MAX_NONCES
                                or next(iter(self._nonces.values())) < now - 2 * self.tolerance):
            self._nonces.popitem(last=False)
        if not nonce or nonce in self._nonces:
            return "nonce missing or replayed"
        self._nonces[nonce] = now
        return None


def _parse_time(text: str) -> datetime | None:
    try:
        ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


# -- HTTP Digest (RFC 7616, MD5, qop=auth), as cameras protect their snapshot URIs ----------
class HttpDigest:
    """Server side of HTTP Digest: ``challenge()`` for a 401, ``verify()`` for a request."""

    def __init__(self, users: dict[str, str], realm: str):
        self.users, self.realm = users, realm
        self._nonces: OrderedDict[str, None] = OrderedDict()

    def challenge(self) -> str:
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = None
        while len(self._nonces) > 1000:
            self._nonces.popitem(last=False)
        return f'Digest realm="{self.realm}", qop="auth", nonce="{nonce}", algorithm=MD5'

    def verify(self, method: str, authorization: str | None) -> bool:
        if not self.users:  # no login needed
            return True
        fields = _digest_fields(authorization or "")
        password = self.users.get(fields.get("username", ""))
        if password is None or fields.get("nonce") not in self._nonces or fields.get("realm") != self.realm:
            return False
        ha1 = _md5(f"{fields['username']}:{self.realm}:{password}")
        ha2 = _md5(f"{method}:{fields.get('uri', '')}")
        if fields.get("qop") == "auth":
            expected = _md5(f"{ha1}:{fields['nonce']}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:auth:{ha2}")
        else:
            expected = _md5(f"{ha1}:{fields['nonce']}:{ha2}")
        return hmac.compare_digest(expected, fields.get("response", ""))


def _digest_fields(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "digest":
        return {}
    fields = {}
    for part in _split_commas(rest):
        key, _, value = part.strip().partition("=")
        fields[key.strip().lower()] = value.strip().strip('"')
    return fields


def _split_commas(text: str) -> list[str]:
    """Split on commas outside quotes (a quoted uri may hold commas)."""
    parts, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    return parts + [current] if current.strip() else parts


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - HTTP Digest's MD5, not for secrecy
