"""SpoolOutbox: routed outputs to topics and spool records; a full spool's refusals become
one spool_full gap per stream, never silence."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from devices.frame import Frame, StreamKind, Timebase, Unit
from gateway.gaps import GapCause
from gateway.router import ClinicalFrame, ClinicalGap, ResearchFrame, ResearchGap, Routed
from gateway.transport.outbox import SpoolOutbox
from gateway.transport.spool import Spool, SpoolClass
from gateway.transport.topics import TopicLayout
from gateway.transport.wire import decode

SUBJECT = uuid.UUID("5b0e3c0a-8f7d-4c69-9a3e-0d6b9f1e2a47")
RECORD = uuid.UUID(int=7)
DEVICE = str(uuid.UUID(int=9))
S = 1_000_000_000


def _routed(t_s: int, n: int = 250) -> Routed:
    samples = np.arange(n, dtype=np.float64)
    frame = Frame(DEVICE, StreamKind.ECG, t_s * S, Timebase.UTC, samples, Unit.MICROVOLT, 250.0)
    research = ResearchFrame(
        "ps1.research.e1." + "a" * 32,
        StreamKind.ECG,
        t_s * S - 7 * 86_400 * S,
        samples,
        Unit.MICROVOLT,
        250.0,
        None,
        t_s,
        frame.quality,
        (),
    )
    return Routed(ClinicalFrame(SUBJECT, frame, RECORD), research)


def _all(spool: Spool) -> list[tuple[SpoolClass, str, object]]:
    return [(r.klass, r.topic, decode(r.payload)) for r in spool.pending(0, 10_000)]


def test_frames_go_to_their_topics_and_are_durable_after_flush(tmp_path: Path) -> None:
    woken: list[int] = []
    layout = TopicLayout("t/v1")
    with Spool(tmp_path, max_bytes=1 << 20, sync="normal") as spool:
        outbox = SpoolOutbox(spool, layout, wake=lambda: woken.append(1))
        outbox.frame(_routed(100))
        assert spool.pending(0, 10) == []  # nothing published before the flush commits
        outbox.flush()
        records = _all(spool)
    assert woken == [1]
    assert [(k, t) for k, t, _ in records] == [
        (SpoolClass.CLINICAL, layout.clinical(SUBJECT, StreamKind.ECG)),
        (SpoolClass.RESEARCH, layout.research(StreamKind.ECG)),
    ]
    assert outbox.counters.clinical == outbox.counters.research == 1


def test_refused_frames_become_one_spool_full_gap_per_stream_and_path(tmp_path: Path) -> None:
    layout = TopicLayout("t/v1")
    with Spool(tmp_path, max_bytes=1 << 20, sync="normal", reserve_bytes=1 << 16) as spool:
        outbox = SpoolOutbox(spool, layout, wake=lambda: None)
        t = 0
        while outbox.counters.refused_clinical == 0:  # fill with clinical + research
            outbox.frame(_routed(t))
            t += 1
        first_refused = t - 1
        for _ in range(4):  # four more seconds refused
            outbox.frame(_routed(t))
            t += 1
        outbox.flush()
        records = _all(spool)
    gaps = [v for k, _, v in records if k is SpoolClass.CONTROL]
    clinical = [g for g in gaps if isinstance(g, ClinicalGap)]
    research = [g for g in gaps if isinstance(g, ResearchGap)]
    assert len(clinical) == 1
    gap = clinical[0].gap
    assert gap.cause is GapCause.SPOOL_FULL
    assert gap.samples_missing == 5 * 250 == outbox.counters.refused_clinical * 250
    assert gap.start_ns == first_refused * S
    assert gap.end_ns == (t - 1) * S + 249 * S // 250
    assert clinical[0].subject_id == SUBJECT
    assert clinical[0].device_key == DEVICE
    assert clinical[0].consent_record_id == RECORD
    # Research was evicted oldest first to make room; what was refused is recorded too.
    assert spool.counters.evicted_research > 0
    assert len(research) <= 1
    if research:
        assert research[0].gap.samples_missing == outbox.counters.refused_research * 250
    assert outbox.counters.spool_full_gaps == len(gaps)
