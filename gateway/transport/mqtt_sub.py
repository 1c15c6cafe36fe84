"""The ingester's subscriber connection: MQTT 5, QoS 1, manual PUBACK, on asyncio streams.

Role: one MQTT 5 connection (built on the pure codec in ``mqtt5_codec``) that subscribes
at QoS 1 -- plain or shared (``$share/{group}/{filter}``) -- and hands every PUBLISH to
the caller as a ``Delivery``; the PUBACK goes out only when the caller calls ``ack``
(after its database batch committed), so a crash before that gets the message again.
The CONNECT carries Receive Maximum (the broker sends at most that many un-acked QoS 1
messages, which bounds memory: Mosquitto caps a 3.1.1 subscriber at
``max_inflight_messages`` instead) and Session Expiry Interval (a restarted ingester
finds its un-acked messages queued). ``run`` reads the stream and keeps the connection
alive even while the caller takes nothing (a database outage may last minutes).
Cancelling ``run`` only stops reading; ``close`` sends what is buffered (PUBACKs), then
DISCONNECT, so acks made before it reach the broker.

Overflow policy: QoS 0 deliveries arriving while ``receive_maximum`` deliveries wait
untaken are dropped and counted (``dropped_qos0``). A broker that overruns Receive
Maximum (Mosquitto 2.0.11 releases up to that many more per PUBACK) is not read from
until acks make room (counted in ``overruns``): at most ``receive_maximum`` un-acked
deliveries plus one read (64 KiB) are held.

Errors are translated by ``mqtt_client.translate_error`` into ``TransportError``.

Must not: decide what to do with a delivery, reconnect (the caller does), log topics or
payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from devices.errors import BiogwError
from gateway.errors import ConfigError
from gateway.transport.mqtt5_codec import (
    DISCONNECT,
    PINGREQ,
    Connack5,
    Delivery,
    Disconnect,
    MqttProtocolError,
    Pingresp,
    Received5,
    StreamDecoder5,
    Suback,
    encode_connect5,
    encode_pubacks,
    encode_subscribe,
)
from gateway.transport.mqtt_client import (
    CONNECT_TIMEOUT_S,
    ClientOptions,
    ConnackRefusedError,
    TransportError,
    TransportErrorKind,
    translate_error,
)
from gateway.transport.mqtt_codec import MqttCodecError
from gateway.transport.mqtt_data import CLOSE_TIMEOUT_S, close_stream, open_stream

__all__ = [
    "Delivery",
    "SubscribeRefusedError",
    "SubscriberConnection",
    "SubscriberOptions",
]

READ_CHUNK: Final = 1 << 16
_SUBACK_NAMES: Final = {  # spec 3.9.3
    0x00: "granted QoS 0 only", 0x80: "unspecified error", 0x87: "not authorized",
    0x8F: "topic filter invalid", 0x97: "quota exceeded",
    0x9E: "shared subscriptions not supported", 0xA2: "wildcard subscriptions not supported",
}  # fmt: skip


class SubscribeRefusedError(BiogwError):
    """The broker refused a topic filter (SUBACK reason code 0x80 or above), or granted
    it at QoS 0 only (code 0: no redelivery, so no manual acknowledgement). ``reason`` is
    ``subscribe_refused``; the filter is not named (it may hold a subject id)."""

    def __init__(self, reason_code: int) -> None:
        self.reason = "subscribe_refused"
        self.reason_code = reason_code
        name = _SUBACK_NAMES.get(reason_code, "refused")
        super().__init__(f"SUBSCRIBE refused: reason code {reason_code:#04x} ({name})")


@dataclass(frozen=True, slots=True)
class SubscriberOptions:
    """Everything a subscriber connection is built from (pure)."""

    hostname: str
    port: int
    client_id: str
    keepalive_s: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = None
    clean_start: bool = False
    session_expiry_s: int = 3600
    """How long the broker keeps the session (and un-acked messages) after a drop."""
    receive_maximum: int = 10_000
    """Un-acked QoS 1 messages the broker may send at once (1..65535): bounds memory."""
    timeout_s: float = CONNECT_TIMEOUT_S

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.keepalive_s <= 0xFFFF:
            problems.append("keepalive_s must be 0..65535")
        if not 0 <= self.session_expiry_s <= 0xFFFF_FFFF:
            problems.append("session_expiry_s must be 0..4294967295")
        if not 1 <= self.receive_maximum <= 0xFFFF:
            problems.append("receive_maximum must be 1..65535")
        if problems:
            raise ConfigError("mqtt subscriber", tuple(problems))

    @classmethod
    def from_client_options(
        cls,
        options: ClientOptions,
        client_id: str,
        *,
        clean_start: bool = False,
        session_expiry_s: int = 3600,
        receive_maximum: int = 10_000,
    ) -> SubscriberOptions:
        """Host, port, keepalive, credentials, TLS and timeout of ``options``. Reads the
        TLS files: raises ``TransportError`` (``tls``) when they are unusable."""
        try:
            context = options.ssl_context()
        except OSError as exc:  # ssl.SSLError is an OSError
            raise translate_error(exc) from exc
        return cls(
            hostname=options.hostname,
            port=options.port,
            client_id=client_id,
            keepalive_s=options.keepalive,
            username=options.username,
            password=options.password,
            ssl_context=context,
            clean_start=clean_start,
            session_expiry_s=session_expiry_s,
            receive_maximum=receive_maximum,
            timeout_s=options.timeout_s,
        )


class SubscriberConnection:
    """One open subscriber connection: ``await SubscriberConnection.open(options)``, then
    ``subscribe``, ``run`` as a task of the caller's task group, ``receive``/``ack`` from
    the consumer, and ``await close()`` at the end."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        options: SubscriberOptions,
        decoder: StreamDecoder5,
        connack: Connack5,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._decoder = decoder
        self._options = options
        self.session_present = connack.session_present
        server_keepalive = connack.server_keepalive_s  # overrides ours (spec 3.2.2.3.14)
        self._keepalive_s = options.keepalive_s if server_keepalive is None else server_keepalive
        self._pending: list[Delivery] = []
        self._outstanding: set[int] = set()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()  # set by ack: reading may resume
        self._failure: TransportError | None = None
        self._reading = False
        self._suback: tuple[int, asyncio.Future[Suback]] | None = None
        self._next_id = 1
        self._wrote = self._received = False
        self._ping_sent: float | None = None
        self.unknown_acks = 0
        """``ack`` calls for packet ids that were not outstanding (ignored)."""
        self.dropped_qos0 = 0
        self.pingreqs = 0
        self.pingresps = 0
        self.overruns = 0
        """Times the broker sent more un-acked QoS 1 messages than Receive Maximum
        (Mosquitto 2.0.11 does after any PUBACK); reading pauses until acks make room."""

    @classmethod
    async def open(cls, options: SubscriberOptions) -> SubscriberConnection:
        """TCP (+TLS), CONNECT, CONNACK within ``options.timeout_s``. Raises
        ``TransportError``; leaves nothing open when it does (or when cancelled)."""
        writer: asyncio.StreamWriter | None = None
        decoder = StreamDecoder5()
        try:
            async with asyncio.timeout(options.timeout_s):
                reader, writer = await open_stream(
                    options.hostname, options.port, options.ssl_context
                )
                writer.write(
                    encode_connect5(
                        options.client_id,
                        keepalive_s=options.keepalive_s,
                        clean_start=options.clean_start,
                        session_expiry_s=options.session_expiry_s,
                        receive_maximum=options.receive_maximum,
                        username=options.username,
                        password=options.password,
                    )
                )
                connack, first = await _read_connack(reader, decoder)
            if connack.reason_code != 0:
                raise ConnackRefusedError(connack.reason_code)
            connection = cls(reader, writer, options, decoder, connack)
            connection._take(first)  # queued messages may come with the CONNACK
        except (OSError, EOFError, MqttCodecError, ConnackRefusedError) as exc:
            if writer is not None:
                writer.transport.abort()
            raise translate_error(exc) from exc
        except BaseException:
            if writer is not None:
                writer.transport.abort()
            raise
        return connection

    @property
    def in_flight(self) -> int:
        """QoS 1 deliveries received and not yet acked."""
        return len(self._outstanding)

    async def subscribe(self, filters: Sequence[str]) -> None:
        """One SUBSCRIBE of ``filters`` at QoS 1; returns once the SUBACK granted all of
        them (deliveries arriving meanwhile are kept). Raises ``SubscribeRefusedError``
        for a refused (or QoS 0-only) filter, ``TransportError`` when the connection
        fails or no SUBACK comes within ``timeout_s``, ``ValueError`` for bad filters."""
        if self._suback is not None:
            raise RuntimeError("a SUBSCRIBE is already waiting for its SUBACK")
        self._check_open()
        packet_id = self._next_id
        self._next_id = packet_id % 0xFFFF + 1
        packet = encode_subscribe(packet_id, filters)
        waiter: asyncio.Future[Suback] = asyncio.get_running_loop().create_future()
        self._suback = (packet_id, waiter)
        try:
            self._writer.write(packet)
            self._wrote = True
            async with asyncio.timeout(self._options.timeout_s):
                if self._reading:  # run() is reading and resolves the waiter
                    suback = await waiter
                else:
                    suback = await self._read_until(waiter)
        except TransportError as exc:
            raise self._fail(exc) from None
        except (OSError, EOFError, MqttCodecError) as exc:
            raise self._fail(translate_error(exc, connected=True)) from exc
        finally:
            self._suback = None
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # retrieved (set by _fail when nobody awaited it)
        for code in suback.reason_codes:
            if code != 1:
                raise SubscribeRefusedError(code)

    async def run(self) -> None:
        """Read the broker's stream (deliveries for ``receive``, SUBACKs, PINGRESPs) and
        keep the connection alive: every half keepalive, PINGREQ when nothing was sent or
        nothing received since the last tick (every tick while reading is paused); no
        PINGRESP within the keepalive ends the connection. Ends only by raising
        ``TransportError``; cancelling it stops reading and leaves the connection up."""
        if self._reading:
            raise RuntimeError("the connection is already being read")
        self._reading = True
        try:
            await self._read_loop()
        except TransportError as exc:
            raise self._fail(exc) from None
        except (OSError, EOFError, MqttCodecError) as exc:
            raise self._fail(translate_error(exc, connected=True)) from exc
        finally:
            self._reading = False  # cancelled: pending writes (PUBACKs) are left to close()

    async def receive(self, timeout_s: float | None) -> list[Delivery]:
        """Every delivery received and not yet taken, in arrival order; waits up to
        ``timeout_s`` for at least one (``[]`` when none came). Raises ``TransportError``
        once the connection has ended (deliveries not taken then will come again)."""
        if not self._pending and self._failure is None:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._arrived.wait()
        self._check_open()
        taken, self._pending = self._pending, []
        return taken

    def ack(self, packet_ids: Sequence[int]) -> None:
        """PUBACK each outstanding id, in the given order (MQTT wants arrival order), in
        one socket write; ids not outstanding are ignored and counted (``unknown_acks``).
        Raises ``TransportError`` once the connection has ended."""
        self._check_open()
        outstanding, acked = self._outstanding, []
        for packet_id in packet_ids:
            if packet_id in outstanding:
                outstanding.remove(packet_id)
                acked.append(packet_id)
            else:
                self.unknown_acks += 1
        if acked:
            self._writer.write(encode_pubacks(acked))
            self._wrote = True
            self._room.set()

    async def close(self) -> None:
        """End the connection for ``receive``/``ack``, then send what is buffered (PUBACKs)
        and DISCONNECT (normal; the session stays for ``session_expiry_s``) if still up,
        and close; never raises a transport error. Unless ``run`` is reading, it drops what
        comes until the broker closes: a socket closed with unread data sends a reset,
        which can make the broker lose PUBACKs it has not processed yet."""
        self._fail(TransportError(TransportErrorKind.CONNECTION_LOST), abort=False)
        goodbye = DISCONNECT
        if not self._reading and not self._writer.transport.is_closing():
            self._writer.write(DISCONNECT)
            goodbye = b""
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    while await self._reader.read(READ_CHUNK):
                        pass  # deliveries not acked: they come again
        await close_stream(self._writer, goodbye)

    # -- internals --------------------------------------------------------------------

    def _check_open(self) -> None:
        failure = self._failure
        if failure is None and self._writer.transport.is_closing():
            failure = self._fail(TransportError(TransportErrorKind.CONNECTION_LOST))
        if failure is not None:
            raise TransportError(failure.kind, failure.code)

    def _fail(self, error: TransportError, *, abort: bool = True) -> TransportError:
        """Record the first reason the connection ended (and abort the transport unless
        ``close`` is closing it gracefully); wake ``receive``."""
        if self._failure is None:
            self._failure = error
            self._pending = []
            if abort:
                self._writer.transport.abort()
            self._arrived.set()
            self._room.set()
            if self._suback is not None and not self._suback[1].done():
                self._suback[1].set_exception(TransportError(error.kind, error.code))
        return self._failure

    def _take(self, got: Received5) -> None:
        if got.deliveries:
            new = got.deliveries
            if len(self._pending) + len(new) > self._options.receive_maximum:
                kept = [d for d in new if d.packet_id]
                self.dropped_qos0 += len(new) - len(kept)
                new = kept
            self._outstanding.update(got.packet_ids)
            self._pending += new
            self._arrived.set()
        for packet in got.control:
            if isinstance(packet, Pingresp):
                self._ping_sent = None
                self.pingresps += 1
            elif isinstance(packet, Suback):
                if self._suback is None or self._suback[0] != packet.packet_id:
                    raise MqttProtocolError("unexpected_packet")
                if not self._suback[1].done():
                    self._suback[1].set_result(packet)
            elif isinstance(packet, Disconnect):
                raise TransportError(TransportErrorKind.CONNECTION_LOST, packet.reason_code)
            else:  # a second CONNACK: the decoder refuses it already
                raise MqttProtocolError("unexpected_packet")

    async def _read_until(self, waiter: asyncio.Future[Suback]) -> Suback:
        self._reading = True
        try:
            while not waiter.done():
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    raise EOFError
                self._take(self._decoder.feed(data))
        finally:
            self._reading = False
        return waiter.result()

    async def _read_loop(self) -> None:
        reader, decoder, limit = self._reader, self._decoder, self._options.receive_maximum
        loop = asyncio.get_running_loop()
        interval = self._keepalive_s / 2
        deadline = loop.time() + interval if interval > 0 else None
        paused = False
        while True:
            if self._failure is not None:
                raise TransportError(self._failure.kind, self._failure.code)
            now = loop.time()
            if deadline is not None and now >= deadline:  # a busy stream never times out
                self._tick(now, paused)
                deadline = now + interval
                continue
            if len(self._outstanding) > limit:  # the broker overran Receive Maximum
                if not paused:
                    paused, self.overruns = True, self.overruns + 1
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await self._room.wait()
                continue
            if paused and self._ping_sent is not None:  # its PINGRESP is still unread
                self._ping_sent = now
            paused = False
            try:
                async with asyncio.timeout_at(deadline):
                    data = await reader.read(READ_CHUNK)
            except TimeoutError:
                continue
            if not data:
                raise EOFError
            self._received = True
            self._take(decoder.feed(data))

    def _tick(self, now: float, paused: bool) -> None:
        """Half-keepalive tick: PINGREQ when idle, and every tick while reading is paused
        (its PINGRESP then waits unread, so it is not missed until reading resumes); else
        no PINGRESP within the keepalive ends the connection."""
        if self._writer.transport.is_closing():
            raise TransportError(TransportErrorKind.CONNECTION_LOST)
        if paused or (self._ping_sent is None and not (self._wrote and self._received)):
            self._writer.write(PINGREQ)
            self.pingreqs += 1
            self._ping_sent = now
        elif self._ping_sent is not None and now - self._ping_sent >= self._keepalive_s:
            raise TransportError(TransportErrorKind.CONNECTION_LOST)
        self._wrote = self._received = False


async def _read_connack(
    reader: asyncio.StreamReader, decoder: StreamDecoder5
) -> tuple[Connack5, Received5]:
    """The CONNACK (the decoder insists it comes first) and whatever came with it."""
    while True:
        data = await reader.read(READ_CHUNK)
        if not data:
            raise EOFError
        got = decoder.feed(data)
        if got.control:
            connack = got.control.pop(0)
            assert isinstance(connack, Connack5)  # the decoder refuses anything else first
            return connack, got
