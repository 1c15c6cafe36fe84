"""The data connection: QoS 1 PUBLISH out, PUBACK in, on asyncio streams (docs/transport.md §2).

Role: one MQTT 3.1.1 connection of its own for data messages (client id
``biogw-{gateway_id}-data``, ``clean_session`` as configured, same host, port, TLS,
credentials and keepalive as the control connection, ``TCP_NODELAY``), built on the pure
codec in ``mqtt_codec``. ``publish`` encodes a batch of records into PUBLISH packets and
hands them to the socket in one write, in call order (so in ``seq`` order on the wire),
each under a packet id (1..65535) mapped to its ``seq``; ``receive`` parses the broker's
stream and collects the ``seq`` of every PUBACK in ``acked`` (the caller acks the spool);
``keepalive`` sends PINGREQ when the connection is idle in either direction and ends the
connection when no PINGRESP comes within the keepalive.

Errors are translated by ``mqtt_client.translate_error`` into ``TransportError``.

Must not: touch the spool, decide what to publish or when to reconnect (``MqttPublisher``
does), log topics or payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from gateway.transport.mqtt_client import (
    ClientOptions,
    ConnackRefusedError,
    TransportError,
    TransportErrorKind,
    translate_error,
)
from gateway.transport.mqtt_codec import (
    DISCONNECT,
    MAX_PACKET_ID,
    PINGREQ,
    Connack,
    InvalidPublishError,
    MqttCodecError,
    MqttProtocolError,
    StreamDecoder,
    encode_connect,
    encode_publish,
    encode_topic,
)

__all__ = ["DataConnection", "DataRecord", "close_stream", "open_stream"]

READ_CHUNK: Final = 1 << 16
CLOSE_TIMEOUT_S: Final = 2.0
TOPIC_CACHE: Final = 4096
"""Encoded topics kept (a few per stream and subject); the cache is dropped when full."""


class DataRecord(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


Rejected = Callable[[DataRecord, InvalidPublishError], None]


class DataConnection:
    """One open data connection; build it with ``await DataConnection.open(...)`` and end
    it with ``await close()``. ``receive`` and ``keepalive`` run as tasks of the caller's
    task group; both end only by raising ``TransportError``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        keepalive_s: int,
        wake: Callable[[], None],
        decoder: StreamDecoder | None = None,
        session_present: bool = False,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._keepalive_s = keepalive_s
        self._wake = wake
        self.session_present = session_present
        self._decoder = decoder or StreamDecoder()  # may hold a tail read with the CONNACK
        self._in_flight: dict[int, int] = {}  # packet id -> spool seq
        self._next_id = 1
        self._topics: dict[str, bytes] = {}
        self._wrote = self._received = False
        self._ping_outstanding = False
        self.acked: list[int] = []
        """Spool seqs whose PUBACK arrived; the caller takes (and replaces) the list."""

    @classmethod
    async def open(cls, options: ClientOptions, *, wake: Callable[[], None]) -> DataConnection:
        """TCP (+TLS), CONNECT, CONNACK within ``options.timeout_s``. Raises
        ``TransportError``; leaves nothing open when it does (or when cancelled)."""
        writer: asyncio.StreamWriter | None = None
        decoder = StreamDecoder()
        try:
            context = options.ssl_context()
            async with asyncio.timeout(options.timeout_s):
                reader, writer = await open_stream(options.hostname, options.port, context)
                writer.write(
                    encode_connect(
                        options.data_identifier,
                        keepalive_s=options.keepalive,
                        clean_session=options.clean_session,
                        username=options.username,
                        password=options.password,
                    )
                )
                connack = await _read_connack(reader, decoder)
            if connack.return_code != 0:
                raise ConnackRefusedError(connack.return_code)
        except (OSError, EOFError, MqttCodecError, ConnackRefusedError) as exc:
            if writer is not None:
                writer.transport.abort()
            raise translate_error(exc) from exc
        except BaseException:
            if writer is not None:
                writer.transport.abort()
            raise
        return cls(
            reader,
            writer,
            keepalive_s=options.keepalive,
            wake=wake,
            decoder=decoder,
            session_present=connack.session_present,
        )

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def publish(self, records: Sequence[DataRecord], rejected: Rejected) -> int:
        """PUBLISH every record (QoS 1) in order, in one socket write; returns how many
        went out. A record that can never be published goes to ``rejected`` instead.
        Raises ``TransportError`` if the connection is already closing, ``ValueError``
        if more than 65535 would be in flight (the caller's window must be smaller)."""
        if self._writer.transport.is_closing():
            raise TransportError(TransportErrorKind.CONNECTION_LOST)
        packets: list[bytes] = []
        in_flight, topics, packet_id = self._in_flight, self._topics, self._next_id
        if len(in_flight) + len(records) > MAX_PACKET_ID:
            raise ValueError("more than 65535 PUBLISH packets in flight")
        for record in records:
            while packet_id in in_flight:  # only when ids wrap past a still un-acked one
                packet_id = packet_id + 1 if packet_id < MAX_PACKET_ID else 1
            try:
                field = topics.get(record.topic)
                if field is None:
                    field = encode_topic(record.topic)
                    if len(topics) >= TOPIC_CACHE:
                        topics.clear()
                    topics[record.topic] = field
                packets.append(encode_publish(field, record.payload, packet_id))
            except InvalidPublishError as exc:
                rejected(record, exc)
                continue
            in_flight[packet_id] = record.seq
            packet_id = packet_id + 1 if packet_id < MAX_PACKET_ID else 1
        self._next_id = packet_id
        if packets:
            self._writer.write(b"".join(packets))
            self._wrote = True
        return len(packets)

    async def drain(self) -> None:
        """Wait while the socket's send buffer is over its high-water mark."""
        try:
            await self._writer.drain()
        except OSError as exc:
            raise translate_error(exc, connected=True) from exc

    async def receive(self) -> None:
        """Read the broker's stream until it ends: PUBACK seqs into ``acked`` (then
        ``wake()``), PINGRESP for the keepalive; anything else is a protocol error."""
        reader, decoder, in_flight, wake = self._reader, self._decoder, self._in_flight, self._wake
        try:
            while True:
                data = await reader.read(READ_CHUNK)
                if not data:
                    raise EOFError
                self._received = True
                got = decoder.feed(data)
                if got.puback_ids:
                    acked = self.acked
                    for packet_id in got.puback_ids:
                        seq = in_flight.pop(packet_id, None)
                        if seq is not None:  # else: not ours (a broker bug); ignored
                            acked.append(seq)
                    wake()
                for packet in got.control:
                    if isinstance(packet, Connack):
                        raise MqttProtocolError("unexpected_packet")
                    self._ping_outstanding = False
        except (OSError, EOFError, MqttCodecError) as exc:
            raise translate_error(exc, connected=True) from exc

    async def keepalive(self) -> None:
        """Every keepalive interval: PINGREQ if nothing was written or nothing received
        since the last tick; a PINGREQ unanswered by the next tick ends the connection."""
        if self._keepalive_s <= 0:
            return
        while True:
            await asyncio.sleep(self._keepalive_s)
            if self._ping_outstanding:
                raise TransportError(TransportErrorKind.CONNECTION_LOST)
            if not (self._wrote and self._received):
                if self._writer.transport.is_closing():
                    raise TransportError(TransportErrorKind.CONNECTION_LOST)
                self._writer.write(PINGREQ)
                self._ping_outstanding = True
            self._wrote = self._received = False

    async def close(self) -> None:
        """DISCONNECT (if the connection is still up) and close; never raises a
        transport error (the connection is being given up either way)."""
        await close_stream(self._writer, DISCONNECT)


async def open_stream(
    hostname: str, port: int, context: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TCP (+TLS, checking the host name) with ``TCP_NODELAY``: small packets at a high
    rate must not wait for Nagle (PUBACK latency)."""
    reader, writer = await asyncio.open_connection(
        hostname, port, ssl=context, server_hostname=hostname if context is not None else None
    )
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def close_stream(writer: asyncio.StreamWriter, goodbye: bytes) -> None:
    """Send ``goodbye`` (a DISCONNECT) if the connection is still up, close, and wait a
    bounded time for the close; never raises (the connection is given up either way)."""
    transport = writer.transport
    if transport.is_closing():
        transport.abort()
    else:
        writer.write(goodbye)
        writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await writer.wait_closed()
    if not transport.is_closing():
        transport.abort()


async def _read_connack(reader: asyncio.StreamReader, decoder: StreamDecoder) -> Connack:
    """The CONNACK, which must come first and alone (nothing else is due before the
    first PUBLISH); a partial packet after it stays in ``decoder``."""
    while True:
        data = await reader.read(READ_CHUNK)
        if not data:
            raise EOFError
        got = decoder.feed(data)
        if got.puback_ids or len(got.control) > 1:
            raise MqttProtocolError("unexpected_packet")
        if got.control:
            packet = got.control[0]
            if not isinstance(packet, Connack):
                raise MqttProtocolError("unexpected_packet")
            return packet
