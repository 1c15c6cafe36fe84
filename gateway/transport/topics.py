"""The MQTT topic layout (docs/transport.md, Topics): building, parsing and filters.

Role: turn (path, stream, subject) into a topic and back, and give the ingester its
subscription filters. Under a configurable prefix (``biogw/v1`` by default):

* ``{prefix}/clinical/{subject_id}/{stream}`` and ``.../{stream}/gap``: identified data;
  ``subject_id`` is the subject's random UUID in canonical form;
* ``{prefix}/research/{stream}`` and ``.../{stream}/gap``: pseudonymized data. No
  pseudonym, subject id, device key, MAC or name appears in a research topic (the
  pseudonym travels inside the payload), so a broker log or ACL on research topics
  learns nothing about who is measured;
* ``{prefix}/alerts/{subject_id}/{kind}``: alerts the ingester found in the clinical
  stream (tachycardia, apnoea, fall, ...), JSON, for the care team's dashboards;
* ``{prefix}/status/{gateway_id}`` (retained; the last will says "offline") and
  ``{prefix}/status/{gateway_id}/device/{device_key}`` (retained; ``device_key`` is
  biogw's random device UUID, never a MAC).

Every segment is checked: non-empty, no ``/``, ``+``, ``#`` or NUL, and identifiers in
canonical form so one subject or device has exactly one topic spelling. ``parse`` accepts
only data topics of this layout and raises ``TopicError`` for anything else.

Must not: do I/O, log, or put a topic (which may hold a subject id) into an error
message: errors name the reason and the segment's position only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from devices.errors import BiogwError
from devices.frame import StreamKind
from gateway.router import Path

__all__ = ["ParsedTopic", "TopicError", "TopicLayout"]

_GAP: Final = "gap"
_STATUS: Final = "status"
_ALERTS: Final = "alerts"
_DEVICE: Final = "device"
_SHARE: Final = "$share"
_FORBIDDEN: Final = frozenset("/+#\x00")
_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""Gateway ids and share-group names (the same rule as ``GatewaySettings.id``)."""
_STREAMS: Final = {s.value: s for s in StreamKind}


class TopicError(BiogwError, ValueError):
    """A topic or segment is not part of the layout. ``reason`` is a short tag
    (``"empty"``, ``"forbidden_char"``, ``"not_uuid"``, ``"unknown_stream"``, ...);
    ``position`` is the offending segment's index after the prefix, if known. The topic
    itself is never kept: a clinical topic holds a subject id."""

    def __init__(self, reason: str, position: int | None = None) -> None:
        self.reason = reason
        self.position = position
        where = f" (segment {position})" if position is not None else ""
        super().__init__(f"topic: {reason}{where}")


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """What a data topic says: the path, the stream, the subject (clinical only) and
    whether the message is a gap record rather than a frame."""

    path: Path
    stream: StreamKind
    subject_id: UUID | None
    is_gap: bool


def _check_segment(segment: str, position: int | None = None) -> str:
    if not segment:
        raise TopicError("empty", position)
    if not _FORBIDDEN.isdisjoint(segment):
        raise TopicError("forbidden_char", position)
    return segment


def _check_name(name: str, what: str) -> str:
    _check_segment(name)
    if _NAME.fullmatch(name) is None:
        raise TopicError(f"bad_{what}")
    return name


def _canonical_uuid(value: UUID | str, position: int | None = None) -> str:
    if isinstance(value, UUID):
        return str(value)
    _check_segment(value, position)
    try:
        parsed = UUID(value)
    except ValueError:
        raise TopicError("not_uuid", position) from None
    text = str(parsed)
    if text != value:
        raise TopicError("not_canonical_uuid", position)
    return text


def _stream(value: StreamKind | str, position: int | None = None) -> StreamKind:
    if isinstance(value, StreamKind):
        return value
    _check_segment(value, position)
    try:
        return _STREAMS[value]
    except KeyError:
        raise TopicError("unknown_stream", position) from None


@dataclass(frozen=True, slots=True)
class TopicLayout:
    """All topics under one ``prefix`` (``MqttSettings.topic_prefix``)."""

    prefix: str = "biogw/v1"

    def __post_init__(self) -> None:
        segments = self.prefix.split("/")
        for i, segment in enumerate(segments):
            _check_segment(segment, i)
            if segment.startswith("$"):
                raise TopicError("reserved_prefix", i)

    # -- data -----------------------------------------------------------------------------

    def clinical(self, subject_id: UUID, stream: StreamKind, *, gap: bool = False) -> str:
        """A clinical frame topic, or with ``gap`` the stream's gap topic."""
        base = f"{self.prefix}/{Path.CLINICAL}/{_canonical_uuid(subject_id)}/{_stream(stream)}"
        return f"{base}/{_GAP}" if gap else base

    def research(self, stream: StreamKind, *, gap: bool = False) -> str:
        """A research frame topic, or with ``gap`` the stream's gap topic. Takes no
        person or device argument on purpose."""
        base = f"{self.prefix}/{Path.RESEARCH}/{_stream(stream)}"
        return f"{base}/{_GAP}" if gap else base

    # -- alerts ---------------------------------------------------------------------------

    def alert(self, subject_id: UUID, kind: str) -> str:
        """Where the ingester publishes a subject's alerts of ``kind``."""
        return f"{self.prefix}/{_ALERTS}/{_canonical_uuid(subject_id)}/{_check_name(kind, 'kind')}"

    def alert_filter(self) -> str:
        """Every alert (the care team's dashboards subscribe to it)."""
        return f"{self.prefix}/{_ALERTS}/#"

    # -- status ---------------------------------------------------------------------------

    def gateway_status(self, gateway_id: str) -> str:
        """The gateway's retained online/offline status (and its last will)."""
        return f"{self.prefix}/{_STATUS}/{_check_name(gateway_id, 'gateway_id')}"

    def device_status(self, gateway_id: str, device_key: UUID | str) -> str:
        """A device's retained status as seen by ``gateway_id``."""
        return f"{self.gateway_status(gateway_id)}/{_DEVICE}/{_canonical_uuid(device_key)}"

    # -- subscription filters -------------------------------------------------------------

    def clinical_filter(self, *, share_group: str | None = None) -> str:
        """Every clinical message (frames and gaps); with ``share_group`` as an MQTT 5 /
        Mosquitto shared subscription so ingest workers split the load."""
        return self._shared(f"{self.prefix}/{Path.CLINICAL}/#", share_group)

    def research_filter(self, *, share_group: str | None = None) -> str:
        """Every research message (frames and gaps), optionally shared."""
        return self._shared(f"{self.prefix}/{Path.RESEARCH}/#", share_group)

    def status_filter(self) -> str:
        """Every gateway and device status."""
        return f"{self.prefix}/{_STATUS}/#"

    @staticmethod
    def _shared(topic_filter: str, share_group: str | None) -> str:
        if share_group is None:
            return topic_filter
        return f"{_SHARE}/{_check_name(share_group, 'share_group')}/{topic_filter}"

    # -- parsing --------------------------------------------------------------------------

    def parse(self, topic: str) -> ParsedTopic:
        """Classify a data topic; raises ``TopicError`` for anything not of this layout
        (status topics included: they are not data)."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            raise TopicError("wrong_prefix")
        rest = topic[len(head) :].split("/")
        for i, segment in enumerate(rest):
            _check_segment(segment, i)
        is_gap = len(rest) > 2 and rest[-1] == _GAP
        body = rest[:-1] if is_gap else rest
        if body[0] == Path.CLINICAL:
            if len(body) != 3:
                raise TopicError("clinical_shape")
            subject = UUID(_canonical_uuid(body[1], 1))
            return ParsedTopic(Path.CLINICAL, _stream(body[2], 2), subject, is_gap)
        if body[0] == Path.RESEARCH:
            if len(body) != 2:
                raise TopicError("research_shape")
            return ParsedTopic(Path.RESEARCH, _stream(body[1], 1), None, is_gap)
        raise TopicError("unknown_path", 0)
