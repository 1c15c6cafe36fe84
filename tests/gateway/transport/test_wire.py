"""Tests of the MQTT payload format (gateway.transport.wire).

Golden vectors are the worked examples of docs/wire-format.md section 6 (our own
format, so the doc is the source): the hex is parsed out of the doc, so doc and code
cannot drift. Then hypothesis round-trips of all four kinds (samples bit-exact), fuzzing
(arbitrary bytes and mutated valid messages raise only ``WireFormatError``), length/CRC
checks, and Invariant 2: a research frame or gap message carries no subject id.
"""

from __future__ import annotations

import contextlib
import re
import zlib
from dataclasses import replace
from pathlib import Path
from uuid import UUID

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from devices.errors import BiogwError, FrameEncodeError
from devices.frame import Frame, Quality, StreamKind, Timebase, Unit
from gateway.router import ClinicalFrame, ClinicalGap, ResearchFrame, ResearchGap
from gateway.transport.wire import (
    CAUSE_CODES,
    HEADER_SIZE,
    STREAM_CODES,
    TIMEBASE_CODES,
    UNIT_CODES,
    Gap,
    GapCause,
    MessageKind,
    WireFormatError,
    WireMessage,
    decode,
    encode_clinical,
    encode_clinical_gap,
    encode_gap,
    encode_research,
    encode_research_gap,
)

DOC = Path(__file__).resolve().parents[3] / "docs" / "wire-format.md"
SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)
SUBJECT = UUID("12345678-9abc-4def-8123-456789abcdef")
RECORD = UUID("00000000-0000-4000-8000-000000000001")
T0 = 1_700_000_000_000_000_000
WEEK_NS = 7 * 86_400 * 10**9


def doc_examples() -> dict[str, bytes]:
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"<!-- example: (\S+) -->\n```hex\n(.*?)\n```", text, re.S)
    return {name: bytes.fromhex(body) for name, body in found}


GOLDEN: dict[str, WireMessage] = {
    "clinical-ecg": ClinicalFrame(
        SUBJECT,
        Frame(
            "g1",
            StreamKind.ECG,
            T0,
            Timebase.UTC,
            np.array([-12.5, 0.0, 1024.0]),
            Unit.MICROVOLT,
            fs_hz=130.0,
            sequence=42,
            quality=Quality.CONTACT_SUPPORTED,
        ),
        RECORD,
    ),
    "research-rr": ResearchFrame(
        "ps-7f",
        StreamKind.RR,
        T0 - WEEK_NS,
        np.array([812.0, 790.5]),
        Unit.MILLISECOND,
        None,
        np.array([0, 790_500_000], dtype=np.int64),
        None,
        Quality.NONE,
        (),
    ),
    "research-accel": ResearchFrame(
        "ps",
        StreamKind.ACCEL,
        1_000_000_000,
        np.array([[1.0, -2.0, 1000.0]]),
        Unit.MILLI_G,
        50.0,
        None,
        7,
        Quality.NONE,
        ("x", "y", "z"),
    ),
    "clinical-gap-link-loss": ClinicalGap(
        SUBJECT,
        "g1",
        Gap(StreamKind.ECG, T0, T0 + round(1299 * 1e9 / 130), 1300, GapCause.LINK_LOSS),
        RECORD,
    ),
    "research-gap-overflow": ResearchGap(
        "ps-7f",
        Gap(
            StreamKind.RR,
            T0 - WEEK_NS,
            T0 - WEEK_NS + 2_400_000_000,
            2,
            GapCause.QUEUE_OVERFLOW,
        ),
    ),
}


def encode(value: WireMessage) -> bytes:
    if isinstance(value, ClinicalFrame):
        return encode_clinical(value)
    if isinstance(value, ResearchFrame):
        return encode_research(value)
    if isinstance(value, ClinicalGap):
        return encode_clinical_gap(value)
    return encode_research_gap(value)


def same_array(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same(got: WireMessage, want: WireMessage) -> None:
    """Field-by-field equality; arrays compared bit for bit (NaN, -0.0 included)."""
    assert type(got) is type(want)
    if isinstance(want, ClinicalGap | ResearchGap):
        assert got == want
        return
    if isinstance(want, ClinicalFrame):
        assert isinstance(got, ClinicalFrame)
        assert (got.subject_id, got.consent_record_id) == (want.subject_id, want.consent_record_id)
        g, w = got.frame, want.frame
        assert (g.device_key, g.timebase) == (w.device_key, w.timebase)
    else:
        assert isinstance(got, ResearchFrame)
        g, w = got, want  # type: ignore[assignment]
        assert got.pseudonym == want.pseudonym
    assert (g.stream, g.time_ns, g.unit, g.fs_hz, g.sequence, g.quality, g.channels) == (
        w.stream,
        w.time_ns,
        w.unit,
        w.fs_hz,
        w.sequence,
        w.quality,
        w.channels,
    )
    assert same_array(g.samples, w.samples)
    assert same_array(g.offsets_ns, w.offsets_ns)
    assert not g.samples.flags.writeable


# ---------------------------------------------------------------- golden vectors


def test_doc_has_every_golden_example() -> None:
    assert set(doc_examples()) == set(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_encode_matches_doc(name: str) -> None:
    assert encode(GOLDEN[name]) == doc_examples()[name]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_decode_matches_value(name: str) -> None:
    assert_same(decode(doc_examples()[name]), GOLDEN[name])


def test_every_enum_member_has_a_distinct_code() -> None:
    for enum_type, table in (
        (StreamKind, STREAM_CODES),
        (Unit, UNIT_CODES),
        (Timebase, TIMEBASE_CODES),
        (GapCause, CAUSE_CODES),
    ):
        assert set(table) == set(enum_type)
        assert len(set(table.values())) == len(table)
        assert all(1 <= c <= 255 for c in table.values())


def test_crc_is_zlib_crc32_of_header_and_body() -> None:
    msg = doc_examples()["clinical-ecg"]
    assert int.from_bytes(msg[-4:], "little") == zlib.crc32(msg[:-4])
    assert zlib.crc32(b"123456789") == 0xCBF43926


# ---------------------------------------------------------------- round trips

texts = st.text(max_size=20).filter(lambda s: len(s.encode("utf-8")) <= 255)
floats64 = st.floats(allow_nan=True, allow_infinity=True, width=64)
i64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def frame_fields(draw: st.DrawFn) -> dict[str, object]:
    n = draw(st.integers(0, 40))
    columns = draw(st.sampled_from([0, 0, 3, 1, 2]))
    shape = (n,) if columns == 0 else (n, columns)
    samples = draw(hnp.arrays(np.float64, shape, elements=floats64))
    irregular = draw(st.booleans())
    offsets = None
    fs_hz = None
    if irregular:
        offsets = draw(hnp.arrays(np.int64, (n,), elements=st.integers(-(2**62), 2**62)))
    else:
        fs_hz = draw(st.floats(1e-3, 1e6))
    return {
        "stream": draw(st.sampled_from(list(StreamKind))),
        "time_ns": draw(st.integers(-(2**62), 2**62)),
        "samples": samples,
        "unit": draw(st.sampled_from(list(Unit))),
        "fs_hz": fs_hz,
        "offsets_ns": offsets,
        "sequence": draw(st.none() | st.integers(0, 2**64 - 1)),
        "quality": Quality(draw(st.integers(0, 31))),
        "channels": tuple(draw(st.lists(texts, max_size=4))),
    }


clinical_frames = st.builds(
    lambda subject, record, key, tb, f: ClinicalFrame(
        subject,
        Frame(device_key=key, timebase=tb, **f),
        record,
    ),
    st.uuids(),
    st.uuids(),
    texts,
    st.sampled_from(list(Timebase)),
    frame_fields(),
)
research_frames = st.builds(
    lambda pseudonym, f: ResearchFrame(pseudonym=pseudonym, **f),
    texts,
    frame_fields(),
)


@st.composite
def gaps(draw: st.DrawFn) -> Gap:
    start = draw(i64)
    end = draw(st.integers(start, 2**63 - 1))
    return Gap(
        draw(st.sampled_from(list(StreamKind))),
        start,
        end,
        draw(st.integers(0, 2**64 - 1)),
        draw(st.sampled_from(list(GapCause))),
    )


clinical_gaps = st.builds(ClinicalGap, st.uuids(), texts, gaps(), st.uuids())
research_gaps = st.builds(ResearchGap, texts, gaps())
messages = clinical_frames | research_frames | clinical_gaps | research_gaps


@SETTINGS
@given(messages)
def test_round_trip_is_exact(value: WireMessage) -> None:
    data = encode(value)
    assert_same(decode(data), value)
    assert encode(decode(data)) == data


# ---------------------------------------------------------------- malformed input


@SETTINGS
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_raise_only_wire_format_error(data: bytes) -> None:
    with contextlib.suppress(WireFormatError):
        decode(data)
    assert issubclass(WireFormatError, BiogwError)


def _resealed(msg: bytes, body: bytes) -> bytes:
    """``msg``'s header with ``body`` (length fixed up) and a valid CRC: exercises the
    body checks behind the CRC."""
    head = msg[:8] + len(body).to_bytes(4, "little") + body
    return head + zlib.crc32(head).to_bytes(4, "little")


@SETTINGS
@given(messages, st.data())
def test_fuzz_mutated_valid_messages_behind_a_good_crc(
    value: WireMessage, data: st.DataObject
) -> None:
    msg = encode(value)
    body = bytearray(msg[HEADER_SIZE:-4])
    for _ in range(data.draw(st.integers(1, 4))):
        if body:
            i = data.draw(st.integers(0, len(body) - 1))
            body[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    extra = data.draw(st.binary(max_size=3))
    with contextlib.suppress(WireFormatError):
        decode(_resealed(msg, bytes(body[:cut]) + extra))


@SETTINGS
@given(messages, st.data())
def test_truncated_or_extended_message_is_rejected(value: WireMessage, data: st.DataObject) -> None:
    msg = encode(value)
    cut = data.draw(st.integers(0, len(msg) - 1))
    with pytest.raises(WireFormatError) as err:
        decode(msg[:cut])
    assert err.value.reason in {"short", "bad_length"}
    with pytest.raises(WireFormatError, match="bad_length"):
        decode(msg + data.draw(st.binary(min_size=1, max_size=8)))


@SETTINGS
@given(messages, st.data())
def test_any_single_flipped_bit_is_rejected(value: WireMessage, data: st.DataObject) -> None:
    msg = bytearray(encode(value))
    bit = data.draw(st.integers(0, 8 * len(msg) - 1))
    msg[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(WireFormatError) as err:
        decode(bytes(msg))
    assert err.value.reason in {"bad_magic", "bad_version", "bad_length", "crc"}


@pytest.mark.parametrize(
    ("name", "offset", "value", "reason"),
    [
        ("clinical-ecg", 4, 2, "bad_version"),
        ("clinical-ecg", 5, 9, "unknown_kind"),
        ("clinical-ecg", 5, 0, "unknown_kind"),
        ("research-gap-overflow", 5, 5, "unknown_kind"),
        ("clinical-ecg", 6, 0x04, "bad_flags"),
        ("clinical-gap-link-loss", 6, 0x02, "bad_flags"),
        ("research-gap-overflow", 7, 0x01, "bad_flags"),
    ],
)
def test_header_fields_are_checked(name: str, offset: int, value: int, reason: str) -> None:
    msg = bytearray(doc_examples()[name])
    msg[offset] = value
    head = bytes(msg[:-4])
    with pytest.raises(WireFormatError) as err:
        decode(head + zlib.crc32(head).to_bytes(4, "little"))
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("name", "body_offset", "value", "reason"),
    [
        ("clinical-gap-link-loss", 35, 0, "unknown_stream"),
        ("clinical-gap-link-loss", 36, 9, "unknown_cause"),
        ("clinical-gap-link-loss", 32, 0xFF, "short"),
        ("clinical-gap-link-loss", 33, 0xFF, "bad_utf8"),
        ("research-gap-overflow", 6, 12, "unknown_stream"),
        ("research-gap-overflow", 7, 5, "unknown_cause"),
        ("research-gap-overflow", 0, 4, "trailing"),
        ("clinical-ecg", 32, 7, "unknown_timebase"),
        ("clinical-ecg", 37, 99, "unknown_unit"),
        ("clinical-ecg", 38, 0x20, "bad_quality"),
        ("clinical-ecg", 34, 0xFF, "bad_utf8"),
        ("research-rr", 0, 0xFF, "short"),
    ],
)
def test_body_fields_are_checked(name: str, body_offset: int, value: int, reason: str) -> None:
    msg = doc_examples()[name]
    body = bytearray(msg[HEADER_SIZE:-4])
    body[body_offset] = value
    with pytest.raises(WireFormatError) as err:
        decode(_resealed(msg, bytes(body)))
    assert err.value.reason == reason


@pytest.mark.parametrize("name", ["clinical-gap-link-loss", "research-gap-overflow"])
def test_gap_with_start_after_end_is_rejected(name: str) -> None:
    msg = doc_examples()[name]
    body = bytearray(msg[HEADER_SIZE:-4])
    at = len(body) - 24  # start_ns, end_ns, samples_missing close the body
    body[at : at + 8], body[at + 8 : at + 16] = body[at + 8 : at + 16], body[at : at + 8]
    with pytest.raises(WireFormatError, match="bad_gap"):
        decode(_resealed(msg, bytes(body)))


def test_message_kinds_are_the_documented_codes() -> None:
    assert {k.name: k.value for k in MessageKind} == {
        "CLINICAL": 1,
        "RESEARCH": 2,
        "CLINICAL_GAP": 3,
        "RESEARCH_GAP": 4,
    }
    assert CAUSE_CODES[GapCause.SPOOL_FULL] == 4
    examples = doc_examples()
    assert examples["clinical-gap-link-loss"][5] == MessageKind.CLINICAL_GAP
    assert examples["research-gap-overflow"][5] == MessageKind.RESEARCH_GAP


def test_non_positive_rate_is_rejected() -> None:
    msg = doc_examples()["clinical-ecg"]
    body = bytearray(msg[HEADER_SIZE:-4])
    fs_at = len(body) - 24 - 8
    body[fs_at : fs_at + 8] = np.float64(-1.0).tobytes()
    with pytest.raises(WireFormatError, match="bad_rate"):
        decode(_resealed(msg, bytes(body)))


def test_encoder_rejects_what_the_format_cannot_carry() -> None:
    rr = GOLDEN["research-rr"]
    assert isinstance(rr, ResearchFrame)
    bad = [
        replace(rr, pseudonym="x" * 256),
        replace(rr, fs_hz=10.0),  # both fs_hz and offsets
        replace(rr, offsets_ns=None),  # neither
        replace(rr, time_ns=2**63),
        replace(rr, sequence=-1),
        replace(rr, sequence=2**64),
        replace(rr, fs_hz=float("inf"), offsets_ns=None),
        replace(rr, fs_hz=1.0, offsets_ns=None, samples=np.zeros((2, 2, 2))),
        replace(rr, offsets_ns=np.array([0], dtype=np.int64)),
        replace(rr, channels=("a",) * 256),
        replace(rr, quality=Quality(64)),
    ]
    for value in bad:
        with pytest.raises(FrameEncodeError):
            encode_research(value)
    bad_gaps = [
        Gap(StreamKind.ECG, 2, 1, 0, GapCause.DEVICE_SKIP),
        Gap(StreamKind.ECG, 1, 2, -1, GapCause.DEVICE_SKIP),
        Gap(StreamKind.ECG, 1, 2, 2**64, GapCause.DEVICE_SKIP),
        Gap(StreamKind.ECG, -(2**63) - 1, 2, 1, GapCause.DEVICE_SKIP),
        Gap(StreamKind.ECG, 1, 2**63, 1, GapCause.DEVICE_SKIP),
    ]
    for gap in bad_gaps:
        with pytest.raises(FrameEncodeError):
            encode_gap(ClinicalGap(SUBJECT, "g1", gap, RECORD))
        with pytest.raises(FrameEncodeError):
            encode_gap(ResearchGap("ps", gap))
    good = Gap(StreamKind.ECG, 1, 2, 1, GapCause.SPOOL_FULL)
    with pytest.raises(FrameEncodeError):
        encode_clinical_gap(ClinicalGap(SUBJECT, "k" * 256, good, RECORD))
    with pytest.raises(FrameEncodeError):
        encode_research_gap(ResearchGap("p" * 256, good))


def test_encode_gap_dispatches_on_the_path() -> None:
    clinical, research = GOLDEN["clinical-gap-link-loss"], GOLDEN["research-gap-overflow"]
    assert isinstance(clinical, ClinicalGap)
    assert isinstance(research, ResearchGap)
    assert encode_gap(clinical) == encode_clinical_gap(clinical)
    assert encode_gap(research) == encode_research_gap(research)


# ---------------------------------------------------------------- Invariant 2


@SETTINGS
@given(st.uuids(), research_frames)
def test_research_message_never_contains_the_subject_id(
    subject: UUID, value: ResearchFrame
) -> None:
    """Constructed like the router does (pseudonym, shifted time, samples), the research
    message has no 16-byte run equal to the subject id in any byte order. The format has
    no field for it; the check guards against one being added."""
    msg = encode_research(value)
    for raw in (subject.bytes, subject.bytes_le):
        assert raw not in msg
    assert subject.hex.encode() not in msg
    assert str(subject).encode() not in msg


@SETTINGS
@given(st.uuids(version=4), st.uuids(version=4), texts, research_gaps)
def test_research_gap_message_never_contains_identity(
    subject: UUID, record: UUID, suffix: str, value: ResearchGap
) -> None:
    """A research gap message is the pseudonym and the gap only: the subject id, consent
    record id and device key that the clinical message of the same gap carries are not in
    it, in any byte order."""
    device_key = "dk-" + suffix
    research = encode_research_gap(value)
    clinical = encode_clinical_gap(ClinicalGap(subject, device_key, value.gap, record))
    assert subject.bytes in clinical
    assert record.bytes in clinical
    for raw in (subject.bytes, subject.bytes_le, record.bytes, device_key.encode()):
        assert raw not in research
    key_len, pseudonym_len = len(device_key.encode()), len(value.pseudonym.encode())
    assert len(clinical) - len(research) == 32 + key_len - pseudonym_len


def test_research_and_clinical_of_one_frame_differ_only_by_the_identity_fields() -> None:
    clinical = GOLDEN["clinical-ecg"]
    assert isinstance(clinical, ClinicalFrame)
    fr = clinical.frame
    research = ResearchFrame(
        "ps", fr.stream, fr.time_ns - 604_800 * 10**9, fr.samples, fr.unit, fr.fs_hz,
        fr.offsets_ns, fr.sequence, fr.quality, fr.channels,
    )  # fmt: skip
    msg = encode_research(research)
    for secret in (clinical.subject_id.bytes, clinical.consent_record_id.bytes, b"g1"):
        assert secret not in msg
    assert fr.samples.tobytes() in msg
