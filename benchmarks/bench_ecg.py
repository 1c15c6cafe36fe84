"""Batch R-peak detection on MIT-BIH Arrhythmia records: accuracy and speed on one core.

For each record in ``../shared/data/mitdb`` (lead MLII) the detectors run in this process
and are scored against the reference beats with the ANSI/AAMI EC57 150 ms window:
sensitivity (Se), positive predictivity (+P) and F1 per record and pooled, and the speed
in x real time (signal seconds per wall second, best of several rounds). biogw's detector
runs twice: batch (``detect_r_peaks``, one streaming pass over the whole record) and
streaming fed in 1 s chunks; next to it wfdb's GQRS and, when it is installed, NeuroKit2's
default detector (``ecg_clean`` then ``ecg_peaks``, method "neurokit"). Then the streaming
peaks' agreement with the batch ones (within 10 ms, and identical indices; both should be
1.0000) and the longest decision delay.
Data: MIT-BIH Arrhythmia Database (Moody & Mark, IEEE EMB Mag. 20(3):45-50, 2001; PhysioNet).
"""

from __future__ import annotations

import importlib
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from processing.ecg import RPeakState, detect_r_peaks, r_peak_flush, r_peak_step
from processing.ecg.scoring import BeatScore, match_beats, score_beats

MITDB = (
    Path(
        os.environ.get("BIOGW_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    / "mitdb"
)
RECORDS = ("100", "105", "106", "119")
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")

Detector = Callable[[npt.NDArray[np.float64], float], npt.NDArray[np.int64]]


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    ecg_mv: npt.NDArray[np.float64]
    fs_hz: float
    reference: npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Row:
    detector: str
    record: str
    score: BeatScore
    x_real_time: float


def _load(name: str) -> Record:
    import wfdb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # wfdb's pandas deprecation warnings
        rec = wfdb.rdrecord(str(MITDB / name))
        if (MITDB / f"{name}.beats.csv").is_file():
            lines = (MITDB / f"{name}.beats.csv").read_text().splitlines()
            ref = [int(s) for s in lines if s.strip() and not s.startswith("#")]
        else:
            ann = wfdb.rdann(str(MITDB / name), "atr")
            ref = [s for s, y in zip(ann.sample, ann.symbol, strict=True) if y in BEAT_SYMBOLS]
    ecg = np.ascontiguousarray(rec.p_signal[:, 0], dtype=np.float64)
    return Record(name, ecg, float(rec.fs), np.asarray(ref, dtype=np.int64))


def _biogw(ecg: npt.NDArray[np.float64], fs_hz: float) -> npt.NDArray[np.int64]:
    return detect_r_peaks(ecg, fs_hz=fs_hz)


def _stream(ecg: npt.NDArray[np.float64], fs_hz: float) -> npt.NDArray[np.int64]:
    """biogw's streaming detector fed in 1 s chunks."""
    state = RPeakState.initial(fs_hz=fs_hz)
    step = round(fs_hz)
    found: list[npt.NDArray[np.int64]] = []
    for start in range(0, ecg.size, step):
        batch, state = r_peak_step(state, ecg[start : start + step])
        found.append(batch.indices)
    found.append(r_peak_flush(state).indices)
    return np.concatenate(found)


@dataclass(frozen=True, slots=True)
class StreamCheck:
    record: str
    agree_10ms: float
    identical: bool
    max_delay_s: float


def _stream_check(record: Record) -> StreamCheck:
    """Agreement of the streaming peaks (1 s chunks) with the batch ones, and the decision
    delay: fed in 0.1 s chunks, the longest time from a peak to the end of the chunk that
    reported it (the delay itself plus at most one chunk)."""
    fs = record.fs_hz
    stream = _stream(record.ecg_mv, fs)
    batch_peaks = detect_r_peaks(record.ecg_mv, fs_hz=fs)
    n = max(stream.size, batch_peaks.size, 1)
    close = match_beats(batch_peaks, stream, tolerance_samples=round(0.010 * fs)).tp / n
    same = bool(np.array_equal(batch_peaks, stream))
    state = RPeakState.initial(fs_hz=fs)
    step = round(0.1 * fs)
    delay = 0
    for start in range(0, record.ecg_mv.size, step):
        batch, state = r_peak_step(state, record.ecg_mv[start : start + step])
        if batch.indices.size:
            end = min(record.ecg_mv.size, start + step)
            delay = max(delay, end - int(batch.indices[0]))
    return StreamCheck(record.name, close, same, delay / fs)


def _gqrs(ecg: npt.NDArray[np.float64], fs_hz: float) -> npt.NDArray[np.int64]:
    from wfdb import processing as wp

    return np.asarray(wp.gqrs_detect(sig=ecg, fs=fs_hz), dtype=np.int64)


def _neurokit2() -> Detector | None:
    try:
        nk = importlib.import_module("neurokit2")
    except ImportError:
        return None

    def detect(ecg: npt.NDArray[np.float64], fs_hz: float) -> npt.NDArray[np.int64]:
        _, info = nk.ecg_peaks(nk.ecg_clean(ecg, sampling_rate=fs_hz), sampling_rate=fs_hz)
        return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)

    return detect


def _run(name: str, detect: Detector, record: Record, *, rounds: int) -> Row:
    best = float("inf")
    found = np.empty(0, dtype=np.int64)
    for _ in range(rounds):
        start = time.perf_counter()
        found = detect(record.ecg_mv, record.fs_hz)
        best = min(best, time.perf_counter() - start)
    score = score_beats(record.reference, found, fs_hz=record.fs_hz)
    return Row(name, record.name, score, record.ecg_mv.size / record.fs_hz / best)


def run(rounds: int = 5) -> list[Row]:
    records = [_load(name) for name in RECORDS if (MITDB / f"{name}.hea").is_file()]
    detectors: list[tuple[str, Detector, int]] = [
        ("biogw batch", _biogw, rounds),
        ("biogw strm", _stream, rounds),
        ("wfdb GQRS", _gqrs, 1),
    ]
    neurokit = _neurokit2()
    if neurokit is not None:
        detectors.append(("NeuroKit2", neurokit, 1))
    rows: list[Row] = []
    for name, detect, n in detectors:
        rows.extend(_run(name, detect, record, rounds=n) for record in records)
    return rows


def main() -> None:
    if not (MITDB / "100.hea").is_file():
        print(f"MIT-BIH records not found in {MITDB} (set BIOGW_SHARED_DATA)")
        return
    rows = run()
    print("== R-peak detection, MIT-BIH lead MLII, 150 ms window, one core (best of 5 for biogw)")
    print(f"{'detector':<12}{'record':<8}{'beats':>7}{'FN':>6}{'FP':>6}"
          f"{'Se':>9}{'+P':>9}{'F1':>9}{'x real time':>14}")  # fmt: skip
    for detector in dict.fromkeys(r.detector for r in rows):
        mine = [r for r in rows if r.detector == detector]
        pooled = sum((r.score for r in mine), BeatScore(0, 0, 0))
        seconds = sum(1.0 / r.x_real_time for r in mine)
        for r in [*mine, Row(detector, "pooled", pooled, len(mine) / seconds)]:
            s = r.score
            print(f"{r.detector:<12}{r.record:<8}{s.tp + s.fn:>7}{s.fn:>6}{s.fp:>6}"
                  f"{s.sensitivity:>9.4f}{s.positive_predictivity:>9.4f}{s.f1:>9.4f}"
                  f"{r.x_real_time:>14,.0f}")  # fmt: skip
    if _neurokit2() is None:
        print("NeuroKit2: not installed (pip install neurokit2 to add it to the table)")
    print("== biogw streaming (1 s chunks) vs batch: share of peaks agreeing within 10 ms,")
    print("   identical indices, longest delay from a peak to the end of the 0.1 s chunk")
    print("   that reported it")
    print(f"{'record':<8}{'10 ms':>9}{'identical':>11}{'delay':>10}")
    for name in RECORDS:
        if (MITDB / f"{name}.hea").is_file():
            c = _stream_check(_load(name))
            same = "yes" if c.identical else "NO"
            print(f"{c.record:<8}{c.agree_10ms:>9.4f}{same:>11}{c.max_delay_s:>8.3f} s")


if __name__ == "__main__":
    main()
