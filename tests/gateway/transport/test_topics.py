"""The topic layout: building, parsing (round trips and fuzzing) and filters."""

from __future__ import annotations

from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.frame import StreamKind
from gateway.router import Path
from gateway.transport.topics import ParsedTopic, TopicError, TopicLayout

SUBJECT = UUID("0b7e2b9a-3c1d-4e5f-8a9b-0c1d2e3f4a5b")
DEVICE = UUID("6f1c0d2e-9b8a-4c7d-9e6f-5a4b3c2d1e0f")
LAYOUT = TopicLayout("biogw/v1")

prefixes = st.lists(st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True), min_size=1, max_size=4)


def test_the_documented_layout() -> None:
    assert LAYOUT.clinical(SUBJECT, StreamKind.ECG) == f"biogw/v1/clinical/{SUBJECT}/ecg"
    assert (
        LAYOUT.clinical(SUBJECT, StreamKind.ECG, gap=True) == f"biogw/v1/clinical/{SUBJECT}/ecg/gap"
    )
    assert LAYOUT.research(StreamKind.RESP) == "biogw/v1/research/resp"
    assert LAYOUT.research(StreamKind.RESP, gap=True) == "biogw/v1/research/resp/gap"
    assert LAYOUT.gateway_status("gw1") == "biogw/v1/status/gw1"
    assert LAYOUT.device_status("gw1", DEVICE) == f"biogw/v1/status/gw1/device/{DEVICE}"
    assert LAYOUT.device_status("gw1", str(DEVICE)) == LAYOUT.device_status("gw1", DEVICE)


def test_filters() -> None:
    assert LAYOUT.clinical_filter() == "biogw/v1/clinical/#"
    assert LAYOUT.research_filter() == "biogw/v1/research/#"
    assert LAYOUT.research_filter(share_group="ingest") == "$share/ingest/biogw/v1/research/#"
    assert LAYOUT.clinical_filter(share_group="ingest") == "$share/ingest/biogw/v1/clinical/#"
    assert LAYOUT.status_filter() == "biogw/v1/status/#"
    with pytest.raises(TopicError):
        LAYOUT.research_filter(share_group="a/b")


@given(prefix=prefixes, subject=st.uuids(), stream=st.sampled_from(StreamKind), gap=st.booleans())
def test_clinical_round_trip(
    prefix: list[str], subject: UUID, stream: StreamKind, gap: bool
) -> None:
    layout = TopicLayout("/".join(prefix))
    topic = layout.clinical(subject, stream, gap=gap)
    assert layout.parse(topic) == ParsedTopic(Path.CLINICAL, stream, subject, gap)


@given(prefix=prefixes, stream=st.sampled_from(StreamKind), gap=st.booleans())
def test_research_round_trip_and_no_identifier(
    prefix: list[str], stream: StreamKind, gap: bool
) -> None:
    layout = TopicLayout("/".join(prefix))
    topic = layout.research(stream, gap=gap)
    assert layout.parse(topic) == ParsedTopic(Path.RESEARCH, stream, None, gap)
    # Exactly prefix / research / stream [/ gap]: no room for any identifier.
    expected = [*prefix, "research", stream.value, *(["gap"] if gap else [])]
    assert topic.split("/") == expected


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("other/v1/research/ecg", "wrong_prefix"),
        ("biogw/v1", "wrong_prefix"),
        ("biogw/v1/", "empty"),
        ("biogw/v1/research", "research_shape"),
        ("biogw/v1/research/ecg/extra", "research_shape"),
        ("biogw/v1/research/ecg/gap/gap", "research_shape"),
        ("biogw/v1/research/walking", "unknown_stream"),
        ("biogw/v1/research/ECG", "unknown_stream"),
        ("biogw/v1/research/+", "forbidden_char"),
        ("biogw/v1/research/#", "forbidden_char"),
        ("biogw/v1/research//ecg", "empty"),
        (f"biogw/v1/research/{SUBJECT}/ecg", "research_shape"),
        (f"biogw/v1/clinical/{SUBJECT}", "clinical_shape"),
        (f"biogw/v1/clinical/{SUBJECT}/ecg/x", "clinical_shape"),
        ("biogw/v1/clinical/not-a-uuid/ecg", "not_uuid"),
        (f"biogw/v1/clinical/{str(SUBJECT).upper()}/ecg", "not_canonical_uuid"),
        (f"biogw/v1/clinical/{SUBJECT.hex}/ecg", "not_canonical_uuid"),
        ("biogw/v1/status/gw1", "unknown_path"),
        (f"biogw/v1/status/gw1/device/{DEVICE}", "unknown_path"),
    ],
)
def test_parse_rejects(topic: str, reason: str) -> None:
    with pytest.raises(TopicError) as info:
        LAYOUT.parse(topic)
    assert info.value.reason == reason


def test_errors_never_echo_the_topic() -> None:
    bad = f"biogw/v1/clinical/{SUBJECT}/walking"
    with pytest.raises(TopicError) as info:
        LAYOUT.parse(bad)
    assert str(SUBJECT) not in str(info.value)
    assert info.value.position == 2


@given(st.text(max_size=80))
def test_parse_fuzz(suffix: str) -> None:
    """Any string either parses to something that rebuilds to the same topic, or raises
    TopicError (never another exception)."""
    topic = "biogw/v1/" + suffix
    try:
        parsed = LAYOUT.parse(topic)
    except TopicError:
        return
    if parsed.path is Path.CLINICAL:
        assert parsed.subject_id is not None
        rebuilt = LAYOUT.clinical(parsed.subject_id, parsed.stream, gap=parsed.is_gap)
    else:
        assert parsed.subject_id is None
        rebuilt = LAYOUT.research(parsed.stream, gap=parsed.is_gap)
    assert rebuilt == topic


@pytest.mark.parametrize("prefix", ["", "a//b", "a/+", "a/#", "$SYS/x", "/a", "a/"])
def test_bad_prefix(prefix: str) -> None:
    with pytest.raises(TopicError):
        TopicLayout(prefix)


@pytest.mark.parametrize("gateway_id", ["", "a/b", "a+", "#", "x" * 65, "gw 1"])
def test_bad_gateway_id(gateway_id: str) -> None:
    with pytest.raises(TopicError):
        LAYOUT.gateway_status(gateway_id)


@pytest.mark.parametrize("key", ["AA:BB:CC:DD:EE:FF", "garment-1", "", str(DEVICE).upper()])
def test_device_key_must_be_a_canonical_uuid(key: str) -> None:
    """A MAC or a name can never become a status topic segment."""
    with pytest.raises(TopicError):
        LAYOUT.device_status("gw1", key)
