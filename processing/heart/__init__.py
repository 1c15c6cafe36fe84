"""Heart rate and heart rate variability from beat times or RR intervals.

Role: the public heart API of ``processing`` (pure numpy/scipy): RR series and their
artefact correction, HRV (time domain and LF/HF), and the streaming step that turns beats into
HR/HRV vitals and rhythm alerts.
Must not: do I/O or import ``gateway`` or ``devices``.
"""

from processing.heart.hrv import TimeDomainHRV, hrv_time_domain, lf_hf, mean_hr_bpm
from processing.heart.rr import Artefact, CorrectedRR, correct_rr, rr_from_beats
from processing.heart.stream import HeartState, heart_step, rr_step

__all__ = [
    "Artefact",
    "CorrectedRR",
    "HeartState",
    "TimeDomainHRV",
    "correct_rr",
    "heart_step",
    "hrv_time_domain",
    "lf_hf",
    "mean_hr_bpm",
    "rr_from_beats",
    "rr_step",
]
