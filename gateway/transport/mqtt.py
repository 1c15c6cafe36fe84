"""The MQTT publisher: spool → broker, QoS 1, at least once (docs/transport.md).

Role: keep one connection to the broker (aiomqtt over paho, MQTT 3.1.1, a persistent
session ``clean_session=False`` under the stable client id ``biogw-{gateway_id}``,
username/password and TLS from ``MqttSettings``) and drain the spool through it:

* the committer group-commits the spool whenever the edge calls ``notify()``, also while
  the broker is down, so what the edge appended is durable at once;
* per connection, the pump publishes committed records from ``pending(after_seq, limit)``
  in ``seq`` order, at most ``max_inflight`` un-acked. Data goes through paho directly
  (``_Outbox``): PUBLISH packets leave in call order, i.e. in ``seq`` order, without a
  task or future per message; each PUBACK acks its record in the spool;
* on connection loss the in-flight records are abandoned, the aiomqtt ``Client`` is
  dropped (it cannot be re-entered after a disconnect: each attempt builds a new one)
  and, after the ``BackoffPolicy`` delay, the next connection starts again from the
  oldest un-acked record. Duplicates are possible only for records the broker received
  whose PUBACK was lost; the ingester is idempotent on (stream, sequence).

Status (state, not data; never spooled; latest value wins): a retained "online" on the
gateway status topic after each connect, the last will (retained "offline", cause
"lost") for a broken connection, a retained "offline" (cause "shutdown") on a clean stop,
and retained device statuses, re-published after every reconnect.

aiomqtt/paho errors are translated in one place (``translate_error``) into
``TransportError``. Spool errors are not transport errors: they propagate out of
``run()``.

Must not: log topics (a clinical topic holds a subject id) or payloads above DEBUG;
decode payloads; touch the spool's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Final, Protocol, Self, TypeVar
from uuid import UUID

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.client import MQTT_ERR_NO_CONN, MQTT_ERR_SUCCESS
from paho.mqtt.client import Client as PahoClient

from devices.errors import BiogwError
from gateway.backoff import BackoffPolicy, BackoffState
from gateway.config import MqttSettings
from gateway.errors import ConfigError
from gateway.transport.status import (
    DeviceStatus,
    GatewayState,
    GatewayStatus,
    OfflineCause,
    encode_device_status,
    encode_gateway_status,
)
from gateway.transport.topics import TopicLayout

__all__ = [
    "ClientOptions",
    "ConnectionState",
    "MqttPublisher",
    "OutboundRecord",
    "OutboundSpool",
    "PublisherStats",
    "TransportError",
    "TransportErrorKind",
    "client_options",
    "translate_error",
]

_log = logging.getLogger(__name__)
_E = TypeVar("_E", bound=BaseException)
_PAHO_LOG: Final = logging.getLogger(__name__ + ".paho")
"""paho logs topics at DEBUG only."""

CONNECT_TIMEOUT_S: Final = 10.0
GOODBYE_S: Final = 2.0
STATUS_PENDING: Final = 4096
"""Status publishes (one per device) in flight before aiomqtt starts warning."""
BATCH: Final = 128
"""Records published per pump pass before yielding to the loop."""
DEFAULT_BACKOFF: Final = BackoffPolicy(initial_s=0.25, max_s=10.0, stable_s=30.0)
_AUTH_CODES: Final = frozenset({4, 5, 134, 135, 140})
"""CONNACK refusals meaning "who you are": 3.1.1 codes 4 and 5, and the MQTT 5 reason
codes paho maps them to (0x86 bad user name or password, 0x87 not authorized, 0x8C bad
authentication method)."""


class TransportErrorKind(enum.StrEnum):
    UNREACHABLE = "unreachable"
    """No TCP connection (refused, no route, name not resolved)."""
    TIMEOUT = "timeout"
    TLS = "tls"
    """Handshake or certificate verification failed, or TLS files unreadable."""
    NOT_AUTHORIZED = "not_authorized"
    REFUSED = "refused"
    """Any other negative CONNACK."""
    CONNECTION_LOST = "connection_lost"
    PUBLISH_FAILED = "publish_failed"
    PROTOCOL = "protocol"
    """Anything else aiomqtt or paho reported."""


class TransportError(BiogwError):
    """The broker connection failed or ended. ``kind`` classifies it; ``code`` is the
    MQTT or paho code when there is one. No topic or payload is kept."""

    def __init__(self, kind: TransportErrorKind, code: int | None = None) -> None:
        self.kind = kind
        self.code = code
        super().__init__(f"mqtt: {kind}" + (f" (code {code})" if code is not None else ""))


def _code(rc: object) -> int | None:
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else None


def translate_error(exc: aiomqtt.MqttError, *, connected: bool = False) -> TransportError:
    """The one place aiomqtt/paho errors become ``TransportError``; ``connected`` says
    whether the connection had been up (then a socket error means it was lost). aiomqtt
    raises connect failures ``from None`` but keeps the original as ``__context__``."""
    if isinstance(exc, MqttConnectError):
        code = _code(exc.rc)
        kind = TransportErrorKind.NOT_AUTHORIZED if code in _AUTH_CODES else None
        return TransportError(kind or TransportErrorKind.REFUSED, code)
    if isinstance(exc, aiomqtt.MqttCodeError):
        code = _code(exc.rc)
        if code == MQTT_ERR_NO_CONN or exc.__cause__ is not None:
            return TransportError(TransportErrorKind.CONNECTION_LOST, code)
        return TransportError(TransportErrorKind.PUBLISH_FAILED, code)
    origin = exc.__cause__ or exc.__context__
    if connected and not isinstance(origin, TimeoutError):
        return TransportError(
            TransportErrorKind.CONNECTION_LOST, _code(getattr(origin, "rc", None))
        )
    if isinstance(origin, ssl.SSLError | ssl.CertificateError):
        return TransportError(TransportErrorKind.TLS)
    if isinstance(origin, FileNotFoundError | PermissionError | IsADirectoryError):
        return TransportError(TransportErrorKind.TLS)  # only TLS setup reads files
    if isinstance(origin, TimeoutError):
        return TransportError(TransportErrorKind.TIMEOUT)
    if isinstance(origin, OSError):
        return TransportError(TransportErrorKind.UNREACHABLE, origin.errno)
    return TransportError(TransportErrorKind.PROTOCOL)


@contextlib.contextmanager
def _translated(*, connected: bool = True) -> Iterator[None]:
    try:
        yield
    except aiomqtt.MqttError as exc:
        raise translate_error(exc, connected=connected) from exc


# -- connection arguments -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Everything an ``aiomqtt.Client`` is built from (pure; ``client()`` builds one)."""

    hostname: str
    port: int
    identifier: str
    keepalive: int
    will: aiomqtt.Will
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_params: aiomqtt.TLSParameters | None = None
    clean_session: bool = False
    timeout_s: float = CONNECT_TIMEOUT_S

    def client(self) -> aiomqtt.Client:
        """A new client (call inside the running loop; one per connection attempt)."""
        client = aiomqtt.Client(
            self.hostname,
            self.port,
            username=self.username,
            password=self.password,
            identifier=self.identifier,
            protocol=aiomqtt.ProtocolVersion.V311,
            will=self.will,
            clean_session=self.clean_session,
            keepalive=self.keepalive,
            timeout=self.timeout_s,
            max_inflight_messages=0,  # unbounded in paho (its bound costs O(n) per ack);
            tls_params=self.tls_params,  # the publisher's window is the bound
            logger=_PAHO_LOG,
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        # aiomqtt warns per call past this many pending; only status goes through it.
        client.pending_calls_threshold = STATUS_PENDING
        return client


def client_options(
    settings: MqttSettings, *, gateway_id: str, layout: TopicLayout | None = None
) -> ClientOptions:
    """The connection arguments for ``settings``. Raises ``ConfigError`` for TLS files
    without ``tls``, a key without a certificate, or a password without a user name."""
    problems = []
    if not settings.tls and (settings.ca_file or settings.cert_file or settings.key_file):
        problems.append("mqtt.ca_file/cert_file/key_file need mqtt.tls = true")
    if settings.key_file is not None and settings.cert_file is None:
        problems.append("mqtt.key_file needs mqtt.cert_file")
    if settings.password is not None and settings.username is None:
        problems.append("mqtt.password needs mqtt.username")
    if problems:
        raise ConfigError("mqtt", tuple(problems))
    layout = layout or TopicLayout(settings.topic_prefix)
    tls = None
    if settings.tls:
        tls = aiomqtt.TLSParameters(
            ca_certs=str(settings.ca_file) if settings.ca_file else None,  # None: system store
            certfile=str(settings.cert_file) if settings.cert_file else None,
            keyfile=str(settings.key_file) if settings.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,  # verifies the host name too
        )
    will = aiomqtt.Will(
        layout.gateway_status(gateway_id),
        encode_gateway_status(GatewayStatus(GatewayState.OFFLINE, OfflineCause.LOST)),
        qos=1,
        retain=True,
    )
    return ClientOptions(
        hostname=settings.host,
        port=settings.port,
        identifier=f"biogw-{gateway_id}",
        keepalive=settings.keepalive_s,
        will=will,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        tls_params=tls,
    )


# -- the spool seam -------------------------------------------------------------------------


class OutboundRecord(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


class OutboundSpool(Protocol):
    """What the publisher needs of ``gateway.transport.spool.Spool``."""

    def commit(self) -> None: ...
    def pending(self, after_seq: int, limit: int) -> Sequence[OutboundRecord]: ...
    def ack(self, seq: int) -> None: ...


class ConnectionState(enum.StrEnum):
    WAITING = "waiting"
    """Backing off before the next attempt (also: not started yet)."""
    CONNECTING = "connecting"
    CONNECTED = "connected"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class PublisherStats:
    """A snapshot of the publisher's counters (for metrics and tests)."""

    state: ConnectionState
    published: int
    """PUBLISH packets handed to paho (re-sends included)."""
    acked: int
    in_flight: int
    """Published and not yet acknowledged."""
    connects: int
    reconnects: int
    """Successful connections after the first."""
    connect_failures: int
    abandoned: int
    """Publishes cancelled by a lost connection (re-sent from the spool afterwards)."""
    rejected: int
    """Records paho refused outright (invalid topic or size): logged, counted, acked."""
    status_published: int
    last_error: TransportErrorKind | None


# -- the publisher --------------------------------------------------------------------------


class _Outbox:
    """Data publishes on one connection, at paho level: ``publish`` hands PUBLISH packets
    to paho in call order (so ``seq`` order on the wire) with no task or future per
    message; the PUBACK callback only records the ``seq`` and wakes the pump, which acks
    the spool (so a spool error surfaces in a task, not inside paho's read loop).

    aiomqtt 2.x keeps its paho client as ``Client._client``; this is the one place that
    reaches for it. Its own ``on_publish`` (which completes ``Client.publish``, used for
    status messages) is chained."""

    def __init__(self, client: aiomqtt.Client, wake: Callable[[], None]) -> None:
        paho = getattr(client, "_client", None)
        if not isinstance(paho, PahoClient):
            raise TransportError(TransportErrorKind.PROTOCOL)  # an aiomqtt without paho
        self._paho = paho
        self._wake = wake
        self._chained = paho.on_publish
        self._mids: dict[int, int] = {}  # paho message id -> spool seq
        self.acked: list[int] = []
        paho.on_publish = self._on_publish

    @property
    def in_flight(self) -> int:
        return len(self._mids)

    def publish(self, record: OutboundRecord) -> None:
        """Raises ``ValueError`` for a record paho refuses (bad topic, too large)."""
        info = self._paho.publish(record.topic, record.payload, qos=1)
        if info.rc != MQTT_ERR_SUCCESS:
            lost = info.rc == MQTT_ERR_NO_CONN
            kind = TransportErrorKind.CONNECTION_LOST if lost else TransportErrorKind.PUBLISH_FAILED
            raise TransportError(kind, int(info.rc))
        self._mids[info.mid] = record.seq

    def _on_publish(self, client: PahoClient, userdata: object, mid: int, *rest: Any) -> None:
        seq = self._mids.pop(mid, None)
        if seq is None:
            if self._chained is not None:  # aiomqtt's: completes Client.publish
                self._chained(client, userdata, mid, *rest)
        else:
            self.acked.append(seq)
            self._wake()


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class MqttPublisher:
    """Drains an ``OutboundSpool`` to the broker; see the module docstring.

    Run it as a task of the app's task group (``tg.create_task(pub.run(), name=...)``)
    or as ``async with pub:``. The edge calls ``notify()`` after appending to the spool.
    """

    def __init__(
        self,
        spool: OutboundSpool,
        *,
        settings: MqttSettings,
        gateway_id: str,
        backoff: BackoffPolicy = DEFAULT_BACKOFF,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        wall_ms: Callable[[], int] = _wall_ms,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self._spool = spool
        self._layout = TopicLayout(settings.topic_prefix)
        options = client_options(settings, gateway_id=gateway_id, layout=self._layout)
        self._options = replace(options, timeout_s=connect_timeout_s)
        self._name = f"mqtt[{gateway_id}]"
        self._gateway_id = gateway_id
        self._status_topic = self._layout.gateway_status(gateway_id)
        self._window = settings.max_inflight
        self._backoff, self._backoff_state = backoff, BackoffState()
        self._monotonic, self._sleep, self._rand, self._wall_ms = monotonic, sleep, rand, wall_ms
        self._commit_needed = asyncio.Event()  # wakes the committer
        self._work = asyncio.Event()  # wakes the pump: a commit, acks, a status change
        self._connected = asyncio.Event()
        self._idle = asyncio.Event()
        self._devices: dict[str, bytes] = {}  # device status topic -> payload (b"": clear)
        self._dirty: set[str] = set()
        self._uncommitted_acks = 0
        self._outbox: _Outbox | None = None
        self._stack: AsyncExitStack | None = None
        self._task: asyncio.Task[None] | None = None
        self._state = ConnectionState.WAITING
        self._last_error: TransportErrorKind | None = None
        self._n = dict.fromkeys(
            ("published", "acked", "connects", "connect_failures", "abandoned", "rejected",
             "status_published"),
            0,
        )  # fmt: skip

    # -- the edge's API -------------------------------------------------------------------

    def notify(self) -> None:
        """Records were appended to the spool: commit them and publish them soon."""
        self._idle.clear()
        self._commit_needed.set()

    def set_device_status(self, device_key: UUID | str, status: DeviceStatus) -> None:
        """Publish ``status`` (retained) now if connected, else once connected; it is
        re-published after every reconnect until replaced or forgotten."""
        self._set_status(self._layout.device_status(self._gateway_id, device_key), status)

    def forget_device(self, device_key: UUID | str) -> None:
        """Clear the device's retained status (an empty retained message) and stop
        re-publishing it (e.g. when the device is unpaired)."""
        self._set_status(self._layout.device_status(self._gateway_id, device_key), None)

    def _set_status(self, topic: str, status: DeviceStatus | None) -> None:
        self._devices[topic] = b"" if status is None else encode_device_status(status)
        self._dirty.add(topic)
        self._work.set()

    # -- observation ----------------------------------------------------------------------

    def stats(self) -> PublisherStats:
        return PublisherStats(
            state=self._state,
            in_flight=self._outbox.in_flight if self._outbox else 0,
            reconnects=max(0, self._n["connects"] - 1),
            last_error=self._last_error,
            **self._n,
        )

    async def wait_connected(self) -> None:
        """Return once a connection is up (at once if it is)."""
        await self._connected.wait()

    async def wait_idle(self) -> None:
        """Return once everything committed is acked and the acks are committed (call
        ``notify()`` after appending, or this may return before the new records are out)."""
        await self._idle.wait()

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            group = await stack.enter_async_context(asyncio.TaskGroup())
            self._task = group.create_task(self.run(), name=self._name)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        if self._task is not None:
            self._task.cancel()  # the clean stop: goodbye status, DISCONNECT, last commit
        await stack.__aexit__(exc_type, exc, tb)

    async def run(self) -> None:
        """Commit, connect, publish and reconnect until cancelled; cancelling is the clean
        stop. Raises only what is not a transport error (e.g. ``SpoolError``)."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._committer(), name=f"{self._name}.commit")
                group.create_task(self._connections(), name=f"{self._name}.connect")
        except asyncio.CancelledError:
            self._spool.commit()  # the last acks
            raise
        except BaseExceptionGroup as eg:
            raise _first(eg) from None
        finally:
            self._state = ConnectionState.STOPPED
            self._connected.clear()

    async def _committer(self) -> None:
        while True:
            await self._commit_needed.wait()
            self._commit_needed.clear()
            self._spool.commit()
            self._uncommitted_acks = 0
            self._work.set()

    async def _connections(self) -> None:
        while True:
            delay = self._backoff.delay_s(self._backoff_state, self._rand())
            if delay > 0:
                self._state = ConnectionState.WAITING
                await self._sleep(delay)
            self._state = ConnectionState.CONNECTING
            try:
                await self._connection()
            except TransportError as err:
                self._last_error = err.kind
                if self._state is ConnectionState.CONNECTING:
                    self._n["connect_failures"] += 1
                    self._backoff_state = self._backoff.failed(self._backoff_state)
                    _log.warning("%s: connect failed: %s", self._name, str(err))
                else:
                    now = self._monotonic()
                    self._backoff_state = self._backoff.disconnected(self._backoff_state, now)
                    _log.warning("%s: connection ended: %s", self._name, str(err))
            finally:
                self._connected.clear()
                if self._outbox is not None:
                    self._n["abandoned"] += self._outbox.in_flight  # re-sent from the spool
                    self._outbox = None

    async def _connection(self) -> None:
        """One connection, CONNECT to its end. Ends with ``TransportError`` (or, when
        cancelled, with a goodbye status first)."""
        async with AsyncExitStack() as stack:
            client = await self._connect(stack)
            self._outbox = outbox = _Outbox(client, self._work.set)
            self._on_connected()
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._watch(client), name=f"{self._name}.watch")
                    group.create_task(self._pump(client, outbox, group), name=f"{self._name}.pump")
            except BaseExceptionGroup as eg:
                transport, rest = eg.split(TransportError)
                if rest is None and transport is not None:
                    raise _first(transport) from None
                await self._goodbye(client)  # e.g. a SpoolError: stopping, connection up
                raise
            except asyncio.CancelledError:
                await self._goodbye(client)
                raise
        raise AssertionError("unreachable: the watch task never returns")

    async def _connect(self, stack: AsyncExitStack) -> aiomqtt.Client:
        """CONNECT/CONNACK. Cancelled meanwhile, it lets the attempt finish first (at most
        ``CONNECT_TIMEOUT_S``): aiomqtt leaves a half-open socket behind when its connect
        is cancelled; a finished attempt unwinds through a DISCONNECT."""
        attempt = asyncio.ensure_future(stack.enter_async_context(self._options.client()))
        try:
            with _translated(connected=False):
                return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            await asyncio.wait({attempt})
            if not attempt.cancelled():
                attempt.exception()  # retrieved; the cancellation is what goes on
            raise

    def _on_connected(self) -> None:
        self._state = ConnectionState.CONNECTED
        self._n["connects"] += 1
        self._backoff_state = self._backoff.connected(self._backoff_state, self._monotonic())
        self._dirty = set(self._devices)  # re-publish every known device status
        self._connected.set()
        _log.info("%s: connected (connection %d)", self._name, self._n["connects"])

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Ends the connection when aiomqtt sees it drop (nothing is subscribed, so the
        message iterator only ever raises, on disconnect)."""
        with _translated():
            async for _ in client.messages:
                pass
        raise TransportError(TransportErrorKind.CONNECTION_LOST)

    async def _pump(
        self, client: aiomqtt.Client, outbox: _Outbox, group: asyncio.TaskGroup
    ) -> None:
        online = encode_gateway_status(GatewayStatus(GatewayState.ONLINE, at_ms=self._wall_ms()))
        with _translated():
            await client.publish(self._status_topic, online, 1, True, timeout=math.inf)
        after = 0  # a new connection re-sends every un-acked record, oldest first
        self._work.set()
        while True:
            await self._work.wait()
            self._work.clear()
            self._take_acks(outbox)
            for topic in self._dirty:
                group.create_task(self._send_status(client, topic), name=f"{self._name}.status")
            self._dirty = set()
            room = min(self._window - outbox.in_flight, BATCH)
            batch = self._spool.pending(after, room) if room > 0 else ()
            for record in batch:
                self._publish(outbox, record)
            if batch:
                after = batch[-1].seq
                self._idle.clear()
                if len(batch) == BATCH:
                    self._work.set()  # maybe more: go on after letting the loop run
            elif outbox.in_flight == 0 and self._uncommitted_acks == 0:
                self._idle.set()

    def _publish(self, outbox: _Outbox, record: OutboundRecord) -> None:
        try:
            outbox.publish(record)
        except ValueError as exc:  # can never be published: count, log, drop
            self._n["rejected"] += 1
            _log.error(
                "%s: record %d rejected by the MQTT client: %s", self._name, record.seq, str(exc)
            )
            self._spool.ack(record.seq)
            self._uncommitted_acks += 1
        else:
            self._n["published"] += 1

    def _take_acks(self, outbox: _Outbox) -> None:
        if not outbox.acked:
            return
        acked, outbox.acked = outbox.acked, []
        for seq in acked:
            self._spool.ack(seq)
        self._n["acked"] += len(acked)
        self._uncommitted_acks += len(acked)
        if outbox.in_flight == 0:
            self._commit_needed.set()  # all caught up: make the acks durable now

    async def _send_status(self, client: aiomqtt.Client, topic: str) -> None:
        payload = self._devices.get(topic)
        if payload is None:
            return
        with _translated():
            await client.publish(topic, payload, 1, True, timeout=math.inf)
        self._n["status_published"] += 1
        if payload == b"" and self._devices.get(topic) == b"":
            del self._devices[topic]  # cleared for good

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """A clean stop publishes "offline" itself: a DISCONNECT suppresses the will."""
        offline = GatewayStatus(GatewayState.OFFLINE, OfflineCause.SHUTDOWN, self._wall_ms())
        try:
            with _translated():
                payload = encode_gateway_status(offline)
                await client.publish(self._status_topic, payload, 1, True, timeout=GOODBYE_S)
        except TransportError as exc:
            _log.warning("%s: could not publish the offline status: %s", self._name, str(exc))


def _first(group: BaseExceptionGroup[_E]) -> _E:
    """The first leaf exception of a (possibly nested) group."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
