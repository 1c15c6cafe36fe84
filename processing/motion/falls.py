"""Fall detection: an impact followed by lying still.

Role: the streamable fall rule (a carried tail of raw samples so a chunk boundary never
changes a decision) and the batch helper :func:`detect_falls`. A fall is decided
``POST_END_S`` after its impact, so a stream fed in chunks of up to 2.5 s reports it
within 5 s.

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
REFRACTORY_S = 5.0
"""No second fall is reported within 5 s of one."""


@dataclass(frozen=True, slots=True)
class Fall:
    """One detected fall: the impact's absolute sample index, its peak magnitude (mG) and
    the posture the wearer lies in afterwards."""

    index: int
    impact_mg: float
    posture: Posture


@dataclass(frozen=True, slots=True, eq=False)
class FallTail:
    """The fall rule's carried state: raw samples not yet past their decision, magnitudes
    (``-inf`` before the stream) and the index of the last fall reported."""

    acc: FloatArray
    mag: FloatArray
    last_fall: int

    @classmethod
    def initial(cls, *, fs_hz: float) -> FallTail:
        size = _post_end(fs_hz) + _half(fs_hz)
        return cls(np.zeros((size, 3)), np.full(size, -np.inf), -(10**12))


def _half(fs_hz: float) -> int:
    return max(1, round(IMPACT_HALF_S * fs_hz))


def _post_end(fs_hz: float) -> int:
    return math.ceil(POST_END_S * fs_hz)


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

    ``tail`` covers the ``P + h`` samples before ``acc`` (absolute ``n_seen - P - h ...``);
    impacts in the last ``P`` samples are decided on a later call. Returns the absolute
    ``Fall``s decided now and the new tail.
    """
    h, post = _half(fs_hz), _post_end(fs_hz)
    start = math.floor(POST_START_S * fs_hz)
    buf = np.concatenate((tail.acc, acc))
    mag = np.concatenate((tail.mag, np.linalg.norm(acc, axis=1)))
    base = n_seen - post - h  # absolute index of buf[0]
    m = acc.shape[0]
    pos = np.flatnonzero(mag[h : m + h] >= IMPACT_MG) + h
    falls: list[Fall] = []
    last = tail.last_fall
    if pos.size:
        windows = np.lib.stride_tricks.sliding_window_view(mag, 2 * h + 1)[pos - h]
        centre = windows[:, h]
        is_peak = (centre > windows[:, :h].max(axis=1)) & (
            centre >= windows[:, h + 1 :].max(axis=1)
        )
        for p in pos[is_peak].tolist():
            if base + p - last < REFRACTORY_S * fs_hz:
                continue
            after = buf[p + start : p + post + 1]
            mean = after.mean(axis=0)
            moving = float(np.sqrt(np.mean(np.sum((after - mean) ** 2, axis=1))))
            posture = Posture(int(classify_posture(mean)))
            if moving <= STILL_MG and posture is not Posture.UPRIGHT:
                last = base + p
                falls.append(Fall(last, float(mag[p]), posture))
    keep = post + h
    return falls, FallTail(buf[buf.shape[0] - keep :].copy(), mag[mag.size - keep :].copy(), last)


def falls_step(
    tail: FallTail, acc: FloatArray, n_seen: int, *, fs_hz: float
) -> tuple[list[Fall], FallTail]:
    """Streaming fall rule (see :func:`_kangas_impact_posture`)."""
    return _kangas_impact_posture(tail, acc, n_seen, fs_hz=fs_hz)


def detect_falls(acc_mg: npt.ArrayLike, *, fs_hz: float) -> FloatArray:
    """Impact times (s since the first sample) of the falls in ``(n, 3)`` mG samples;
    impacts in the last ``POST_END_S`` cannot be decided and are not reported."""
    fs = check_fs(fs_hz)
    acc = validate_acc(acc_mg)
    falls, _ = falls_step(FallTail.initial(fs_hz=fs), acc, 0, fs_hz=fs)
    return np.asarray([f.index for f in falls], dtype=np.float64) / fs
