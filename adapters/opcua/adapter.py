"""OPC UA adapter: follows one roof-pressure system's node map with asyncua.

One connection at a time (a :class:`Link`): connect, resolve the node map (namespace
URIs to indices, browse paths to node ids), then either one subscription with a
monitored item per signal, or polling. Items the server refuses to monitor are polled
on the same link. Each publish response becomes one Reading (all of its data changes,
however many), each poll one Reading.

When the link dies (socket closed, the server stops answering its watchdog reads, the
subscription ends or falls silent) the device goes offline with the reason, a
comm-fail reading marks the gap, and the adapter connects again with a fresh session
and subscription, backing off with jitter while it fails.

Status codes → quality:

- Good → ``good``, or ``out-of-range`` outside the signal's engineering range;
- Uncertain → ``stale``, value kept (the server doubts it: last usable value, sensor
  not accurate, substituted...), but ``UncertainEngineeringUnitsExceeded`` → ``out-of-range``;
- Bad that says the server lost its field device (BadNoCommunication, BadNotConnected,
  BadCommunicationError, BadServerNotConnected, BadWaitingForInitialData) → ``comm-fail``;
  any other Bad → ``bad``; both without a value.

A sample's time is the value's source timestamp, else the server timestamp, else
the time the gateway received it.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
import traceback
from datetime import datetime, timezone

from asyncua import Client, ua
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from adapters.base import LinkedAdapter, next_poll_due, sleep_until
from gateway.core.backoff import Backoff
from gateway.core.model import DeviceStatus, Inventory, Quality, Reading, Sample, Value, WriteResult, utcnow

from .client import Security, close_quietly, make_client, thumbprint
from .config import OpcUaDeviceConfig
from .nodemap import DataType, Signal, load_nodemap

log = logging.getLogger(__name__)

SC = ua.StatusCodes
COMM_FAIL_CODES = frozenset({SC.BadNoCommunication, SC.BadNotConnected, SC.BadCommunicationError,
                             SC.BadServerNotConnected, SC.BadWaitingForInitialData})
AUTH_CODES = frozenset({SC.BadUserAccessDenied, SC.BadIdentityTokenInvalid, SC.BadIdentityTokenRejected,
                        SC.BadUserSignatureInvalid})
CERTIFICATE_CODES = frozenset({SC.BadSecurityChecksFailed, SC.BadCertificateUntrusted, SC.BadCertificateInvalid,
                               SC.BadCertificateUriInvalid, SC.BadCertificateRevoked})
UNCERTAIN, BAD = 1, 2  # status code severities (top two bits)
ITEMS_PER_CALL = 500  # items per request when the server publishes no OperationLimits: below common limits
OPERATION_LIMITS = {  # service → the standard node holding the server's limit for it (0: no limit)
    "read": ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
    "translate": ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerTranslateBrowsePathsToNodeIds,
    "monitor": ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
}
SERVER_INFO = {  # what the inventory says about the server, and its clock
    "manufacturer": ua.ObjectIds.Server_ServerStatus_BuildInfo_ManufacturerName,
    "model": ua.ObjectIds.Server_ServerStatus_BuildInfo_ProductName,
    "firmware": ua.ObjectIds.Server_ServerStatus_BuildInfo_SoftwareVersion,
    "now": ua.ObjectIds.Server_ServerStatus_CurrentTime,
}
CLOCK_CHANGE_S = 0.5  # a clock offset that moved this much is announced again
KEEPALIVE_S = 5.0  # the server sends a keep-alive at least this often when nothing changes


# -- status codes and values --------------------------------------------------------------
def judge(signal: Signal, code: int, value: Value) -> tuple[Value, Quality]:
    """(value, quality) of one data value, from its status code and the signal's range."""
    severity = code >> 30
    if severity >= BAD:
        return None, Quality.COMM_FAIL if (code & 0xFFFF0000) in COMM_FAIL_CODES else Quality.BAD
    if value is None:
        return None, Quality.BAD
    if signal.type.is_numeric:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None, Quality.BAD
        if signal.range and not signal.range[0] <= value <= signal.range[1]:
            return value, Quality.OUT_OF_RANGE
    elif signal.type is DataType.BOOLEAN and not isinstance(value, bool):
        return None, Quality.BAD
    elif signal.type is DataType.STRING and not isinstance(value, str):
        value = str(value)  # LocalizedText and the like: their text
    if severity == UNCERTAIN:
        if (code & 0xFFFF0000) == SC.UncertainEngineeringUnitsExceeded:
            return value, Quality.OUT_OF_RANGE
        return value, Quality.STALE
    return value, Quality.GOOD


def to_sample(signal: Signal, dv: ua.DataValue, received: datetime) -> Sample:
    code = dv.StatusCode.value if dv.StatusCode is not None else 0
    value, quality = judge(signal, code, dv.Value.Value if dv.Value is not None else None)
    ts = dv.SourceTimestamp or dv.ServerTimestamp
    if ts is None or ts.year < 1971:  # absent, or the OPC UA minimum date
        ts = received
    return Sample(signal=signal.name, value=value, unit=signal.unit, quality=quality, ts=ts)


def describe(exc: BaseException, config: OpcUaDeviceConfig) -> str:
    """One line saying why a connection failed or died, for the device state."""
    where = config.url
    if _refused_secure_channel(exc):
        return _certificate_rejected(config, "refused to open a secure channel")
    if isinstance(exc, UaStatusCodeError):
        code = getattr(exc, "code", None) or 0
        name, doc = ua.StatusCode(code).name, ua.StatusCode(code).doc
        if code in CERTIFICATE_CODES and config.secure:
            return _certificate_rejected(config, f"answered {name}")
        if code in AUTH_CODES:
            who = Security.of(config).who()
            who = "anonymous user" if who == "anonymous" else who
            return f"authentication failed for {who}: {name} ({doc})"
        if "Certificate" in name or "Security" in name:
            return f"security rejected by {where}: {name} ({doc})"
        return f"{where} answered {name} ({doc})"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {where}: connection refused"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f"no answer from {where} within {config.timeout:g} s"
    if isinstance(exc, OSError):
        return f"cannot reach {where}: {exc.strerror or exc}"
    if isinstance(exc, UaError):
        return f"{where}: {exc}"
    return f"{where}: {exc!r}"


def _refused_secure_channel(exc: BaseException) -> bool:
    """asyncua's client fails with a bare AssertionError in ``open_secure_channel`` when the
    server answers OpenSecureChannel with a ServiceFault (it logs the status code, then
    finds no response): what servers do with a client certificate they do not trust."""
    return isinstance(exc, AssertionError) and any(
        frame.f_code.co_name == "open_secure_channel" for frame, _ in traceback.walk_tb(exc.__traceback__))


def _certificate_rejected(config: OpcUaDeviceConfig, what: str) -> str:
    if not config.secure:
        return f"{config.url} {what} (security policy None)"
    return (f"{config.url} {what}: the server rejected our certificate {config.certificate} "
            f"(SHA-1 thumbprint {thumbprint(config.certificate)}): trust it on the server "
            "(copy it into its trusted-certificate folder, e.g. pki/trusted/certs, or accept it in its "
            "certificate manager)")


class LinkFailed(Exception):
    """The server answered, but this node map cannot be followed there (reason in the message)."""


# -- one connection -----------------------------------------------------------------------
class Link:
    """One connection: a session, its subscription and/or poll loop, until it dies."""

    def __init__(self, adapter: OpcUaAdapter):
        self.adapter = adapter
        self.config = adapter.config
        self.client: Client | None = None
        self.node_ids: list[ua.NodeId | None] = []
        self.subscribed: list[int] = []  # signal indexes with a monitored item
        self.polled: list[int] = []
        self.refusals: dict[str, int] = {}  # status name → items the server would not monitor
        self.subscription: ua.CreateSubscriptionResult | None = None
        self.per_call = dict.fromkeys(OPERATION_LIMITS, ITEMS_PER_CALL)  # items per request, by service
        self.server_info: dict[str, object] = {}  # SERVER_INFO as last read; "clock_offset_s" added
        self.last_publish = time.monotonic()
        self._lost: asyncio.Future[tuple[str, bool]] = asyncio.get_running_loop().create_future()
        self._tasks: list[asyncio.Task] = []
        self._early: list[Reading] | None = []  # data that came before the device was announced online

    # -- opening --------------------------------------------------------------------------
    async def open(self) -> None:
        cfg = self.config
        self.client = await make_client(cfg.url, self.adapter.security, cfg.timeout)
        self.client.connection_lost_callback = self._on_connection_lost
        await self.client.connect()
        await self._read_operation_limits()
        await self.read_server_info()
        self.node_ids = await self._resolve()
        present = [i for i, node in enumerate(self.node_ids) if node is not None]
        if not present:
            raise LinkFailed(f"none of the node map's {len(self.node_ids)} signals exist on {cfg.url}")
        if cfg.mode == "subscribe":
            await self._subscribe(present)
        subscribed = set(self.subscribed)
        self.polled = [i for i in present if i not in subscribed]
        if self.subscribed:
            self._tasks.append(asyncio.create_task(self._watch_silence(), name=f"opcua-silence:{cfg.id}"))
        if self.polled:
            self._tasks.append(asyncio.create_task(self._poll_loop(), name=f"opcua-poll:{cfg.id}"))
        self._tasks.append(asyncio.create_task(self._watch_clock(), name=f"opcua-clock:{cfg.id}"))

    async def _read_operation_limits(self) -> None:
        """Items per request the server takes (Part 5 OperationLimits); 0 or absent: ITEMS_PER_CALL."""
        values = await self._read_nodes(OPERATION_LIMITS.values())
        for service, dv in zip(OPERATION_LIMITS, values):
            limit = dv.Value.Value if dv.StatusCode.is_good() and dv.Value is not None else None
            if isinstance(limit, int) and limit > 0:
                self.per_call[service] = min(limit, ITEMS_PER_CALL)

    async def read_server_info(self) -> dict[str, object]:
        """The server's build info, and its clock against ours (``clock_offset_s``: its
        CurrentTime minus the middle of the read's round trip on the gateway's clock)."""
        sent = time.time()
        values = await self._read_nodes(SERVER_INFO.values())
        middle = (sent + time.time()) / 2
        info = {name: dv.Value.Value if dv.StatusCode.is_good() and dv.Value is not None else None
                for name, dv in zip(SERVER_INFO, values)}
        now = info.pop("now")
        if isinstance(now, datetime) and now.tzinfo is None:  # OPC UA DateTime is UTC
            now = now.replace(tzinfo=timezone.utc)
        info["clock_offset_s"] = round(now.timestamp() - middle, 3) if isinstance(now, datetime) else None
        self.server_info = info
        return info

    async def _read_nodes(self, object_ids) -> list[ua.DataValue]:
        return await self.client.uaclient.read(ua.ReadParameters(
            MaxAge=0, TimestampsToReturn=ua.TimestampsToReturn.Neither,
            NodesToRead=[ua.ReadValueId(NodeId=ua.NodeId(i), AttributeId=ua.AttributeIds.Value)
                         for i in object_ids]))

    async def in_calls(self, service: str, items: list, call) -> list:
        """``await call(chunk)`` for every chunk of ``items``, concatenated: chunks as large as
        the server takes for ``service``; when it answers BadTooManyOperations anyway (a limit
        it does not publish), the chunk is halved and retried, and stays halved on this link."""
        results, start = [], 0
        while start < len(items):
            chunk = items[start:start + self.per_call[service]]
            try:
                results += await call(chunk)
            except ua.uaerrors.BadTooManyOperations:
                if len(chunk) == 1:
                    raise
                self.per_call[service] = len(chunk) // 2
                log.info("%s: %s answered BadTooManyOperations to %d items per %s request: trying %d",
                         self.config.id, self.config.url, len(chunk), service, self.per_call[service])
                continue
            start += len(chunk)
        return results

    async def _resolve(self) -> list[ua.NodeId | None]:
        """Node ids of every signal on this server (None: not there)."""
        uris = await self.client.get_namespace_array()
        index = {uri: i for i, uri in enumerate(uris)}
        signals = self.adapter.signals
        node_ids: list[ua.NodeId | None] = [None] * len(signals)
        paths: list[tuple[int, ua.BrowsePath]] = []
        for i, s in enumerate(signals):
            if s.node_id is not None:
                ns = s.namespace if isinstance(s.namespace, int) else index.get(s.namespace)
                node_ids[i] = None if ns is None else ua.NodeId.from_string(f"ns={ns};{s.node_id}")
            elif (path := _browse_path(s, index)) is not None:
                paths.append((i, path))
        results = await self.in_calls("translate", [p for _, p in paths],
                                      self.client.uaclient.translate_browsepaths_to_nodeids)
        for (i, _), result in zip(paths, results):
            if result.StatusCode.is_good() and result.Targets:
                node_ids[i] = ua.NodeId(result.Targets[0].TargetId.Identifier,
                                        result.Targets[0].TargetId.NamespaceIndex)
        return node_ids

    async def _subscribe(self, indexes: list[int]) -> None:
        cfg = self.config
        keepalive = max(1, math.ceil(KEEPALIVE_S / cfg.publishing_interval))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=cfg.publishing_interval * 1000, RequestedLifetimeCount=keepalive * 10,
            RequestedMaxKeepAliveCount=keepalive, MaxNotificationsPerPublish=0, PublishingEnabled=True, Priority=0)
        self.subscription = await self.client.uaclient.create_subscription(params, self._on_publish)

        async def create(chunk: list[int]) -> list[ua.MonitoredItemCreateResult]:
            return await self.client.uaclient.create_monitored_items(ua.CreateMonitoredItemsParameters(
                SubscriptionId=self.subscription.SubscriptionId, TimestampsToReturn=ua.TimestampsToReturn.Both,
                ItemsToCreate=[self._item(i) for i in chunk]))

        for i, result in zip(indexes, await self.in_calls("monitor", indexes, create)):
            if result.StatusCode.is_good():
                self.subscribed.append(i)
            else:  # polled instead
                self.refusals[result.StatusCode.name] = self.refusals.get(result.StatusCode.name, 0) + 1

    def _item(self, i: int) -> ua.MonitoredItemCreateRequest:
        cfg = self.config
        deadband = None
        if cfg.deadband.type != "none":
            deadband = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue, DeadbandValue=cfg.deadband.value,
                DeadbandType=ua.DeadbandType.Absolute if cfg.deadband.type == "absolute" else ua.DeadbandType.Percent)
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=self.node_ids[i], AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=ua.MonitoringParameters(
                ClientHandle=i, SamplingInterval=cfg.sampling_interval * 1000, Filter=deadband,
                QueueSize=cfg.queue_size, DiscardOldest=True))

    def _report_missing(self) -> None:
        missing = [s for s, node in zip(self.adapter.signals, self.node_ids) if node is None]
        if not missing:
            return
        log.warning("%s: %d signal(s) not found on %s: %s", self.config.id, len(missing), self.config.url,
                    ", ".join(f"{s.name} ({s.address})" for s in missing[:10]))
        now = utcnow()  # once per connection: they stay absent, the dashboards show them bad
        self.adapter._emit(Reading(device=self.config.id, ts=now, poll_ms=0.0, samples=[
            Sample(signal=s.name, value=None, unit=s.unit, quality=Quality.BAD, ts=now) for s in missing]))

    def describe(self) -> str:
        cfg = self.config
        parts = []
        if self.subscribed:
            revised = self.subscription.RevisedPublishingInterval / 1000
            parts.append(f"subscribed: {len(self.subscribed)} items, publishing every {revised:g} s")
        if self.polled:
            why = ", ".join(f"{n} {name}" for name, n in self.refusals.items())
            parts.append(f"polling {len(self.polled)} every {cfg.poll_interval:g} s" + (f" (refused: {why})" if why else ""))
        return "; ".join(parts) + f" [{self.adapter.security.describe()}]"

    # -- data -----------------------------------------------------------------------------
    def _on_publish(self, result: ua.PublishResult) -> None:
        """Called by asyncua's publish loop for every publish response: keep it cheap."""
        self.last_publish = time.monotonic()
        received = utcnow()
        signals = self.adapter.signals
        for data in result.NotificationMessage.NotificationData:
            if isinstance(data, ua.DataChangeNotification):
                samples = [to_sample(signals[item.ClientHandle], item.Value, received)
                           for item in data.MonitoredItems if 0 <= item.ClientHandle < len(signals)]
                self._deliver(Reading(device=self.config.id, ts=received, poll_ms=0.0, samples=samples))
            elif isinstance(data, ua.StatusChangeNotification) and data.Status.is_bad():
                self.lose(f"subscription ended: {data.Status.name}")

    async def _poll_loop(self) -> None:
        interval = self.config.poll_interval
        await asyncio.sleep(self.adapter.first_poll_delay())
        next_due = time.monotonic()
        while True:
            deadline = next_due + interval
            try:
                await self._poll_once(deadline)
            except (ConnectionError, OSError, asyncio.TimeoutError, UaError) as exc:
                self.lose(f"read failed: {describe(exc, self.config)}", timeout=_is_timeout(exc))
                return
            next_due = next_poll_due(next_due, interval)
            await sleep_until(next_due, interval)  # one timer for all devices (adapters/base.py PollTicker)

    async def _poll_once(self, deadline: float) -> None:
        started, started_at = time.monotonic(), utcnow()
        samples = await self.in_calls("read", self.polled, self._read_samples)
        if time.monotonic() > deadline:  # the answer came later than one interval
            samples = [s.model_copy(update={"quality": Quality.STALE}) if s.quality is Quality.GOOD else s
                       for s in samples]
        self._deliver(Reading(device=self.config.id, ts=started_at,
                              poll_ms=(time.monotonic() - started) * 1000, samples=samples))

    async def _read_samples(self, indexes: list[int]) -> list[Sample]:
        values = await self.client.uaclient.read(ua.ReadParameters(
            MaxAge=0, TimestampsToReturn=ua.TimestampsToReturn.Both,
            NodesToRead=[ua.ReadValueId(NodeId=self.node_ids[i], AttributeId=ua.AttributeIds.Value)
                         for i in indexes]))
        received, signals = utcnow(), self.adapter.signals
        return [to_sample(signals[i], dv, received) for i, dv in zip(indexes, values)]

    def _deliver(self, reading: Reading) -> None:
        if self._early is not None:
            self._early.append(reading)
        else:
            self.adapter._data(reading)

    def release(self) -> None:
        """The device is announced online: pass on what came before, and everything from now on."""
        early, self._early = self._early or [], None
        self._report_missing()
        for reading in early:
            self.adapter._data(reading)

    # -- loss -----------------------------------------------------------------------------
    async def lost(self) -> tuple[str, bool]:
        """Wait until the link dies: why, and whether it was a timeout."""
        return await self._lost

    def lose(self, reason: str, timeout: bool = False) -> None:
        if not self._lost.done():
            self._lost.set_result((reason, timeout))

    async def _on_connection_lost(self, exc: Exception) -> None:
        """asyncua's supervisor: the socket closed, or its watchdog read got no answer."""
        if isinstance(exc, ConnectionError) and "transport lost" in str(exc):
            self.lose(f"connection to {self.config.url} lost")
        else:
            self.lose(f"connection to {self.config.url} lost: {describe(exc, self.config)}", _is_timeout(exc))

    async def _watch_silence(self) -> None:
        """A subscription the server dropped while the session lives sends nothing at all."""
        sub = self.subscription
        limit = 2 * sub.RevisedPublishingInterval / 1000 * sub.RevisedMaxKeepAliveCount + self.config.timeout
        while True:
            await asyncio.sleep(min(limit / 4, 5.0))
            silent = time.monotonic() - self.last_publish
            if silent > limit:
                self.lose(f"no publish responses for {silent:.0f} s (subscription lost)", timeout=True)
                return

    async def _watch_clock(self) -> None:
        """The server's clock drifts (or is set) while we are connected: measure it again now and then."""
        while True:
            await asyncio.sleep(self.config.clock_check_interval)
            try:
                info = await self.read_server_info()
            except (ConnectionError, OSError, asyncio.TimeoutError, UaError):
                continue  # a dead link is noticed by the watchdog and the data loops
            self.adapter.server_info_read(info)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.client is not None:
            await close_quietly(self.client, self.config.timeout)


def _browse_path(s: Signal, index: dict[str, int]) -> ua.BrowsePath | None:
    elements = []
    for namespace, name in s.path:
        ns = namespace if isinstance(namespace, int) else index.get(namespace)
        if ns is None:
            return None
        elements.append(ua.RelativePathElement(
            ReferenceTypeId=ua.NodeId(ua.ObjectIds.HierarchicalReferences), IsInverse=False,
            IncludeSubtypes=True, TargetName=ua.QualifiedName(name, ns)))
    return ua.BrowsePath(StartingNode=ua.NodeId(ua.ObjectIds.ObjectsFolder),
                         RelativePath=ua.RelativePath(Elements=elements))


def _moved(before: float | None, after: float | None) -> bool:
    if before is None or after is None:
        return before != after
    return abs(after - before) >= CLOCK_CHANGE_S


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or getattr(exc, "code", None) == SC.BadTimeout


# -- the adapter --------------------------------------------------------------------------
class OpcUaAdapter(LinkedAdapter):
    kind = "opcua"
    config: OpcUaDeviceConfig

    def __init__(self, config: OpcUaDeviceConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.nodemap = load_nodemap(config.nodemap, config.supports)
        self.signals: list[Signal] = self.nodemap.expanded
        self.security = Security.of(config)
        self.link: Link | None = None
        self._links = 0  # links opened so far
        self.inventory: Inventory | None = None  # as last announced

    async def _run(self) -> None:
        backoff = Backoff(self.config.backoff_initial, self.config.backoff_max)
        while not self.stopping:
            self.link = link = Link(self)
            try:
                await link.open()
            except Exception as exc:  # noqa: BLE001 - whatever failed, try again later
                await self._drop_link()
                self._link_down(self._why(exc), timeout=_is_timeout(exc))
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            self._link_up(link)
            link.release()
            reason, timeout = await link.lost()
            await self._drop_link()
            self._link_down(reason, timeout)

    def _why(self, exc: Exception) -> str:
        if isinstance(exc, LinkFailed):
            return str(exc)
        reason = describe(exc, self.config)
        expected = isinstance(exc, (OSError, asyncio.TimeoutError, UaError)) or _refused_secure_channel(exc)
        if not expected and reason != self.state.reason:  # once per state change, not every retry
            log.error("%s: unexpected error connecting to %s", self.id, self.config.url, exc_info=exc)
        return reason

    # -- state ----------------------------------------------------------------------------
    def _link_up(self, link: Link) -> None:
        s = self.state
        s.reconnects += 1 if self._links else 0
        self._links += 1
        s.consecutive_errors = 0
        self._set_status(DeviceStatus.ONLINE, link.describe())
        self.server_info_read(link.server_info)

    def server_info_read(self, info: dict[str, object]) -> None:
        """Announce the inventory when the server or its clock (by CLOCK_CHANGE_S) changed."""
        last = self.inventory
        unchanged = (last is not None and last.online
                     and all(getattr(last, k) == v for k, v in info.items() if k != "clock_offset_s")
                     and not _moved(last.clock_offset_s, info["clock_offset_s"]))
        if not unchanged:
            self._announce(True, "", **info)

    def _announce(self, online: bool, reason: str, **info: object) -> None:
        base = self.inventory.model_dump() if self.inventory else {}
        self.inventory = Inventory(**{**base, **info, "device": self.id, "ts": utcnow(), "online": online,
                                      "reason": reason})
        self._emit(self.inventory)

    def _data(self, reading: Reading) -> None:
        s = self.state
        s.polls += 1
        s.last_good_poll = reading.ts
        s.last_poll_ms = round(reading.poll_ms, 2)
        self._emit(reading)

    def _link_down(self, reason: str, timeout: bool) -> None:
        s = self.state
        s.errors += 1
        s.consecutive_errors += 1
        s.timeouts += timeout
        if self.state.status is DeviceStatus.ONLINE or self.state.reason != reason:
            log.warning("%s: offline: %s", self.id, reason)
        self._set_status(DeviceStatus.OFFLINE, reason)
        if self.inventory is not None and self.inventory.online:
            self._announce(False, reason)
        now = utcnow()
        self._emit(Reading(device=self.id, ts=now, poll_ms=0.0, samples=[
            Sample(signal=sig.name, value=None, unit=sig.unit, quality=Quality.COMM_FAIL, ts=now)
            for sig in self.signals]))

    # -- writes ---------------------------------------------------------------------------
    async def write(self, signal: str, value: Value) -> WriteResult:
        """Roof-pressure signals are measurements: the gateway never writes them."""
        try:
            self.nodemap.signal(signal)
            error = f"{signal} is read-only (roof-pressure measurements are not written)"
        except KeyError as exc:
            error = exc.args[0]
        return WriteResult(device=self.id, signal=signal, ok=False, value=value, error=error)
