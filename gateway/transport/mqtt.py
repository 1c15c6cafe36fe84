"""The MQTT publisher: spool → broker, QoS 1, at least once (docs/transport.md §2).

Role: per attempt, two MQTT 3.1.1 connections with persistent sessions, built from
``mqtt_client.client_options``: the **control** connection (aiomqtt, ``biogw-{id}``:
the last will, gateway and device statuses) and the **data** connection
(``mqtt_data.DataConnection``, ``biogw-{id}-data``: spooled records). The committer
group-commits the spool on every ``notify()`` (also while the broker is down); the pump
publishes committed records from ``pending()`` in ``seq`` order, at most
``max_inflight`` un-acked, one socket write per pass, and acks PUBACKed records in the
spool in batches. When either connection ends both are dropped and, after the
``BackoffPolicy`` delay, the next attempt re-sends every un-acked record, oldest first
(duplicates only for records whose PUBACK was lost; ingest is idempotent).

Status (never spooled; latest value wins): a retained "online" after each connect, the
will ("offline", cause "lost"), a retained "offline" (cause "shutdown") on a clean stop,
and retained device statuses, re-published after every reconnect. Transport errors are
translated in one place (``mqtt_client.translate_error``); spool errors propagate out of
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
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Final, Protocol, Self, TypeVar
from uuid import UUID

import aiomqtt

from gateway.backoff import BackoffPolicy, BackoffState
from gateway.config import MqttSettings
from gateway.transport.mqtt_client import (
    CONNECT_TIMEOUT_S,
    ClientOptions,
    TransportError,
    TransportErrorKind,
    client_options,
    translate_error,
)
from gateway.transport.mqtt_codec import InvalidPublishError
from gateway.transport.mqtt_data import DataConnection, DataRecord
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

GOODBYE_S: Final = 2.0
BATCH: Final = 128
"""Records published per pump pass before yielding to the loop."""
DEFAULT_BACKOFF: Final = BackoffPolicy(initial_s=0.25, max_s=10.0, stable_s=30.0)


@contextlib.contextmanager
def _translated(*, connected: bool = True) -> Iterator[None]:
    try:
        yield
    except aiomqtt.MqttError as exc:
        raise translate_error(exc, connected=connected) from exc


# -- the spool seam -------------------------------------------------------------------------


OutboundRecord = DataRecord
"""A spooled record as the publisher reads it (``seq``, ``topic``, ``payload``)."""


class OutboundSpool(Protocol):
    """What the publisher needs of ``gateway.transport.spool.Spool``."""

    def commit(self) -> None: ...
    def pending(self, after_seq: int, limit: int) -> Sequence[OutboundRecord]: ...
    def ack(self, seq: int) -> None: ...
    def ack_many(self, seqs: Iterable[int]) -> int: ...


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
    """PUBLISH packets written to the data connection (re-sends included)."""
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
    """Records that can never be published (invalid topic, too large): logged, counted,
    acked."""
    status_published: int
    last_error: TransportErrorKind | None


# -- the publisher --------------------------------------------------------------------------


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
        self._data: DataConnection | None = None
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
            in_flight=self._data.in_flight if self._data else 0,
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
                data, self._data = self._data, None
                if data is not None:
                    self._n["abandoned"] += data.in_flight  # re-sent from the spool
                    self._take_acks(data)  # PUBACKs that came before the end

    async def _connection(self) -> None:
        """One connection, CONNECT to its end. Ends with ``TransportError`` (or, when
        cancelled, with a goodbye status first)."""
        async with AsyncExitStack() as stack:
            client = await self._connect(stack)
            try:
                data = await DataConnection.open(self._options, wake=self._work.set)
            except asyncio.CancelledError:
                await self._goodbye(client)
                raise
            stack.push_async_callback(data.close)  # DISCONNECT first, then the control's
            self._data = data
            self._on_connected()
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._watch(client), name=f"{self._name}.watch")
                    group.create_task(data.receive(), name=f"{self._name}.data.receive")
                    group.create_task(data.keepalive(), name=f"{self._name}.data.keepalive")
                    group.create_task(self._pump(client, data, group), name=f"{self._name}.pump")
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
        self, client: aiomqtt.Client, data: DataConnection, group: asyncio.TaskGroup
    ) -> None:
        online = encode_gateway_status(GatewayStatus(GatewayState.ONLINE, at_ms=self._wall_ms()))
        with _translated():
            await client.publish(self._status_topic, online, 1, True, timeout=math.inf)
        after = 0  # a new connection re-sends every un-acked record, oldest first
        self._work.set()
        while True:
            await self._work.wait()
            self._work.clear()
            self._take_acks(data)
            for topic in self._dirty:
                group.create_task(self._send_status(client, topic), name=f"{self._name}.status")
            self._dirty = set()
            room = min(self._window - data.in_flight, BATCH)
            batch = self._spool.pending(after, room) if room > 0 else ()
            if batch:
                self._n["published"] += data.publish(batch, self._reject)
                after = batch[-1].seq
                self._idle.clear()
                await data.drain()
                if len(batch) == BATCH:
                    self._work.set()  # maybe more: go on after letting the loop run
            elif data.in_flight == 0 and self._uncommitted_acks == 0:
                self._idle.set()

    def _reject(self, record: OutboundRecord, exc: InvalidPublishError) -> None:
        """A record that can never be published: count, log, drop."""
        self._n["rejected"] += 1
        _log.error("%s: record %d cannot be published: %s", self._name, record.seq, exc.reason)
        self._spool.ack(record.seq)
        self._uncommitted_acks += 1

    def _take_acks(self, data: DataConnection) -> None:
        if not data.acked:
            return
        acked, data.acked = data.acked, []
        self._spool.ack_many(acked)
        self._n["acked"] += len(acked)
        self._uncommitted_acks += len(acked)
        if data.in_flight == 0:
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
