"""ECG signal quality per 10 s window, and flat-line / lead-off detection on the raw stream.

Role: a streaming step over raw ECG chunks (µV) that reports ``ECG_SQI`` (0..1) for each
10 s window (aligned to the stream's sample count) and one ``FLAT_LINE`` or ``LEAD_OFF`` event
per episode, and says whether the signal is currently usable (``EcgQualityState.usable``).

* SQI = min(kurtosis score, spectral score, spread score) × share of good 0.5 s blocks.
  Kurtosis of the 0.5-40 Hz band (kSQI; clean ECG > 5, Gaussian noise 3, sine 1.5) and the
  QRS-band power ratio P(5-15 Hz)/P(5-40 Hz) (pSQI; low for broadband EMG and mains): Li,
  Mark & Clifford, "Robust heart rate estimation from multiple asynchronous noisy sources
  using signal quality indices and a Kalman filter", Physiol Meas 29(1):15-32, 2008;
  Clifford, Behar, Li & Rezek, Physiol Meas 33(9):1419-1433, 2012. Kurtosis also rewards a
  single spike or baseline step in noise, so ours adds the spread: the share of 0.5 s blocks
  whose QRS-band peak reaches 30 % of the window's largest (an ECG at 30 bpm or more has a
  beat in at least a quarter of them). The mapping of each to 0..1 is ours.
* Each 0.5 s block of raw samples is flat (SD below 2 µV: a stuck or disconnected input;
  ECG and even an asystolic baseline carry more), lead-off (peak-to-peak above 20 mV, samples
  at a known ADC rail, flat more than 20 mV away from the last good level, or more than 80 %
  of its power at 50/60 Hz: an open electrode) or good.
  Four bad blocks in a row (2 s) open an episode, reported once at its first bad block (lead
  off when any block was lead-off, else flat line; warning); two good blocks close it.

Input is in µV (the gateway's ECG unit); the thresholds assume it. Filters are causal SOS with
their state carried in the state; nothing loops per sample.
Must not: do I/O, import ``gateway`` or ``devices``, or keep more than one block of samples.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import signal

from processing.ecg.peaks import EcgInputError, validate_ecg
from processing.errors import check_rate
from processing.findings import Event, EventKind, Findings, Severity, Vital, VitalKind

FloatArray = npt.NDArray[np.float64]

__all__ = ["EcgQualityState", "ecg_quality_step", "ecg_sqi"]

WINDOW_S = 10.0
BLOCK_S = 0.5
FLAT_STD_UV = 2.0
MAX_PTP_UV = 20000.0
MAINS_FRACTION = 0.8
EPISODE_BLOCKS = 4
RECOVERY_BLOCKS = 2
USABLE_SQI = 0.5
MIN_FS_HZ = 100.0
_KURTOSIS_RANGE = (3.5, 6.0)
_PSQI_RANGE = (0.3, 0.5)
_MAINS_HZ = (50.0, 60.0)
_RAIL_SHARE = 0.1
_PEAK_FRACTION = 0.3
_SPREAD_RANGE = (0.1, 0.2)
_GOOD, _FLAT, _LEAD_OFF = 0, 1, 2


@lru_cache(maxsize=32)
def _designs(fs_hz: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    top = min(40.0, 0.45 * fs_hz)

    def band(lo: float, hi: float) -> FloatArray:
        return np.asarray(signal.butter(2, (lo, hi), "bandpass", fs=fs_hz, output="sos"))

    return band(0.5, top), band(5.0, 15.0), band(5.0, top)


@dataclass(frozen=True, slots=True)
class _Window:
    """Running sums over the open window: samples, moments of the 0.5-40 Hz band, QRS-band and
    wide-band power, and good/all blocks."""

    n: int = 0
    s1: float = 0.0
    s2: float = 0.0
    s3: float = 0.0
    s4: float = 0.0
    p_qrs: float = 0.0
    p_wide: float = 0.0
    good_blocks: int = 0
    blocks: int = 0
    episode_closed: bool = False
    block_peaks: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class EcgQualityState:
    """Streaming state. ``usable`` tells the caller whether the ECG can be trusted now: no
    flat/lead-off episode, fewer than two bad blocks in a row and the last window's SQI at
    least 0.5 (``True`` before the first window). ``leads_ok`` is the episode part alone."""

    fs_hz: float
    rail_uv: float | None
    samples: int
    zi: tuple[FloatArray, ...] | None
    partial: FloatArray
    partial_qrs: FloatArray
    window: _Window
    bad_run: int
    good_run: int
    run_start: int
    run_lead_off: bool
    reported: bool
    last_sqi: float | None
    level_uv: float | None

    @classmethod
    def initial(cls, *, fs_hz: float, rail_uv: float | None = None) -> EcgQualityState:
        """``rail_uv``: the ADC's full scale in µV when known (samples at or beyond it count
        as saturated)."""
        fs = check_rate(fs_hz, low=MIN_FS_HZ, high=math.inf, error=EcgInputError)
        empty = np.empty(0)
        return cls(fs, rail_uv, 0, None, empty, empty, _Window(), 0, 0, 0, False, False, None, None)

    @property
    def leads_ok(self) -> bool:
        return not self.reported and self.bad_run < RECOVERY_BLOCKS

    @property
    def usable(self) -> bool:
        return self.leads_ok and (self.last_sqi is None or self.last_sqi >= USABLE_SQI)


def _ramp(value: float, lo: float, hi: float) -> float:
    return float(np.clip((value - lo) / (hi - lo), 0.0, 1.0))


def _sqi(w: _Window) -> float:
    """kSQI and pSQI scores (Li et al. 2008) times the share of good blocks."""
    if w.n < 4 or w.blocks == 0:
        return 0.0
    mu = w.s1 / w.n
    m2 = w.s2 / w.n - mu * mu
    m4 = w.s4 / w.n - 4 * mu * w.s3 / w.n + 6 * mu * mu * w.s2 / w.n - 3 * mu**4
    if not m2 > 0 or not w.p_wide > 0:
        return 0.0
    k_score = _ramp(m4 / (m2 * m2), *_KURTOSIS_RANGE)
    p_score = _ramp(w.p_qrs / w.p_wide, *_PSQI_RANGE)
    peaks = np.asarray(w.block_peaks)
    top = float(peaks.max()) if peaks.size else 0.0
    spread = float(np.mean(peaks >= _PEAK_FRACTION * top)) if top > 0 else 0.0
    s_score = _ramp(spread, *_SPREAD_RANGE)
    return round(min(k_score, p_score, s_score) * w.good_blocks / w.blocks, 3)


def _classify_blocks(blocks: FloatArray, fs_hz: float, rail_uv: float | None) -> FloatArray:
    """Per 0.5 s block of raw samples: good, flat or lead-off (see the module docstring)."""
    centred = blocks - blocks.mean(axis=1, keepdims=True)
    energy = np.sum(centred * centred, axis=1)
    n = blocks.shape[1]
    std = np.sqrt(energy / n)
    lead_off = np.ptp(blocks, axis=1) > MAX_PTP_UV
    if rail_uv is not None:
        lead_off |= np.mean(np.abs(blocks) >= rail_uv, axis=1) >= _RAIL_SHARE
    phase = 2.0 * np.pi * np.arange(n) / fs_hz
    mains = np.zeros(blocks.shape[0])
    for f in _MAINS_HZ:
        if f < fs_hz / 2:
            c, s = centred @ np.cos(f * phase), centred @ np.sin(f * phase)
            mains = np.maximum(mains, 2.0 * (c * c + s * s) / (n * np.maximum(energy, 1e-300)))
    lead_off |= (mains > MAINS_FRACTION) & (std >= FLAT_STD_UV)
    flat = std < FLAT_STD_UV
    return np.where(lead_off, _LEAD_OFF, np.where(flat, _FLAT, _GOOD)).astype(np.float64)


def _accumulate(w: _Window, y: FloatArray, q: FloatArray, v: FloatArray) -> _Window:
    if y.size == 0:
        return w
    y2 = y * y
    return dataclasses.replace(
        w,
        n=w.n + y.size,
        s1=w.s1 + float(np.sum(y)),
        s2=w.s2 + float(np.sum(y2)),
        s3=w.s3 + float(np.sum(y2 * y)),
        s4=w.s4 + float(np.sum(y2 * y2)),
        p_qrs=w.p_qrs + float(np.sum(q * q)),
        p_wide=w.p_wide + float(np.sum(v * v)),
    )


def _episodes(
    st: EcgQualityState,
    codes: list[int],
    means: list[float],
    starts: list[int],
    events: list[Event],
) -> tuple[EcgQualityState, list[bool], list[bool]]:
    """Open/close flat-line and lead-off episodes block by block. A flat block whose level is
    more than 20 mV from the last good block's is saturated (lead off). Also returns, per
    block, whether it counts against the SQI: lead-off blocks, and flat blocks once the flat
    run has lasted 2 s (a single quiet 0.5 s between slow beats is not a fault), and whether
    an episode closed at it (the last SQI is then forgotten)."""
    bad_run, good_run, run_start = st.bad_run, st.good_run, st.run_start
    lead_off, reported = st.run_lead_off, st.reported
    level, last_sqi = st.level_uv, st.last_sqi
    against: list[bool] = []
    closed: list[bool] = []
    for code_in, mean, start in zip(codes, means, starts, strict=True):
        code = code_in
        if code == _FLAT and level is not None and abs(mean - level) > MAX_PTP_UV:
            code = _LEAD_OFF
        if code != _GOOD:
            if bad_run == 0:
                run_start, lead_off = start, False
            bad_run += 1
            good_run = 0
            lead_off = lead_off or code == _LEAD_OFF
            if not reported and bad_run >= EPISODE_BLOCKS:
                kind = EventKind.LEAD_OFF if lead_off else EventKind.FLAT_LINE
                events.append(Event(run_start / st.fs_hz, kind, Severity.WARNING))
                reported = True
            against.append(code == _LEAD_OFF or bad_run >= EPISODE_BLOCKS)
            closed.append(False)
            continue
        against.append(False)
        good_run += 1
        level = mean
        closed.append(reported and good_run >= RECOVERY_BLOCKS)
        if closed[-1]:
            last_sqi = None
        if not reported or good_run >= RECOVERY_BLOCKS:
            bad_run, reported = 0, False
    changed = dataclasses.replace(
        st,
        bad_run=bad_run,
        good_run=good_run,
        run_start=run_start,
        run_lead_off=lead_off,
        reported=reported,
        level_uv=level,
        last_sqi=last_sqi,
    )
    return changed, against, closed


def ecg_quality_step(
    state: EcgQualityState, chunk: npt.ArrayLike, *, fs_hz: float
) -> tuple[Findings, EcgQualityState]:
    """Feed the next raw ECG samples (µV); returns the SQI of each 10 s window that closed
    and the flat-line / lead-off onsets found. Raises :class:`EcgInputError` for a rate that
    differs from the state's, a non 1-D chunk or non-finite samples."""
    if float(fs_hz) != state.fs_hz:
        raise EcgInputError("fs_range", "fs_hz differs from the state's")
    x = validate_ecg(chunk)
    if x.size == 0:
        return Findings(), state
    fs = state.fs_hz
    sos = _designs(fs)
    zi = state.zi or tuple(signal.sosfilt_zi(s) * x[0] for s in sos)
    outs: list[FloatArray] = []
    new_zi: list[FloatArray] = []
    for s, z in zip(sos, zi, strict=True):
        out, z_out = signal.sosfilt(s, x, zi=z)
        outs.append(np.asarray(out, dtype=np.float64))
        new_zi.append(np.asarray(z_out, dtype=np.float64))
    y, q, v = outs
    # blocks: codes and the absolute sample index where each ends
    block_len = max(1, round(BLOCK_S * fs))
    raw = np.concatenate((state.partial, x))
    qrs = np.concatenate((state.partial_qrs, q))
    nb = raw.size // block_len
    blocks = raw[: nb * block_len].reshape(nb, block_len)
    peaks = np.max(np.abs(qrs[: nb * block_len].reshape(nb, block_len)), axis=1, initial=0.0)
    codes = _classify_blocks(blocks, fs, state.rail_uv)
    first = state.samples - state.partial.size
    block_ends = first + block_len * (np.arange(nb) + 1)
    events: list[Event] = []
    starts = (block_ends - block_len).tolist()
    means = blocks.mean(axis=1).tolist()
    st, against, closed = _episodes(state, codes.astype(int).tolist(), means, starts, events)
    good = ~np.asarray(against, dtype=bool)
    closes = np.asarray(closed, dtype=bool)
    # windows: split the chunk at multiples of the window length
    window_len = round(WINDOW_S * fs)
    start, end = state.samples, state.samples + x.size
    cuts = np.arange((start // window_len + 1) * window_len, end + 1, window_len)
    vitals: list[Vital] = []
    w, last_sqi, pos = st.window, st.last_sqi, start
    for cut in [*cuts.tolist(), end]:
        a, b = pos - start, cut - start
        in_seg = (block_ends > pos) & (block_ends <= cut)
        w = _accumulate(w, y[a:b], q[a:b], v[a:b])
        w = dataclasses.replace(
            w,
            blocks=w.blocks + int(np.count_nonzero(in_seg)),
            good_blocks=w.good_blocks + int(np.count_nonzero(in_seg & good)),
            episode_closed=w.episode_closed or bool(np.any(in_seg & closes)),
            block_peaks=(*w.block_peaks, *peaks[in_seg].tolist()),
        )
        if cut % window_len == 0 and cut > pos:
            sqi = _sqi(w)
            vitals.append(Vital(cut / fs, VitalKind.ECG_SQI, sqi, WINDOW_S))
            # a window spoilt by an episode that has closed says nothing about the signal now
            last_sqi = None if w.episode_closed and not st.reported else sqi
            w = _Window()
        pos = cut
    st = dataclasses.replace(
        st,
        samples=end,
        zi=tuple(new_zi),
        partial=raw[nb * block_len :].copy(),
        partial_qrs=qrs[nb * block_len :].copy(),
        window=w,
        last_sqi=last_sqi,
    )
    return Findings(tuple(vitals), tuple(events)), st


def ecg_sqi(ecg: npt.ArrayLike, *, fs_hz: float) -> float:
    """SQI (0..1) of a whole ECG segment (µV) as one window: the same features as the
    streaming step, filters started in steady state on the first sample."""
    state = EcgQualityState.initial(fs_hz=fs_hz)
    x = validate_ecg(ecg)
    if x.size == 0:
        return 0.0
    fs = state.fs_hz
    y, q, v = (
        np.asarray(signal.sosfilt(s, x, zi=signal.sosfilt_zi(s) * x[0])[0], dtype=np.float64)
        for s in _designs(fs)
    )
    block_len = max(1, round(BLOCK_S * fs))
    nb = x.size // block_len
    blocks = x[: nb * block_len].reshape(nb, block_len)
    codes = _classify_blocks(blocks, fs, None)
    means = blocks.mean(axis=1).tolist()
    _, against, _ = _episodes(state, codes.astype(int).tolist(), means, [0] * nb, [])
    peaks = np.max(np.abs(q[: nb * block_len].reshape(nb, block_len)), axis=1, initial=0.0)
    w = dataclasses.replace(
        _accumulate(_Window(), y, q, v),
        blocks=nb,
        good_blocks=nb - sum(against),
        block_peaks=tuple(peaks.tolist()),
    )
    return _sqi(w)
