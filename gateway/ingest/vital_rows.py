"""What the vitals stage stores: findings on a stream's timeline → rows in UTC.

Role: ``VitalRow`` and ``AlertRow`` (one row of ``{schema}.vitals`` / ``clinical.alerts``,
times in ns on the frames' clock: UTC, or the research path's shifted time) and the
mapping of a processor's ``Findings`` onto them from a chunk's anchor (``origin_ns``, the
time of the stream timeline's zero). Non-finite values are not stored; ECG-derived
respiration is left out while the wearer's band delivers; ``info`` events (posture
changes) are not alerts.
Must not: do I/O or log.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from processing.findings import Event, Findings, Severity, VitalKind

__all__ = ["AlertRow", "Owner", "VitalRow", "alert_rows", "vital_rows"]

Owner = UUID | str
"""Subject id (clinical) or pseudonym (research)."""


@dataclass(frozen=True, slots=True)
class VitalRow:
    owner: Owner
    ts_ns: int
    kind: str
    value: float
    window_s: float
    quality: int


@dataclass(frozen=True, slots=True)
class AlertRow:
    owner: Owner
    ts_ns: int
    kind: str
    severity: str
    end_ns: int | None
    detail: dict[str, float | str]


def vital_rows(owner: Owner, origin_ns: int, found: Findings, band_live: bool) -> list[VitalRow]:
    return [
        VitalRow(
            owner, origin_ns + round(v.t_s * 1e9), v.kind.value, v.value, v.window_s, v.quality
        )
        for v in found.vitals
        if math.isfinite(v.value) and not (band_live and v.kind is VitalKind.RESP_RATE_EDR)
    ]


def alert_rows(owner: Owner, origin_ns: int, events: Sequence[Event]) -> list[AlertRow]:
    return [
        AlertRow(
            owner,
            origin_ns + round(e.t_s * 1e9),
            e.kind.value,
            e.severity.value,
            None if e.end_s is None else origin_ns + round(e.end_s * 1e9),
            dict(e.detail),
        )
        for e in events
        if e.severity is not Severity.INFO
    ]
