"""Tests for gateway.consent.decision: the deny-by-default decision (issue 3, acceptance 1).

The property tests check ``decide`` against a brute-force oracle written here from the raw
event list (no timelines, no bisection): a frame reaches a path if and only if
``core.service`` and the path's scope were active for the path's actor at the frame's time.
"""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.consent import (
    CollectionMethod,
    ConsentError,
    ConsentEvent,
    ConsentHistory,
    ConsentRecord,
    ConsentStatus,
    Grant,
    Period,
    Reason,
    Scope,
    Withdrawal,
    active_scopes,
    decide,
)

SUBJECT = UUID(int=0xA11CE)
OTHER_SUBJECT = UUID(int=0xB0B)
POLICY_SHA = "ab" * 32
CARE_TEAM = "org:clinic-a/team:cardio"
OTHER_TEAM = "org:clinic-b/team:resp"
RESEARCH = "org:biogw/research"

# The two paths out of the router and who receives each (ARCHITECTURE.md, The flow).
PATHS = {
    "clinical": (Scope.CLINICAL_CARE, CARE_TEAM),
    "research": (Scope.RESEARCH_INTERNAL, RESEARCH),
}


def record(
    n: int,
    scope: Scope,
    start_ns: int,
    end_ns: int | None = None,
    *,
    actor: str | None = None,
    subject: UUID = SUBJECT,
) -> ConsentRecord:
    return ConsentRecord(
        record_id=UUID(int=n),
        subject_id=subject,
        scope=scope,
        period=Period(start_ns, end_ns),
        actor=actor,
        purpose="TREAT",
        policy_version="2026-01",
        policy_text_sha256=POLICY_SHA,
        collection_method=CollectionMethod.APP,
        recorded_at_ns=start_ns,
    )


def grant(rec: ConsentRecord) -> Grant:
    return Grant(UUID(int=rec.record_id.int + 10_000), rec)


def withdraw(rec: ConsentRecord, at_ns: int, n: int = 0) -> Withdrawal:
    return Withdrawal(
        UUID(int=20_000 + rec.record_id.int * 100 + n), rec, at_ns, at_ns, CollectionMethod.APP
    )


def history(*events: ConsentEvent) -> ConsentHistory:
    return ConsentHistory(SUBJECT, events)


CORE = record(1, Scope.CORE_SERVICE, 0)


# --- brute-force oracle over the raw events -------------------------------------------------


def effective_end(events: list[ConsentEvent], r: ConsentRecord) -> tuple[float, bool]:
    """(when the record stops covering, whether a withdrawal stopped it)."""
    w = min(
        (e.effective_ns for e in events if isinstance(e, Withdrawal) and e.record == r),
        default=float("inf"),
    )
    period_end = float("inf") if r.period.end_ns is None else r.period.end_ns
    return min(period_end, w), w <= period_end and w != float("inf")


def covering(events: list[ConsentEvent], at_ns: int) -> list[ConsentRecord]:
    """Every granted record in force at ``at_ns``."""
    grants = [e.record for e in events if isinstance(e, Grant)]
    return [r for r in grants if r.period.start_ns <= at_ns < effective_end(events, r)[0]]


def oracle(
    events: list[ConsentEvent], scope: Scope, at_ns: int, actor: str
) -> tuple[bool, str, set[UUID]]:
    """(permitted, reason, acceptable record ids) straight from the event list."""
    if not events:
        return False, "no_consent", set()
    in_force = covering(events, at_ns)
    if not any(r.scope is Scope.CORE_SERVICE for r in in_force):
        return False, "no_core_service", set()
    of_scope = [e.record for e in events if isinstance(e, Grant) and e.record.scope is scope]
    if not of_scope:
        return False, "scope_not_active", set()
    matching = [r for r in of_scope if r.actor is None or r.actor == actor]
    if not matching:
        return False, "actor_not_covered", set()
    ids = {r.record_id for r in matching if r in in_force}
    if ids:
        return True, "permitted", ids
    ended = [effective_end(events, r) for r in matching]
    ended = [end for end in ended if end[0] <= at_ns]
    if not ended:
        return False, "not_yet_valid", set()
    return False, ("withdrawn" if max(ended)[1] else "expired"), set()


SCOPES = (Scope.CORE_SERVICE, Scope.CLINICAL_CARE, Scope.RESEARCH_INTERNAL, Scope.LOCATION)
RECORD_ACTORS = (None, CARE_TEAM, OTHER_TEAM, RESEARCH)
REQUEST_ACTORS = (CARE_TEAM, OTHER_TEAM, RESEARCH, "org:nobody")
times = st.integers(min_value=0, max_value=60)  # small range: many exact-edge collisions


@st.composite
def event_logs(draw: st.DrawFn) -> list[ConsentEvent]:
    events: list[ConsentEvent] = []
    granted: list[ConsentRecord] = []
    for i in range(draw(st.integers(0, 14))):
        withdrawing = draw(st.booleans())
        if granted and withdrawing:
            rec = draw(st.sampled_from(granted))
            events.append(withdraw(rec, draw(times), n=i))
            continue
        start = draw(times)
        end = draw(st.none() | st.integers(start + 1, start + 40))
        scope = draw(st.sampled_from(SCOPES))
        rec = record(i + 1, scope, start, end, actor=draw(st.sampled_from(RECORD_ACTORS)))
        granted.append(rec)
        events.append(grant(rec))
    return events


@settings(max_examples=400, deadline=None)
@given(
    events=event_logs(),
    frames=st.lists(times, min_size=1, max_size=8),
    scope=st.sampled_from(SCOPES),
    actor=st.sampled_from(REQUEST_ACTORS),
)
def test_decide_matches_brute_force_oracle(
    events: list[ConsentEvent], frames: list[int], scope: Scope, actor: str
) -> None:
    h = history(*events)
    for at_ns in [*frames, -1, 1_000]:
        got = decide(h, scope=scope, at_ns=at_ns, actor=actor)
        permitted, reason, ids = oracle(events, scope, at_ns, actor)
        assert (got.permitted, got.reason) == (permitted, reason), at_ns
        assert (got.record_id in ids) if permitted else got.record_id is None


@settings(max_examples=300, deadline=None)
@given(events=event_logs(), frames=st.lists(times, min_size=1, max_size=10))
def test_frame_reaches_a_path_iff_its_scope_and_core_service_were_active(
    events: list[ConsentEvent], frames: list[int]
) -> None:
    h = history(*events)
    for at_ns in frames:
        for scope, actor in PATHS.values():
            reaches = decide(h, scope=scope, at_ns=at_ns, actor=actor).permitted
            in_force = covering(events, at_ns)
            core_ok = any(r.scope is Scope.CORE_SERVICE for r in in_force)
            scope_ok = any(r.scope is scope and r.actor in (None, actor) for r in in_force)
            assert reaches == (core_ok and scope_ok)


@settings(max_examples=300, deadline=None)
@given(events=event_logs(), pick=st.integers(0, 100), effective=times, frames=st.lists(times))
def test_withdrawal_never_changes_decisions_for_earlier_data(
    events: list[ConsentEvent], pick: int, effective: int, frames: list[int]
) -> None:
    granted = [e.record for e in events if isinstance(e, Grant)]
    if not granted:
        return
    before = history(*events)
    after = before.append(withdraw(granted[pick % len(granted)], effective, n=99))
    for at_ns in frames:
        for scope in SCOPES:
            for actor in REQUEST_ACTORS:
                old = decide(before, scope=scope, at_ns=at_ns, actor=actor)
                new = decide(after, scope=scope, at_ns=at_ns, actor=actor)
                if at_ns < effective:
                    assert new == old
                else:
                    assert new.permitted <= old.permitted


# --- one unit test per reason ---------------------------------------------------------------


def test_no_history_denies_with_no_consent() -> None:
    d = decide(ConsentHistory(SUBJECT), scope=Scope.CORE_SERVICE, at_ns=5, actor=CARE_TEAM)
    assert (d.permitted, d.reason, d.record_id) == (False, Reason.NO_CONSENT, None)


def test_scope_without_core_service_denies_with_no_core_service() -> None:
    clinical = record(2, Scope.CLINICAL_CARE, 0)
    h = history(grant(clinical))
    assert decide(h, scope=Scope.CLINICAL_CARE, at_ns=5, actor=CARE_TEAM).reason == (
        Reason.NO_CORE_SERVICE
    )


def test_core_service_withdrawn_stops_every_scope() -> None:
    clinical = record(2, Scope.CLINICAL_CARE, 0)
    h = history(grant(CORE), grant(clinical), withdraw(CORE, 50))
    assert decide(h, scope=Scope.CLINICAL_CARE, at_ns=49, actor=CARE_TEAM).permitted
    d = decide(h, scope=Scope.CLINICAL_CARE, at_ns=50, actor=CARE_TEAM)
    assert (d.permitted, d.reason) == (False, Reason.NO_CORE_SERVICE)


def test_core_service_is_checked_for_any_actor() -> None:
    core_for_operator = record(1, Scope.CORE_SERVICE, 0, actor="org:biogw/ops")
    research = record(2, Scope.RESEARCH_INTERNAL, 0)
    h = history(grant(core_for_operator), grant(research))
    assert decide(h, scope=Scope.RESEARCH_INTERNAL, at_ns=1, actor=RESEARCH).permitted


def test_never_granted_scope_is_scope_not_active() -> None:
    h = history(grant(CORE))
    d = decide(h, scope=Scope.RESEARCH_INTERNAL, at_ns=5, actor=RESEARCH)
    assert (d.permitted, d.reason) == (False, Reason.SCOPE_NOT_ACTIVE)


def test_scope_granted_to_another_team_is_actor_not_covered() -> None:
    h = history(grant(CORE), grant(record(2, Scope.CLINICAL_CARE, 0, actor=CARE_TEAM)))
    assert decide(h, scope=Scope.CLINICAL_CARE, at_ns=5, actor=CARE_TEAM).permitted
    d = decide(h, scope=Scope.CLINICAL_CARE, at_ns=5, actor=OTHER_TEAM)
    assert (d.permitted, d.reason) == (False, Reason.ACTOR_NOT_COVERED)


def test_record_without_actor_covers_every_actor() -> None:
    h = history(grant(CORE), grant(record(2, Scope.CLINICAL_CARE, 0, actor=None)))
    for actor in (CARE_TEAM, OTHER_TEAM):
        assert decide(h, scope=Scope.CLINICAL_CARE, at_ns=5, actor=actor).record_id == UUID(int=2)


def test_withdrawal_is_half_open_and_not_retroactive() -> None:
    research = record(2, Scope.RESEARCH_INTERNAL, 10)
    h = history(grant(CORE), grant(research), withdraw(research, 30))
    assert decide(h, scope=Scope.RESEARCH_INTERNAL, at_ns=10, actor=RESEARCH).permitted
    assert decide(h, scope=Scope.RESEARCH_INTERNAL, at_ns=29, actor=RESEARCH).permitted
    d = decide(h, scope=Scope.RESEARCH_INTERNAL, at_ns=30, actor=RESEARCH)
    assert (d.permitted, d.reason, d.record_id) == (False, Reason.WITHDRAWN, None)


def test_period_end_is_exclusive_and_expired() -> None:
    h = history(grant(CORE), grant(record(2, Scope.CLINICAL_CARE, 10, 20)))
    assert decide(h, scope=Scope.CLINICAL_CARE, at_ns=19, actor=CARE_TEAM).permitted
    d = decide(h, scope=Scope.CLINICAL_CARE, at_ns=20, actor=CARE_TEAM)
    assert (d.permitted, d.reason) == (False, Reason.EXPIRED)


def test_before_the_period_starts_is_not_yet_valid() -> None:
    h = history(grant(CORE), grant(record(2, Scope.CLINICAL_CARE, 10)))
    d = decide(h, scope=Scope.CLINICAL_CARE, at_ns=9, actor=CARE_TEAM)
    assert (d.permitted, d.reason) == (False, Reason.NOT_YET_VALID)


def test_regrant_after_withdrawal_resumes_with_the_new_record() -> None:
    first = record(2, Scope.RESEARCH_INTERNAL, 0)
    second = record(3, Scope.RESEARCH_INTERNAL, 40)
    h = history(grant(CORE), grant(first), withdraw(first, 20), grant(second))
    assert decide(h, scope=Scope.RESEARCH_INTERNAL, at_ns=30, actor=RESEARCH).reason == (
        Reason.WITHDRAWN
    )
    assert decide(h, scope=Scope.RESEARCH_INTERNAL, at_ns=40, actor=RESEARCH).record_id == (
        UUID(int=3)
    )


def test_latest_ending_record_explains_the_denial() -> None:
    withdrawn_early = record(2, Scope.CLINICAL_CARE, 0)
    expired_later = record(3, Scope.CLINICAL_CARE, 0, 30)
    h = history(
        grant(CORE), grant(withdrawn_early), grant(expired_later), withdraw(withdrawn_early, 10)
    )
    assert decide(h, scope=Scope.CLINICAL_CARE, at_ns=15, actor=CARE_TEAM).record_id == UUID(int=3)
    assert decide(h, scope=Scope.CLINICAL_CARE, at_ns=30, actor=CARE_TEAM).reason == Reason.EXPIRED


def test_withdrawal_at_expiry_counts_as_withdrawn() -> None:
    rec = record(2, Scope.CLINICAL_CARE, 0, 30)
    h = history(grant(CORE), grant(rec), withdraw(rec, 30))
    assert (
        decide(h, scope=Scope.CLINICAL_CARE, at_ns=30, actor=CARE_TEAM).reason == Reason.WITHDRAWN
    )


def test_permitting_record_prefers_latest_start_then_named_actor() -> None:
    wildcard = record(2, Scope.CLINICAL_CARE, 0)
    named = record(3, Scope.CLINICAL_CARE, 0, actor=CARE_TEAM)
    later = record(4, Scope.CLINICAL_CARE, 5)
    h = history(grant(CORE), grant(wildcard), grant(named))
    assert decide(h, scope=Scope.CLINICAL_CARE, at_ns=1, actor=CARE_TEAM).record_id == UUID(int=3)
    h = h.append(grant(later))
    assert decide(h, scope=Scope.CLINICAL_CARE, at_ns=5, actor=CARE_TEAM).record_id == UUID(int=4)


def test_withdrawal_before_start_means_never_active() -> None:
    rec = record(2, Scope.LOCATION, 50)
    h = history(grant(CORE), grant(rec), withdraw(rec, 10))
    assert decide(h, scope=Scope.LOCATION, at_ns=5, actor=CARE_TEAM).reason == Reason.NOT_YET_VALID
    assert decide(h, scope=Scope.LOCATION, at_ns=60, actor=CARE_TEAM).reason == Reason.WITHDRAWN


def test_active_scopes_lists_what_decide_permits() -> None:
    h = history(grant(CORE), grant(record(2, Scope.CLINICAL_CARE, 0, actor=CARE_TEAM)))
    assert active_scopes(h, at_ns=1, actor=CARE_TEAM) == {Scope.CORE_SERVICE, Scope.CLINICAL_CARE}
    assert active_scopes(h, at_ns=1, actor=RESEARCH) == {Scope.CORE_SERVICE}
    assert active_scopes(h, at_ns=-1, actor=CARE_TEAM) == frozenset()


# --- history bookkeeping and validation -----------------------------------------------------


def test_status_and_open_records() -> None:
    a = record(2, Scope.RESEARCH_INTERNAL, 0)
    b = record(3, Scope.RESEARCH_INTERNAL, 0, 20)
    h = history(grant(CORE), grant(a), grant(b), withdraw(a, 10))
    assert h.records == (CORE, a, b)
    assert h.status_of(a.record_id, at_ns=9) is ConsentStatus.ACTIVE
    assert h.status_of(a.record_id, at_ns=10) is ConsentStatus.INACTIVE
    assert h.open_records(Scope.RESEARCH_INTERNAL, at_ns=5) == (a, b)
    assert h.open_records(Scope.RESEARCH_INTERNAL, at_ns=15) == (b,)
    with pytest.raises(ConsentError) as info:
        h.status_of(UUID(int=999), at_ns=0)
    assert info.value.reason == "unknown_record"


def test_append_returns_a_new_history() -> None:
    h = history(grant(CORE))
    h2 = h.append(grant(record(2, Scope.CLINICAL_CARE, 0)))
    assert len(h.events) == 1
    assert len(h2.events) == 2
    assert not decide(h, scope=Scope.CLINICAL_CARE, at_ns=1, actor=CARE_TEAM).permitted
    assert decide(h2, scope=Scope.CLINICAL_CARE, at_ns=1, actor=CARE_TEAM).permitted


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ((grant(record(2, Scope.CORE_SERVICE, 0, subject=OTHER_SUBJECT)),), "wrong_subject"),
        ((grant(CORE), grant(CORE)), "duplicate_event"),
        ((grant(CORE), Grant(UUID(int=77), CORE)), "duplicate_record"),
        ((withdraw(CORE, 5),), "unknown_record"),
        ((grant(CORE), withdraw(replace(CORE, purpose="HRESCH"), 5)), "record_mismatch"),
    ],
)
def test_invalid_logs_are_rejected(events: tuple[ConsentEvent, ...], reason: str) -> None:
    with pytest.raises(ConsentError) as info:
        history(*events)
    assert info.value.reason == reason


def test_records_are_validated() -> None:
    with pytest.raises(ConsentError, match="bad_period"):
        Period(10, 10)
    with pytest.raises(ConsentError, match="bad_policy"):
        replace(CORE, policy_text_sha256="AB" * 32)
    with pytest.raises(ConsentError, match="bad_actor"):
        replace(CORE, actor="team with spaces")
    with pytest.raises(ConsentError, match="bad_purpose"):
        replace(CORE, purpose="")
    with pytest.raises(ConsentError, match="bad_status"):
        Grant(UUID(int=5), replace(CORE, status=ConsentStatus.INACTIVE))
