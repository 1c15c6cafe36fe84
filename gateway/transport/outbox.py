"""The edge's outbox: routed frames and gaps → wire messages → topics → the spool.

Role: ``SpoolOutbox`` implements the edge pipeline's ``Outbox``. Every clinical or
research output is encoded (``wire``), given its topic (``topics.TopicLayout``) and
appended to the durable spool; ``flush()`` group-commits the spool and wakes the
publisher, which publishes only committed records.

When the spool refuses a frame (``SpoolFullError``: full of clinical data, nothing left
to evict), the frame is not dropped silently: refusals are merged per (path, subject or
pseudonym, stream) into one ``spool_full`` gap, appended as a CONTROL record (which may
use the spool's reserve) at the next ``flush()``, and counted.

Must not: decide consent, decode payloads, log topics (they carry subject ids) or
payloads above DEBUG, or publish (the publisher does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from devices.frame import StreamKind
from gateway.gaps import Gap, GapCause
from gateway.router import (
    ClinicalFrame,
    ClinicalGap,
    ResearchFrame,
    ResearchGap,
    Routed,
    RoutedGap,
    frame_span_ns,
)
from gateway.transport.spool import Spool, SpoolClass, SpoolFullError
from gateway.transport.topics import TopicLayout
from gateway.transport.wire import (
    encode_clinical,
    encode_clinical_gap,
    encode_research,
    encode_research_gap,
)

__all__ = ["OutboxCounters", "SpoolOutbox"]

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class OutboxCounters:
    clinical: int = 0
    research: int = 0
    gaps: int = 0
    refused_clinical: int = 0
    refused_research: int = 0
    spool_full_gaps: int = 0
    """Gap records written for refused frames."""


@dataclass(slots=True)
class _Refused:
    """Frames of one stream refused since the last flush, merged into one gap."""

    gap: ClinicalGap | ResearchGap


class SpoolOutbox:
    def __init__(self, spool: Spool, layout: TopicLayout, *, wake: Callable[[], None]) -> None:
        self.spool = spool
        self.layout = layout
        self.counters = OutboxCounters()
        self._wake = wake
        self._refused: dict[tuple[str, str, StreamKind], _Refused] = {}

    def frame(self, routed: Routed) -> None:
        if routed.clinical is not None:
            self._clinical(routed.clinical)
        if routed.research is not None:
            self._research(routed.research)

    def _clinical(self, out: ClinicalFrame) -> None:
        frame = out.frame
        topic = self.layout.clinical(out.subject_id, frame.stream)
        try:
            self.spool.append(topic, encode_clinical(out), SpoolClass.CLINICAL)
        except SpoolFullError:
            self.counters.refused_clinical += 1
            start, end = frame_span_ns(frame)
            gap = Gap(frame.stream, start, end, frame.n_samples, GapCause.SPOOL_FULL)
            refused = ClinicalGap(out.subject_id, frame.device_key, gap, out.consent_record_id)
            self._merge(("clinical", str(out.subject_id), frame.stream), refused)
            return
        self.counters.clinical += 1

    def _research(self, out: ResearchFrame) -> None:
        try:
            payload = encode_research(out)
            self.spool.append(self.layout.research(out.stream), payload, SpoolClass.RESEARCH)
        except SpoolFullError:
            self.counters.refused_research += 1
            start, end = frame_span_ns(out)
            gap = Gap(out.stream, start, end, len(out.samples), GapCause.SPOOL_FULL)
            self._merge(("research", out.pseudonym, out.stream), ResearchGap(out.pseudonym, gap))
            return
        self.counters.research += 1

    def _merge(self, key: tuple[str, str, StreamKind], refused: ClinicalGap | ResearchGap) -> None:
        held = self._refused.get(key)
        if held is None:
            self._refused[key] = _Refused(refused)
            return
        old, new = held.gap.gap, refused.gap
        merged = Gap(
            old.stream,
            min(old.start_ns, new.start_ns),
            max(old.end_ns, new.end_ns),
            old.samples_missing + new.samples_missing,
            GapCause.SPOOL_FULL,
        )
        if isinstance(held.gap, ClinicalGap):
            held.gap = ClinicalGap(
                held.gap.subject_id, held.gap.device_key, merged, held.gap.consent_record_id
            )
        else:
            held.gap = ResearchGap(held.gap.pseudonym, merged)

    def gap(self, routed: RoutedGap) -> None:
        if routed.clinical is not None:
            self._gap_record(routed.clinical)
        if routed.research is not None:
            self._gap_record(routed.research)

    def _gap_record(self, gap: ClinicalGap | ResearchGap) -> None:
        if isinstance(gap, ClinicalGap):
            topic = self.layout.clinical(gap.subject_id, gap.gap.stream, gap=True)
            payload = encode_clinical_gap(gap)
        else:
            topic = self.layout.research(gap.gap.stream, gap=True)
            payload = encode_research_gap(gap)
        try:
            self.spool.append(topic, payload, SpoolClass.CONTROL)
        except SpoolFullError:
            # Even the reserve is exhausted: nothing more can be recorded durably.
            _log.error("spool reserve exhausted: a gap record could not be spooled")
            raise
        self.counters.gaps += 1

    def flush(self) -> None:
        """Spool the merged refusal gaps, commit, and wake the publisher."""
        if self._refused:
            refused, self._refused = self._refused, {}
            _log.error(
                "spool full of clinical data: %d stream(s) refused frames; recorded as gaps",
                len(refused),
            )
            for held in refused.values():
                self._gap_record(held.gap)
                self.counters.spool_full_gaps += 1
        self.spool.commit()
        self._wake()
