"""Fall detection: an impact followed by lying still, or by not getting up.

Role: the streamable fall rule (a carried tail of raw samples so a chunk boundary never
changes a decision) and the batch helper :func:`detect_falls`. Two paths decide a fall:

* *fast*: lying still ``POST_START_S``..``POST_END_S`` after the impact, decided
  ``POST_END_S`` after it, so a stream fed in chunks of up to 2.5 s reports it within 5 s;
* *not up*: a wearer who moves about on the floor (limbs, trying to get up) fails the
  stillness test, so an impact followed by a non-upright gravity direction for at least
  ``LYING_FRACTION`` of ``LYING_START_S``..``LYING_END_S`` after it is a fall too, decided
  ``LYING_END_S`` after the impact (its ``t_s`` is still the impact time).

An impact reported by the fast path is not reported again by the second one (the
refractory period covers it).

Must not: do I/O, import ``gateway`` or ``devices``, or loop per sample in Python (the
only loop is per candidate impact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from processing.motion.posture import (
    FloatArray,
    Posture,
    check_fs,
    classify_posture,
    validate_acc,
)

__all__ = ["IMPACT_MG", "Fall", "FallTail", "detect_falls"]

IMPACT_MG = 2500.0
"""Peak acceleration magnitude taken as an impact (walking stays below ~1.6 g, running
below ~3.3 g; the running cases are then rejected by the posture/stillness check)."""
IMPACT_HALF_S = 0.5
"""An impact is the largest magnitude within ±0.5 s."""
POST_START_S = 1.0
POST_END_S = 2.5
"""The wearer must be lying still from 1.0 to 2.5 s after the impact."""
STILL_MG = 100.0
"""RMS of the acceleration about its mean over the post-impact window (walking ~200 mG,
lying at rest ~10 mG)."""
LYING_START_S = 10.0
LYING_END_S = 20.0
LYING_FRACTION = 0.8
"""Second path: the wearer is not upright (1 s mean gravity direction) for at least 80 % of
the 1 s blocks from 10 to 20 s after the impact, whatever the movement."""
REFRACTORY_S = 5.0
"""No second fall is reported for an impact within 5 s of a reported one (either side)."""


@dataclass(frozen=True, slots=True)
class Fall:
    """One detected fall: the impact's absolute sample index, its peak magnitude (mG) and
    the posture the wearer lies in afterwards."""

    index: int
    impact_mg: float
    posture: Posture
    still: bool = True
    """True when decided by the fast (lying still) path, False by the not-up path."""


@dataclass(frozen=True, slots=True, eq=False)
class FallTail:
    """The fall rule's carried state: raw samples not yet past their decision, magnitudes
    (``-inf`` before the stream) and the indices of the falls reported recently (within the
    refractory period of an impact still to be decided)."""

    acc: FloatArray
    mag: FloatArray
    recent: tuple[int, ...]

    @classmethod
    def initial(cls, *, fs_hz: float) -> FallTail:
        size = _lying_end(fs_hz) + _half(fs_hz)
        return cls(np.zeros((size, 3)), np.full(size, -np.inf), ())


def _half(fs_hz: float) -> int:
    return max(1, round(IMPACT_HALF_S * fs_hz))


def _post_end(fs_hz: float) -> int:
    return math.ceil(POST_END_S * fs_hz)


def _lying_end(fs_hz: float) -> int:
    return math.ceil(LYING_END_S * fs_hz)


def _impact_peaks(mag: FloatArray, lo: int, hi: int, h: int) -> list[int]:
    """Buffer positions in ``[lo, hi)`` that are impacts (``>= IMPACT_MG`` and the largest
    within ±``h``; ``mag`` must extend ``h`` either side)."""
    pos = np.flatnonzero(mag[lo:hi] >= IMPACT_MG) + lo
    if pos.size == 0:
        return []
    windows = np.lib.stride_tricks.sliding_window_view(mag, 2 * h + 1)[pos - h]
    centre = windows[:, h]
    is_peak = (centre > windows[:, :h].max(axis=1)) & (centre >= windows[:, h + 1 :].max(axis=1))
    return [int(p) for p in pos[is_peak]]


def _still_lying(after: FloatArray) -> Posture | None:
    """Fast path: the lying posture when ``after`` is non-upright and still, else None."""
    mean = after.mean(axis=0)
    moving = float(np.sqrt(np.mean(np.sum((after - mean) ** 2, axis=1))))
    posture = Posture(int(classify_posture(mean)))
    return posture if moving <= STILL_MG and posture is not Posture.UPRIGHT else None


def _not_up(after: FloatArray, fs_hz: float) -> Posture | None:
    """Second path: the most frequent lying posture when at least ``LYING_FRACTION`` of the
    1 s blocks of ``after`` have a non-upright mean gravity direction, else None."""
    block = max(1, round(fs_hz))
    n = after.shape[0] // block
    if n == 0:
        return None
    means = after[: n * block].reshape(n, block, 3).mean(axis=1)
    codes = np.asarray(classify_posture(means), dtype=np.int64).reshape(-1)
    lying = codes[codes != int(Posture.UPRIGHT)]
    if lying.size < LYING_FRACTION * n:
        return None
    return Posture(int(np.bincount(lying).argmax()))


def _kangas_impact_posture(
    tail: FallTail, acc: FloatArray, n_seen: int, *, fs_hz: float
) -> tuple[list[Fall], FallTail]:
    """Impact + posture + stillness rule: an acceleration-magnitude peak of at least
    ``IMPACT_MG`` (the largest within ±``IMPACT_HALF_S``) followed, ``POST_START_S`` to
    ``POST_END_S`` later, by a non-upright mean gravity direction and an RMS movement
    under ``STILL_MG``.

    After Kangas et al., "Comparison of low-complexity fall detection algorithms for body
    attached accelerometers", Gait & Posture 28(2):285-291, 2008 (impact followed by a
    lying posture), with a stillness check added so that a wearer who is moving about
    (a hard sit-down, running) is not reported.

    Second path (not getting up): the same impact followed by a non-upright posture for
    ``LYING_FRACTION`` of ``LYING_START_S``..``LYING_END_S`` (see :func:`_not_up`), for a
    wearer who moves about on the floor after falling.

    ``tail`` covers the ``L + h`` samples before ``acc`` (``L`` = ``LYING_END_S`` in
    samples); impacts are decided once their window has been seen. Returns the absolute
    ``Fall``s decided now and the new tail.
    """
    h, post, slow = _half(fs_hz), _post_end(fs_hz), _lying_end(fs_hz)
    start = math.floor(POST_START_S * fs_hz)
    lying_start = math.floor(LYING_START_S * fs_hz)
    buf = np.concatenate((tail.acc, acc))
    mag = np.concatenate((tail.mag, np.linalg.norm(acc, axis=1)))
    size = tail.mag.size  # slow + h
    base = n_seen - size  # absolute index of buf[0]
    m = acc.shape[0]
    # impacts whose still (fast) or not-up window ends in this chunk, in decision order so
    # that any chunking makes the same decisions
    candidates = [(p + post, p, True) for p in _impact_peaks(mag, size - post, size - post + m, h)]
    candidates += [(p + slow, p, False) for p in _impact_peaks(mag, h, h + m, h)]
    candidates.sort()
    falls: list[Fall] = []
    recent = list(tail.recent)
    refractory = REFRACTORY_S * fs_hz
    for _, p, fast in candidates:
        if any(abs(base + p - r) < refractory for r in recent):
            continue
        if fast:
            posture = _still_lying(buf[p + start : p + post + 1])
        else:
            posture = _not_up(buf[p + lying_start : p + slow + 1], fs_hz)
        if posture is not None:
            recent.append(base + p)
            falls.append(Fall(base + p, float(mag[p]), posture, still=fast))
    falls.sort(key=lambda f: f.index)
    keep_after = n_seen + m - slow - h - refractory
    recent = [r for r in recent if r >= keep_after]
    acc_tail, mag_tail = buf[buf.shape[0] - size :].copy(), mag[mag.size - size :].copy()
    return falls, FallTail(acc_tail, mag_tail, tuple(recent))


def falls_step(
    tail: FallTail, acc: FloatArray, n_seen: int, *, fs_hz: float
) -> tuple[list[Fall], FallTail]:
    """Streaming fall rule (see :func:`_kangas_impact_posture`)."""
    return _kangas_impact_posture(tail, acc, n_seen, fs_hz=fs_hz)


def detect_falls(acc_mg: npt.ArrayLike, *, fs_hz: float) -> FloatArray:
    """Impact times (s since the first sample) of the falls in ``(n, 3)`` mG samples;
    impacts in the last ``POST_END_S`` (fast path) or ``LYING_END_S`` (not-up path) cannot
    be decided by that path and are not reported by it."""
    fs = check_fs(fs_hz)
    acc = validate_acc(acc_mg)
    falls, _ = falls_step(FallTail.initial(fs_hz=fs), acc, 0, fs_hz=fs)
    return np.asarray([f.index for f in falls], dtype=np.float64) / fs
