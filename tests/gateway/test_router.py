"""Tests for gateway.router: the privacy split at the gateway (issue 3, acceptance 1-2).

Real classes throughout: an in-memory subject directory and consent source written here,
the real ``decide``, and a real ``FileKeyStore`` in ``tmp_path`` with a test master key.
The property tests check the router against a brute-force oracle over the raw consent
events (no ``decide``, no breakpoints): a path is taken iff ``core.service`` and the
path's scope cover the path's actor at every instant of the frame's span, and likewise
for a gap's span ``[start_ns, end_ns]`` (``route_gap``: gaps are data about the wearer).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.frame import Frame, Quality, StreamKind, Timebase, Unit
from devices.sim.garment_sources import GarmentSources
from gateway.consent import (
    CollectionMethod,
    ConsentEvent,
    ConsentHistory,
    ConsentRecord,
    Grant,
    Period,
    Reason,
    Scope,
    Withdrawal,
)
from gateway.gaps import Gap, GapCause
from gateway.privacy import DateShifter, FileKeyStore, KeyDestroyedError, Pseudonymizer
from gateway.privacy.pseudonyms import WEEK_NS
from gateway.router import (
    LOCATION_STREAMS,
    DropReason,
    ResearchFrame,
    ResearchGap,
    Routed,
    RoutedGap,
    Router,
    frame_span_ns,
)
from gateway.router import Path as RoutePath

MASTER = bytes(range(32))
CARE_TEAM = "org:clinic-a/team:cardio"
RESEARCH = "org:biogw/research"
OTHER_TEAM = "org:clinic-b/team:resp"
POLICY_SHA = "cd" * 32
S = 1_000_000_000
T0 = 1_795_334_400 * S  # 2026-11-22T04:00:00Z
MAC_RE = re.compile(rb"([0-9A-F]{2}:){5}[0-9A-F]{2}", re.IGNORECASE)


class Directory:
    """In-memory ``SubjectDirectory``."""

    def __init__(self, bindings: dict[str, uuid.UUID] | None = None) -> None:
        self.bindings = dict(bindings or {})

    def subject_for(self, device_key: str) -> uuid.UUID | None:
        return self.bindings.get(device_key)


class Consents:
    """In-memory ``ConsentSource``."""

    def __init__(self, histories: dict[uuid.UUID, ConsentHistory] | None = None) -> None:
        self.histories = dict(histories or {})

    def history_for(self, subject_id: uuid.UUID) -> ConsentHistory | None:
        return self.histories.get(subject_id)


class Ids:
    """Deterministic unique UUIDs for records and events."""

    def __init__(self) -> None:
        self._n = 0

    def __call__(self) -> uuid.UUID:
        self._n += 1
        return uuid.UUID(int=self._n)


def record(
    ids: Ids,
    subject: uuid.UUID,
    scope: Scope,
    start_ns: int,
    end_ns: int | None = None,
    actor: str | None = None,
) -> ConsentRecord:
    return ConsentRecord(
        record_id=ids(),
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


def grants(
    ids: Ids, subject: uuid.UUID, *scoped: tuple[Scope, str | None], start_ns: int = 0
) -> ConsentHistory:
    events = [Grant(ids(), record(ids, subject, s, start_ns, None, a)) for s, a in scoped]
    return ConsentHistory(subject, tuple(events))


def scalar_frame(
    device_key: str,
    time_ns: int,
    n: int = 4,
    *,
    fs_hz: float = 1.0,
    stream: StreamKind = StreamKind.TEMP,
    timebase: Timebase = Timebase.UTC,
) -> Frame:
    return Frame(
        device_key=device_key,
        stream=stream,
        time_ns=time_ns,
        timebase=timebase,
        samples=np.linspace(36.0, 36.5, n),
        unit=Unit.CELSIUS,
        fs_hz=fs_hz,
        sequence=7,
    )


@pytest.fixture
def keystore(tmp_path: Path) -> FileKeyStore:
    return FileKeyStore(tmp_path / "keys", MASTER)


def make_router(
    keystore: FileKeyStore,
    directory: Directory,
    consents: Consents,
    *,
    domain: str = "research",
    location_streams: frozenset[StreamKind] = LOCATION_STREAMS,
) -> Router:
    return Router(
        directory,
        consents,
        Pseudonymizer(keystore),
        DateShifter(keystore),
        clinical_actor=CARE_TEAM,
        research_actor=RESEARCH,
        research_domain=domain,
        location_streams=location_streams,
    )


# --------------------------------------------------------------------------- property test

SUBJECT = uuid.UUID("5b0e3c0a-8f7d-4c69-9a3e-0d6b9f1e2a47")
ACTORS = st.sampled_from([None, CARE_TEAM, RESEARCH, OTHER_TEAM])
SCOPES = st.sampled_from([Scope.CORE_SERVICE, Scope.CLINICAL_CARE, Scope.RESEARCH_INTERNAL])
# (scope, actor, start s, duration s or None, withdrawal s or None); times in whole seconds
SPECS = st.lists(
    st.tuples(
        SCOPES,
        ACTORS,
        st.integers(0, 20),
        st.none() | st.integers(1, 20),
        st.none() | st.integers(0, 30),
    ),
    max_size=7,
)


def build_history(
    specs: list[tuple[Scope, str | None, int, int | None, int | None]],
) -> tuple[ConsentHistory, list[tuple[Scope, str | None, int, float]]]:
    """The history, and the oracle's view of it: (scope, actor, start s, effective end s)."""
    ids = Ids()
    granted: list[ConsentEvent] = []
    withdrawn: list[ConsentEvent] = []
    spans: list[tuple[Scope, str | None, int, float]] = []
    for scope, actor, start, duration, withdraw_at in specs:
        end = None if duration is None else start + duration
        rec = record(ids, SUBJECT, scope, start * S, None if end is None else end * S, actor)
        granted.append(Grant(ids(), rec))
        if withdraw_at is not None:
            withdrawn.append(Withdrawal(ids(), rec, withdraw_at * S, 0, CollectionMethod.WEB))
        ends = [e for e in (end, withdraw_at) if e is not None]
        spans.append((scope, actor, start, min(ends) if ends else float("inf")))
    return ConsentHistory(SUBJECT, tuple(granted + withdrawn)), spans


def oracle(
    spans: list[tuple[Scope, str | None, int, float]], scope: Scope, actor: str, lo: int, hi: int
) -> bool:
    """Covered at every instant of [lo, hi] ns. Coverage only changes at whole seconds, so
    checking ``lo`` and every whole second in (lo, hi] is exhaustive."""

    def covered(t_ns: int) -> bool:
        t = t_ns / S
        core = any(s is Scope.CORE_SERVICE and a <= t < b for s, _, a, b in spans)
        ok = any(s is scope and who in (actor, None) and a <= t < b for s, who, a, b in spans)
        return core and ok

    instants = [lo, *range((lo // S + 1) * S, hi + 1, S)]
    return bool(spans) and all(covered(t) for t in instants)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    specs=SPECS,
    start_s=st.integers(-2, 32),
    half=st.booleans(),
    n=st.integers(1, 6),
)
def test_path_taken_iff_scope_active_over_frame(
    keystore: FileKeyStore,
    specs: list[tuple[Scope, str | None, int, int | None, int | None]],
    start_s: int,
    half: bool,
    n: int,
) -> None:
    history, spans = build_history(specs)
    router = make_router(keystore, Directory({"dev": SUBJECT}), Consents({SUBJECT: history}))
    frame = scalar_frame("dev", start_s * S + (S // 2 if half else 0), n)
    lo, hi = frame_span_ns(frame)
    assert (lo, hi) == (frame.time_ns, frame.time_ns + (n - 1) * S)

    routed = router.route(frame)

    want_clinical = oracle(spans, Scope.CLINICAL_CARE, CARE_TEAM, lo, hi)
    want_research = oracle(spans, Scope.RESEARCH_INTERNAL, RESEARCH, lo, hi)
    assert (routed.clinical is not None) == want_clinical
    assert (routed.research is not None) == want_research
    for path in RoutePath:
        assert router.counters.emitted(path) + router.counters.dropped(path) == 1
    if not specs:
        assert router.counters[(RoutePath.CLINICAL, Reason.NO_CONSENT.value)] == 1


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    specs=SPECS,
    start_half_s=st.integers(-4, 64),
    length_half_s=st.integers(0, 12),
    cause=st.sampled_from(list(GapCause)),
)
def test_gap_path_taken_iff_scope_active_over_its_span(
    keystore: FileKeyStore,
    specs: list[tuple[Scope, str | None, int, int | None, int | None]],
    start_half_s: int,
    length_half_s: int,
    cause: GapCause,
) -> None:
    history, spans = build_history(specs)
    router = make_router(keystore, Directory({"dev": SUBJECT}), Consents({SUBJECT: history}))
    lo = start_half_s * S // 2
    hi = lo + length_half_s * S // 2
    gap = Gap(StreamKind.ECG, lo, hi, 130 * length_half_s // 2 + 1, cause)

    routed = router.route_gap("dev", gap)

    want_clinical = oracle(spans, Scope.CLINICAL_CARE, CARE_TEAM, lo, hi)
    want_research = oracle(spans, Scope.RESEARCH_INTERNAL, RESEARCH, lo, hi)
    assert (routed.clinical is not None) == want_clinical
    assert (routed.research is not None) == want_research
    if routed.clinical is not None:
        assert (routed.clinical.subject_id, routed.clinical.device_key) == (SUBJECT, "dev")
        assert routed.clinical.gap is gap
        rec = next(e.record for e in history.events if isinstance(e, Grant)
                   and e.record.record_id == routed.clinical.consent_record_id)  # fmt: skip
        assert rec.scope is Scope.CLINICAL_CARE
    if routed.research is not None:
        shift = DateShifter(keystore).shift_ns(SUBJECT)
        assert routed.research.gap == Gap(gap.stream, lo + shift, hi + shift,
                                          gap.samples_missing, cause)  # fmt: skip
    for path in RoutePath:
        assert router.gap_counters.emitted(path) + router.gap_counters.dropped(path) == 1
        assert router.counters.emitted(path) + router.counters.dropped(path) == 0


def test_frame_spanning_a_withdrawal_is_dropped_on_that_path(keystore: FileKeyStore) -> None:
    ids = Ids()
    subject = uuid.uuid4()
    core = record(ids, subject, Scope.CORE_SERVICE, 0)
    care = record(ids, subject, Scope.CLINICAL_CARE, 0, actor=CARE_TEAM)
    research = record(ids, subject, Scope.RESEARCH_INTERNAL, 0)
    withdraw_at = T0 + 10 * S
    history = ConsentHistory(
        subject,
        (
            Grant(ids(), core),
            Grant(ids(), care),
            Grant(ids(), research),
            Withdrawal(ids(), research, withdraw_at, withdraw_at, CollectionMethod.APP),
        ),
    )
    router = make_router(keystore, Directory({"dev": subject}), Consents({subject: history}))

    before = router.route(scalar_frame("dev", T0 + 6 * S, 4))  # samples at 6..9 s
    spanning = router.route(scalar_frame("dev", T0 + 8 * S, 4))  # 8..11 s
    after = router.route(scalar_frame("dev", T0 + 10 * S, 4))  # exactly at the withdrawal

    assert before.research is not None
    assert before.clinical is not None
    assert spanning.research is None
    assert spanning.clinical is not None
    assert after.research is None
    assert after.clinical is not None
    assert router.counters[(RoutePath.RESEARCH, Reason.WITHDRAWN.value)] == 2
    assert router.counters.emitted(RoutePath.CLINICAL) == 3
    assert before.clinical.consent_record_id == care.record_id


def test_irregular_frame_span_uses_its_offsets(keystore: FileKeyStore) -> None:
    ids = Ids()
    subject = uuid.uuid4()
    history = grants(ids, subject, (Scope.CORE_SERVICE, None), (Scope.RESEARCH_INTERNAL, None))
    # The research grant ends 2 s after the frame's first sample; its last RR lands later.
    history = ConsentHistory(
        subject,
        (
            *history.events,
            Grant(ids(), record(ids, subject, Scope.CLINICAL_CARE, 0, T0 + 2 * S, CARE_TEAM)),
        ),
    )
    router = make_router(keystore, Directory({"dev": subject}), Consents({subject: history}))
    offsets = np.array([0, 800_000_000, 1_650_000_000, 2_400_000_000], dtype=np.int64)
    rr = Frame("dev", StreamKind.RR, T0, Timebase.UTC, np.array([800.0, 850, 750, 790]),
               Unit.MILLISECOND, offsets_ns=offsets)  # fmt: skip
    assert frame_span_ns(rr) == (T0, T0 + 2_400_000_000)

    routed = router.route(rr)

    assert routed.clinical is None
    assert router.counters[(RoutePath.CLINICAL, Reason.EXPIRED.value)] == 1
    assert routed.research is not None
    assert routed.research.offsets_ns is not None
    np.testing.assert_array_equal(routed.research.offsets_ns, offsets)
    assert routed.research.fs_hz is None


# --------------------------------------------------------------------------- drops


def test_device_timebase_unbound_and_unconsented_frames_are_dropped(
    keystore: FileKeyStore,
) -> None:
    ids = Ids()
    bound, silent, stranger = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    full = (
        (Scope.CORE_SERVICE, None),
        (Scope.CLINICAL_CARE, None),
        (Scope.RESEARCH_INTERNAL, None),
    )
    consents = Consents(
        {bound: grants(ids, bound, *full), silent: grants(ids, stranger, *full)}
    )  # ``silent`` is handed another subject's history
    directory = Directory({"bound": bound, "silent": silent, "lost": uuid.uuid4()})
    router = make_router(keystore, directory, consents)

    assert router.route(scalar_frame("bound", T0, timebase=Timebase.DEVICE)) == Routed()
    assert router.route(scalar_frame("nobody", T0)) == Routed()
    assert router.route(scalar_frame("lost", T0)) == Routed()
    assert router.route(scalar_frame("silent", T0)) == Routed()
    arrival = router.route(scalar_frame("bound", T0, timebase=Timebase.ARRIVAL))
    assert arrival.clinical is not None
    assert arrival.research is not None

    for path in RoutePath:
        assert router.counters[(path, DropReason.UNMAPPED_TIME.value)] == 1
        assert router.counters[(path, DropReason.UNBOUND_DEVICE.value)] == 1
        assert router.counters[(path, Reason.NO_CONSENT.value)] == 1
        assert router.counters[(path, DropReason.CONSENT_MISMATCH.value)] == 1
        assert router.counters.emitted(path) == 1
        assert router.counters.dropped(path) == 4


def test_no_core_service_and_wrong_actor_drop_with_their_reasons(keystore: FileKeyStore) -> None:
    ids = Ids()
    subject = uuid.uuid4()
    history = grants(
        ids, subject, (Scope.CLINICAL_CARE, OTHER_TEAM), (Scope.RESEARCH_INTERNAL, None)
    )
    router = make_router(keystore, Directory({"d": subject}), Consents({subject: history}))
    assert router.route(scalar_frame("d", T0)) == Routed()
    assert router.counters[(RoutePath.RESEARCH, Reason.NO_CORE_SERVICE.value)] == 1

    core = Grant(ids(), record(ids, subject, Scope.CORE_SERVICE, 0))
    router = make_router(
        keystore, Directory({"d": subject}), Consents({subject: history.append(core)})
    )
    routed = router.route(scalar_frame("d", T0))
    assert routed.clinical is None
    assert routed.research is not None
    assert router.counters[(RoutePath.CLINICAL, Reason.ACTOR_NOT_COVERED.value)] == 1


def test_location_streams_need_the_location_scope(keystore: FileKeyStore) -> None:
    assert frozenset() == LOCATION_STREAMS  # no profile carries location yet
    ids = Ids()
    subject = uuid.uuid4()
    base = grants(
        ids,
        subject,
        (Scope.CORE_SERVICE, None),
        (Scope.CLINICAL_CARE, CARE_TEAM),
        (Scope.RESEARCH_INTERNAL, None),
    )
    consents = Consents({subject: base})
    located = frozenset({StreamKind.ACCEL})  # stand-in for a future location stream
    router = make_router(keystore, Directory({"d": subject}), consents, location_streams=located)
    accel = scalar_frame("d", T0, stream=StreamKind.ACCEL)

    assert router.route(accel) == Routed()
    assert router.route(scalar_frame("d", T0)).research is not None  # other streams pass
    for path in RoutePath:
        assert router.counters[(path, DropReason.LOCATION_NOT_PERMITTED.value)] == 1

    consents.histories[subject] = base.append(
        Grant(ids(), record(ids, subject, Scope.LOCATION, 0, actor=CARE_TEAM))
    )
    routed = router.route(accel)
    assert routed.clinical is not None
    assert routed.research is None


def test_key_store_failure_emits_and_counts_nothing(keystore: FileKeyStore) -> None:
    ids = Ids()
    subject = uuid.uuid4()
    history = grants(
        ids,
        subject,
        (Scope.CORE_SERVICE, None),
        (Scope.CLINICAL_CARE, None),
        (Scope.RESEARCH_INTERNAL, None),
    )
    router = make_router(keystore, Directory({"d": subject}), Consents({subject: history}))
    assert router.route(scalar_frame("d", T0)).research is not None
    DateShifter(keystore).forget(subject)  # erased: its shift is destroyed
    fresh = make_router(keystore, Directory({"d": subject}), Consents({subject: history}))
    with pytest.raises(KeyDestroyedError):
        fresh.route(scalar_frame("d", T0))
    assert fresh.counters.emitted(RoutePath.CLINICAL) == 0
    assert fresh.counters.emitted(RoutePath.RESEARCH) == 0


def test_gap_drops_use_the_frame_rules(keystore: FileKeyStore) -> None:
    """Unbound device, no consent, another subject's history, location: the same reasons
    as for frames, counted in ``gap_counters`` only."""
    ids = Ids()
    bound, silent, stranger = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    full = ((Scope.CORE_SERVICE, None), (Scope.CLINICAL_CARE, None),
            (Scope.RESEARCH_INTERNAL, None))  # fmt: skip
    consents = Consents({bound: grants(ids, bound, *full), silent: grants(ids, stranger, *full)})
    directory = Directory({"bound": bound, "silent": silent, "lost": uuid.uuid4()})
    located = frozenset({StreamKind.ACCEL})
    router = make_router(keystore, directory, consents, location_streams=located)
    ecg = Gap(StreamKind.ECG, T0, T0 + S, 131, GapCause.LINK_LOSS)

    assert router.route_gap("nobody", ecg) == RoutedGap()
    assert router.route_gap("lost", ecg) == RoutedGap()
    assert router.route_gap("silent", ecg) == RoutedGap()
    assert router.route_gap("bound", dataclasses.replace(ecg, stream=StreamKind.ACCEL)) == (
        RoutedGap()
    )
    routed = router.route_gap("bound", ecg)
    assert routed.clinical is not None
    assert routed.research is not None

    for path in RoutePath:
        assert router.gap_counters[(path, DropReason.UNBOUND_DEVICE.value)] == 1
        assert router.gap_counters[(path, Reason.NO_CONSENT.value)] == 1
        assert router.gap_counters[(path, DropReason.CONSENT_MISMATCH.value)] == 1
        assert router.gap_counters[(path, DropReason.LOCATION_NOT_PERMITTED.value)] == 1
        assert router.gap_counters.emitted(path) == 1
        assert sum(router.counters.values()) == 0


def test_gap_spanning_a_withdrawal_is_dropped_and_key_failure_emits_nothing(
    keystore: FileKeyStore,
) -> None:
    ids = Ids()
    subject = uuid.uuid4()
    research = record(ids, subject, Scope.RESEARCH_INTERNAL, 0)
    history = ConsentHistory(
        subject,
        (
            Grant(ids(), record(ids, subject, Scope.CORE_SERVICE, 0)),
            Grant(ids(), record(ids, subject, Scope.CLINICAL_CARE, 0, actor=CARE_TEAM)),
            Grant(ids(), research),
            Withdrawal(ids(), research, T0 + 10 * S, T0 + 10 * S, CollectionMethod.APP),
        ),
    )
    router = make_router(keystore, Directory({"d": subject}), Consents({subject: history}))
    before = router.route_gap("d", Gap(StreamKind.RESP, T0, T0 + 9 * S, 225, GapCause.LINK_LOSS))
    spanning = router.route_gap(
        "d", Gap(StreamKind.RESP, T0 + 9 * S, T0 + 10 * S, 26, GapCause.DEVICE_SKIP)
    )
    assert before.research is not None
    assert before.clinical is not None
    assert spanning.research is None
    assert spanning.clinical is not None
    assert router.gap_counters[(RoutePath.RESEARCH, Reason.WITHDRAWN.value)] == 1

    DateShifter(keystore).forget(subject)
    fresh = make_router(keystore, Directory({"d": subject}), Consents({subject: history}))
    with pytest.raises(KeyDestroyedError):
        fresh.route_gap("d", Gap(StreamKind.RESP, T0, T0 + S, 26, GapCause.LINK_LOSS))
    assert sum(fresh.gap_counters.values()) == 0


# --------------------------------------------------------------------------- canary test


@dataclasses.dataclass(frozen=True)
class Wearer:
    """What the identity database would hold; the router only ever sees ``device_key``."""

    subject_id: uuid.UUID
    name: str
    email: str
    birth_date: str
    mac: str
    serial: str
    device_key: str
    seed: int


def canary_wearer(seed: int) -> Wearer:
    tag = secrets.token_hex(6)
    mac = ":".join(f"{b:02X}" for b in secrets.token_bytes(6))
    return Wearer(
        subject_id=uuid.uuid4(),
        name=f"Canaryname{tag} Zqx",
        email=f"canary.{tag}@example.test",
        birth_date=f"19{seed + 50}-0{seed + 1}-1{seed}",
        mac=mac,
        serial=f"SN-CANARY-{tag.upper()}",
        device_key=f"dk-{secrets.token_hex(16)}",
        seed=seed,
    )


def minute_of_frames(wearer: Wearer, t0_ns: int) -> Iterator[Frame]:
    """One minute of ECG, respiration, temperature and motion from the simulator's
    synthetic signal sources, in 1 s frames (temperature in 10 s frames)."""
    sources = GarmentSources.synthetic(wearer.seed)
    timebase = Timebase.ARRIVAL if wearer.seed % 2 else Timebase.UTC
    plan = [
        (StreamKind.ECG, sources.ecg, 1.0, ()),
        (StreamKind.RESP, sources.resp, 1.0, ()),
        (StreamKind.TEMP, sources.temp, 10.0, ()),
        (StreamKind.ACCEL, sources.accel, 1.0, ("x", "y", "z")),
    ]
    for stream, source, seconds, channels in plan:
        per_frame = round(source.fs_hz * seconds)
        for i in range(round(60 / seconds)):
            samples = source.read(per_frame)
            yield Frame(
                device_key=wearer.device_key,
                stream=stream,
                time_ns=t0_ns + round(i * seconds * S),
                timebase=timebase,
                samples=samples,
                unit=source.unit,
                fs_hz=source.fs_hz,
                sequence=i,
                quality=Quality.CONTACT_SUPPORTED,
                channels=channels,
            )


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def serialized(value: ResearchFrame | ResearchGap) -> bytes:
    fields = {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, ResearchGap):
        fields["gap"] = dataclasses.asdict(value.gap)
    return b"\n".join([repr(value).encode(), pickle.dumps(value), json.dumps(fields).encode()])


def forbidden_tokens(wearer: Wearer) -> list[bytes]:
    sid = wearer.subject_id
    texts = [
        wearer.name,
        wearer.name.split()[0],
        wearer.email,
        wearer.birth_date,
        wearer.serial,
        wearer.device_key,
        wearer.mac,
        wearer.mac.lower(),
        wearer.mac.replace(":", ""),
        str(sid),
        sid.hex,
        sid.hex.upper(),
        str(sid.int),
    ]
    return [t.encode() for t in texts] + [sid.bytes]


def test_canary_research_frames_carry_no_identifiers(keystore: FileKeyStore) -> None:
    wearers = [canary_wearer(seed) for seed in range(3)]
    ids = Ids()
    full = ((Scope.CORE_SERVICE, None), (Scope.CLINICAL_CARE, CARE_TEAM),
            (Scope.RESEARCH_INTERNAL, RESEARCH))  # fmt: skip
    directory = Directory({w.device_key: w.subject_id for w in wearers})
    consents = Consents({w.subject_id: grants(ids, w.subject_id, *full) for w in wearers})
    router = make_router(keystore, directory, consents)
    partner = make_router(keystore, directory, consents, domain="partner")

    tokens = [tok for w in wearers for tok in forbidden_tokens(w)]
    pseudonyms: dict[tuple[str, uuid.UUID], set[str]] = {}
    n_research = 0
    for wearer in wearers:
        shift_ns = DateShifter(keystore).shift_ns(wearer.subject_id)  # drawn once, persisted
        for frame in minute_of_frames(wearer, T0):
            routed = router.route(frame)
            assert routed.clinical is not None
            assert routed.research is not None
            clinical, research = routed.clinical, routed.research
            assert clinical.subject_id == wearer.subject_id
            assert clinical.frame is frame
            blob = serialized(research)
            for token in tokens:
                assert token not in blob
            assert MAC_RE.search(blob) is None
            assert str(frame.time_ns).encode() not in blob  # no exact calendar time
            assert research.time_ns - clinical.frame.time_ns == shift_ns
            assert shift_ns != 0
            assert shift_ns % WEEK_NS == 0
            np.testing.assert_array_equal(research.samples, frame.samples)
            assert (research.stream, research.fs_hz, research.sequence) == (
                frame.stream, frame.fs_hz, frame.sequence)  # fmt: skip
            pseudonyms.setdefault(("research", wearer.subject_id), set()).add(research.pseudonym)
            n_research += 1
        other = partner.route(next(minute_of_frames(wearer, T0))).research
        assert other is not None
        pseudonyms.setdefault(("partner", wearer.subject_id), set()).add(other.pseudonym)

    assert n_research == 3 * (60 + 60 + 6 + 60)
    for wearer in wearers:  # gaps leave on the research path as bare as frames
        gap = Gap(StreamKind.ECG, T0 + 5 * S, T0 + 15 * S, 2501, GapCause.LINK_LOSS)
        routed_gap = router.route_gap(wearer.device_key, gap)
        assert routed_gap.clinical is not None
        assert routed_gap.research is not None
        assert routed_gap.clinical.device_key == wearer.device_key
        blob = serialized(routed_gap.research)
        for token in tokens:
            assert token not in blob
        assert MAC_RE.search(blob) is None
        assert str(gap.start_ns).encode() not in blob
        assert str(gap.end_ns).encode() not in blob
        assert {routed_gap.research.pseudonym} == pseudonyms[("research", wearer.subject_id)]
    assert all(len(found) == 1 for found in pseudonyms.values())  # stable per subject
    first, second = wearers[0].subject_id, wearers[1].subject_id
    four = {
        next(iter(pseudonyms[(domain, sid)]))
        for domain in ("research", "partner")
        for sid in (first, second)
    }
    assert len(four) == 4  # two subjects x two domains: nothing links
    assert len({next(iter(v)) for v in pseudonyms.values()}) == 6
