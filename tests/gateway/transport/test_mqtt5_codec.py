"""The subscriber's MQTT 5 codec: golden bytes from the OASIS MQTT 5.0 specification,
round trips through an independent broker-side encoder written here, the incremental
decoder under arbitrary splits, and malformed input (only ``MqttProtocolError``)."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.transport.mqtt5_codec import (
    Connack5,
    Delivery,
    Disconnect,
    MqttProtocolError,
    Pingresp,
    StreamDecoder5,
    Suback,
    encode_connect5,
    encode_pubacks,
    encode_subscribe,
)
from gateway.transport.mqtt_codec import encode_remaining_length

CONNACK = bytes.fromhex("2003000000")  # success, no session, empty properties


def _publish(topic: str, payload: bytes, packet_id: int = 0, *, dup: bool = False,
             retain: bool = False, properties: bytes = b"") -> bytes:  # fmt: skip
    """A PUBLISH as a broker sends it (spec 3.3), written independently of the codec."""
    raw = topic.encode()
    body = len(raw).to_bytes(2, "big") + raw
    if packet_id:
        body += packet_id.to_bytes(2, "big")
    body += encode_remaining_length(len(properties)) + properties + payload
    first = 0x30 | (0x08 if dup else 0) | (0x02 if packet_id else 0) | (0x01 if retain else 0)
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def _decoded(stream: bytes, cuts: list[int] | None = None) -> tuple[list[Delivery], list[object]]:
    decoder = StreamDecoder5()
    deliveries: list[Delivery] = []
    control: list[object] = []
    bounds = [0, *(cuts or []), len(stream)]
    for a, b in itertools.pairwise(bounds):
        got = decoder.feed(stream[a:b])
        deliveries += got.deliveries
        assert got.packet_ids == [d.packet_id for d in got.deliveries if d.packet_id]
        control += got.control
    assert decoder.buffered == 0
    return deliveries, control


# -- golden bytes -------------------------------------------------------------------------


def test_connect_golden() -> None:
    """Spec 3.1: protocol name "MQTT", level 5, flags (clean start 0x02, user name 0x80,
    password 0x40), keepalive, property length and properties (3.1.2.11: Session Expiry
    Interval 0x11 as four bytes, Receive Maximum 0x21 as two), then the payload."""
    raw = encode_connect5(
        "c", keepalive_s=60, clean_start=True, session_expiry_s=3600, receive_maximum=2000
    )
    assert raw == bytes.fromhex("101600044d5154540502003c081100000e102107d0000163")
    auth = encode_connect5("c", keepalive_s=5, clean_start=False, session_expiry_s=0,
                           receive_maximum=1, username="u", password="pw")  # fmt: skip
    assert auth[9] == 0xC0
    assert auth.endswith(bytes.fromhex("00016300017500027077"))


def test_connect_rejects_out_of_range() -> None:
    for field, value in (("keepalive_s", 70_000), ("session_expiry_s", 1 << 32),
                         ("receive_maximum", 0), ("receive_maximum", 65_536)):  # fmt: skip
        args = {"keepalive_s": 5, "session_expiry_s": 0, "receive_maximum": 10, field: value}
        with pytest.raises(ValueError, match="out of range"):
            encode_connect5("c", clean_start=False, **args)


def test_subscribe_and_puback_golden() -> None:
    """Spec 3.8: 0x82, packet id, empty properties, each filter then its options byte
    (QoS 1, no local 0, retain as published 0, retain handling 0). Spec 3.4.2.1: a
    success PUBACK may omit the reason code: four bytes."""
    assert encode_subscribe(1, ["a/b"]) == bytes.fromhex("82090001000003612f6201")
    two = encode_subscribe(0xFFFF, ["$share/g/x", "y"])
    assert two == bytes.fromhex("8214ffff00000a" + b"$share/g/x".hex() + "0100017901")
    assert encode_pubacks([1, 0x1234, 1]) == bytes.fromhex("400200014002123440020001")
    assert encode_pubacks([]) == b""
    for bad in ([0], [65_536]):
        with pytest.raises(ValueError, match="packet id"):
            encode_pubacks(bad)
    with pytest.raises(ValueError, match="no topic filters"):
        encode_subscribe(1, [])
    with pytest.raises(ValueError, match="empty topic filter"):
        encode_subscribe(1, [""])
    with pytest.raises(ValueError, match="packet id"):
        encode_subscribe(0, ["a"])


def test_decoder_golden_stream() -> None:
    stream = bytes.fromhex(
        "2006"
        "01"
        "00"
        "03"
        "130009"  # CONNACK: session present, Server Keep Alive 9 s
        "9004"
        "0001"
        "00"
        "01"  # SUBACK id 1, granted QoS 1
        "320a"
        "0003612f62"
        "000a"
        "00"
        "6869"  # PUBLISH QoS 1 id 10 "a/b" "hi"
        "3107"
        "000174"
        "02"
        "0101"
        "78"  # PUBLISH QoS 0 retained, payload format property
        "3a06"
        "000174"
        "0002"
        "00"  # PUBLISH QoS 1 DUP id 2, empty payload
        "d000"  # PINGRESP
        "e0028b00"  # DISCONNECT: server shutting down
    )
    deliveries, control = _decoded(stream)
    assert deliveries == [
        Delivery("a/b", b"hi", 10, dup=False, retain=False),
        Delivery("t", b"x", 0, dup=False, retain=True),
        Delivery("t", b"", 2, dup=True, retain=False),
    ]
    assert control == [Connack5(True, 0, 9), Suback(1, (1,)), Pingresp(), Disconnect(0x8B)]


def test_connack_forms() -> None:
    """A refusal with a Reason String property, and a 3.1.1 broker's answer to level 5
    (spec 3.2.2.2: 0x84 unsupported protocol version; 3.1.1 return code 1)."""
    reason = b"\x1f\x00\x03why"
    refusal = b"\x20" + bytes((3 + len(reason), 0, 0x87, len(reason))) + reason
    assert _decoded(refusal)[1] == [Connack5(False, 0x87, None)]
    assert _decoded(bytes.fromhex("20020001"))[1] == [Connack5(False, 1, None)]
    assert _decoded(bytes.fromhex("2003008400"))[1] == [Connack5(False, 0x84, None)]


# -- round trips and splits -----------------------------------------------------------------

_deliveries = st.lists(
    st.builds(
        Delivery,
        topic=st.text(min_size=1, max_size=30),
        payload=st.binary(max_size=300),
        packet_id=st.one_of(st.just(0), st.integers(1, 65_535)),
        dup=st.booleans(),
        retain=st.booleans(),
    ).filter(lambda d: d.packet_id or not d.dup),  # DUP is QoS 1 only (spec 3.3.1.1)
    max_size=12,
)


@given(_deliveries, st.binary(max_size=200), st.data())
def test_publish_round_trip_split_anywhere(
    sent: list[Delivery], user_property: bytes, data: st.DataObject
) -> None:
    """Any PUBLISHes (QoS 0 and 1, properties short or longer than 127 bytes, so a
    one- or two-byte property length) decode the same however the stream is cut."""
    prop = b"\x26" + len(user_property).to_bytes(2, "big") + user_property + b"\x00\x00"
    stream = CONNACK + b"".join(
        _publish(
            d.topic,
            d.payload,
            d.packet_id,
            dup=d.dup,
            retain=d.retain,
            properties=prop if i % 2 else b"",
        )
        for i, d in enumerate(sent)
    )
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), unique=True).map(sorted))
    deliveries, control = _decoded(stream, cuts)
    assert deliveries == sent
    assert control == [Connack5(False, 0, None)]


def test_large_publish_in_small_pieces() -> None:
    """A PUBLISH larger than a read is held in pieces and joined once, then decoded."""
    payload = bytes(range(256)) * 1200  # 300 KiB
    stream = CONNACK + _publish("big", payload, 7) + _publish("next", b"n", 8)
    decoder = StreamDecoder5()
    got: list[Delivery] = []
    for i in range(0, len(stream), 1000):
        got += decoder.feed(stream[i : i + 1000]).deliveries
    assert got == [
        Delivery("big", payload, 7, False, False),
        Delivery("next", b"n", 8, False, False),
    ]
    assert decoder.buffered == 0


# -- malformed input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("3000", "unexpected_packet"),  # a PUBLISH before the CONNACK
     ("2003000000" "2003000000", "unexpected_packet"),  # a second CONNACK
     ("2003000000" "4002000a", "unexpected_packet"),  # a PUBACK: we never publish
     ("2003000000" "f000", "unexpected_packet"),  # AUTH
     ("2003000000" "9102000100", "unexpected_packet"),  # SUBACK with bad fixed flags
     ("2003000000" "3406000174000100", "unexpected_qos2"),
     ("2003000000" "3606000174000100", "bad_flags"),  # QoS 3
     ("2003000000" "380400017400", "bad_flags"),  # DUP on QoS 0
     ("2003000000" "30050000000000", "bad_topic"),  # empty topic: an alias
     ("2003000000" "3005000280ff00", "bad_topic"),  # not UTF-8
     ("2003000000" "3206000174000000", "bad_packet_id"),
     ("2003000000" "320400017400", "bad_length"),  # no packet id
     ("2003000000" "3004000174" "05", "bad_length"),  # properties past the end
     ("2003000000" "3004000174" "80", "bad_length"),  # property length cut by the end
     ("2003000000" "d00100", "bad_length"),
     ("2003000000" "900300010001", "bad_length"),  # SUBACK without reason codes
     ("2003000000" "900400000001", "bad_packet_id"),
     ("2004010000" "00", "bad_length"),  # property block not closing it
     ("2003020000", "bad_flags"),
     ("2001" "00", "bad_length"),
     ("2005000002" "ff00", "bad_property"),  # unknown property id
     ("2005000002" "1300", "bad_property"),  # a two-byte property cut short
     ("2003000000" "e0028b05", "bad_length"),  # DISCONNECT properties past the end
     ("2003000000" "30ffffffff01", "bad_varint")],
)  # fmt: skip
def test_malformed_input_is_a_protocol_error(raw: str, reason: str) -> None:
    with pytest.raises(MqttProtocolError) as raised:
        _decoded(bytes.fromhex(raw))
    assert raised.value.reason == reason


def mqtt5_stream_target(data: bytes) -> object:
    """The fuzz target (for fuzz/targets.py): a CONNACK, then ``data`` fed to the
    subscriber's decoder in pieces whose sizes the first byte picks, so splits are
    fuzzed too. Only ``MqttProtocolError`` (an ``MqttCodecError``) may escape."""
    decoder = StreamDecoder5()
    decoder.feed(b"\x20\x03\x00\x00\x00")
    step = (data[0] % 64 + 1) if data else 1
    out = []
    for i in range(0, len(data), step):
        out.append(decoder.feed(data[i : i + step]))
    return out


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_fuzz_target_raises_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(MqttProtocolError):
        mqtt5_stream_target(data)


@given(st.lists(st.binary(max_size=24), max_size=20), st.booleans())
def test_arbitrary_chunks_raise_only_protocol_errors(chunks: list[bytes], connack: bool) -> None:
    decoder = StreamDecoder5()
    try:
        if connack:
            decoder.feed(CONNACK)
        for chunk in chunks:
            decoder.feed(chunk)
    except MqttProtocolError:
        pass
