"""Tests of ingest validation (gateway.ingest.validate.classify): valid messages come back
as the values that were encoded; every documented reason tag is produced by a message
that should produce it; dead-letter payloads follow each path's rule; arbitrary input
never raises. Pure: no database or broker."""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.frame import Quality, StreamKind, Timebase, Unit
from gateway.ingest import REASONS, DeadLetter, IngestPath, classify
from gateway.ingest.validate import (
    DAY_NS,
    MIN_TIME_NS,
    WIRE_REASONS,
    Item,
    message_digest,
    time_bounds,
)
from gateway.privacy.pseudonyms import MAX_SHIFT_WEEKS, WEEK_NS
from gateway.router import ClinicalFrame, ClinicalGap, ResearchFrame, ResearchGap
from gateway.transport import wire
from tests.gateway.ingest.conftest import (
    DEVICE,
    LAYOUT,
    NOW_NS,
    SUBJECT,
    clinical_frame,
    clinical_gap,
    new_subject,
    research_frame,
    research_gap,
)

C = IngestPath.CLINICAL
R = IngestPath.RESEARCH
SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)


def run(path: IngestPath, message: tuple[str, bytes]) -> Item:
    return classify(path, LAYOUT, message[0], message[1], now_ns=NOW_NS)


def reseal(data: bytes) -> bytes:
    """Fix the header's body length and the CRC after editing a message."""
    body_len = len(data) - wire.HEADER_SIZE - wire.CRC_SIZE
    head = data[:8] + struct.pack("<I", body_len) + data[12 : wire.HEADER_SIZE + body_len]
    return head + struct.pack("<I", zlib.crc32(head))


def poke(data: bytes, offset: int, new: bytes) -> bytes:
    """Overwrite bytes at ``offset`` (absolute) and reseal."""
    return reseal(data[:offset] + new + data[offset + len(new) :])


# Offsets in a research frame message with pseudonym length L (docs/wire-format.md 3-4).
_R_FRAME = research_frame()[1]
_L = len(research_frame()[0].pseudonym)
_STREAM_AT = wire.HEADER_SIZE + 1 + _L
_FS_AT = _STREAM_AT + 5 + 8 + 4 + 8  # after stream..n_channels, time, n, sequence
_C_FRAME = clinical_frame()[1]
_R_GAP = research_gap()[1]

# -------------------------------------------------------------------- valid messages


def test_valid_messages_come_back_as_encoded() -> None:
    cf, cmsg = clinical_frame(channels=("lead",))
    got = run(C, cmsg)
    assert isinstance(got, ClinicalFrame)
    assert got.subject_id == cf.subject_id
    assert got.consent_record_id == cf.consent_record_id
    assert got.frame.samples.tobytes() == cf.frame.samples.tobytes()
    assert replace(got.frame, samples=cf.frame.samples) == cf.frame
    cg, gmsg = clinical_gap()
    assert run(C, gmsg) == cg
    rf, rmsg = research_frame(stream=StreamKind.RR, unit=Unit.MILLISECOND, n=3,
                              offsets_ns=np.array([0, 800_000_000, 1_600_000_000]))  # fmt: skip
    got_r = run(R, rmsg)
    assert isinstance(got_r, ResearchFrame)
    assert got_r.offsets_ns is not None
    assert rf.offsets_ns is not None
    assert got_r.offsets_ns.tolist() == rf.offsets_ns.tolist()
    assert got_r.samples.tobytes() == rf.samples.tobytes()
    rg, rgmsg = research_gap()
    assert run(R, rgmsg) == rg


def test_time_bounds_are_inclusive_and_research_allows_the_largest_forward_shift() -> None:
    low, high = time_bounds(C, NOW_NS)
    assert (low, high) == (MIN_TIME_NS, NOW_NS + DAY_NS)
    assert isinstance(run(C, clinical_frame(time_ns=high)[1]), ClinicalFrame)
    assert isinstance(run(C, clinical_frame(time_ns=low)[1]), ClinicalFrame)
    shifted = NOW_NS + MAX_SHIFT_WEEKS * WEEK_NS
    assert isinstance(run(R, research_frame(time_ns=shifted)[1]), ResearchFrame)
    assert isinstance(run(R, research_gap(start_ns=shifted - 10**10)[1]), ResearchGap)
    refused = run(R, research_frame(time_ns=shifted + DAY_NS + 1)[1])
    assert isinstance(refused, DeadLetter)
    assert refused.reason == "time_out_of_range"


# -------------------------------------------------------------------- every reason


def _wire_cases() -> list[tuple[str, IngestPath, tuple[str, bytes]]]:
    rt, rp = _R_FRAME
    ct, cp = _C_FRAME
    gt, gp = _R_GAP
    name_at = wire.HEADER_SIZE + 1
    return [
        ("wire_short", R, (rt, rp[:10])),
        ("wire_bad_magic", R, (rt, b"XXXX" + rp[4:])),
        ("wire_bad_version", R, (rt, rp[:4] + b"\x07" + rp[5:])),
        ("wire_bad_length", R, (rt, rp[:-1])),
        ("wire_crc", R, (rt, rp[:-5] + bytes([rp[-5] ^ 1]) + rp[-4:])),
        ("wire_bad_flags", R, (rt, poke(rp, 6, b"\x80\x00"))),
        ("wire_unknown_kind", R, (rt, poke(rp, 5, b"\x09"))),
        ("wire_unknown_stream", R, (rt, poke(rp, _STREAM_AT, b"\xee"))),
        ("wire_unknown_unit", R, (rt, poke(rp, _STREAM_AT + 1, b"\xee"))),
        ("wire_bad_quality", R, (rt, poke(rp, _STREAM_AT + 2, b"\x80"))),
        ("wire_bad_rate", R, (rt, poke(rp, _FS_AT, struct.pack("<d", -250.0)))),
        ("wire_bad_utf8", R, (rt, poke(rp, name_at, b"\xff"))),
        ("wire_trailing", R, (rt, reseal(rp[:-4] + b"\x00" + rp[-4:]))),
        ("wire_unknown_timebase", C, (ct, poke(cp, wire.HEADER_SIZE + 32, b"\xee"))),
        ("wire_unknown_cause", R, (gt, poke(gp, _STREAM_AT + 1, b"\xee"))),
        ("wire_bad_gap", R, (gt, poke(gp, _STREAM_AT + 2, struct.pack("<q", 2**62)))),
    ]


def _semantic_cases() -> list[tuple[str, IngestPath, tuple[str, bytes]]]:
    other, _ = new_subject(5)
    _, cmsg = clinical_frame()
    _, rmsg = research_frame()
    return [
        ("bad_topic", C, ("biogwtest/v1/status/gw1", cmsg[1])),
        ("bad_topic", R, ("elsewhere/research/ecg", rmsg[1])),
        ("wrong_path", C, (rmsg[0], rmsg[1])),
        ("wrong_path", R, (cmsg[0], cmsg[1])),
        ("wrong_kind", C, (cmsg[0], rmsg[1])),
        ("wrong_kind", R, (rmsg[0], cmsg[1])),
        ("kind_mismatch", C, (LAYOUT.clinical(SUBJECT, StreamKind.ECG, gap=True), cmsg[1])),
        ("kind_mismatch", R, (rmsg[0], research_gap()[1][1])),
        ("stream_mismatch", C, (LAYOUT.clinical(SUBJECT, StreamKind.RESP), cmsg[1])),
        ("stream_mismatch", R, (LAYOUT.research(StreamKind.RESP, gap=True), _R_GAP[1])),
        ("subject_mismatch", C, (LAYOUT.clinical(other, StreamKind.ECG), cmsg[1])),
        (
            "subject_mismatch",
            C,
            (LAYOUT.clinical(other, StreamKind.ECG, gap=True), clinical_gap()[1][1]),
        ),
        ("bad_device_key", C, clinical_frame(device="g1")[1]),
        ("bad_device_key", C, clinical_gap(device=DEVICE.upper())[1]),
        ("bad_pseudonym", R, research_frame(name="ps-7f")[1]),
        ("bad_pseudonym", R, research_gap(name="Jane Doe")[1]),
        ("device_timebase", C, clinical_frame(timebase=Timebase.DEVICE)[1]),
        ("bad_text", C, clinical_frame(channels=("a\x00",))[1]),
        ("bad_text", R, research_frame(channels=("x", "\x00"), n=2, samples=np.zeros((2, 2)))[1]),
        ("bad_shape", C, clinical_frame(n=2, samples=np.zeros((2, 3)))[1]),
        ("bad_shape", R, research_frame(channels=("x", "y"), n=2, samples=np.zeros(2))[1]),
        ("int_out_of_range", C, clinical_frame(sequence=2**63)[1]),
        ("int_out_of_range", R, research_gap(missing=2**64 - 1)[1]),
        ("time_out_of_range", C, clinical_frame(time_ns=MIN_TIME_NS - 1)[1]),
        ("time_out_of_range", C, clinical_frame(time_ns=NOW_NS + DAY_NS + 1)[1]),
        ("time_out_of_range", C, clinical_gap(start_ns=NOW_NS, length_ns=2 * DAY_NS)[1]),
        ("time_out_of_range", R, research_frame(time_ns=0)[1]),
    ]


CASES = _wire_cases() + _semantic_cases()


@pytest.mark.parametrize(
    ("reason", "path", "message"), CASES, ids=[f"{r}-{p}-{i}" for i, (r, p, _) in enumerate(CASES)]
)
def test_reason(reason: str, path: IngestPath, message: tuple[str, bytes]) -> None:
    got = run(path, message)
    assert isinstance(got, DeadLetter)
    assert got.reason == reason
    assert got.topic_class in ("frames", "gaps", "unknown")


def test_every_documented_reason_is_exercised() -> None:
    exercised = {reason for reason, _, _ in CASES}
    # The decoder checks every Frame invariant before building one, so Frame's own
    # ValueError (wire "bad_frame") cannot be reached through bytes.
    assert exercised == REASONS - {"wire_bad_frame"}
    assert WIRE_REASONS <= REASONS


def test_topic_class_names_the_kind_of_topic_never_the_topic() -> None:
    _, (topic, payload) = clinical_frame(time_ns=0)
    gap_topic = LAYOUT.clinical(SUBJECT, StreamKind.ECG, gap=True)
    bad_topic = "biogwtest/v1/clinical/" + str(SUBJECT)
    assert run(C, (topic, payload)) == DeadLetter(
        "frames", "time_out_of_range", payload, message_digest(topic, payload)
    )
    assert run(C, (gap_topic, payload)) == DeadLetter(
        "gaps", "kind_mismatch", payload, message_digest(gap_topic, payload)
    )
    letter = run(C, (bad_topic, payload))
    assert letter == DeadLetter("unknown", "bad_topic", payload, message_digest(bad_topic, payload))
    assert message_digest(topic, payload) != message_digest(gap_topic, payload)
    assert str(SUBJECT) not in repr(DeadLetter("unknown", "bad_topic", None))


# -------------------------------------------------------------------- payload rules


def test_clinical_dead_letters_keep_the_raw_bytes() -> None:
    for reason, path, (topic, payload) in CASES:
        if path is C:
            got = run(C, (topic, payload))
            assert isinstance(got, DeadLetter), reason
            assert got.payload == payload, reason


def test_research_dead_letters_keep_bytes_only_of_research_messages() -> None:
    kept, dropped = set(), set()
    for reason, path, (topic, payload) in CASES:
        if path is R:
            got = run(R, (topic, payload))
            assert isinstance(got, DeadLetter)
            (kept if got.payload is not None else dropped).add(reason)
            if got.payload is not None:
                assert got.payload == payload
                assert isinstance(wire.decode(payload), ResearchFrame | ResearchGap)
    # undecodable bytes, clinical messages and bogus pseudonym fields: no payload
    assert WIRE_REASONS & {r for r, p, _ in CASES if p is R} <= dropped
    assert {"wrong_kind", "wrong_path", "bad_pseudonym"} <= dropped
    # research messages failing a semantic check (topic, stream, text, range, time): kept
    assert {"bad_topic", "kind_mismatch", "stream_mismatch", "bad_text"} <= kept
    assert {"int_out_of_range", "time_out_of_range"} <= kept


def test_research_path_never_keeps_a_payload_that_holds_a_subject_id() -> None:
    _, (_, payload) = clinical_frame()
    for topic in (
        LAYOUT.research(StreamKind.ECG),
        "junk",
        LAYOUT.clinical(SUBJECT, StreamKind.ECG),
    ):
        got = run(R, (topic, payload))
        assert isinstance(got, DeadLetter)
        assert got.payload is None
        assert SUBJECT.bytes not in repr(got).encode()


# -------------------------------------------------------------------- robustness

_TOPICS = st.sampled_from(
    [
        LAYOUT.clinical(SUBJECT, StreamKind.ECG),
        LAYOUT.clinical(SUBJECT, StreamKind.ECG, gap=True),
        LAYOUT.research(StreamKind.ECG),
        LAYOUT.research(StreamKind.ECG, gap=True),
        "biogwtest/v1/clinical/+/ecg",
        "",
        "/",
    ]
) | st.text(max_size=80)


@SETTINGS
@given(path=st.sampled_from([C, R]), topic=_TOPICS, payload=st.binary(max_size=300))
def test_arbitrary_input_never_raises(path: IngestPath, topic: str, payload: bytes) -> None:
    got = classify(path, LAYOUT, topic, payload, now_ns=NOW_NS)
    assert isinstance(got, DeadLetter)
    assert got.reason in REASONS


@SETTINGS
@given(
    path=st.sampled_from([C, R]),
    which=st.sampled_from([_C_FRAME, _R_FRAME, _R_GAP, clinical_gap()[1]]),
    data=st.data(),
)
def test_mutated_messages_never_raise(
    path: IngestPath, which: tuple[str, bytes], data: st.DataObject
) -> None:
    topic, payload = which
    at = data.draw(st.integers(0, len(payload) - 1))
    value = data.draw(st.integers(0, 255))
    mutated = payload[:at] + bytes([value]) + payload[at + 1 :]
    if data.draw(st.booleans()):
        mutated = reseal(mutated)
    got = classify(path, LAYOUT, topic, mutated, now_ns=NOW_NS)
    if isinstance(got, DeadLetter):
        assert got.reason in REASONS
        if path is R and got.payload is not None:
            assert isinstance(wire.decode(got.payload), ResearchFrame | ResearchGap)
    else:
        assert isinstance(got, ClinicalFrame | ClinicalGap | ResearchFrame | ResearchGap)
        assert got.__class__.__name__.startswith("Clinical" if path is C else "Research")


def test_quality_and_channels_survive() -> None:
    value, msg = clinical_frame(
        stream=StreamKind.ACCEL,
        unit=Unit.MILLI_G,
        n=4,
        samples=np.arange(12.0).reshape(4, 3),
        channels=("x", "y", "z"),
        quality=Quality.SATURATED | Quality.CONTACT_SUPPORTED,
    )
    got = run(C, msg)
    assert isinstance(got, ClinicalFrame)
    assert got.frame.channels == ("x", "y", "z")
    assert got.frame.quality == value.frame.quality
    assert got.frame.samples.shape == (4, 3)
