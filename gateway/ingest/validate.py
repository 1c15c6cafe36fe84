"""Ingest validation: one (topic, payload) from the broker → a storable value or a dead letter.

Role: ``classify`` checks that a message belongs on the ingest path it arrived on, decodes
it with ``wire.decode`` and applies the checks the database cannot (or should not) make,
so that every message ends as exactly one ``Item``: a ``ClinicalFrame``, ``ResearchFrame``,
``ClinicalGap`` or ``ResearchGap`` to store, or a ``DeadLetter`` with a short reason tag.

Checks, in order (the first failure is the reason; the full set is ``REASONS``):

* ``bad_topic``: not a data topic of the layout; ``wrong_path``: a data topic of the other
  path;
* ``wire_<reason>``: ``wire.decode`` refused the payload (``wire_crc``, ``wire_short``, ...,
  one per ``WireFormatError`` reason of docs/wire-format.md section 7);
* ``wrong_kind``: a wire kind of the other path (a clinical message on a research topic);
  ``kind_mismatch``: a frame on a gap topic or a gap on a frame topic;
* ``stream_mismatch``: the topic's stream is not the payload's; ``subject_mismatch``: the
  clinical topic's subject is not the payload's;
* ``bad_device_key``: a clinical device key that is not a canonical UUID (the column is
  uuid); ``bad_pseudonym``: a research pseudonym not of the form ``ps1.<domain>.e<n>.<digest>``;
  ``device_timebase``: a clinical frame still on the device clock (not UTC);
  ``bad_text``: a NUL character in a channel name (PostgreSQL text cannot hold it);
  ``int_out_of_range``: a sequence or missing-sample count above the bigint range;
* ``time_out_of_range``: the first sample (gap: start or end) before 2000-01-01 or more than
  one day after ``now_ns``. The research path widens both bounds by the largest date shift
  (``MAX_SHIFT_WEEKS``: research times move by -26..+26 whole weeks). A far-future time
  would otherwise make the writer create partitions for it.

Dead-letter payloads: clinical dead letters keep the raw bytes (the care database holds
identified data anyway). Research dead letters keep them only when the payload decoded as
a research message (wire kinds 2 and 4 have no identifier field) with a valid pseudonym;
anything else on the research path (undecodable bytes, a clinical message, a bogus
pseudonym field) may carry an identifier and is stored without payload.

``DeadLetter.topic_class`` is ``"frames"``, ``"gaps"`` or ``"unknown"``: never the topic,
which holds a subject id on the clinical path.

Must not: raise for bad input, do I/O, read clocks (``now_ns`` is passed in), or log or
keep topics, subject ids or payloads anywhere but in the returned value.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Final
from uuid import UUID

from devices.frame import FloatArray, StreamKind, Timebase
from gateway.privacy import KeyStoreError, parse_pseudonym
from gateway.privacy.pseudonyms import MAX_SHIFT_WEEKS, WEEK_NS
from gateway.router import ClinicalFrame, ClinicalGap, ResearchFrame, ResearchGap
from gateway.transport import wire
from gateway.transport.topics import ParsedTopic, TopicError, TopicLayout

__all__ = [
    "DAY_NS",
    "MAX_PSEUDONYM_CHARS",
    "MIN_TIME_NS",
    "REASONS",
    "WIRE_REASONS",
    "DeadLetter",
    "IngestPath",
    "Item",
    "StorableItem",
    "classify",
    "message_digest",
    "time_bounds",
]

DAY_NS: Final = 86_400 * 1_000_000_000
MIN_TIME_NS: Final = 946_684_800 * 1_000_000_000
"""2000-01-01T00:00:00Z: nothing the gateway publishes is older."""
MAX_PSEUDONYM_CHARS: Final = 128
"""The research tables' CHECK on ``pseudonym``."""
_BIGINT_MAX: Final = 2**63 - 1
_RESEARCH_SLACK_NS: Final = MAX_SHIFT_WEEKS * WEEK_NS

WIRE_REASONS: Final = frozenset(
    f"wire_{r}"
    for r in (
        "short",
        "bad_magic",
        "bad_version",
        "bad_length",
        "crc",
        "bad_flags",
        "unknown_kind",
        "unknown_stream",
        "unknown_unit",
        "unknown_timebase",
        "unknown_cause",
        "bad_quality",
        "bad_rate",
        "bad_utf8",
        "trailing",
        "bad_frame",
        "bad_gap",
    )
)
"""Dead-letter reasons for payloads ``wire.decode`` refused (docs/wire-format.md, 7)."""

REASONS: Final = WIRE_REASONS | frozenset(
    {
        "bad_topic",
        "wrong_path",
        "wrong_kind",
        "kind_mismatch",
        "stream_mismatch",
        "subject_mismatch",
        "bad_device_key",
        "bad_pseudonym",
        "device_timebase",
        "bad_text",
        "bad_shape",
        "int_out_of_range",
        "time_out_of_range",
    }
)
"""Every reason ``classify`` can put in a ``DeadLetter``."""

_FRAMES: Final = "frames"
_GAPS: Final = "gaps"
_UNKNOWN: Final = "unknown"
_NO_RESEARCH_PAYLOAD: Final = frozenset({"bad_pseudonym"})


class IngestPath(StrEnum):
    """Which database an ingester writes: the care database's ``clinical`` schema or the
    research database's ``pseudo`` schema."""

    CLINICAL = "clinical"
    RESEARCH = "research"

    @property
    def schema(self) -> str:
        return "clinical" if self is IngestPath.CLINICAL else "pseudo"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that cannot be stored: the kind of topic (``"frames"``, ``"gaps"``,
    ``"unknown"``; never the topic itself), a reason from ``REASONS``, and the raw payload
    when the path's rule allows keeping it."""

    topic_class: str
    reason: str
    payload: bytes | None
    digest: bytes | None = None
    """SHA-256 of the message (topic and payload): a redelivered bad message is stored
    once (the tables are unique on it). ``None``: not deduplicated."""


StorableItem = ClinicalFrame | ResearchFrame | ClinicalGap | ResearchGap
Item = ClinicalFrame | ResearchFrame | ClinicalGap | ResearchGap | DeadLetter


class _RejectedError(Exception):
    """Internal: the first failed check (never escapes ``classify``)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def time_bounds(path: IngestPath, now_ns: int) -> tuple[int, int]:
    """The accepted first-sample times ``[low, high]`` on ``path`` at ``now_ns``."""
    if path is IngestPath.RESEARCH:
        return MIN_TIME_NS - _RESEARCH_SLACK_NS, now_ns + DAY_NS + _RESEARCH_SLACK_NS
    return MIN_TIME_NS, now_ns + DAY_NS


@functools.lru_cache(maxsize=65_536)
def _parse_topic(layout: TopicLayout, topic: str) -> ParsedTopic | None:
    """``layout.parse`` memoised (topics repeat per subject and stream); None if bad."""
    try:
        return layout.parse(topic)
    except TopicError:
        return None


@functools.lru_cache(maxsize=65_536)
def _is_canonical_uuid(text: str) -> bool:
    try:
        return str(UUID(text)) == text
    except ValueError:
        return False


@functools.lru_cache(maxsize=65_536)
def _is_pseudonym(text: str) -> bool:
    if not 1 <= len(text) <= MAX_PSEUDONYM_CHARS:
        return False
    try:
        parse_pseudonym(text)
    except KeyStoreError:
        return False
    return True


def message_digest(topic: str, payload: bytes) -> bytes:
    """What identifies one broker message for dead-letter deduplication."""
    digest = hashlib.sha256(topic.encode("utf-8", "surrogatepass"))
    digest.update(b"\x00")
    digest.update(payload)
    return digest.digest()


def classify(
    path: IngestPath, layout: TopicLayout, topic: str, payload: bytes, *, now_ns: int
) -> Item:
    """The value to store for one broker message, or a ``DeadLetter`` saying why not.
    Never raises for bad input."""
    parsed = _parse_topic(layout, topic)
    topic_class = _UNKNOWN if parsed is None else (_GAPS if parsed.is_gap else _FRAMES)
    message: wire.WireMessage | None = None
    try:
        if parsed is None:
            raise _RejectedError("bad_topic")
        if parsed.path.value != path.value:
            raise _RejectedError("wrong_path")
        try:
            message = wire.decode(payload)
        except wire.WireFormatError as exc:
            raise _RejectedError(f"wire_{exc.reason}") from None
        _check(path, parsed, message, now_ns)
    except _RejectedError as reject:
        kept = _kept(path, reject.reason, payload, message)
        return DeadLetter(topic_class, reject.reason, kept, message_digest(topic, payload))
    return message


def _check(path: IngestPath, parsed: ParsedTopic, message: wire.WireMessage, now_ns: int) -> None:
    low, high = time_bounds(path, now_ns)
    if path is IngestPath.CLINICAL:
        if isinstance(message, ClinicalFrame):
            _check_clinical_frame(parsed, message, low, high)
        elif isinstance(message, ClinicalGap):
            _check_clinical_gap(parsed, message, low, high)
        else:
            raise _RejectedError("wrong_kind")
    elif isinstance(message, ResearchFrame):
        _check_research_frame(parsed, message, low, high)
    elif isinstance(message, ResearchGap):
        _check_research_gap(parsed, message, low, high)
    else:
        raise _RejectedError("wrong_kind")


def _check_topic(parsed: ParsedTopic, *, is_gap: bool, stream: StreamKind) -> None:
    if parsed.is_gap != is_gap:
        raise _RejectedError("kind_mismatch")
    if parsed.stream != stream:
        raise _RejectedError("stream_mismatch")


def _check_frame_fields(
    samples: FloatArray,
    channels: tuple[str, ...],
    sequence: int | None,
    time_ns: int,
    low: int,
    high: int,
) -> None:
    if channels and any("\x00" in name for name in channels):
        raise _RejectedError("bad_text")
    # Stored as (n_samples x len(channels)): a 2-D frame needs one name per column (it
    # could not be read back as sent otherwise); a 1-D frame has at most one name.
    if samples.ndim == 2 and samples.shape[1] != len(channels):
        raise _RejectedError("bad_shape")
    if samples.ndim == 1 and len(channels) > 1:
        raise _RejectedError("bad_shape")
    if sequence is not None and sequence > _BIGINT_MAX:
        raise _RejectedError("int_out_of_range")
    if not low <= time_ns <= high:
        raise _RejectedError("time_out_of_range")


def _check_gap_fields(missing: int, start_ns: int, end_ns: int, low: int, high: int) -> None:
    if missing > _BIGINT_MAX:
        raise _RejectedError("int_out_of_range")
    if not (low <= start_ns and end_ns <= high):
        raise _RejectedError("time_out_of_range")


def _check_clinical_frame(parsed: ParsedTopic, value: ClinicalFrame, low: int, high: int) -> None:
    frame = value.frame
    _check_topic(parsed, is_gap=False, stream=frame.stream)
    if parsed.subject_id != value.subject_id:
        raise _RejectedError("subject_mismatch")
    if not _is_canonical_uuid(frame.device_key):
        raise _RejectedError("bad_device_key")
    if frame.timebase is Timebase.DEVICE:
        raise _RejectedError("device_timebase")
    _check_frame_fields(frame.samples, frame.channels, frame.sequence, frame.time_ns, low, high)


def _check_clinical_gap(parsed: ParsedTopic, value: ClinicalGap, low: int, high: int) -> None:
    gap = value.gap
    _check_topic(parsed, is_gap=True, stream=gap.stream)
    if parsed.subject_id != value.subject_id:
        raise _RejectedError("subject_mismatch")
    if not _is_canonical_uuid(value.device_key):
        raise _RejectedError("bad_device_key")
    _check_gap_fields(gap.samples_missing, gap.start_ns, gap.end_ns, low, high)


def _check_research_frame(parsed: ParsedTopic, value: ResearchFrame, low: int, high: int) -> None:
    _check_topic(parsed, is_gap=False, stream=value.stream)
    if not _is_pseudonym(value.pseudonym):
        raise _RejectedError("bad_pseudonym")
    _check_frame_fields(value.samples, value.channels, value.sequence, value.time_ns, low, high)


def _check_research_gap(parsed: ParsedTopic, value: ResearchGap, low: int, high: int) -> None:
    gap = value.gap
    _check_topic(parsed, is_gap=True, stream=gap.stream)
    if not _is_pseudonym(value.pseudonym):
        raise _RejectedError("bad_pseudonym")
    _check_gap_fields(gap.samples_missing, gap.start_ns, gap.end_ns, low, high)


def _kept(
    path: IngestPath, reason: str, payload: bytes, message: wire.WireMessage | None
) -> bytes | None:
    """The payload a dead letter may keep (see the module docstring)."""
    if path is IngestPath.CLINICAL:
        return bytes(payload)
    if reason in _NO_RESEARCH_PAYLOAD:
        return None
    if message is None:  # rejected before decoding: decode only to see what it is
        try:
            message = wire.decode(payload)
        except wire.WireFormatError:
            return None
    if isinstance(message, ResearchFrame | ResearchGap) and _is_pseudonym(message.pseudonym):
        return bytes(payload)
    return None
