"""The one deny-by-default consent decision every path out of the gateway uses.

``ConsentHistory`` folds one subject's grant and withdrawal events into per-scope, per-actor
timelines: sorted breakpoints with a precomputed ``Decision`` for each interval between
them. ``decide`` is then two dictionary look-ups and two bisections, cheap enough to run
for every frame, and returns shared frozen ``Decision`` objects (no allocation per frame).

Rules, in order (the first that applies answers):

1. no events at all for the subject: deny, ``no_consent``;
2. no ``core.service`` record (for any actor) covering ``at_ns``: deny, ``no_core_service``;
3. the subject never granted the requested scope: deny, ``scope_not_active``;
4. the scope was granted, but never to this actor nor to ``actor=None`` (any actor):
   deny, ``actor_not_covered``;
5. a matching record covers ``at_ns``: permit, ``permitted``, with its record id (the one
   that started most recently; ties: the one naming the actor, then the lowest id);
6. otherwise, of the matching records that have ended by ``at_ns``, the one that ended last
   says why: ``withdrawn`` if a withdrawal ended it, ``expired`` if its period did (a
   withdrawal and expiry at the same instant count as ``withdrawn``); if none has ended,
   every matching record starts later: ``not_yet_valid``.

A record covers ``[start_ns, min(end_ns, withdrawal effective_ns))``, half-open: data timed
exactly at the grant's start is permitted, data timed exactly at the withdrawal is not.
Data timed before a withdrawal stays permitted (the decision for it does not change).

``core.service`` is checked independently of the actor: it is the wearer's consent to the
device being operated at all, whoever operates it. Purposes are recorded, not decided on.

This module must not do I/O, read clocks or log: persisting and loading events belongs to
the store, and the caller passes every time in.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from uuid import UUID

from gateway.consent.model import (
    ConsentError,
    ConsentEvent,
    ConsentRecord,
    ConsentStatus,
    Grant,
    Scope,
)

__all__ = ["ConsentHistory", "Decision", "Reason", "active_scopes", "decide"]


class Reason(StrEnum):
    """Why ``decide`` permitted or denied; stable codes for counters and logs."""

    PERMITTED = "permitted"
    NO_CONSENT = "no_consent"
    NO_CORE_SERVICE = "no_core_service"
    SCOPE_NOT_ACTIVE = "scope_not_active"
    ACTOR_NOT_COVERED = "actor_not_covered"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one (subject, scope, time, actor). ``record_id`` is the permitting
    record, ``None`` when denied."""

    permitted: bool
    reason: Reason
    record_id: UUID | None


_NO_CONSENT = Decision(False, Reason.NO_CONSENT, None)
_NO_CORE_SERVICE = Decision(False, Reason.NO_CORE_SERVICE, None)
_SCOPE_NOT_ACTIVE = Decision(False, Reason.SCOPE_NOT_ACTIVE, None)
_ACTOR_NOT_COVERED = Decision(False, Reason.ACTOR_NOT_COVERED, None)
_WITHDRAWN = Decision(False, Reason.WITHDRAWN, None)
_EXPIRED = Decision(False, Reason.EXPIRED, None)
_NOT_YET_VALID = Decision(False, Reason.NOT_YET_VALID, None)


@dataclass(frozen=True, slots=True)
class _Span:
    """A granted record with its withdrawal folded in (``None`` = never / open-ended)."""

    record: ConsentRecord
    withdrawn_ns: int | None

    @property
    def start_ns(self) -> int:
        return self.record.period.start_ns

    @property
    def end_ns(self) -> int | None:
        return self.record.period.end_ns

    def effective_end_ns(self) -> int | None:
        ends = [e for e in (self.end_ns, self.withdrawn_ns) if e is not None]
        return min(ends) if ends else None

    def covers(self, at_ns: int) -> bool:
        end = self.effective_end_ns()
        return self.start_ns <= at_ns and (end is None or at_ns < end)


def _outcome(spans: tuple[_Span, ...], actor: str | None, at_ns: int) -> Decision:
    """Rules 5-6 of the module docstring for one instant (used only when precomputing)."""
    covering = [s for s in spans if s.covers(at_ns)]
    if covering:
        best = max(
            covering,
            key=lambda s: (s.start_ns, s.record.actor == actor, -s.record.record_id.int),
        )
        return Decision(True, Reason.PERMITTED, best.record.record_id)
    ended: list[tuple[int, bool]] = []  # (ended at, by withdrawal)
    for span in spans:
        end = span.effective_end_ns()
        if end is not None and end <= at_ns:
            ended.append((end, span.withdrawn_ns == end))
    if not ended:
        return _NOT_YET_VALID
    return _WITHDRAWN if max(ended)[1] else _EXPIRED


@dataclass(frozen=True, slots=True)
class _Timeline:
    """Decisions for the half-open intervals between sorted breakpoints:
    ``decisions[i]`` holds on ``[breakpoints[i-1], breakpoints[i])``."""

    breakpoints: tuple[int, ...]
    decisions: tuple[Decision, ...]

    @classmethod
    def build(cls, spans: tuple[_Span, ...], actor: str | None) -> _Timeline:
        points: set[int] = set()
        for span in spans:
            points.add(span.start_ns)
            points.update(t for t in (span.end_ns, span.withdrawn_ns) if t is not None)
        ordered = tuple(sorted(points))
        # Every predicate in ``_outcome`` is constant between breakpoints, so one
        # representative instant per interval is exact.
        samples = [ordered[0] - 1] if ordered else [0]
        samples.extend(ordered)
        decisions = tuple(_outcome(spans, actor, t) for t in samples)
        return cls(ordered, decisions)

    def lookup(self, at_ns: int) -> Decision:
        return self.decisions[bisect_right(self.breakpoints, at_ns)]


def _fold(subject_id: UUID, events: tuple[ConsentEvent, ...]) -> tuple[_Span, ...]:
    """Validate the event log and fold withdrawals into their grants (earliest wins)."""
    granted: dict[UUID, ConsentRecord] = {}
    withdrawn: dict[UUID, int] = {}
    seen_events: set[UUID] = set()
    for event in events:
        if event.subject_id != subject_id:
            raise ConsentError("wrong_subject", "event belongs to another subject")
        if event.event_id in seen_events:
            raise ConsentError("duplicate_event", f"event {event.event_id} appears twice")
        seen_events.add(event.event_id)
        record_id = event.record.record_id
        if isinstance(event, Grant):
            if record_id in granted:
                raise ConsentError("duplicate_record", f"record {record_id} granted twice")
            granted[record_id] = event.record
        else:
            if granted.get(record_id) is None:
                raise ConsentError("unknown_record", f"withdrawal of ungranted {record_id}")
            if granted[record_id] != event.record:
                raise ConsentError("record_mismatch", f"withdrawal alters record {record_id}")
            previous = withdrawn.get(record_id)
            withdrawn[record_id] = (
                event.effective_ns if previous is None else min(previous, event.effective_ns)
            )
    return tuple(_Span(r, withdrawn.get(rid)) for rid, r in granted.items())


def _tables(
    spans: tuple[_Span, ...],
) -> tuple[_Timeline, Mapping[Scope, Mapping[str | None, _Timeline]]]:
    core = _Timeline.build(tuple(s for s in spans if s.record.scope is Scope.CORE_SERVICE), None)
    by_scope: dict[Scope, Mapping[str | None, _Timeline]] = {}
    for scope in Scope:
        scoped = tuple(s for s in spans if s.record.scope is scope)
        if not scoped:
            continue
        actors = {s.record.actor for s in scoped}
        per_actor: dict[str | None, _Timeline] = {}
        for actor in actors:
            matching = tuple(s for s in scoped if s.record.actor in (actor, None))
            per_actor[actor] = _Timeline.build(matching, actor)
        by_scope[scope] = MappingProxyType(per_actor)
    return core, MappingProxyType(by_scope)


@dataclass(frozen=True, slots=True)
class ConsentHistory:
    """One subject's consent events in append order, with precomputed decision tables.

    Raises ``ConsentError`` if an event is for another subject, an event or record id
    repeats, or a withdrawal names a record not granted earlier in the log (or alters it).
    """

    subject_id: UUID
    events: tuple[ConsentEvent, ...] = ()
    _spans: tuple[_Span, ...] = field(init=False, repr=False, compare=False)
    _core: _Timeline = field(init=False, repr=False, compare=False)
    _by_scope: Mapping[Scope, Mapping[str | None, _Timeline]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        events = tuple(self.events)
        spans = _fold(self.subject_id, events)
        core, by_scope = _tables(spans)
        object.__setattr__(self, "events", events)
        object.__setattr__(self, "_spans", spans)
        object.__setattr__(self, "_core", core)
        object.__setattr__(self, "_by_scope", by_scope)

    def append(self, *events: ConsentEvent) -> ConsentHistory:
        """A new history with ``events`` appended (this one is unchanged)."""
        return ConsentHistory(self.subject_id, self.events + events)

    @property
    def records(self) -> tuple[ConsentRecord, ...]:
        """Every granted record, as granted, in grant order."""
        return tuple(s.record for s in self._spans)

    def status_of(self, record_id: UUID, *, at_ns: int) -> ConsentStatus:
        """FHIR status of a record at ``at_ns``: ``inactive`` once withdrawn or past its
        end, else ``active`` (including a period that has not started yet)."""
        for span in self._spans:
            if span.record.record_id == record_id:
                end = span.effective_end_ns()
                ended = end is not None and end <= at_ns
                return ConsentStatus.INACTIVE if ended else ConsentStatus.ACTIVE
        raise ConsentError("unknown_record", f"no record {record_id} in this history")

    def open_records(self, scope: Scope, *, at_ns: int) -> tuple[ConsentRecord, ...]:
        """Records of ``scope`` still ``active`` at ``at_ns`` (what a withdrawal of the
        scope at that instant must end), in grant order."""
        return tuple(
            s.record
            for s in self._spans
            if s.record.scope is scope
            and self.status_of(s.record.record_id, at_ns=at_ns) is ConsentStatus.ACTIVE
        )


def decide(history: ConsentHistory, *, scope: Scope, at_ns: int, actor: str) -> Decision:
    """May data about ``history``'s subject, timed ``at_ns`` (UTC ns), go to ``actor``
    under ``scope``? Deny by default; see the module docstring for the exact rules."""
    if not history.events:
        return _NO_CONSENT
    if not history._core.lookup(at_ns).permitted:
        return _NO_CORE_SERVICE
    per_actor = history._by_scope.get(scope)
    if per_actor is None:
        return _SCOPE_NOT_ACTIVE
    timeline = per_actor.get(actor)
    if timeline is None:
        timeline = per_actor.get(None)
        if timeline is None:
            return _ACTOR_NOT_COVERED
    return timeline.lookup(at_ns)


def active_scopes(history: ConsentHistory, *, at_ns: int, actor: str) -> frozenset[Scope]:
    """The scopes ``decide`` permits for ``actor`` at ``at_ns``."""
    return frozenset(
        s for s in Scope if decide(history, scope=s, at_ns=at_ns, actor=actor).permitted
    )
