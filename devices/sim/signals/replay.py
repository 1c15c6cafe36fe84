"""Recorded signals replayed as sources: WFDB records (e.g. MIT-BIH) and CSV columns.

The whole channel is loaded once (a 30 min MIT-BIH record is 650 000 samples, ~5 MB),
converted to the source unit (WFDB physical mV → µV), resampled once to the target rate
with ``scipy.signal.resample_poly`` (zero-phase polyphase FIR, so sample ``i`` is still
at ``i / fs``) when the rates differ, and then **looped**: after the last sample the
replay continues from the first, so a simulator can run for any duration. The seam is a
plain jump (no cross-fade); the annotations repeat with each loop, shifted by the
record's duration. NaN samples (WFDB "invalid") hold the previous valid value.

Reference annotations become the truth when present: ``<record>.atr`` read with
``wfdb.rdann`` (beat symbols only), else ``<record>.beats.csv`` (one sample index a
line, ``#`` comments, no symbols). ``wfdb`` is an optional dependency imported lazily;
a clear ``ReplayError`` says when it is missing. Must not: import asyncio/bumble, write
files, read clocks.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from os import PathLike
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from devices.errors import BiogwError
from devices.frame import Unit
from devices.sim.signals import FloatArray, IntArray, SignalError, StrArray

__all__ = ["BEAT_SYMBOLS", "AnnotationTruth", "CsvReplay", "ReplayError", "WfdbReplay"]

BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
"""WFDB annotation symbols that mark a beat (as in the data README)."""

_UNIT_SCALE = {
    "mv": (Unit.MICROVOLT, 1000.0),
    "uv": (Unit.MICROVOLT, 1.0),
    "µv": (Unit.MICROVOLT, 1.0),
}


class ReplayError(BiogwError):
    """A recording could not be replayed: ``reason`` is a short tag, ``source`` the path."""

    def __init__(self, source: str, reason: str, detail: str = "") -> None:
        self.source = source
        self.reason = reason
        self.detail = detail
        text = f"{source}: {reason}"
        super().__init__(f"{text} ({detail})" if detail else text)


@dataclass(frozen=True, slots=True)
class AnnotationTruth:
    """Reference events before now: times (s), sample indices at the replay rate, labels.

    ``labels`` are the annotation symbols, or ``""`` when the source gives positions only.
    """

    times_s: FloatArray
    samples: IntArray
    labels: StrArray


@contextlib.contextmanager
def _quiet_wfdb() -> Iterator[None]:
    """wfdb 4.3 calls pandas APIs that pandas 3 deprecates (on import and in ``rdann``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _import_wfdb(source: str) -> ModuleType:
    try:
        with _quiet_wfdb():
            return importlib.import_module("wfdb")
    except ImportError as exc:
        raise ReplayError(
            source, "wfdb_missing", "install the optional dependency: pip install 'biogw[dev]'"
        ) from exc


def _rate_ratio(source: str, fs_in: float, fs_out: float) -> tuple[int, int]:
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    if not (fs_out > 0 and math.isclose(float(ratio) * fs_in, fs_out, rel_tol=1e-9)):
        raise ReplayError(source, "bad_rate", f"{fs_in} Hz -> {fs_out} Hz is not a small ratio")
    return ratio.numerator, ratio.denominator


def _hold_nan(x: FloatArray) -> FloatArray:
    bad = np.isnan(x)
    if not bad.any():
        return x
    if bad.all():
        return np.zeros_like(x)
    index = np.where(bad, 0, np.arange(len(x)))
    np.maximum.accumulate(index, out=index)
    first = int(np.argmin(bad))
    out = x[index]
    out[:first] = x[first]
    return out


class _LoopingReplay:
    """A loaded channel and its annotations, resampled and served in a loop."""

    def __init__(
        self,
        *,
        name: str,
        samples: FloatArray,
        fs_in: float,
        fs_out: float | None,
        unit: Unit,
        events: tuple[IntArray, StrArray],
    ) -> None:
        target = fs_in if fs_out is None else float(fs_out)
        up, down = _rate_ratio(name, fs_in, target)
        x = _hold_nan(np.asarray(samples, dtype=np.float64))
        if len(x) == 0:
            raise ReplayError(name, "empty")
        if up != down:
            x = np.asarray(sps.resample_poly(x, up, down), dtype=np.float64)
        self._name = name
        self._x = x
        self._fs = target
        self._unit = unit
        event_samples, self._labels = events
        self._event_s = np.asarray(event_samples, dtype=np.float64) / fs_in
        order = np.argsort(self._event_s, kind="stable")
        self._event_s, self._labels = self._event_s[order], self._labels[order]
        self._position = 0

    @property
    def fs_hz(self) -> float:
        return self._fs

    @property
    def unit(self) -> Unit:
        return self._unit

    @property
    def channels(self) -> int:
        return 1

    @property
    def loop_samples(self) -> int:
        """Samples per loop at the replay rate."""
        return len(self._x)

    def read(self, n: int) -> FloatArray:
        if n < 0:
            raise SignalError("replay", "negative_read", str(n))
        start = self._position % len(self._x)
        index = (start + np.arange(n)) % len(self._x)
        self._position += n
        return self._x[index].copy()

    def truth(self) -> AnnotationTruth:
        period_s = len(self._x) / self._fs
        now_s = self._position / self._fs
        loops = int(now_s // period_s) + 1
        times = (self._event_s[None, :] + period_s * np.arange(loops)[:, None]).ravel()
        labels = np.tile(self._labels, loops)
        keep = times < now_s
        times = times[keep]
        return AnnotationTruth(
            times_s=times,
            samples=np.round(times * self._fs).astype(np.int64),
            labels=labels[keep],
        )


def _read_beats_csv(path: Path) -> IntArray:
    values = np.loadtxt(path, comments="#", dtype=np.int64, ndmin=1)
    return np.asarray(values, dtype=np.int64)


def _wfdb_annotations(wfdb: Any, record_path: str) -> tuple[IntArray, StrArray]:
    base = Path(record_path)
    if base.with_name(base.name + ".atr").exists():
        with _quiet_wfdb():
            ann = wfdb.rdann(record_path, "atr")
        symbols = np.asarray(ann.symbol, dtype=np.str_)
        beats = np.isin(symbols, sorted(BEAT_SYMBOLS))
        return np.asarray(ann.sample, dtype=np.int64)[beats], symbols[beats]
    csv_path = base.with_name(base.name + ".beats.csv")
    if csv_path.exists():
        samples = _read_beats_csv(csv_path)
        return samples, np.full(len(samples), "", dtype=np.str_)
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.str_)


class WfdbReplay(_LoopingReplay):
    """One channel of a WFDB record in µV at ``fs_hz`` (default: the record's rate), looped.

    ``record_path`` is the record name with its directory and no suffix, e.g.
    ``/work/shared/data/mitdb/100``.
    """

    def __init__(
        self, record_path: str | PathLike[str], channel: int = 0, fs_hz: float | None = None
    ) -> None:
        name = str(record_path)
        wfdb = _import_wfdb(name)
        try:
            with _quiet_wfdb():
                record = wfdb.rdrecord(name, channels=[channel], physical=True)
        except (OSError, ValueError, IndexError) as exc:
            raise ReplayError(name, "unreadable", type(exc).__name__) from exc
        unit_name = str(record.units[0] or "mV").strip().lower()
        if unit_name not in _UNIT_SCALE:
            raise ReplayError(name, "unknown_unit", unit_name)
        unit, scale = _UNIT_SCALE[unit_name]
        self.record_fs_hz = float(record.fs)
        self.signal_name = str(record.sig_name[0])
        super().__init__(
            name=name,
            samples=np.asarray(record.p_signal[:, 0], dtype=np.float64) * scale,
            fs_in=self.record_fs_hz,
            fs_out=fs_hz,
            unit=unit,
            events=_wfdb_annotations(wfdb, name),
        )


def _csv_column(path: Path, column: int | str, delimiter: str) -> tuple[int, int]:
    """(column index, rows to skip) — a header row is needed only for a named column."""
    with path.open(newline="", encoding="utf-8") as handle:
        for skipped, row in enumerate(csv.reader(handle, delimiter=delimiter)):
            if not row or row[0].lstrip().startswith("#"):
                continue
            if isinstance(column, int):
                try:
                    float(row[column])
                except (ValueError, IndexError):
                    return column, skipped + 1
                return column, skipped
            names = [cell.strip() for cell in row]
            if column not in names:
                raise ReplayError(str(path), "no_such_column", column)
            return names.index(column), skipped + 1
    raise ReplayError(str(path), "empty")


class CsvReplay(_LoopingReplay):
    """One numeric column of a CSV file recorded at ``fs_hz``, looped.

    ``column`` is an index or a header name; values are multiplied by ``scale`` and
    labelled ``unit``. ``target_fs_hz`` resamples; ``events_path`` (one sample index per
    line at ``fs_hz``, ``#`` comments) supplies the truth.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        fs_hz: float,
        column: int | str = 0,
        *,
        unit: Unit = Unit.MICROVOLT,
        scale: float = 1.0,
        target_fs_hz: float | None = None,
        delimiter: str = ",",
        events_path: str | PathLike[str] | None = None,
    ) -> None:
        file = Path(path)
        try:
            index, skip = _csv_column(file, column, delimiter)
            data: npt.NDArray[np.float64] = np.loadtxt(
                file, delimiter=delimiter, comments="#", skiprows=skip, usecols=index, ndmin=1
            )
            events = (
                _read_beats_csv(Path(events_path))
                if events_path is not None
                else np.zeros(0, dtype=np.int64)
            )
        except (OSError, ValueError) as exc:
            raise ReplayError(str(file), "unreadable", type(exc).__name__) from exc
        super().__init__(
            name=str(file),
            samples=np.asarray(data, dtype=np.float64) * scale,
            fs_in=float(fs_hz),
            fs_out=target_fs_hz,
            unit=unit,
            events=(events, np.full(len(events), "", dtype=np.str_)),
        )
