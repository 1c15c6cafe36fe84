"""Ground-truth rates over a window, from a simulator's event times (tests only).

One definition per signal for every test that compares a stored or computed rate with
the truth, the same the processors use:

* heart rate over ``[start_s, end_s)``: 60 / the mean RR interval of the beats that *end*
  in the window (the first interval reaches back before it), as ``processing.heart``;
* respiration rate: 60 / the mean onset-to-onset interval with *both* onsets in the
  window, as ``processing.respiration.window_rate``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def _rate(times_s: npt.ArrayLike, start_s: float, end_s: float, *, whole: bool) -> float:
    times = np.asarray(times_s, dtype=np.float64)
    intervals = np.diff(times)
    starts, ends = times[:-1], times[1:]
    keep = (ends >= start_s) & (ends < end_s)
    if whole:
        keep &= starts >= start_s
    inside = intervals[keep]
    if inside.size == 0:
        return float("nan")
    return float(60.0 / inside.mean())


def true_heart_rate(r_peak_times_s: npt.ArrayLike, start_s: float, end_s: float) -> float:
    """Beats per minute of the true beats ending in ``[start_s, end_s)``."""
    return _rate(r_peak_times_s, start_s, end_s, whole=False)


def true_resp_rate(onset_times_s: npt.ArrayLike, start_s: float, end_s: float) -> float:
    """Breaths per minute of the true breaths (onset to onset) inside the window."""
    return _rate(onset_times_s, start_s, end_s, whole=True)
