"""The data connection's MQTT 3.1.1 codec: golden bytes from the OASIS MQTT 3.1.1
specification, round trips, and the incremental decoder under arbitrary splits and
garbage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.transport.mqtt_codec import (
    DISCONNECT,
    MAX_REMAINING_LENGTH,
    PINGREQ,
    Connack,
    InvalidPublishError,
    MqttProtocolError,
    Pingresp,
    StreamDecoder,
    decode_remaining_length,
    encode_connect,
    encode_publish,
    encode_remaining_length,
    encode_topic,
)

# -- golden bytes (spec section numbers in the ids) -------------------------------------------


@pytest.mark.parametrize(
    ("value", "raw"),
    [  # spec 2.2.3, Table 2.4: the bounds of each length
        (0, "00"), (127, "7f"), (128, "8001"), (16_383, "ff7f"), (16_384, "808001"),
        (2_097_151, "ffff7f"), (2_097_152, "80808001"), (268_435_455, "ffffff7f"),
        (321, "c102"),  # the worked example of 2.2.3
    ],
)  # fmt: skip
def test_remaining_length_golden(value: int, raw: str) -> None:
    assert encode_remaining_length(value) == bytes.fromhex(raw)
    assert decode_remaining_length(bytes.fromhex(raw), 0) == (value, len(raw) // 2)


def test_remaining_length_limits() -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_remaining_length(MAX_REMAINING_LENGTH + 1)
    assert decode_remaining_length(b"\x80\x80", 0) is None  # incomplete
    with pytest.raises(MqttProtocolError) as raised:
        decode_remaining_length(b"\x80\x80\x80\x80\x01", 0)  # a fifth byte
    assert raised.value.reason == "bad_varint"


def test_connect_golden() -> None:
    """Spec 3.1: header 0x10, protocol name "MQTT", level 4, flags (3.1.2.3: user name
    0x80, password 0x40, clean session 0x02), keepalive (3.1.2.10), then client id, user
    name and password, each with a two-byte length."""
    raw = encode_connect("gw", keepalive_s=10, clean_session=False, username="u", password="pw")
    body = "00044d51545404c0000a0002677700017500027077"
    assert raw == bytes.fromhex("10" + f"{len(body) // 2:02x}" + body)
    bare = encode_connect("c", keepalive_s=60, clean_session=True)
    assert bare == bytes.fromhex("100d00044d5154540402003c000163")


def test_connect_rejects_what_the_spec_forbids() -> None:
    with pytest.raises(ValueError, match="password needs a user name"):
        encode_connect("c", keepalive_s=5, clean_session=False, password="x")
    with pytest.raises(ValueError, match="keepalive"):
        encode_connect("c", keepalive_s=70_000, clean_session=False)


def test_publish_golden() -> None:
    """Spec 3.3.2.3, Figure 3.12: topic "a/b", packet identifier 10; QoS 1 sets bits 1-2
    of the first byte (0x32), DUP is bit 3 (0x3a)."""
    raw = encode_publish(encode_topic("a/b"), b"hi", 10)
    assert raw == bytes.fromhex("32090003612f62000a6869")
    assert encode_publish(encode_topic("a/b"), b"", 10, dup=True)[0] == 0x3A
    long = encode_publish(encode_topic("t"), bytes(200), 65_535)
    assert long[:3] == bytes((0x32, (205 & 0x7F) | 0x80, 205 >> 7))
    assert long[3:8] == bytes.fromhex("000174ffff")


def test_fixed_packets_golden() -> None:
    """Spec 3.12, 3.14: PINGREQ 0xc0 0x00, DISCONNECT 0xe0 0x00."""
    assert (PINGREQ, DISCONNECT) == (b"\xc0\x00", b"\xe0\x00")


@pytest.mark.parametrize(
    ("topic", "reason"),
    [("", "empty_topic"), ("a/+/b", "topic_wildcard"), ("a/#", "topic_wildcard"),
     ("a\x00b", "topic_wildcard"), ("\ud800", "topic_not_utf8"),
     ("x" * 65_536, "topic_too_long")],
)  # fmt: skip
def test_topics_a_broker_must_refuse(topic: str, reason: str) -> None:
    with pytest.raises(InvalidPublishError) as raised:
        encode_topic(topic)
    assert raised.value.reason == reason
    assert topic[:8] not in str(raised.value) or not topic  # no topic in the message


class _Sized:
    """Stands in for a payload of ``n`` bytes without allocating them (only ``len`` is
    taken before the size check refuses it)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def test_publish_too_large_and_bad_ids() -> None:
    field = encode_topic("t")
    with pytest.raises(InvalidPublishError) as raised:
        encode_publish(field, _Sized(MAX_REMAINING_LENGTH - len(field) - 1), 1)  # type: ignore[arg-type]
    assert raised.value.reason == "too_large"
    for packet_id in (0, 65_536):
        with pytest.raises(ValueError, match="packet id"):
            encode_publish(field, b"", packet_id)


# -- the decoder --------------------------------------------------------------------------------

STREAM = bytes.fromhex(
    "20020100"  # CONNACK, session present, accepted (3.2)
    "4002000a"  # PUBACK 10 (3.4)
    "d000"  # PINGRESP (3.13)
    "4002ffff"  # PUBACK 65535
    "20020005"  # CONNACK, not authorized
)


def test_decoder_golden_stream() -> None:
    got = StreamDecoder().feed(STREAM)
    assert got.puback_ids == [10, 65_535]
    assert got.control == [Connack(True, 0), Pingresp(), Connack(False, 5)]


@given(st.lists(st.integers(1, len(STREAM) - 1), unique=True).map(sorted))
def test_decoder_any_split_decodes_the_same(cuts: list[int]) -> None:
    decoder, acks, control = StreamDecoder(), [], []
    for lo, hi in zip([0, *cuts], [*cuts, len(STREAM)], strict=True):
        got = decoder.feed(STREAM[lo:hi])
        acks += got.puback_ids
        control += got.control
    assert (acks, control) == ([10, 65_535], [Connack(True, 0), Pingresp(), Connack(False, 5)])
    assert decoder.buffered == 0


@given(st.lists(st.integers(1, 65_535), max_size=50), st.data())
def test_publish_ids_round_trip_through_pubacks(ids: list[int], data: st.DataObject) -> None:
    """Whatever ids go out come back, in order, however the PUBACK stream is split."""
    stream = b"".join(b"\x40\x02" + i.to_bytes(2, "big") for i in ids)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)))))
    decoder, got = StreamDecoder(), []
    for lo, hi in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += decoder.feed(stream[lo:hi]).puback_ids
    assert got == ids


@given(st.text(min_size=1, max_size=40).filter(lambda t: not set(t) & set("+#\x00")),
       st.binary(max_size=300), st.integers(1, 65_535))  # fmt: skip
def test_publish_round_trip(topic: str, payload: bytes, packet_id: int) -> None:
    """A PUBLISH parses back (fixed header, varint, topic, id, payload) to its parts."""
    try:
        field = encode_topic(topic)
    except InvalidPublishError:
        return  # lone surrogates
    raw = encode_publish(field, payload, packet_id)
    assert raw[0] == 0x32
    parsed = decode_remaining_length(raw, 1)
    assert parsed is not None
    length, start = parsed
    assert len(raw) == start + length
    n = int.from_bytes(raw[start : start + 2], "big")
    assert raw[start + 2 : start + 2 + n].decode() == topic
    assert int.from_bytes(raw[start + 2 + n : start + 4 + n], "big") == packet_id
    assert raw[start + 4 + n :] == payload


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("3000", "unexpected_packet"),  # a PUBLISH to a client that subscribed to nothing
     ("4100", "unexpected_packet"),  # PUBACK with reserved flags set
     ("400300010a", "bad_length"), ("d001", "bad_length"), ("2003000000", "bad_length"),
     ("20020200", "bad_flags"), ("40020000", "bad_packet_id"),
     ("4080808080", "bad_varint"), ("00", "unexpected_packet")],
)  # fmt: skip
def test_decoder_rejects_garbage_clearly(raw: str, reason: str) -> None:
    with pytest.raises(MqttProtocolError) as raised:
        StreamDecoder().feed(bytes.fromhex(raw))
    assert raised.value.reason == reason


@given(st.lists(st.binary(max_size=16), max_size=20))
def test_decoder_fuzz_only_protocol_errors(chunks: list[bytes]) -> None:
    """Arbitrary bytes in arbitrary pieces: decoded packets or ``MqttProtocolError``,
    never another exception; and what was decoded before the error stays valid."""
    decoder, reason = StreamDecoder(), None
    try:
        for chunk in chunks:
            got = decoder.feed(chunk)
            assert all(0 < i <= 65_535 for i in got.puback_ids)
            assert all(isinstance(p, Connack | Pingresp) for p in got.control)
    except MqttProtocolError as exc:
        reason = exc.reason
    assert reason in {
        None, "unexpected_packet", "bad_length", "bad_flags", "bad_varint", "bad_packet_id"
    }  # fmt: skip
    assert decoder.buffered <= 3
