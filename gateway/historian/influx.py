"""Writers that send line protocol to InfluxDB, and the probe behind ``minegw historian check``.

Every writer has the same interface (:class:`HistorianWriter`) and turns every failure
into one of the kinds in :mod:`gateway.historian.errors`, with a one-line message:

- connection refused, timeout, HTTP 5xx, 429 → :class:`RetryableError` (``retry_after``
  from the server's Retry-After, in seconds or as an HTTP date);
- 404 (database, bucket or endpoint not found) → :class:`RetryableError`: the server is
  not set up for us yet, the data is fine and must stay buffered. The v1 writer first
  creates the missing database (``CREATE DATABASE``, which needs an admin user when
  authentication is on) and writes again;
- 401/403 → :class:`AuthError`;
- 413 (request too large) → the batch is split in halves and written again; a single
  point that is too large → :class:`DataError`;
- any other 4xx (field type conflict, parse error, partial write) → :class:`DataError`
  with the server's own message.
"""
from __future__ import annotations

import asyncio
import ssl
import gzip as gzip_lib
import logging
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from gateway.config import HistorianConfig, SiteConfig
from gateway.historian.errors import AuthError, DataError, HistorianError, RetryableError
from gateway.historian.lineprotocol import point
from gateway.core.errors import UserError
from gateway.core.model import utcnow

log = logging.getLogger(__name__)

GZIP_MIN_BYTES = 1024  # smaller bodies gain nothing from compression
GZIP_THREAD_BYTES = 256 * 1024  # larger bodies are compressed on a worker thread: the event loop goes on meanwhile


class HistorianWriter(Protocol):
    async def write(self, lines: list[str]) -> None:
        """Write the points, or raise RetryableError, DataError or AuthError."""

    async def ping(self) -> str:
        """The server's version."""

    async def close(self) -> None: ...


def make_writer(cfg: HistorianConfig, site: SiteConfig | None = None, client_id: str | None = None) -> HistorianWriter:
    """The writer for ``cfg.api``; ValueError for a URL that is not http(s)://host[:port]. api mqtt
    publishes to the historian topic of ``site`` (gateway/historian/mqtt_writer.py), as ``client_id``."""
    if cfg.api == "mqtt":
        if site is None:
            raise ValueError("historian api mqtt: the site file is needed (the historian topic is "
                             "{prefix}/{site}/gateway/{gateway_id}/historian)")
        from gateway.historian.mqtt_writer import MqttHistorianWriter
        return MqttHistorianWriter(cfg, site, client_id)
    return InfluxV2Writer(cfg) if cfg.api == "v2" else InfluxV1Writer(cfg)


# --- error mapping, shared by both writers ---------------------------------------------------

class _TooLarge(DataError):
    """HTTP 413: the writer splits the batch; only a single point too large reaches the caller."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or utcnow())).total_seconds())


def error_for_status(status: int, message: str, server: str, retry_after: str | None = None) -> HistorianError:
    """The error kind for an HTTP answer that is not a success."""
    if status in (401, 403):
        return AuthError(f"InfluxDB at {server} refused the credentials (HTTP {status}): {message}")
    if status == 413:
        return _TooLarge(f"InfluxDB at {server} refused the request as too large (HTTP 413): {message}")
    if status == 404:  # a setup problem (database, bucket, endpoint), not bad data: keep it buffered
        return RetryableError(f"InfluxDB at {server}: not found (HTTP 404): {message}")
    if status == 429 or status >= 500:
        return RetryableError(f"InfluxDB at {server} cannot take the write now (HTTP {status}): {message}",
                              parse_retry_after(retry_after))
    if 400 <= status < 500:
        return DataError(f"InfluxDB at {server} refused the data (HTTP {status}): {message}")
    return RetryableError(f"unexpected answer from {server} (HTTP {status}): {message}")


def transport_error(exc: BaseException, server: str, timeout: float) -> RetryableError:
    """Connection refused, reset, name not resolved, timeout: the server may be back later."""
    if isinstance(exc, (httpx.TimeoutException, asyncio.TimeoutError, TimeoutError)):
        return RetryableError(f"InfluxDB at {server} did not answer within {timeout:g} s")
    return RetryableError(f"cannot reach InfluxDB at {server}: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    """The most telling text of an exception chain ("[Errno 111] Connection refused" over "All attempts failed")."""
    texts = []
    while exc is not None:
        texts.append(str(exc) or type(exc).__name__)
        exc = exc.__cause__ or exc.__context__
    errno_text = next((t for t in texts if t.startswith("[Errno")), None)
    return _one_line(errno_text or texts[0])


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


# --- writers --------------------------------------------------------------------------------

def _check_url(url: str) -> None:
    """Refuse at once what no retry can fix (the clients' own errors for these are cryptic)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not a usable InfluxDB URL: give http://host:port or https://host:port")


def tls_context(cfg: HistorianConfig) -> ssl.SSLContext:
    """Certificate and host name always verified: against ``ca_file`` (the mine's CA) when given, else the
    system's CAs. Never unverified: the password crosses the mine network in this connection."""
    try:
        return ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"historian.ca_file: {cfg.ca_file} is not a readable CA certificate (PEM): {exc}") from None


class _SplittingWriter:
    """Writes a batch as one request; splits it in halves while the server says it is too large."""

    async def _send(self, body: bytes) -> None:
        raise NotImplementedError

    async def write(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            await self._send("\n".join(lines).encode())
        except _TooLarge as exc:
            if len(lines) == 1:
                raise DataError(str(exc)) from None
            log.info("InfluxDB refused %d points as too large: writing them in two halves", len(lines))
            half = len(lines) // 2
            await self.write(lines[:half])
            await self.write(lines[half:])


def _influxql_name(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxV1Writer(_SplittingWriter):
    """InfluxDB 1.x: ``POST /write?db=&rp=&precision=ns`` with user and password (HTTP basic auth)."""

    def __init__(self, cfg: HistorianConfig, *, gzip: bool = True):
        _check_url(cfg.url)
        self.cfg = cfg
        self.gzip = gzip
        self.created_database = False
        self._params = {"db": cfg.database, "precision": "ns"}
        if cfg.retention_policy:
            self._params["rp"] = cfg.retention_policy
        auth = None
        if cfg.username:
            auth = httpx.BasicAuth(cfg.username, cfg.password.get_secret_value() if cfg.password else "")
        self._http = httpx.AsyncClient(base_url=cfg.url, auth=auth, timeout=cfg.timeout, verify=tls_context(cfg))

    async def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:  # connection refused or lost, timeout, name not resolved
            raise transport_error(exc, self.cfg.url, self.cfg.timeout) from None

    async def _post_write(self, body: bytes) -> httpx.Response:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip and len(body) >= GZIP_MIN_BYTES:  # line protocol shrinks ~10×, even at the fastest level
            if len(body) >= GZIP_THREAD_BYTES:  # ~10 ms a MB: zlib lets go of the GIL, the loop runs on
                body = await asyncio.to_thread(gzip_lib.compress, body, 1)
            else:
                body = gzip_lib.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return await self._request("POST", "/write", params=self._params, content=body, headers=headers)

    async def _send(self, body: bytes) -> None:
        response = await self._post_write(body)
        if response.status_code == 404 and "database not found" in _v1_message(response):
            await self._create_database()
            response = await self._post_write(body)
        self._raise_for(response)

    def _raise_for(self, response: httpx.Response) -> None:
        if not response.is_success:
            raise error_for_status(response.status_code, _v1_message(response), self.cfg.url,
                                   response.headers.get("Retry-After"))

    async def _create_database(self) -> None:
        """Like Telegraf: create the missing database (default retention: autogen, kept forever)."""
        db = self.cfg.database
        try:
            await self.query(f"CREATE DATABASE {_influxql_name(db)}")
        except HistorianError as exc:
            raise RetryableError(f'database "{db}" does not exist at {self.cfg.url} and could not be created '
                                 f'(create it, or let the user create databases): {exc}') from None
        self.created_database = True
        log.warning('created database "%s" at %s', db, self.cfg.url)

    async def query(self, q: str, **params: str) -> list[dict]:
        """Run an InfluxQL statement; its ``results``, or the server's error as a HistorianError.
        ``params`` go to ``/query`` as they are (``db``, ``epoch``: the reports read with both)."""
        response = await self._request("POST", "/query", data={"q": q, **params})
        self._raise_for(response)
        try:
            results = response.json().get("results", [])
        except (ValueError, AttributeError):
            raise RetryableError(f"{self.cfg.url} answered /query with something other than InfluxDB's JSON") from None
        error = next((r["error"] for r in results if "error" in r), None)
        if error:  # 1.x answers some refused statements with 200 and the error in the result
            raise (AuthError if "not authorized" in error else DataError)(f"{q}: {error}")
        return results

    async def check_auth(self) -> str:
        """Whether the server accepts our credentials (a harmless ``SHOW DATABASES``), as one line."""
        results = await self.query("SHOW DATABASES")
        names = {row[0] for r in results for s in r.get("series", []) for row in s.get("values", [])}
        who = f'user "{self.cfg.username}"' if self.cfg.username else "no credentials (authentication off?)"
        where = (f'database "{self.cfg.database}" exists' if self.cfg.database in names
                 else f'database "{self.cfg.database}" not found or not visible: the first write creates it if allowed')
        return f"accepted {who}; {where}"

    async def ping(self) -> str:
        response = await self._request("GET", "/ping")
        self._raise_for(response)
        version = response.headers.get("X-Influxdb-Version")
        if not version:
            raise RetryableError(f"{self.cfg.url} answered /ping without an X-Influxdb-Version header: "
                                 "is it an InfluxDB server?")
        return version

    async def close(self) -> None:
        await self._http.aclose()


def _v1_message(response: httpx.Response) -> str:
    """The server's error text: JSON ``error`` (1.x) or ``message`` (2.x), else a header or the body."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "message"):
            if isinstance(data.get(key), str):
                return _one_line(data[key])
    text = response.headers.get("X-Influxdb-Error") or response.text or response.reason_phrase
    return _one_line(text)


def _v2_token(cfg: HistorianConfig) -> str | None:
    """The token; InfluxDB 1.8+ on its v2 API takes ``username:password`` instead."""
    if cfg.token:
        return cfg.token.get_secret_value()
    if cfg.username:
        return f"{cfg.username}:{cfg.password.get_secret_value() if cfg.password else ''}"
    return None


class InfluxV2Writer(_SplittingWriter):
    """InfluxDB 2.x, 3.x and 1.8+: ``/api/v2/write`` (token, org, bucket) through influxdb-client's async API."""

    def __init__(self, cfg: HistorianConfig, *, gzip: bool = True):
        _check_url(cfg.url)
        self.cfg = cfg
        self.gzip = gzip
        self._client = None  # created on first use: influxdb-client insists on a running event loop
        self._write_api = None

    def _connect(self):
        if self._client is None:
            # imported here: influxdb-client takes ~0.3 s to import, and only v2 needs it
            from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
            self._client = InfluxDBClientAsync(url=self.cfg.url, token=_v2_token(self.cfg), org=self.cfg.org,
                                               timeout=int(self.cfg.timeout * 1000), enable_gzip=self.gzip,
                                               verify_ssl=True, ssl_ca_cert=self.cfg.ca_file and str(self.cfg.ca_file))
            self._write_api = self._client.write_api()
        return self._client

    async def _call(self, make_call):
        """Await ``make_call(client)``, with every failure turned into our error kinds."""
        import aiohttp
        from influxdb_client.rest import ApiException
        try:
            return await make_call(self._connect())
        except ApiException as exc:
            raise _v2_error(exc, self.cfg.url) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise transport_error(exc, self.cfg.url, self.cfg.timeout) from None

    async def _send(self, body: bytes) -> None:
        from influxdb_client import WritePrecision
        accepted = await self._call(lambda client: self._write_api.write(
            bucket=self.cfg.bucket, org=self.cfg.org, record=body, write_precision=WritePrecision.NS))
        if not accepted:  # a 2xx other than 204: something between us and InfluxDB answered
            raise RetryableError(f"{self.cfg.url} answered the write without accepting it (not 204 No Content)")

    async def ping(self) -> str:
        version = await self._call(lambda client: client.version())
        if not version or version == "unknown":
            raise RetryableError(f"{self.cfg.url} answered /ping without an X-Influxdb-Version header: "
                                 "is it an InfluxDB server?")
        return version

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = self._write_api = None


def _v2_error(exc, server: str) -> HistorianError:
    """Map influxdb-client's ApiException (status, parsed ``message``, Retry-After)."""
    message = exc.message
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    message = _one_line(str(message or exc.reason or ""))
    if exc.status == 404 and "page not found" in message:
        message += " (no /api/v2/write: InfluxDB before 1.8 speaks only api: v1)"
    return error_for_status(exc.status or 0, message, server, exc.retry_after)


# --- minegw historian check -----------------------------------------------------------------

@dataclass(frozen=True)
class CheckResult:
    step: str  # "ping", "auth", "write"
    ok: bool
    message: str  # one line

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'FAILED'}  {self.step}: {self.message}"


def probe_line(ts: datetime | None = None) -> str:
    """A point in ``minegw_probe`` (tag ``probe=true``) that tells who probed; harmless to keep."""
    return point("minegw_probe", {"probe": "true", "host": socket.gethostname() or "unknown"},
                 {"ok": True}, ts or utcnow())


async def _step(step: str, action) -> CheckResult:
    """Run one check step; any failure becomes its one-line message, never a traceback."""
    try:
        return CheckResult(step, True, await action())
    except HistorianError as exc:
        return CheckResult("auth" if isinstance(exc, AuthError) else step, False, str(exc))
    except Exception as exc:  # noqa: BLE001 - the check must report, whatever went wrong
        return CheckResult(step, False, f"{type(exc).__name__}: {_one_line(str(exc))}")


async def check_historian(cfg: HistorianConfig, site: SiteConfig | None = None) -> list[CheckResult]:
    """Ping (version), credentials, and a write probe; stops at the first failed step. api mqtt (its
    topic from ``site``): connected, then an empty probe message on the historian topic acknowledged."""
    try:
        client_id = f"{site.site.gateway_id}-historian-check" if site else None  # the running gateway keeps its own
        writer = make_writer(cfg, site, client_id)
    except ValueError as exc:  # a URL no retry can fix
        return [CheckResult("ping", False, _one_line(str(exc)))]
    try:
        if cfg.api == "mqtt":
            return await _run_mqtt_checks(writer, cfg)
        return await _run_checks(writer, cfg)
    finally:
        await writer.close()


async def _run_mqtt_checks(writer, cfg: HistorianConfig) -> list[CheckResult]:
    async def ping() -> str:
        who = f'user "{cfg.username}"' if cfg.username else "no user"
        await writer.ping()
        return f"connected to the MQTT broker at {cfg.url} (MQTT 5) as {who}"

    async def write() -> str:
        await writer.probe()
        return (f"the broker acknowledged an empty probe message on {writer.topic}: this user may publish the "
                "historian topic (`minegw ingest` writes InfluxDB; check it there)")

    results = [await _step("ping", ping)]
    if results[-1].ok:
        results.append(await _step("write", write))
    return results


async def _run_checks(writer: HistorianWriter, cfg: HistorianConfig) -> list[CheckResult]:
    async def ping() -> str:
        return f"InfluxDB {await writer.ping()} at {cfg.url}"

    async def write() -> str:
        await writer.write([probe_line()])
        created = " (created the database)" if getattr(writer, "created_database", False) else ""
        return f"wrote a probe point (measurement minegw_probe, tag probe=true) to {_target(cfg)}{created}"

    results = [await _step("ping", ping)]
    if isinstance(writer, InfluxV1Writer) and results[-1].ok:
        results.append(await _step("auth", writer.check_auth))
    if results[-1].ok:
        results.append(await _step("write", write))  # for v2 this is also the credentials check
    return results


def _target(cfg: HistorianConfig) -> str:
    if cfg.api == "v2":
        return f'bucket "{cfg.bucket}" of org "{cfg.org}"'
    rp = f', retention policy "{cfg.retention_policy}"' if cfg.retention_policy else ""
    return f'database "{cfg.database}"{rp}'
