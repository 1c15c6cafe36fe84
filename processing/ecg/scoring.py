"""Beat-detection scoring after ANSI/AAMI EC57: one-to-one matching within a tolerance,
then sensitivity, positive predictivity and F1.

Role: pure scoring used by tests and benchmarks.
Must not: do I/O or import ``gateway`` or ``devices``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class BeatScore:
    """Counts of a matching; the ratios are 0.0 when undefined (no beats at all)."""

    tp: int
    fn: int
    fp: int

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def positive_predictivity(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fn + self.fp
        return 2 * self.tp / denom if denom else 0.0

    def __add__(self, other: BeatScore) -> BeatScore:
        return BeatScore(self.tp + other.tp, self.fn + other.fn, self.fp + other.fp)


def match_beats(
    reference: npt.ArrayLike, detected: npt.ArrayLike, *, tolerance_samples: int
) -> BeatScore:
    """Match each reference beat to at most one detection within ``tolerance_samples``
    (inclusive), in time order, taking the nearest detection not yet used."""
    ref = np.sort(np.asarray(reference, dtype=np.int64))
    det = np.sort(np.asarray(detected, dtype=np.int64))
    tp = 0
    j = 0
    n_det = det.shape[0]
    for r in ref.tolist():
        while j < n_det and det[j] < r - tolerance_samples:
            j += 1
        if j >= n_det or det[j] > r + tolerance_samples:
            continue
        # det[j] is the earliest unused detection in the window; prefer the next one if
        # it is nearer and the one after this reference cannot use det[j] anyway.
        if j + 1 < n_det and abs(int(det[j + 1]) - r) < abs(int(det[j]) - r):
            j += 1
        tp += 1
        j += 1
    return BeatScore(tp=tp, fn=int(ref.shape[0]) - tp, fp=int(n_det) - tp)


def score_beats(
    reference: npt.ArrayLike, detected: npt.ArrayLike, *, fs_hz: float, tolerance_s: float = 0.150
) -> BeatScore:
    """:func:`match_beats` with the tolerance given in seconds (EC57: 150 ms)."""
    return match_beats(reference, detected, tolerance_samples=round(tolerance_s * fs_hz))
