"""Physiological signal sources with ground truth, for simulated garments and tests.

Role: the shared streaming contract (``SignalSource``), the fixed-block machinery that
makes every source chunk-invariant, rate schedules, coloured-noise helpers and the
ground-truth export used by the CLI. The generators live in the submodules:

* ``ecg``         ECGSYN-style synthetic ECG (µV) with HRV, noise and PVCs
* ``respiration`` respiration band (a.u.) with breath variability, apnoea, artefacts
* ``temperature`` skin temperature (°C) with sensor warm-up, drift and fever
* ``motion``      3-axis accelerometer (mG) with postures, gait and falls
* ``replay``      WFDB / CSV recordings replayed (and resampled) as a source
* ``scenario``    one wearer: the four synthetic sources on a shared timeline

Must not: import asyncio, bumble or any networking; read clocks; keep global state. The
only file access is the replay readers and ``export_truth``. Submodules are not imported
here, so importing one generator costs only numpy/scipy.

Every source is deterministic for its seed: samples are produced in fixed internal
blocks independent of how callers slice their reads, so ``read(3) + read(7)`` equals
``read(10)``. Memory is bounded by one block plus the ground-truth events so far.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from devices.errors import BiogwError
from devices.frame import Unit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]

TruthT = TypeVar("TruthT")
TruthT_co = TypeVar("TruthT_co", covariant=True)
ScalarT = TypeVar("ScalarT", bound=np.generic)

__all__ = [
    "BlockSource",
    "ColouredNoise",
    "EventLog",
    "FloatArray",
    "IntArray",
    "Interval",
    "Schedule",
    "SignalError",
    "SignalSource",
    "StrArray",
    "as_schedule",
    "export_truth",
    "rng_streams",
]


class SignalError(BiogwError, ValueError):
    """A signal source was configured or used in a way it cannot honour.

    ``source`` names the generator (``"ecg"``, ``"replay"``, ...), ``reason`` is a short tag.
    """

    def __init__(self, source: str, reason: str, detail: str = "") -> None:
        self.source = source
        self.reason = reason
        self.detail = detail
        text = f"{source}: {reason}"
        super().__init__(f"{text} ({detail})" if detail else text)


class SignalSource(Protocol[TruthT_co]):
    """A stream of samples at a fixed rate, with the ground truth behind them.

    ``read(n)`` returns the next ``n`` samples (shape ``(n,)``, or ``(n, 3)`` when
    ``channels == 3``), continuing seamlessly from the previous call. ``truth()``
    returns the ground-truth events whose time is before the next unread sample.
    """

    @property
    def fs_hz(self) -> float: ...

    @property
    def unit(self) -> Unit: ...

    @property
    def channels(self) -> int: ...

    def read(self, n: int) -> FloatArray: ...

    def truth(self) -> TruthT_co: ...


@dataclass(frozen=True, slots=True)
class Interval:
    """A half-open time interval ``[start_s, end_s)`` on the source's timeline."""

    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_s) and math.isfinite(self.end_s)):
            raise SignalError("interval", "not_finite")
        if self.end_s <= self.start_s:
            raise SignalError("interval", "empty", f"{self.start_s}..{self.end_s}")

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True, slots=True)
class Schedule:
    """A value over time given by knots; held constant before the first and after the last.

    ``linear`` interpolates between knots (a ramp); ``step`` holds each knot's value until
    the next knot (an abrupt change, e.g. the onset of a tachycardia episode).
    """

    times_s: tuple[float, ...]
    values: tuple[float, ...]
    interpolation: Literal["linear", "step"] = "linear"

    def __post_init__(self) -> None:
        if not self.times_s or len(self.times_s) != len(self.values):
            raise SignalError("schedule", "bad_knots", "need as many times as values, >= 1")
        if any(b <= a for a, b in itertools.pairwise(self.times_s)):
            raise SignalError("schedule", "unsorted", "knot times must increase strictly")
        if not all(math.isfinite(v) for v in (*self.times_s, *self.values)):
            raise SignalError("schedule", "not_finite")

    @classmethod
    def constant(cls, value: float) -> Schedule:
        return cls((0.0,), (float(value),))

    @classmethod
    def from_pairs(
        cls,
        pairs: Iterable[tuple[float, float]],
        interpolation: Literal["linear", "step"] = "linear",
    ) -> Schedule:
        knots = list(pairs)
        return cls(tuple(t for t, _ in knots), tuple(v for _, v in knots), interpolation)

    def __call__(self, t_s: FloatArray) -> FloatArray:
        xp = np.asarray(self.times_s, dtype=np.float64)
        fp = np.asarray(self.values, dtype=np.float64)
        if self.interpolation == "linear":
            return np.asarray(np.interp(t_s, xp, fp), dtype=np.float64)
        index = np.clip(np.searchsorted(xp, t_s, side="right") - 1, 0, len(fp) - 1)
        return fp[index]

    def at(self, t_s: float) -> float:
        return float(self(np.array([t_s]))[0])

    @property
    def lowest(self) -> float:
        return min(self.values)

    @property
    def highest(self) -> float:
        return max(self.values)


def as_schedule(value: float | Schedule) -> Schedule:
    """Accept a constant or a schedule wherever a rate may vary over time."""
    return value if isinstance(value, Schedule) else Schedule.constant(value)


def rng_streams(seed: int, n: int) -> list[np.random.Generator]:
    """``n`` independent generators derived from one seed (numpy ``SeedSequence.spawn``)."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


class EventLog(Generic[ScalarT]):
    """An append-only growable 1-D array (amortised O(1) append, O(1) view)."""

    def __init__(self, dtype: type[ScalarT]) -> None:
        self._data: npt.NDArray[ScalarT] = np.empty(64, dtype=dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def extend(self, values: npt.ArrayLike) -> None:
        new = np.asarray(values, dtype=self._data.dtype).ravel()
        need = self._n + new.size
        if need > self._data.size:
            grown = np.empty(max(need, 2 * self._data.size), dtype=self._data.dtype)
            grown[: self._n] = self._data[: self._n]
            self._data = grown
        self._data[self._n : need] = new
        self._n = need

    def view(self) -> npt.NDArray[ScalarT]:
        """The values so far (a read-only view: copy before keeping it)."""
        out = self._data[: self._n]
        out.flags.writeable = False
        return out


class ColouredNoise:
    """Gaussian noise low-passed by a Butterworth SOS filter, streamed with carried state.

    Scaled so the stationary RMS equals ``rms``; the filter is run through a burn-in so
    the very first samples are already stationary.
    """

    def __init__(
        self, rng: np.random.Generator, *, fs_hz: float, cutoff_hz: float, rms: float
    ) -> None:
        if not 0 < cutoff_hz < fs_hz / 2:
            raise SignalError("noise", "bad_cutoff", f"{cutoff_hz} Hz at fs {fs_hz} Hz")
        self._rng = rng
        self._sos = np.asarray(sps.butter(2, cutoff_hz, fs=fs_hz, output="sos"), dtype=np.float64)
        settle = math.ceil(8.0 * fs_hz / cutoff_hz)
        impulse = np.zeros(settle)
        impulse[0] = 1.0
        gain = float(np.sqrt(np.sum(sps.sosfilt(self._sos, impulse) ** 2)))
        self._scale = rms / gain if gain > 0 else 0.0
        self._zi = np.zeros((self._sos.shape[0], 2))
        self.next(settle)

    def next(self, n: int) -> FloatArray:
        white = self._rng.standard_normal(n)
        out, self._zi = sps.sosfilt(self._sos, white, zi=self._zi)
        return np.asarray(out, dtype=np.float64) * self._scale


class BlockSource(ABC, Generic[TruthT]):
    """Serves ``read(n)`` from fixed-size blocks rendered by ``_render``.

    Subclasses render block ``k`` (samples ``k*block_len`` ...) in order, drawing random
    numbers only inside ``_render`` (or lazily in time order), so the output does not
    depend on how reads are sliced.
    """

    def __init__(self, *, fs_hz: float, unit: Unit, channels: int, block_len: int) -> None:
        if not (math.isfinite(fs_hz) and fs_hz > 0):
            raise SignalError(type(self).__name__, "bad_fs", str(fs_hz))
        self._fs_hz = float(fs_hz)
        self._unit = unit
        self._channels = channels
        self._block_len = max(1, int(block_len))
        self._rendered = 0
        self._position = 0
        self._buffer: FloatArray = np.empty((0, channels) if channels > 1 else 0)
        self._buffer_pos = 0

    @property
    def fs_hz(self) -> float:
        return self._fs_hz

    @property
    def unit(self) -> Unit:
        return self._unit

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def position(self) -> int:
        """Samples handed out so far (the index of the next sample)."""
        return self._position

    @property
    def now_s(self) -> float:
        """The time of the next unread sample: truth covers events before it."""
        return self._position / self._fs_hz

    def read(self, n: int) -> FloatArray:
        n = operator.index(n)  # a float count is a caller bug, not a request to round
        if n < 0:
            raise SignalError(type(self).__name__, "negative_read", str(n))
        parts: list[FloatArray] = []
        need = n
        while need > 0:
            if self._buffer_pos >= len(self._buffer):
                self._buffer = self._render(self._rendered, self._block_len)
                self._rendered += self._block_len
                self._buffer_pos = 0
            take = min(need, len(self._buffer) - self._buffer_pos)
            parts.append(self._buffer[self._buffer_pos : self._buffer_pos + take])
            self._buffer_pos += take
            need -= take
        self._position += n
        if not parts:
            return np.empty((0, self._channels) if self._channels > 1 else 0)
        return np.concatenate(parts).astype(np.float64, copy=False)  # always a new array

    def _times(self, start: int, count: int) -> FloatArray:
        return (start + np.arange(count, dtype=np.float64)) / self._fs_hz

    @abstractmethod
    def _render(self, start: int, count: int) -> FloatArray:
        """Samples ``start .. start+count-1``; called exactly once per block, in order."""

    @abstractmethod
    def truth(self) -> TruthT:
        """Ground-truth events before ``now_s``."""


def _jsonable(array: npt.NDArray[Any]) -> list[Any]:
    if array.dtype.kind == "f":
        return [float(v) if math.isfinite(v) else None for v in array.tolist()]
    return list(array.tolist())


def _truth_fields(truth: object) -> dict[str, npt.NDArray[Any]]:
    if not dataclasses.is_dataclass(truth) or isinstance(truth, type):
        raise SignalError("export", "not_truth", type(truth).__name__)
    fields: dict[str, npt.NDArray[Any]] = {}
    for f in dataclasses.fields(truth):
        value = np.asarray(getattr(truth, f.name))
        if value.ndim != 1:
            raise SignalError("export", "not_1d", f.name)
        fields[f.name] = value
    return fields


def export_truth(
    truth: object, path: str | PathLike[str], fmt: Literal["json", "csv"] | None = None
) -> None:
    """Write a ground-truth dataclass (1-D array fields) to JSON or CSV.

    The format follows ``fmt`` or else the file suffix. JSON is
    ``{"truth": <type name>, "fields": {<name>: [values...]}}`` with NaN as ``null``;
    CSV is long format with the header ``field,index,value`` (fields of different
    lengths fit one table).
    """
    target = Path(path)
    kind = fmt or target.suffix.lstrip(".").lower()
    fields = _truth_fields(truth)
    if kind == "json":
        doc = {
            "truth": type(truth).__name__,
            "fields": {k: _jsonable(v) for k, v in fields.items()},
        }
        target.write_text(json.dumps(doc, allow_nan=False) + "\n", encoding="utf-8")
    elif kind == "csv":
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["field", "index", "value"])
            for name, values in fields.items():
                for i, v in enumerate(_jsonable(values)):
                    writer.writerow(
                        [name, i, "" if v is None else repr(v) if isinstance(v, float) else v]
                    )
    else:
        raise SignalError("export", "unknown_format", kind or "(no suffix)")
