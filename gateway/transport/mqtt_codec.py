"""MQTT 3.1.1 packets for the data connection: bytes in, bytes out (docs/transport.md §2).

Role: the few packets a QoS 1 publisher needs (OASIS MQTT 3.1.1, sections 2 and 3):
CONNECT (no will), PUBLISH at QoS 1, PINGREQ and DISCONNECT out; CONNACK, PUBACK and
PINGRESP in, through an incremental decoder (``StreamDecoder``) that accepts the broker's
byte stream split anywhere. Anything else the broker sends, or a malformed packet, is a
``MqttProtocolError`` -- never another exception.

Must not: do I/O, import asyncio or an MQTT library, keep state beyond the decoder's
unparsed tail, log (a topic may hold a subject id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from devices.errors import BiogwError

__all__ = [
    "DISCONNECT",
    "MAX_REMAINING_LENGTH",
    "PINGREQ",
    "Connack",
    "InvalidPublishError",
    "MqttCodecError",
    "MqttProtocolError",
    "Pingresp",
    "Received",
    "StreamDecoder",
    "decode_remaining_length",
    "encode_connect",
    "encode_publish",
    "encode_remaining_length",
    "encode_topic",
]

MAX_REMAINING_LENGTH: Final = 268_435_455
"""The largest remaining length four varint bytes hold (spec 2.2.3)."""
MAX_PACKET_ID: Final = 65_535
PINGREQ: Final = b"\xc0\x00"
DISCONNECT: Final = b"\xe0\x00"
_PROTOCOL: Final = b"\x00\x04MQTT\x04"  # protocol name and level 4 (3.1.1)
_PUBLISH_QOS1: Final = 0x32
_DUP: Final = 0x08
_CONNACK, _PUBACK, _PINGRESP = 0x20, 0x40, 0xD0
_WILDCARDS: Final = frozenset(b"+#\x00")


class MqttCodecError(BiogwError):
    """Base of the codec's errors; ``reason`` is a short tag (never a topic)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"mqtt codec: {reason}")


class InvalidPublishError(MqttCodecError):
    """A PUBLISH that cannot be encoded: ``empty_topic``, ``topic_too_long``,
    ``topic_not_utf8``, ``topic_wildcard`` (``+``, ``#`` or NUL) or ``too_large``."""


class MqttProtocolError(MqttCodecError):
    """The broker sent something a 3.1.1 QoS 1 publisher does not expect:
    ``unexpected_packet``, ``bad_length``, ``bad_flags``, ``bad_varint``,
    ``bad_packet_id``."""


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    return_code: int
    """0 accepted; 1 protocol version, 2 client id, 3 server unavailable, 4 bad user name
    or password, 5 not authorized (spec 3.2.2.3)."""


@dataclass(frozen=True, slots=True)
class Pingresp:
    pass


@dataclass(frozen=True, slots=True)
class Received:
    """What one ``feed`` decoded, in arrival order per list."""

    puback_ids: list[int] = field(default_factory=list)
    control: list[Connack | Pingresp] = field(default_factory=list)


def encode_remaining_length(n: int) -> bytes:
    """The variable-length integer of spec 2.2.3 (1 to 4 bytes)."""
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def decode_remaining_length(data: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(value, position after it) of the varint at ``pos``, or None when ``data`` ends
    first. Raises ``MqttProtocolError("bad_varint")`` past four bytes."""
    value, shift = 0, 0
    for i in range(pos, min(pos + 4, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    if len(data) - pos >= 4:
        raise MqttProtocolError("bad_varint")
    return None


def _string(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return len(value).to_bytes(2, "big") + value


def encode_connect(
    client_id: str,
    *,
    keepalive_s: int,
    clean_session: bool,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """CONNECT, protocol level 4, no will (spec 3.1). Raises ``ValueError`` for a password
    without a user name (3.1.2.9), a keepalive beyond 65535 s, or an over-long string."""
    if password is not None and username is None:
        raise ValueError("a password needs a user name")
    if not 0 <= keepalive_s <= 0xFFFF:
        raise ValueError("keepalive out of range")
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    flags |= 0x02 if clean_session else 0
    body = bytearray(_PROTOCOL)
    body.append(flags)
    body += keepalive_s.to_bytes(2, "big")
    body += _string(client_id.encode())
    if username is not None:
        body += _string(username.encode())
    if password is not None:
        body += _string(password.encode())
    return b"\x10" + encode_remaining_length(len(body)) + bytes(body)


def encode_topic(topic: str) -> bytes:
    """The topic as a PUBLISH carries it (two length bytes, UTF-8). Raises
    ``InvalidPublishError`` for what a broker must refuse (spec 4.7)."""
    if not topic:
        raise InvalidPublishError("empty_topic")
    try:
        raw = topic.encode()
    except UnicodeEncodeError:
        raise InvalidPublishError("topic_not_utf8") from None
    if len(raw) > 0xFFFF:
        raise InvalidPublishError("topic_too_long")
    if not _WILDCARDS.isdisjoint(raw):
        raise InvalidPublishError("topic_wildcard")
    return len(raw).to_bytes(2, "big") + raw


def encode_publish(
    topic_field: bytes, payload: bytes, packet_id: int, *, dup: bool = False
) -> bytes:
    """PUBLISH at QoS 1, not retained (spec 3.3); ``topic_field`` from ``encode_topic``.
    Raises ``InvalidPublishError("too_large")`` past the protocol's size limit."""
    n = len(topic_field) + 2 + len(payload)
    first = _PUBLISH_QOS1 | _DUP if dup else _PUBLISH_QOS1
    if n < 128:
        head = bytes((first, n))
    elif n < 16384:
        head = bytes((first, (n & 0x7F) | 0x80, n >> 7))
    elif n <= MAX_REMAINING_LENGTH:
        head = bytes((first,)) + encode_remaining_length(n)
    else:
        raise InvalidPublishError("too_large")
    if not 0 < packet_id <= MAX_PACKET_ID:
        raise ValueError("packet id out of range")
    return b"".join((head, topic_field, packet_id.to_bytes(2, "big"), payload))


class StreamDecoder:
    """Packets from the broker -> client byte stream, fed in arbitrary pieces. After a
    ``MqttProtocolError`` the stream is unusable (the connection must be dropped)."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete packet held back."""
        return len(self._buffer)

    def feed(self, data: bytes) -> Received:
        buf = self._buffer + data if self._buffer else data
        out = Received()
        acks, control = out.puback_ids, out.control
        pos, end = 0, len(buf)
        while pos < end:
            first = buf[pos]
            if first == _PUBACK and pos + 4 <= end and buf[pos + 1] == 2:  # the hot path
                packet_id = (buf[pos + 2] << 8) | buf[pos + 3]
                if packet_id == 0:
                    raise MqttProtocolError("bad_packet_id")
                acks.append(packet_id)
                pos += 4
                continue
            if first not in (_PUBACK, _PINGRESP, _CONNACK):
                raise MqttProtocolError("unexpected_packet")
            parsed = decode_remaining_length(buf, pos + 1)
            if parsed is None:
                break
            length, start = parsed
            if length != (0 if first == _PINGRESP else 2):
                raise MqttProtocolError("bad_length")
            if start + length > end:
                break
            pos = start + length  # a complete PUBACK took the hot path
            if first == _PINGRESP:
                control.append(Pingresp())
            else:
                flags, code = buf[start], buf[start + 1]
                if flags & 0xFE:
                    raise MqttProtocolError("bad_flags")
                control.append(Connack(bool(flags & 1), code))
        self._buffer = buf[pos:]
        return out
