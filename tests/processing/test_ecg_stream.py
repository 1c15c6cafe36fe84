"""Streaming R-peak detection: identity with the batch detector (one streaming pass) under
random chunking, decision delay, chunking invariance, immutable state and input errors, on
synthetic ECG with known R times at 125-1000 Hz and on the MIT-BIH Arrhythmia records
(Moody & Mark 2001; PhysioNet); recovery after a large artefact, lead-off swings or an
amplitude drop, and no beats made of the noise of an asystole (also when the stream starts
in one), on ECGSYN
(``devices.sim.signals.ecg``) with its true R times."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from devices.sim.signals.ecg import EcgConfig, EcgSynth
from processing.ecg import detect_r_peaks
from processing.ecg.peaks import EcgInputError
from processing.ecg.scoring import match_beats, score_beats
from processing.ecg.stream import PeakBatch, RPeakState, RPeakStream, r_peak_flush, r_peak_step
from processing.findings import EventKind
from processing.streams import Signal, initial_state, step
from tests.processing.test_ecg_peaks import (
    RATES_HZ,
    _beat_times,
    _reference,
    _synthetic_ecg,
    _truth_index,
)
from tests.shared_data import MITDB, requires_mitdb

IndexArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _chunks(n: int, rng: np.random.Generator, fs_hz: float) -> list[int]:
    """Random chunk lengths from one sample to 3 s."""
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(1, round(3 * fs_hz) + 1)))
    return sizes


def _run(
    x: FloatArray, fs_hz: float, sizes: list[int]
) -> tuple[list[PeakBatch], list[int], PeakBatch]:
    """Feed ``x`` in chunks of ``sizes``; the batches, each step's chunk end, the flush."""
    state = RPeakState.initial(fs_hz=fs_hz)
    batches: list[PeakBatch] = []
    ends: list[int] = []
    pos = 0
    for size in sizes:
        batch, state = r_peak_step(state, x[pos : pos + size])
        pos = min(x.size, pos + size)
        batches.append(batch)
        ends.append(pos)
    return batches, ends, r_peak_flush(state)


def _peaks(batches: list[PeakBatch], flush: PeakBatch) -> IndexArray:
    return np.concatenate([b.indices for b in [*batches, flush]])


def _noisy_synthetic(
    fs_hz: float, seed: int, duration: float = 40.0
) -> tuple[FloatArray, IndexArray]:
    rng = np.random.default_rng(seed)
    times = _beat_times(rng, duration, mean_rr_s=0.8)
    t = np.arange(round(duration * fs_hz)) / fs_hz
    ecg = _synthetic_ecg(times, fs_hz, duration) + 0.5 * np.sin(2 * np.pi * 0.2 * t)
    ecg += 0.05 * rng.standard_normal(t.size)
    return ecg, _truth_index(times, fs_hz)


def _assert_same_as_batch(found: IndexArray, batch: IndexArray, fs_hz: float) -> None:
    """The issue's requirement (every peak within 10 ms of a batch peak, none extra), and
    what the construction gives: the very same indices."""
    agree = match_beats(batch, found, tolerance_samples=round(0.010 * fs_hz))
    assert (agree.fn, agree.fp) == (0, 0), agree
    assert np.array_equal(found, batch)


@pytest.mark.parametrize("fs_hz", RATES_HZ)
def test_synthetic_stream_matches_batch_and_truth(fs_hz: float) -> None:
    ecg, truth = _noisy_synthetic(fs_hz, seed=11)
    batches, _, flush = _run(ecg, fs_hz, _chunks(ecg.size, np.random.default_rng(5), fs_hz))
    found = _peaks(batches, flush)
    _assert_same_as_batch(found, detect_r_peaks(ecg, fs_hz=fs_hz), fs_hz)
    exact = score_beats(truth, found, fs_hz=fs_hz, tolerance_s=0.010)
    assert (exact.fn, exact.fp) == (0, 0), exact
    assert found.dtype == np.int64
    assert np.all(np.diff(found) > 0)


@pytest.mark.parametrize("fs_hz", RATES_HZ)
def test_harder_synthetic_streams_match_batch(fs_hz: float) -> None:
    """Amplitude steps down and up, and wide premature ventricular beats in bigeminy."""
    rng = np.random.default_rng(15)
    duration = 40.0
    steps = _beat_times(rng, duration, mean_rr_s=0.9)
    amps = np.where(steps < 15, 1.0, np.where(steps < 28, 0.25, 2.5))
    bigeminy = _beat_times(rng, duration, mean_rr_s=1.0)
    bigeminy[1::2] -= 0.4 * (bigeminy[1::2] - bigeminy[0:-1:2])
    signals = [
        (_synthetic_ecg(steps, fs_hz, duration, amplitudes=amps), steps),
        (_synthetic_ecg(bigeminy, fs_hz, duration,
                        ventricular=frozenset(range(1, bigeminy.size, 2))), bigeminy),
    ]  # fmt: skip
    for ecg, times in signals:
        ecg = ecg + 0.02 * rng.standard_normal(ecg.size)
        batches, _, flush = _run(ecg, fs_hz, _chunks(ecg.size, rng, fs_hz))
        found = _peaks(batches, flush)
        _assert_same_as_batch(found, detect_r_peaks(ecg, fs_hz=fs_hz), fs_hz)
        score = score_beats(_truth_index(times, fs_hz), found, fs_hz=fs_hz, tolerance_s=0.05)
        assert (score.fn, score.fp) == (0, 0), score


@pytest.mark.parametrize("fs_hz", RATES_HZ)
def test_every_peak_reported_within_one_second(fs_hz: float) -> None:
    ecg, _ = _noisy_synthetic(fs_hz, seed=12, duration=20.0)
    rng = np.random.default_rng(6)
    sizes = [int(s) for s in rng.integers(1, round(0.3 * fs_hz), size=ecg.size)]
    batches, ends, flush = _run(ecg, fs_hz, sizes)
    one_s = round(fs_hz)
    prev_end = 0
    prev_decided = 0
    reported = 0
    for batch, end in zip(batches, ends, strict=True):
        for peak in batch.indices.tolist():
            # not already due at the previous step: at most 1 s of signal past the peak
            assert prev_end - peak < one_s
            assert peak >= prev_decided
        assert prev_decided <= batch.decided_until <= end
        assert batch.decided_until >= end - one_s
        reported += batch.indices.size
        prev_end, prev_decided = end, batch.decided_until
    assert flush.indices.size <= 1
    assert reported >= 20


def test_chunking_never_changes_peaks_or_amplitudes() -> None:
    fs = 360.0
    ecg, _ = _noisy_synthetic(fs, seed=13, duration=30.0)
    runs = [
        _run(ecg, fs, [ecg.size]),
        _run(ecg, fs, [1] * 900 + [ecg.size]),
        _run(ecg, fs, _chunks(ecg.size, np.random.default_rng(7), fs)),
    ]
    ref_idx = _peaks(runs[0][0], runs[0][2])
    ref_amp = np.concatenate([b.amplitudes for b in [*runs[0][0], runs[0][2]]])
    for batches, _, flush in runs[1:]:
        assert np.array_equal(_peaks(batches, flush), ref_idx)
        amps = np.concatenate([b.amplitudes for b in [*batches, flush]])
        assert np.array_equal(amps, ref_amp)


def test_amplitudes_are_the_r_wave_without_baseline() -> None:
    fs = 250.0
    rng = np.random.default_rng(8)
    times = _beat_times(rng, 30.0, mean_rr_s=0.8)
    t = np.arange(round(30.0 * fs)) / fs
    ecg = 2.0 * _synthetic_ecg(times, fs, 30.0) + 0.5 * np.sin(2 * np.pi * 0.1 * t) + 3.0
    stream = RPeakStream(fs_hz=fs)
    batches = [stream.feed(ecg[i : i + 100]) for i in range(0, ecg.size, 100)]
    amps = np.concatenate([b.amplitudes for b in [*batches, stream.flush()]])
    assert amps.size == times.size
    # the R wave above the signal's slow mean (offset and 0.1 Hz wander removed)
    assert np.all((amps[2:] > 1.6) & (amps[2:] < 2.1))
    assert float(np.std(amps[2:])) < 0.05


def test_state_is_immutable_and_reusable() -> None:
    fs = 500.0
    ecg, _ = _noisy_synthetic(fs, seed=14, duration=12.0)
    state0 = RPeakState.initial(fs_hz=fs)
    _, state1 = r_peak_step(state0, ecg[:3000])
    a, state2a = r_peak_step(state1, ecg[3000:])
    b, state2b = r_peak_step(state1, ecg[3000:])
    assert np.array_equal(a.indices, b.indices)
    assert a.decided_until == b.decided_until
    assert np.array_equal(r_peak_flush(state2a).indices, r_peak_flush(state2b).indices)
    assert state0.samples_seen == 0
    assert state1.samples_seen == 3000
    assert state2a.samples_seen == ecg.size
    with pytest.raises(AttributeError):
        state1.core = state0.core  # type: ignore[misc]
    assert not state1.core.env_tail.flags.writeable


@pytest.mark.parametrize(
    ("chunk", "fs_hz", "reason"),
    [
        (np.zeros(10), 100.0, "fs_range"),
        (np.zeros(10), 1500.0, "fs_range"),
        (np.zeros(10), float("inf"), "fs_range"),
        (np.zeros((2, 10)), 250.0, "not_1d"),
        (np.array([0.0, np.nan, 1.0]), 250.0, "not_finite"),
        (np.array([0.0, np.inf]), 250.0, "not_finite"),
    ],
)
def test_bad_input_raises_with_reason(chunk: FloatArray, fs_hz: float, reason: str) -> None:
    with pytest.raises(EcgInputError) as info:
        r_peak_step(RPeakState.initial(fs_hz=fs_hz), chunk)
    assert info.value.reason == reason


def test_empty_chunks_flat_and_short_streams() -> None:
    state = RPeakState.initial(fs_hz=250.0)
    batch, state = r_peak_step(state, np.empty(0))
    assert batch.indices.size == 0
    assert batch.indices.dtype == np.int64
    batch, state = r_peak_step(state, np.zeros(2500))
    assert batch.indices.size == 0
    assert r_peak_flush(state).indices.size == 0
    _, short = r_peak_step(RPeakState.initial(fs_hz=250.0), np.ones(50))
    assert r_peak_flush(short).indices.size == 0


# Stream F1 on the records, as measured (floors a little under): 100 1.0000, 105 0.9932,
# 106 0.9993, 119 0.9997; the peaks are the batch ones, whatever the chunking.
_F1 = {"100": 0.9995, "105": 0.993, "106": 0.999, "119": 0.9995}


@requires_mitdb
@pytest.mark.filterwarnings("ignore:The inplace keyword:Warning")
@pytest.mark.parametrize("record", sorted(_F1))
def test_mitdb_stream_same_as_batch_and_delay_bound(record: str) -> None:
    import wfdb

    rec = wfdb.rdrecord(str(MITDB / record))
    fs = float(rec.fs)
    ecg = np.ascontiguousarray(rec.p_signal[:, 0], dtype=np.float64)
    batches, ends, flush = _run(ecg, fs, _chunks(ecg.size, np.random.default_rng(9), fs))
    found = _peaks(batches, flush)
    _assert_same_as_batch(found, detect_r_peaks(ecg, fs_hz=fs), fs)
    assert score_beats(_reference(record), found, fs_hz=fs).f1 >= _F1[record]
    prev_end = 0
    for b, end in zip(batches, ends, strict=True):
        assert b.indices.size == 0 or prev_end - int(b.indices[0]) < round(fs)
        prev_end = end


def _ecgsyn(fs_hz: float, duration_s: float) -> tuple[FloatArray, IndexArray]:
    """ECGSYN at 70 bpm (R 1 mV, 10 µV EMG noise) and its true R-peak sample indices."""
    src = EcgSynth(EcgConfig(fs_hz=fs_hz, hr_bpm=70.0, emg_noise_uv=10.0, seed=3))
    ecg = src.read(round(duration_s * fs_hz))
    return ecg, np.round(src.truth().r_peak_times_s * fs_hz).astype(np.int64)


def _assert_every_beat_between(
    found: IndexArray, truth: IndexArray, fs_hz: float, start_s: float, end_s: float
) -> None:
    """Every true beat in ``[start_s, end_s)`` found within 10 ms, and nothing else there."""
    lo, hi = round(start_s * fs_hz), round(end_s * fs_hz)
    inside = truth[(truth >= lo) & (truth < hi)]
    score = match_beats(
        inside, found[(found >= lo) & (found < hi)], tolerance_samples=round(0.010 * fs_hz)
    )
    assert inside.size > 0
    assert (score.fn, score.fp) == (0, 0), score


def _streamed(x: FloatArray, fs_hz: float) -> IndexArray:
    """The peaks of ``x`` fed in random chunks; they are the batch ones."""
    batches, _, flush = _run(x, fs_hz, _chunks(x.size, np.random.default_rng(21), fs_hz))
    found = _peaks(batches, flush)
    assert np.array_equal(found, detect_r_peaks(x, fs_hz=fs_hz))
    return found


def _random_walk(rng: np.random.Generator, n: int, fs_hz: float, step_uv: float) -> FloatArray:
    """Electrode rubbing or a loose lead: a random walk of a few to tens of mV."""
    return np.cumsum(rng.normal(0.0, step_uv * np.sqrt(250.0 / fs_hz), n))


@pytest.mark.parametrize("fs_hz", [125.0, 250.0, 500.0])
def test_detection_resumes_after_a_large_artefact_at_the_start(fs_hz: float) -> None:
    """A 2 s donning artefact (about 20 mV) is what the levels are first learned from; the
    detector learns them again from the ECG that follows (it used to stay blind)."""
    ecg, truth = _ecgsyn(fs_hz, 40.0)
    n = round(2.0 * fs_hz)
    ecg[:n] += _random_walk(np.random.default_rng(2), n, fs_hz, 1000.0)
    _assert_every_beat_between(_streamed(ecg, fs_hz), truth, fs_hz, 7.0, 39.0)


@pytest.mark.parametrize("fs_hz", [125.0, 250.0, 500.0])
def test_detection_resumes_after_lead_off_swings(fs_hz: float) -> None:
    """10 s of large lead-off swings mid-stream, then the same ECG again."""
    ecg, truth = _ecgsyn(fs_hz, 60.0)
    a, b = round(20.0 * fs_hz), round(30.0 * fs_hz)
    ecg[a:b] += _random_walk(np.random.default_rng(4), b - a, fs_hz, 2000.0)
    found = _streamed(ecg, fs_hz)
    _assert_every_beat_between(found, truth, fs_hz, 1.0, 19.5)
    _assert_every_beat_between(found, truth, fs_hz, 35.0, 59.0)


@pytest.mark.parametrize("fs_hz", [125.0, 250.0, 500.0])
def test_detection_resumes_after_a_permanent_five_fold_amplitude_drop(fs_hz: float) -> None:
    ecg, truth = _ecgsyn(fs_hz, 60.0)
    ecg[round(20.0 * fs_hz) :] /= 5.0
    found = _streamed(ecg, fs_hz)
    _assert_every_beat_between(found, truth, fs_hz, 1.0, 20.0)
    _assert_every_beat_between(found, truth, fs_hz, 25.0, 59.0)


@pytest.mark.parametrize("fs_hz", [125.0, 250.0, 500.0])
def test_asystole_with_noise_stays_without_beats(fs_hz: float) -> None:
    """The re-learning after a quiet stretch needs QRS-like peaks: low-level noise after the
    heart stops (up to 50 µV, a twentieth of the R wave) never becomes beats."""
    ecg, truth = _ecgsyn(fs_hz, 20.0)
    rng = np.random.default_rng(6)
    for noise_uv in (10.0, 50.0):
        x = np.concatenate((ecg, noise_uv * rng.standard_normal(round(120.0 * fs_hz))))
        found = _streamed(x, fs_hz)
        _assert_every_beat_between(found, truth, fs_hz, 1.0, 19.5)
        assert np.all(found < round(20.1 * fs_hz)), found[found >= round(20.1 * fs_hz)]


@pytest.mark.parametrize("fs_hz", [125.0, 250.0, 500.0])
def test_stream_starting_in_asystole_learns_no_noise(fs_hz: float) -> None:
    """A stream (re)started during an arrest: flat line with 20 or 50 µV of noise from the
    first sample. The first second has no QRS-like peak, so nothing is learned from the
    noise (it used to become beats), and the pipeline raises the asystole, once."""
    rng = np.random.default_rng(7)
    for noise_uv in (20.0, 50.0):
        x = noise_uv * rng.standard_normal(round(60.0 * fs_hz))
        found = _streamed(x, fs_hz)
        assert found.size == 0, found
        state = initial_state(Signal.ECG, fs_hz=fs_hz)
        kinds = []
        for i in range(0, x.size, round(fs_hz)):
            findings, state = step(state, x[i : i + round(fs_hz)])
            kinds += [e.kind for e in findings.events]
        assert kinds.count(EventKind.ASYSTOLE) == 1, kinds


@pytest.mark.parametrize("fs_hz", [125.0, 250.0, 500.0])
def test_stream_starting_in_asystole_detects_the_rhythm_that_follows(fs_hz: float) -> None:
    """5 s of asystole (20 µV noise), then sinus rhythm: no beat in the asystole, and every
    true beat from the second QRS on (learning needs two; they come 1.4 s in at 70 bpm)."""
    ecg, truth = _ecgsyn(fs_hz, 40.0)
    lead = round(5.0 * fs_hz)
    noise = 20.0 * np.random.default_rng(8).standard_normal(lead) + ecg[0]
    found = _streamed(np.concatenate((noise, ecg)), fs_hz)
    assert np.all(found >= lead - round(0.05 * fs_hz)), found[:5]
    _assert_every_beat_between(found, truth + lead, fs_hz, 6.0, 44.5)
