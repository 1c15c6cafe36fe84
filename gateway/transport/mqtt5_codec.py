"""MQTT 5 packets for the ingester's subscriber connection: bytes in, bytes out.

Role: the few packets a QoS 1 subscriber with manual acknowledgement needs (OASIS MQTT
Version 5.0, sections 2 and 3): CONNECT (Session Expiry Interval, Receive Maximum, no
will), SUBSCRIBE at QoS 1, PUBACK, PINGREQ and DISCONNECT out; CONNACK, SUBACK, PUBLISH
at QoS 0/1, PINGRESP and DISCONNECT in, through an incremental decoder
(``StreamDecoder5``) that accepts the broker's byte stream split anywhere and insists on
the CONNACK coming first and once. Anything else, QoS 2, or a malformed packet is a
``MqttProtocolError`` (from ``mqtt_codec``) -- never another exception.

Must not: do I/O, import asyncio or an MQTT library, keep state beyond the decoder's
unparsed tail and whether the CONNACK was seen, log (a topic may hold a subject id).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from gateway.transport.mqtt_codec import (
    DISCONNECT,
    MAX_PACKET_ID,
    PINGREQ,
    MqttProtocolError,
    Pingresp,
    decode_remaining_length,
    encode_remaining_length,
)

__all__ = [
    "DISCONNECT",
    "PINGREQ",
    "Connack5",
    "Delivery",
    "Disconnect",
    "MqttProtocolError",
    "Pingresp",
    "Received5",
    "StreamDecoder5",
    "Suback",
    "encode_connect5",
    "encode_pubacks",
    "encode_subscribe",
]

_PROTOCOL: Final = b"\x00\x04MQTT\x05"  # protocol name and level 5
_SESSION_EXPIRY, _RECEIVE_MAXIMUM, _SERVER_KEEP_ALIVE = 0x11, 0x21, 0x13
_CONNACK, _SUBACK, _PINGRESP, _DISCONNECT = 0x20, 0x90, 0xD0, 0xE0
_SUBSCRIBE_QOS1: Final = 0x01  # options: QoS 1, no local 0, retain as published 0, handling 0
_U32: Final = 0xFFFF_FFFF
# Property identifier -> value size (spec 2.2.2.2): 1, 2, 4 bytes; 0 varint; -1 string or
# binary data (two length bytes); -2 string pair.
_PROPERTY_SIZE: Final = {
    0x01: 1, 0x17: 1, 0x19: 1, 0x24: 1, 0x25: 1, 0x28: 1, 0x29: 1, 0x2A: 1,
    0x13: 2, 0x21: 2, 0x22: 2, 0x23: 2,
    0x02: 4, 0x11: 4, 0x18: 4, 0x27: 4,
    0x0B: 0,
    0x03: -1, 0x08: -1, 0x09: -1, 0x12: -1, 0x15: -1, 0x16: -1, 0x1A: -1, 0x1C: -1, 0x1F: -1,
    0x26: -2,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Delivery:
    """One PUBLISH from the broker; ``packet_id`` is 0 for QoS 0 (nothing to ack)."""

    topic: str
    payload: bytes
    packet_id: int
    dup: bool
    retain: bool


@dataclass(frozen=True, slots=True)
class Connack5:
    session_present: bool
    reason_code: int
    """0 success; 0x80 and above a refusal (spec 3.2.2.2)."""
    server_keepalive_s: int | None = None
    """Server Keep Alive (0x13): the keepalive the client must use instead of its own."""


@dataclass(frozen=True, slots=True)
class Suback:
    packet_id: int
    reason_codes: tuple[int, ...]
    """Per filter: the granted QoS (0..2) or a refusal (0x80 and above, spec 3.9.3)."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason_code: int
    """Why the server ends the connection (spec 3.14.2.1), e.g. 0x8B shutting down."""


@dataclass(frozen=True, slots=True)
class Received5:
    """What one ``feed`` decoded. ``packet_ids`` are those of the QoS 1 deliveries."""

    deliveries: list[Delivery] = field(default_factory=list)
    packet_ids: list[int] = field(default_factory=list)
    control: list[Connack5 | Suback | Pingresp | Disconnect] = field(default_factory=list)


def _string(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def encode_connect5(
    client_id: str,
    *,
    keepalive_s: int,
    clean_start: bool,
    session_expiry_s: int,
    receive_maximum: int,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """CONNECT, protocol level 5, no will (spec 3.1). Raises ``ValueError`` for a value
    out of its field's range or an over-long string."""
    if not 0 <= keepalive_s <= 0xFFFF:
        raise ValueError("keepalive out of range")
    if not 0 <= session_expiry_s <= _U32:
        raise ValueError("session expiry out of range")
    if not 1 <= receive_maximum <= 0xFFFF:
        raise ValueError("receive maximum out of range")
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    flags |= 0x02 if clean_start else 0
    properties = struct.pack(
        ">BIBH", _SESSION_EXPIRY, session_expiry_s, _RECEIVE_MAXIMUM, receive_maximum
    )
    body = bytearray(_PROTOCOL)
    body.append(flags)
    body += keepalive_s.to_bytes(2, "big")
    body += encode_remaining_length(len(properties)) + properties
    body += _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return b"\x10" + encode_remaining_length(len(body)) + bytes(body)


def encode_subscribe(packet_id: int, filters: Sequence[str]) -> bytes:
    """SUBSCRIBE of every filter at QoS 1, no properties (spec 3.8). Raises ``ValueError``
    for no filters, an empty or over-long filter, or a packet id out of range."""
    if not 0 < packet_id <= MAX_PACKET_ID:
        raise ValueError("packet id out of range")
    if not filters:
        raise ValueError("no topic filters")
    body = bytearray(packet_id.to_bytes(2, "big"))
    body.append(0)  # property length
    for topic_filter in filters:
        if not topic_filter:
            raise ValueError("empty topic filter")
        body += _string(topic_filter)
        body.append(_SUBSCRIBE_QOS1)
    return b"\x82" + encode_remaining_length(len(body)) + bytes(body)


def encode_pubacks(packet_ids: Sequence[int]) -> bytes:
    """One PUBACK per id, in the given order; success needs no reason code (spec 3.4.2.1).
    Raises ``ValueError`` (from ``struct``) for an id out of 1..65535."""
    if not all(0 < packet_id <= MAX_PACKET_ID for packet_id in packet_ids):
        raise ValueError("packet id out of range")
    return struct.pack(f">{len(packet_ids)}I", *(0x4002_0000 | i for i in packet_ids))


def _varint_in(buf: bytes, pos: int, stop: int) -> tuple[int, int]:
    """A varint that must lie within ``buf[pos:stop]``."""
    parsed = decode_remaining_length(buf, pos)
    if parsed is None or parsed[1] > stop:
        raise MqttProtocolError("bad_length")
    return parsed


def _properties_end(buf: bytes, pos: int, stop: int) -> tuple[int, int]:
    """(start, end) of the property block whose length varint is at ``pos``."""
    if pos < stop and buf[pos] < 0x80:
        start, n = pos + 1, buf[pos]
    else:
        n, start = _varint_in(buf, pos, stop)
    if start + n > stop:
        raise MqttProtocolError("bad_length")
    return start, start + n


def _server_keepalive(buf: bytes, pos: int, end: int) -> int | None:
    """Walk a property block (spec 2.2.2.2) for Server Keep Alive."""
    found = None
    while pos < end:
        size = _PROPERTY_SIZE.get(buf[pos])
        if size is None:
            raise MqttProtocolError("bad_property")
        if buf[pos] == _SERVER_KEEP_ALIVE and pos + 3 <= end:
            found = (buf[pos + 1] << 8) | buf[pos + 2]
        pos += 1
        if size > 0:
            pos += size
        elif size == 0:
            pos = _varint_in(buf, pos, end)[1]
        else:
            for _ in range(-size):
                if pos + 2 > end:
                    raise MqttProtocolError("bad_property")
                pos += 2 + ((buf[pos] << 8) | buf[pos + 1])
    if pos != end:
        raise MqttProtocolError("bad_property")
    return found


class StreamDecoder5:
    """Packets from the broker -> client byte stream, fed in arbitrary pieces. The first
    packet must be the CONNACK and no other may be one. After a ``MqttProtocolError`` the
    stream is unusable (the connection must be dropped)."""

    __slots__ = ("_buffer", "_connected", "_held", "_held_bytes", "_need")

    def __init__(self) -> None:
        self._buffer = b""
        self._held: list[bytes] = []  # pieces of a large packet, joined once complete
        self._held_bytes = 0
        self._need = 0  # bytes the large incomplete packet needs in all (0: none held)
        self._connected = False

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete packet held back."""
        return len(self._buffer) + self._held_bytes

    def feed(self, data: bytes) -> Received5:
        out = Received5()
        if self._need:  # a large packet arriving in pieces: join only once it is whole
            self._held.append(data)
            self._held_bytes += len(data)
            if self._held_bytes < self._need:
                return out
            data, self._held, self._held_bytes, self._need = b"".join(self._held), [], 0, 0
        buf = self._buffer + data if self._buffer else data
        deliveries, ids, control = out.deliveries, out.packet_ids, out.control
        pos, end = 0, len(buf)
        while pos + 1 < end:
            first = buf[pos]
            kind = first & 0xF0
            if not self._connected and first != _CONNACK:
                raise MqttProtocolError("unexpected_packet")
            if kind != 0x30 and first not in (_CONNACK, _SUBACK, _PINGRESP, _DISCONNECT):
                raise MqttProtocolError("unexpected_packet")
            length = buf[pos + 1]
            start = pos + 2
            if length & 0x80:
                parsed = decode_remaining_length(buf, pos + 1)
                if parsed is None:
                    break
                length, start = parsed
            stop = start + length
            if stop > end:
                if stop - pos > 65_536:
                    self._need = stop - pos
                break
            if kind == 0x30:
                self._publish(buf, first, start, stop, deliveries, ids)
            else:
                control.append(self._control(buf, first, start, stop))
            pos = stop
        self._buffer = buf[pos:]
        if self._need:
            self._held, self._held_bytes, self._buffer = [self._buffer], len(self._buffer), b""
        return out

    @staticmethod
    def _publish(
        buf: bytes, first: int, start: int, stop: int, deliveries: list[Delivery], ids: list[int]
    ) -> None:
        qos = (first >> 1) & 3
        if qos == 2:
            raise MqttProtocolError("unexpected_qos2")
        if qos == 3 or (qos == 0 and first & 0x08):
            raise MqttProtocolError("bad_flags")
        if stop - start < 3:
            raise MqttProtocolError("bad_length")
        n = (buf[start] << 8) | buf[start + 1]
        pos = start + 2 + n
        if n == 0:  # a topic alias: never allowed (no Topic Alias Maximum was sent)
            raise MqttProtocolError("bad_topic")
        packet_id = 0
        if qos:
            if pos + 2 > stop:
                raise MqttProtocolError("bad_length")
            packet_id = (buf[pos] << 8) | buf[pos + 1]
            if packet_id == 0:
                raise MqttProtocolError("bad_packet_id")
            pos += 2
            ids.append(packet_id)
        if pos < stop and buf[pos] < 0x80:  # the property block, skipped
            pos += 1 + buf[pos]
            if pos > stop:
                raise MqttProtocolError("bad_length")
        else:
            pos = _properties_end(buf, pos, stop)[1]
        try:
            topic = buf[start + 2 : start + 2 + n].decode()
        except UnicodeDecodeError:
            raise MqttProtocolError("bad_topic") from None
        deliveries.append(
            Delivery(topic, buf[pos:stop], packet_id, bool(first & 0x08), bool(first & 0x01))
        )

    def _control(
        self, buf: bytes, first: int, start: int, stop: int
    ) -> Connack5 | Suback | Pingresp | Disconnect:
        length = stop - start
        if first == _PINGRESP:
            if length:
                raise MqttProtocolError("bad_length")
            return Pingresp()
        if first == _DISCONNECT:
            if length > 1 and _properties_end(buf, start + 1, stop)[1] != stop:
                raise MqttProtocolError("bad_length")
            return Disconnect(buf[start] if length else 0)
        if first == _SUBACK:
            if length < 4:
                raise MqttProtocolError("bad_length")
            packet_id = (buf[start] << 8) | buf[start + 1]
            if packet_id == 0:
                raise MqttProtocolError("bad_packet_id")
            codes = buf[_properties_end(buf, start + 2, stop)[1] : stop]
            if not codes:
                raise MqttProtocolError("bad_length")
            return Suback(packet_id, tuple(codes))
        if self._connected:  # a second CONNACK
            raise MqttProtocolError("unexpected_packet")
        if length < 2:
            raise MqttProtocolError("bad_length")
        flags, code = buf[start], buf[start + 1]
        if flags & 0xFE:
            raise MqttProtocolError("bad_flags")
        keepalive = None
        if length > 2:  # a 3.1.1 broker refusing level 5 answers with no properties
            props, props_end = _properties_end(buf, start + 2, stop)
            if props_end != stop:
                raise MqttProtocolError("bad_length")
            keepalive = _server_keepalive(buf, props, props_end)
        self._connected = True
        return Connack5(bool(flags & 1), code, keepalive)
