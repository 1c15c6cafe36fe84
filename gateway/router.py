"""The router: the privacy split at the gateway (ARCHITECTURE.md, The flow; Invariants 1-2).

Role: for each decoded, UTC-timed ``Frame``, look up the device's subject and the
subject's consent, and emit at most two outputs:

* a ``ClinicalFrame`` (subject id, exact UTC time, the frame as decoded) only when
  ``decide`` permits ``clinical.care`` for the clinical actor;
* a ``ResearchFrame`` (pseudonym in the research domain, date-shifted time, stream and
  samples; no subject id, device key, name, birth date, MAC or serial: the type has no
  field for any of them) only when ``decide`` permits ``research.internal`` for the
  research actor.

Everything else is dropped here and counted per (path, reason) in ``RouterCounters``;
for every routed frame each path counts exactly one outcome, ``permitted`` or a reason.

Consent over a frame's span. A frame covers ``[first sample, last sample]``. The path
must be permitted over the *whole* span, not just at its first sample: ``decide`` is
asked at the first sample and at every consent breakpoint (a period start or end, a
withdrawal's effective time) inside the span, which is exact because decisions only
change at breakpoints. So a frame spanning a withdrawal is dropped on that path (its
samples timed before the withdrawal are lost with it: the safe side), and so is a frame
that straddles a gap between two grants. The reason counted is that of the first
denied instant.

Location. Streams in ``LOCATION_STREAMS`` (none today: no profile carries location)
additionally need ``Scope.LOCATION`` for the same actor over the same span, on either
path; otherwise they are dropped with ``location_not_permitted``. Location is never
merely stripped from a frame: a location stream is either permitted whole or dropped.

Timebase. Only UTC-timed frames (``Timebase.UTC`` or ``Timebase.ARRIVAL``) are routable;
a ``Timebase.DEVICE`` frame has not been through the clock model (issue 4) and is
dropped on both paths with ``unmapped_time``. A device with no bound subject is dropped
with ``unbound_device``; a subject without any consent history with ``no_consent``.

Gaps. A ``Gap`` (samples that never arrived; ``gateway.gaps``) says when the wearer was
not measured, which is data about the wearer too. ``route_gap`` applies the same rules
over the gap's UTC span ``[start_ns, end_ns]`` (the edge has already mapped it to UTC):
a ``ClinicalGap`` with the subject id, device key and permitting record, a
``ResearchGap`` with the pseudonym and both bounds moved by the subject's date shift.
Gap outcomes are counted in ``gap_counters`` (same keys as ``counters``), so frame counts
stay frame counts.

Key store failures (``KeyStoreError``, e.g. a destroyed date shift of an erased subject)
propagate: the frame or gap is then emitted on no path. This module must not do database,
network or file I/O itself (the directory, consent source and key store are injected),
read clocks, or log subject ids, device keys or payloads.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final, Protocol
from uuid import UUID

from devices.frame import FloatArray, Frame, Int64Array, Quality, StreamKind, Timebase, Unit
from gateway.consent import ConsentHistory, Decision, Grant, Reason, Scope, decide
from gateway.gaps import Gap
from gateway.privacy import DateShifter, Pseudonymizer

__all__ = [
    "LOCATION_STREAMS",
    "ClinicalFrame",
    "ClinicalGap",
    "ConsentSource",
    "DropReason",
    "Path",
    "ResearchFrame",
    "ResearchGap",
    "Routed",
    "RoutedGap",
    "Router",
    "RouterCounters",
    "SubjectDirectory",
    "frame_span_ns",
]

LOCATION_STREAMS: Final[frozenset[StreamKind]] = frozenset()
"""Streams that carry the wearer's location. Empty: no profile reports location yet. A
stream added here reaches a path only with ``Scope.LOCATION`` for that path's actor."""

UTC_TIMEBASES: Final = frozenset({Timebase.UTC, Timebase.ARRIVAL})


class Path(StrEnum):
    """The two ways out of the gateway."""

    CLINICAL = "clinical"
    RESEARCH = "research"


class DropReason(StrEnum):
    """Router-level drop reasons (consent denials count the ``Decision``'s ``Reason``)."""

    UNBOUND_DEVICE = "unbound_device"
    UNMAPPED_TIME = "unmapped_time"
    CONSENT_MISMATCH = "consent_mismatch"
    """The consent source returned another subject's history (never trusted)."""
    LOCATION_NOT_PERMITTED = "location_not_permitted"


class RouterCounters(Counter[tuple[Path, str]]):
    """Outcomes per (path, reason): ``Reason.PERMITTED`` for emitted frames, a ``Reason``
    or ``DropReason`` value for dropped ones."""

    def emitted(self, path: Path) -> int:
        return self[(path, Reason.PERMITTED.value)]

    def dropped(self, path: Path) -> int:
        return sum(n for (p, r), n in self.items() if p is path and r != Reason.PERMITTED)


class SubjectDirectory(Protocol):
    """Device key → bound subject (the identity database implements it later)."""

    def subject_for(self, device_key: str) -> UUID | None:
        """The subject the device is bound to, ``None`` if unpaired or unbound."""
        ...


class ConsentSource(Protocol):
    """Subject → current consent history (the consent store implements it later)."""

    def history_for(self, subject_id: UUID) -> ConsentHistory | None:
        """The subject's consent events so far, ``None`` if none are known."""
        ...


@dataclass(frozen=True, slots=True)
class ClinicalFrame:
    """Identified output: the frame as decoded (exact UTC time, device key), its subject,
    and the consent record that permitted it (for the audit trail)."""

    subject_id: UUID
    frame: Frame
    consent_record_id: UUID


@dataclass(frozen=True, slots=True)
class ResearchFrame:
    """Pseudonymized output. ``time_ns`` is the first sample's UTC time moved by the
    subject's whole-week shift; offsets, rate and samples are unchanged. It deliberately
    has no subject id, device key, consent record id, name, birth date, MAC or serial."""

    pseudonym: str
    stream: StreamKind
    time_ns: int
    samples: FloatArray
    unit: Unit
    fs_hz: float | None
    offsets_ns: Int64Array | None
    sequence: int | None
    quality: Quality
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Routed:
    """What one frame produced: at most one output per path."""

    clinical: ClinicalFrame | None = None
    research: ResearchFrame | None = None


@dataclass(frozen=True, slots=True)
class ClinicalGap:
    """Identified gap: exact UTC bounds, the subject, the device, and the consent record
    that permitted it."""

    subject_id: UUID
    device_key: str
    gap: Gap
    consent_record_id: UUID


@dataclass(frozen=True, slots=True)
class ResearchGap:
    """Pseudonymized gap: ``gap.start_ns``/``gap.end_ns`` moved by the subject's
    whole-week shift; no subject id, device key or consent record id."""

    pseudonym: str
    gap: Gap


@dataclass(frozen=True, slots=True)
class RoutedGap:
    """What one gap produced: at most one output per path."""

    clinical: ClinicalGap | None = None
    research: ResearchGap | None = None


_NOTHING: Final = Routed()
_NO_GAP: Final = RoutedGap()
_PATH_SCOPES: Final = (
    (Path.CLINICAL, Scope.CLINICAL_CARE),
    (Path.RESEARCH, Scope.RESEARCH_INTERNAL),
)


def frame_span_ns(frame: Frame | ResearchFrame) -> tuple[int, int]:
    """UTC (or, for a research frame, shifted) times of the earliest and latest sample
    (``(time_ns, time_ns)`` if empty)."""
    n = len(frame.samples)
    if n == 0:
        return frame.time_ns, frame.time_ns
    if frame.offsets_ns is not None:
        lo = min(0, int(frame.offsets_ns.min()))
        hi = max(0, int(frame.offsets_ns.max()))
        return frame.time_ns + lo, frame.time_ns + hi
    assert frame.fs_hz is not None
    return frame.time_ns, frame.time_ns + round((n - 1) * 1e9 / frame.fs_hz)


def _breakpoints(history: ConsentHistory) -> tuple[int, ...]:
    """Every instant at which any decision for ``history`` may change."""
    points: set[int] = set()
    for event in history.events:
        if isinstance(event, Grant):
            period = event.record.period
            points.add(period.start_ns)
            if period.end_ns is not None:
                points.add(period.end_ns)
        else:
            points.add(event.effective_ns)
    return tuple(sorted(points))


@dataclass(slots=True)
class _SpanDecider:
    """``decide`` over a closed span, with the history's breakpoints cached per subject
    (recomputed whenever the consent source hands back a different history object)."""

    _cache: dict[UUID, tuple[ConsentHistory, tuple[int, ...]]] = field(default_factory=dict)

    def over(
        self, history: ConsentHistory, *, scope: Scope, actor: str, lo_ns: int, hi_ns: int
    ) -> Decision:
        first = decide(history, scope=scope, at_ns=lo_ns, actor=actor)
        if not first.permitted or hi_ns == lo_ns:
            return first
        points = self._points(history)
        for at_ns in points[bisect_right(points, lo_ns) : bisect_left(points, hi_ns + 1)]:
            later = decide(history, scope=scope, at_ns=at_ns, actor=actor)
            if not later.permitted:
                return later
        return first

    def _points(self, history: ConsentHistory) -> tuple[int, ...]:
        cached = self._cache.get(history.subject_id)
        if cached is not None and cached[0] is history:
            return cached[1]
        points = _breakpoints(history)
        self._cache[history.subject_id] = (history, points)
        return points


class Router:
    """Split frames into the clinical and research paths by the wearer's consent.

    Not thread-safe (one router per gateway event loop). ``counters`` accumulates for
    the router's lifetime; read or copy it, don't reset it under a running router.
    """

    def __init__(
        self,
        directory: SubjectDirectory,
        consents: ConsentSource,
        pseudonymizer: Pseudonymizer,
        date_shifter: DateShifter,
        *,
        clinical_actor: str,
        research_actor: str,
        research_domain: str = "research",
        location_streams: frozenset[StreamKind] = LOCATION_STREAMS,
    ) -> None:
        self._directory = directory
        self._consents = consents
        self._pseudonymizer = pseudonymizer
        self._shifter = date_shifter
        self._actors = {Path.CLINICAL: clinical_actor, Path.RESEARCH: research_actor}
        self._domain = research_domain
        self._location_streams = location_streams
        self._spans = _SpanDecider()
        self.counters = RouterCounters()
        self.gap_counters = RouterCounters()

    @property
    def research_domain(self) -> str:
        return self._domain

    def route(self, frame: Frame) -> Routed:
        """Route one frame; see the module docstring for the rules."""
        counters = self.counters
        if frame.timebase not in UTC_TIMEBASES:
            _drop_both(counters, DropReason.UNMAPPED_TIME)
            return _NOTHING
        found = self._subject(frame.device_key, counters)
        if found is None:
            return _NOTHING
        subject_id, history = found
        clinical_ok, research_ok = self._permits(
            counters, history, frame.stream, *frame_span_ns(frame)
        )
        clinical = None
        if clinical_ok is not None:
            clinical = ClinicalFrame(subject_id, frame, clinical_ok)
        research = self._research(subject_id, frame) if research_ok is not None else None
        _count_emitted(counters, clinical, research)
        return Routed(clinical, research)

    def route_gap(self, device_key: str, gap: Gap) -> RoutedGap:
        """Route one UTC-timed gap of ``device_key`` like a frame spanning
        ``[gap.start_ns, gap.end_ns]``; outcomes go to ``gap_counters``."""
        counters = self.gap_counters
        found = self._subject(device_key, counters)
        if found is None:
            return _NO_GAP
        subject_id, history = found
        clinical_ok, research_ok = self._permits(
            counters, history, gap.stream, gap.start_ns, gap.end_ns
        )
        clinical = None
        if clinical_ok is not None:
            clinical = ClinicalGap(subject_id, device_key, gap, clinical_ok)
        research = None
        if research_ok is not None:
            shift_ns = self._shifter.shift_ns(subject_id)
            shifted = replace(gap, start_ns=gap.start_ns + shift_ns, end_ns=gap.end_ns + shift_ns)
            research = ResearchGap(self._pseudonymizer.pseudonym(subject_id, self._domain), shifted)
        _count_emitted(counters, clinical, research)
        return RoutedGap(clinical, research)

    def _subject(
        self, device_key: str, counters: RouterCounters
    ) -> tuple[UUID, ConsentHistory] | None:
        """The bound subject and their consent history; else count the drop on both paths."""
        subject_id = self._directory.subject_for(device_key)
        if subject_id is None:
            _drop_both(counters, DropReason.UNBOUND_DEVICE)
            return None
        history = self._consents.history_for(subject_id)
        if history is None:
            _drop_both(counters, Reason.NO_CONSENT)
            return None
        if history.subject_id != subject_id:
            _drop_both(counters, DropReason.CONSENT_MISMATCH)
            return None
        return subject_id, history

    def _permits(
        self,
        counters: RouterCounters,
        history: ConsentHistory,
        stream: StreamKind,
        lo_ns: int,
        hi_ns: int,
    ) -> tuple[UUID | None, UUID | None]:
        """Per path (clinical, research): the permitting record id over ``[lo_ns, hi_ns]``,
        or ``None`` with the denial counted."""
        ids: list[UUID | None] = []
        for path, scope in _PATH_SCOPES:
            actor = self._actors[path]
            decision = self._spans.over(history, scope=scope, actor=actor, lo_ns=lo_ns, hi_ns=hi_ns)
            reason = None if decision.permitted else decision.reason.value
            if reason is None and stream in self._location_streams:
                location = self._spans.over(
                    history, scope=Scope.LOCATION, actor=actor, lo_ns=lo_ns, hi_ns=hi_ns
                )
                reason = None if location.permitted else DropReason.LOCATION_NOT_PERMITTED.value
            if reason is not None:
                counters[(path, reason)] += 1
            ids.append(decision.record_id if reason is None else None)
        return ids[0], ids[1]

    def _research(self, subject_id: UUID, frame: Frame) -> ResearchFrame:
        return ResearchFrame(
            pseudonym=self._pseudonymizer.pseudonym(subject_id, self._domain),
            stream=frame.stream,
            time_ns=self._shifter.apply(subject_id, frame.time_ns),
            samples=frame.samples,
            unit=frame.unit,
            fs_hz=frame.fs_hz,
            offsets_ns=frame.offsets_ns,
            sequence=frame.sequence,
            quality=frame.quality,
            channels=frame.channels,
        )


def _drop_both(counters: RouterCounters, reason: StrEnum) -> None:
    for path in Path:
        counters[(path, reason.value)] += 1


def _count_emitted(counters: RouterCounters, clinical: object, research: object) -> None:
    """Count emitted outputs, only once both exist (a key store error emits nothing)."""
    for path, output in ((Path.CLINICAL, clinical), (Path.RESEARCH, research)):
        if output is not None:
            counters[(path, Reason.PERMITTED.value)] += 1
