"""The one root of ``processing``'s input errors, and the input checks the modules share.

Role: :class:`SignalInputError` (a ``ValueError`` with a short ``reason`` tag and a
``detail``), subclassed once per signal (``EcgInputError``, ``RespInputError``,
``TempInputError``, ``MotionInputError``) so a caller may catch one signal or all; and the
checks every streaming processor repeats: the sample-rate range (:func:`check_rate`), the
rate a stream was started at (:func:`check_stream_rate`), numeric input
(:func:`float_array`), finite samples (:func:`require_finite`) and a 1-D chunk
(:func:`samples_1d`). Each check raises the error class it is given, with the reasons
``fs_range``, ``fs_mismatch``, ``not_numeric``, ``not_finite`` and ``not_1d``.
Must not: put signal values in a message, do I/O, import ``gateway`` or ``devices``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "SignalInputError",
    "check_rate",
    "check_stream_rate",
    "float_array",
    "require_finite",
    "samples_1d",
]


class SignalInputError(ValueError):
    """Input a processor cannot use; ``reason`` is a short tag (``"fs_range"``,
    ``"not_1d"``, ...), ``detail`` a few words for people. The message is
    ``"<signal>: <reason> (<detail>)"`` and never holds signal values."""

    signal: ClassVar[str] = "signal"
    """The message's prefix; each subclass names its signal."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        head = f"{self.signal}: {reason}"
        super().__init__(f"{head} ({detail})" if detail else head)


def check_rate(fs_hz: float, *, low: float, high: float, error: type[SignalInputError]) -> float:
    """``fs_hz`` as a float, or ``error("fs_range")`` unless finite and within
    ``[low, high]`` (``high`` may be ``math.inf``: no upper limit)."""
    fs = float(fs_hz)
    if not (math.isfinite(fs) and low <= fs <= high):
        limit = f"in [{low:g}, {high:g}]" if math.isfinite(high) else f"at least {low:g}"
        raise error("fs_range", f"fs_hz must be {limit}")
    return fs


def check_stream_rate(
    fs_hz: float, state_fs_hz: float, *, low: float, high: float, error: type[SignalInputError]
) -> None:
    """``error("fs_range")`` as :func:`check_rate`, then ``error("fs_mismatch")`` when
    ``fs_hz`` is not the rate the stream's state was started at."""
    if check_rate(fs_hz, low=low, high=high, error=error) != state_fs_hz:
        raise error("fs_mismatch", f"state is for {state_fs_hz:g} Hz")


def float_array(data: npt.ArrayLike, *, error: type[SignalInputError]) -> FloatArray:
    """``data`` as a float64 array, or ``error("not_numeric")`` when it has no numeric
    reading."""
    try:
        return np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise error("not_numeric") from exc


def require_finite(x: FloatArray, *, error: type[SignalInputError]) -> None:
    """``error("not_finite")`` when any sample is NaN or infinite."""
    if not np.all(np.isfinite(x)):
        raise error("not_finite", "NaN or infinite samples")


def samples_1d(chunk: npt.ArrayLike, *, error: type[SignalInputError]) -> FloatArray:
    """``chunk`` as a 1-D float64 array of finite samples, or ``error("not_1d")`` /
    ``error("not_finite")``. Input that is not numeric at all raises numpy's own error;
    pass it through :func:`float_array` first for ``error("not_numeric")``."""
    x = np.asarray(chunk, dtype=np.float64)
    if x.ndim != 1:
        raise error("not_1d", f"expected a 1-D array, got shape {x.shape}")
    require_finite(x, error=error)
    return x
