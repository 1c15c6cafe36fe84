"""What the streaming processors report: vitals (a number over a window) and events.

Role: the one output vocabulary of ``processing`` for the ingester: ``Vital`` and ``Event``
records, ``Findings`` (what one streaming step found) and the fixed kind names, so the
gateway stores every processor's output the same way (``clinical.vitals`` /
``clinical.alerts``) without knowing the algorithms.

Times are seconds on the stream's own sample timeline: sample ``i`` of a stream fed from
its start is at ``i / fs_hz``. The gateway maps them to UTC. A vital's ``t_s`` is the end
of the window it summarises (for a per-beat or per-breath value: that beat or breath).

Must not: do I/O or import ``gateway`` or ``devices``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Event", "EventKind", "Findings", "Severity", "Vital", "VitalKind"]


class VitalKind(enum.StrEnum):
    """Stored as ``clinical.vitals.kind``; the unit is in the name."""

    HR_BEAT = "hr_beat_bpm"
    """Beat-to-beat heart rate; ``window_s`` is the RR interval it comes from."""
    HR = "hr_bpm"
    """Mean heart rate over a window (10 s)."""
    SDNN = "sdnn_ms"
    RMSSD = "rmssd_ms"
    PNN50 = "pnn50_pct"
    LF_HF = "lf_hf"
    ECG_SQI = "ecg_sqi"
    """ECG signal quality, 0 (unusable) to 1 (clean), per window."""
    BREATH_RATE = "breath_rate_bpm"
    """Per breath (breaths/min from one breath's duration, its ``window_s``)."""
    RESP_RATE = "resp_rate_bpm"
    """Breaths/min over a window (30 s), from the respiratory band."""
    RESP_RATE_EDR = "resp_rate_edr_bpm"
    """Breaths/min over a window from ECG-derived respiration (no band present)."""
    TEMP = "temp_c"
    """Smoothed skin temperature, after the sensor's warm-up."""
    ACTIVITY = "enmo_mg"
    """Euclidean norm minus one g, mean over a window, in mG."""
    POSTURE = "posture"
    """Posture code over a window: see ``processing.motion.Posture``."""
    CADENCE = "cadence_spm"
    """Steps per minute over a window (0 when not walking)."""


class EventKind(enum.StrEnum):
    """Stored as ``clinical.alerts.kind``."""

    TACHYCARDIA = "tachycardia"
    BRADYCARDIA = "bradycardia"
    ASYSTOLE = "asystole"
    LEAD_OFF = "lead_off"
    FLAT_LINE = "flat_line"
    APNOEA = "apnoea"
    FEVER = "fever"
    HYPOTHERMIA = "hypothermia"
    FALL = "fall"
    POSTURE_CHANGE = "posture_change"


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Vital:
    t_s: float
    kind: VitalKind
    value: float
    window_s: float
    quality: int = 100
    """0 (unusable) to 100 (fully trusted)."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something that started at ``t_s`` (onset; for a run, its first beat or sample).
    ``end_s`` is set when the event is reported already finished (an apnoea is known
    once breathing resumes), else ``None``. ``detail`` holds numbers and short tags only,
    never signal samples."""

    t_s: float
    kind: EventKind
    severity: Severity
    end_s: float | None = None
    detail: Mapping[str, float | str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Findings:
    """What one streaming step found, in time order within each tuple."""

    vitals: tuple[Vital, ...] = ()
    events: tuple[Event, ...] = ()

    def __add__(self, other: Findings) -> Findings:
        return Findings(self.vitals + other.vitals, self.events + other.events)

    @staticmethod
    def merge(parts: Iterable[Findings]) -> Findings:
        vitals: list[Vital] = []
        events: list[Event] = []
        for part in parts:
            vitals.extend(part.vitals)
            events.extend(part.events)
        return Findings(tuple(vitals), tuple(events))
