"""Heart rate, HRV, RR artefact correction and rhythm alerts (processing.heart).

Truth: fixed RR series with hand-computed statistics, beat trains built from a known RR(t)
(constant, sinusoidal LF/HF, rate steps, pauses) with artefacts inserted at known places, and
the ECGSYN simulator (devices.sim.signals.ecg) whose R-peak times are known.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from devices.sim.signals.ecg import EcgConfig, EcgSynth
from processing.ecg import detect_r_peaks
from processing.findings import Event, EventKind, Findings, Severity, Vital, VitalKind
from processing.heart import (
    Artefact,
    HeartState,
    correct_rr,
    heart_step,
    hrv_time_domain,
    lf_hf,
    mean_hr_bpm,
    rr_from_beats,
    rr_step,
)
from tests.shared_data import MITDB, requires_mitdb

FloatArray = npt.NDArray[np.float64]


def _beats_from_rr(
    rr_of_t: Callable[[float], float], duration_s: float, t0: float = 0.5
) -> FloatArray:
    """Beat times where each RR (ms) is RR(t) at the beat that starts it."""
    times = [t0]
    while times[-1] < duration_s:
        times.append(times[-1] + rr_of_t(times[-1]) / 1000.0)
    return np.asarray(times[:-1])


def _smooth_beats(duration_s: float, seed: int = 0) -> FloatArray:
    rng = np.random.default_rng(seed)
    jitter = iter(rng.standard_normal(10_000) * 5.0)
    return _beats_from_rr(
        lambda t: 850 + 40 * math.sin(2 * math.pi * 0.1 * t) + 20 * math.sin(2 * math.pi * 0.25 * t)
        + next(jitter),
        duration_s,
    )  # fmt: skip


def _stream(
    beats: FloatArray, steps: Sequence[float], *, ok: Callable[[float], bool] = lambda t: True
) -> Findings:
    """Feed ``beats`` with the timeline advanced to each of ``steps`` in turn."""
    state = HeartState.initial()
    parts: list[Findings] = []
    prev = -math.inf
    for now in steps:
        chunk = beats[(beats > prev) & (beats <= now)]
        found, state = heart_step(state, chunk, now_s=now, signal_ok=ok(now))
        parts.append(found)
        prev = now
    return Findings.merge(parts)


def _sorted(f: Findings) -> tuple[list[Vital], list[Event]]:
    return (
        sorted(f.vitals, key=lambda v: (v.t_s, v.kind, v.window_s, v.value)),
        sorted(f.events, key=lambda e: (e.t_s, e.kind)),
    )


def _kind(f: Findings, kind: VitalKind, window_s: float | None = None) -> list[Vital]:
    return [v for v in f.vitals if v.kind == kind and (window_s is None or v.window_s == window_s)]


# -- batch: RR series and HRV formulas ---------------------------------------------------


def test_hrv_time_domain_matches_hand_computed_formulas() -> None:
    rr = [800.0, 810.0, 790.0, 860.0, 800.0, 805.0]
    diffs = [10.0, -20.0, 70.0, -60.0, 5.0]
    hrv = hrv_time_domain(rr)
    assert hrv.sdnn_ms == pytest.approx(statistics.stdev(rr))
    assert hrv.rmssd_ms == pytest.approx(math.sqrt(sum(d * d for d in diffs) / 5))
    assert hrv.rmssd_ms == pytest.approx(math.sqrt(1805.0))
    assert hrv.pnn50_pct == pytest.approx(40.0)
    assert (hrv.n_intervals, hrv.n_differences) == (6, 5)
    assert rr_from_beats([0.0, 0.8, 1.61]) == pytest.approx([800.0, 810.0])


def test_successive_differences_skip_gaps_in_the_series() -> None:
    rr = np.array([800.0, 810.0, 900.0, 905.0])
    # the third interval starts 10 s after the second ended: one gap
    ends = np.array([0.8, 1.61, 12.51, 13.415])
    hrv = hrv_time_domain(rr, end_s=ends)
    assert hrv.n_differences == 2
    assert hrv.rmssd_ms == pytest.approx(math.sqrt((100.0 + 25.0) / 2))


def test_too_short_series_give_nan_not_numbers() -> None:
    hrv = hrv_time_domain([800.0])
    assert math.isnan(hrv.sdnn_ms)
    assert math.isnan(hrv.rmssd_ms)
    assert math.isnan(hrv.pnn50_pct)


# -- batch: artefact correction ------------------------------------------------------------


def test_constant_rhythm_is_left_alone() -> None:
    result = correct_rr(np.full(200, 1000.0))
    assert result.count(Artefact.NORMAL) == 200
    assert np.all(result.rr_ms == 1000.0)
    assert result.end_s[-1] == pytest.approx(200.0)


def _with_artefacts(beats: FloatArray) -> FloatArray:
    b = beats.copy()
    b[50] -= 0.35 * 0.85  # premature beat, full compensatory pause
    b[120] += 0.25 * 0.85  # late beat
    b = np.delete(b, [200, 300, 301])  # one missed beat, then two in a row
    return np.sort(np.concatenate((b, [beats[250] + 0.3, beats[330] + 0.5])))  # two extra


def test_ectopic_missed_and_extra_beats_are_corrected() -> None:
    beats = _smooth_beats(330.0)
    truth = rr_from_beats(beats)
    noisy = _with_artefacts(beats)
    result = correct_rr(rr_from_beats(noisy), end_s=noisy[1:])
    assert result.rr_ms.size == truth.size
    assert result.count(Artefact.ECTOPIC) == 4  # two beats, two intervals each
    assert result.count(Artefact.MISSED) == 5  # 2 + 3 intervals restored
    assert result.count(Artefact.EXTRA) == 2
    assert result.count(Artefact.LONG_SHORT) == 0
    # each corrected interval is close to the true one ending at the same beat
    assert np.max(np.abs(result.end_s - beats[1:])) < 0.05
    assert np.max(np.abs(result.rr_ms - truth)) < 50.0
    raw = hrv_time_domain(rr_from_beats(noisy))
    fixed = hrv_time_domain(result.rr_ms)
    true = hrv_time_domain(truth)
    assert raw.rmssd_ms > 3 * true.rmssd_ms
    assert fixed.rmssd_ms == pytest.approx(true.rmssd_ms, rel=0.05)
    assert fixed.sdnn_ms == pytest.approx(true.sdnn_ms, rel=0.02)


def test_natural_variability_is_not_corrected() -> None:
    result = correct_rr(rr_from_beats(_smooth_beats(600.0, seed=3)))
    assert result.corrected_fraction == 0.0


# -- batch: frequency domain -----------------------------------------------------------------


@pytest.mark.parametrize(("lf_ms", "hf_ms"), [(40.0, 20.0), (15.0, 30.0)])
def test_lf_hf_of_sinusoidal_hrv_is_the_power_ratio(lf_ms: float, hf_ms: float) -> None:
    beats = _beats_from_rr(
        lambda t: 850 + lf_ms * math.sin(2 * math.pi * 0.1 * t)
        + hf_ms * math.sin(2 * math.pi * 0.27 * t),
        300.5,
    )  # fmt: skip
    ratio = lf_hf(rr_from_beats(beats), end_s=beats[1:])
    assert ratio == pytest.approx((lf_ms / hf_ms) ** 2, rel=0.1)


def test_lf_hf_needs_five_minutes() -> None:
    beats = _beats_from_rr(lambda t: 850 + 30 * math.sin(2 * math.pi * 0.25 * t), 200.0)
    assert lf_hf(rr_from_beats(beats)) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lf_hf_follows_the_simulators_ratio(seed: int) -> None:
    found = {}
    for ratio in (0.25, 4.0):
        src = EcgSynth(
            EcgConfig(fs_hz=125.0, hr_bpm=65.0, hr_std_bpm=3.0, lf_hf_ratio=ratio, seed=seed)
        )
        src.read(125 * 305)
        t = src.truth().r_peak_times_s
        found[ratio] = lf_hf(rr_from_beats(t), end_s=t[1:])
    assert found[0.25] is not None
    assert found[4.0] is not None
    assert found[0.25] < 0.75 < 1.5 < found[4.0]


def test_hrv_of_simulated_ecg_through_the_detector_matches_truth() -> None:
    fs = 250.0
    src = EcgSynth(EcgConfig(fs_hz=fs, hr_bpm=70.0, hr_std_bpm=3.0, emg_noise_uv=20.0, seed=3))
    ecg = src.read(round(fs * 300))
    truth = src.truth().r_peak_times_s
    found = detect_r_peaks(ecg, fs_hz=fs) / fs
    assert found.size == truth.size
    nn = correct_rr(rr_from_beats(found), end_s=found[1:])
    got, want = hrv_time_domain(nn.rr_ms), hrv_time_domain(rr_from_beats(truth))
    assert got.sdnn_ms == pytest.approx(want.sdnn_ms, rel=0.05)
    assert got.rmssd_ms == pytest.approx(want.rmssd_ms, rel=0.08)


# -- streaming: vitals -------------------------------------------------------------------------


def test_constant_rhythm_gives_exact_rates_on_aligned_windows() -> None:
    beats = 0.3 + 0.75 * np.arange(850)  # 80 bpm for ~637 s
    found = _stream(beats, np.arange(1.0, 640.6, 0.5))
    per_beat = _kind(found, VitalKind.HR_BEAT)
    assert len(per_beat) == beats.size - 1
    assert all(
        v.value == pytest.approx(80.0) and v.window_s == pytest.approx(0.75) for v in per_beat
    )
    assert [v.t_s for v in per_beat] == pytest.approx(beats[1:].tolist())
    hr = _kind(found, VitalKind.HR)
    assert [v.t_s for v in hr] == [10.0 * k for k in range(1, 64)]
    assert all(v.value == pytest.approx(80.0) and v.quality == 100 for v in hr)
    sdnn60 = _kind(found, VitalKind.SDNN, 60.0)
    assert [v.t_s for v in sdnn60] == [60.0 * k for k in range(1, 11)]
    assert all(v.value == pytest.approx(0.0, abs=1e-6) for v in sdnn60)
    # the first 300 s window starts at 0 and is covered well enough; 600 s too
    assert [v.t_s for v in _kind(found, VitalKind.SDNN, 300.0)] == [300.0, 600.0]
    assert [v.t_s for v in _kind(found, VitalKind.PNN50, 60.0)][:2] == [60.0, 120.0]
    assert [v.t_s for v in _kind(found, VitalKind.RMSSD, 300.0)] == [300.0, 600.0]
    assert found.events == ()


def test_streaming_hrv_matches_the_batch_formulas_and_lf_hf() -> None:
    beats = _beats_from_rr(
        lambda t: 850 + 40 * math.sin(2 * math.pi * 0.1 * t)
        + 20 * math.sin(2 * math.pi * 0.27 * t),
        610.0,
    )  # fmt: skip
    found = _stream(beats, np.arange(5.0, 620.0, 5.0))
    rr, ends = rr_from_beats(beats), beats[1:]
    for v in _kind(found, VitalKind.RMSSD) + _kind(found, VitalKind.SDNN):
        sel = (ends >= v.t_s - v.window_s) & (ends < v.t_s)
        want = hrv_time_domain(rr[sel])
        assert v.value == pytest.approx(
            want.rmssd_ms if v.kind == VitalKind.RMSSD else want.sdnn_ms
        )
    ratios = _kind(found, VitalKind.LF_HF)
    assert [v.t_s for v in ratios] == [300.0, 600.0]
    assert all(v.window_s == 300.0 and v.value == pytest.approx(4.0, rel=0.15) for v in ratios)


def _random_steps(rng: np.random.Generator, end_s: float, n: int) -> list[float]:
    return [*np.sort(rng.uniform(0.0, end_s, n)).tolist(), end_s]


def test_streaming_equals_batch_whatever_the_grouping() -> None:
    beats = _with_artefacts(_smooth_beats(330.0, seed=5))
    beats = np.concatenate((beats, beats[-1] + 6.0 + 0.4 * np.arange(60)))  # pause, tachy
    end = float(beats[-1]) + 20.0
    whole = _sorted(_stream(beats, [end]))
    assert whole[0]
    assert whole[1]
    rng = np.random.default_rng(11)
    for n in (3, 40, 700):
        assert _sorted(_stream(beats, _random_steps(rng, end, n))) == whole
    # one beat per step, the timeline advanced exactly to each beat
    assert _sorted(_stream(beats, [*beats.tolist(), end])) == whole


def test_rr_only_path_equals_itself_in_any_grouping() -> None:
    beats = _with_artefacts(_smooth_beats(330.0, seed=6))
    rr = rr_from_beats(beats)

    def feed(cuts: list[int]) -> tuple[list[Vital], list[Event]]:
        state, parts = HeartState.initial(), []
        for a, b in zip([0, *cuts], [*cuts, rr.size], strict=True):
            if b > a:
                found, state = rr_step(state, rr[a:b], end_s=float(beats[b]))
                parts.append(found)
        return _sorted(Findings.merge(parts))

    def same(got: tuple[list[Vital], list[Event]], want: tuple[list[Vital], list[Event]]) -> None:
        # beat times are rebuilt from each notification's end, so they agree to rounding only
        assert [(v.kind, v.quality) for v in got[0]] == [(v.kind, v.quality) for v in want[0]]
        numbers = np.array([(v.t_s, v.value, v.window_s) for v in got[0]])
        assert numbers == pytest.approx(np.array([(v.t_s, v.value, v.window_s) for v in want[0]]))
        assert got[1] == want[1]

    whole = feed([])
    assert len(whole[0]) > 300
    rng = np.random.default_rng(2)
    same(feed(sorted(rng.choice(np.arange(1, rr.size), 80, replace=False).tolist())), whole)
    same(feed(list(range(1, rr.size))), whole)


@pytest.mark.parametrize("seed", [1, 2])
def test_rr_only_path_with_artefacts_tracks_true_hr_within_1_bpm(seed: int) -> None:
    src = EcgSynth(EcgConfig(fs_hz=125.0, hr_bpm=72.0, hr_std_bpm=4.0, seed=seed))
    src.read(125 * 320)
    truth = src.truth().r_peak_times_s
    noisy = _with_artefacts(truth)
    rr = rr_from_beats(noisy)
    rng = np.random.default_rng(seed)
    state, parts, i = HeartState.initial(), [], 0
    while i < rr.size:  # BLE notifications carry 1-3 RR values
        n = int(rng.integers(1, 4))
        found, state = rr_step(state, rr[i : i + n], end_s=float(noisy[min(i + n, rr.size)]))
        parts.append(found)
        i += n
    hr = _kind(Findings.merge(parts), VitalKind.HR)
    assert len(hr) >= 30
    true_rr, ends = rr_from_beats(truth), truth[1:]
    for v in hr:
        sel = (ends >= v.t_s - 10.0) & (ends < v.t_s)
        want = 60000.0 * np.count_nonzero(sel) / float(np.sum(true_rr[sel]))
        assert v.value == pytest.approx(want, abs=1.0)


def test_state_stays_bounded() -> None:
    beats = 0.5 + 0.5 * np.arange(7200)  # one hour at 120 bpm
    state = HeartState.initial()
    for k in range(0, beats.size, 10):
        _, state = heart_step(
            state, beats[k : k + 10], now_s=float(beats[min(k + 10, beats.size - 1)])
        )
    assert state.nn_rr_ms.size <= 2 * 310
    assert len(state.corrector.history_rr_ms) <= 91
    assert len(state.corrector.pending) <= 3


# -- streaming: rhythm events ------------------------------------------------------------------


def _rate_steps(segments: Sequence[tuple[float, float]]) -> FloatArray:
    """Beat train from (duration s, bpm) segments."""
    times, t = [0.5], 0.5
    for duration, bpm in segments:
        end = t + duration
        while t + 60.0 / bpm <= end:
            t += 60.0 / bpm
            times.append(t)
        t = end if times[-1] < end - 60.0 / bpm else times[-1]
    return np.asarray(times)


def _events(found: Findings, kind: EventKind) -> list[Event]:
    return [e for e in found.events if e.kind == kind]


def test_tachycardia_run_is_reported_once_at_its_onset() -> None:
    beats = _rate_steps([(60.0, 75.0), (30.0, 150.0), (60.0, 75.0), (20.0, 150.0), (30.0, 75.0)])
    found = _stream(beats, np.arange(1.0, beats[-1] + 2.0, 1.0))
    tachy = _events(found, EventKind.TACHYCARDIA)
    assert len(tachy) == 2
    assert tachy[0].t_s == pytest.approx(60.5, abs=2.5)
    assert tachy[1].t_s == pytest.approx(150.5, abs=2.5)
    assert all(
        e.severity == Severity.WARNING and e.detail["rate_bpm"] == pytest.approx(150.0, abs=1)
        for e in tachy
    )
    assert not _events(found, EventKind.BRADYCARDIA)
    assert not _events(found, EventKind.ASYSTOLE)


def test_short_tachycardia_burst_is_not_reported() -> None:
    beats = _rate_steps([(60.0, 75.0), (6.0, 150.0), (60.0, 75.0)])
    assert _stream(beats, [float(beats[-1]) + 1.0]).events == ()


def test_very_fast_run_is_critical() -> None:
    beats = _rate_steps([(30.0, 75.0), (20.0, 200.0), (20.0, 75.0)])
    (event,) = _events(_stream(beats, [float(beats[-1])]), EventKind.TACHYCARDIA)
    assert event.severity == Severity.CRITICAL


def test_bradycardia_run_is_reported_once() -> None:
    beats = _rate_steps([(60.0, 70.0), (40.0, 35.0), (40.0, 70.0)])
    found = _stream(beats, np.arange(1.0, beats[-1] + 2.0, 0.7))
    (brady,) = _events(found, EventKind.BRADYCARDIA)
    assert brady.t_s == pytest.approx(60.5, abs=6.0)
    assert brady.severity == Severity.WARNING
    assert brady.detail["rate_bpm"] == pytest.approx(35.0, abs=1.0)
    assert not _events(found, EventKind.TACHYCARDIA)
    assert not _events(found, EventKind.ASYSTOLE)


def test_asystole_after_four_seconds_without_a_beat() -> None:
    beats = np.concatenate((0.5 + 0.8 * np.arange(50), 39.7 + 6.0 + 0.8 * np.arange(30)))
    steps = np.arange(0.25, beats[-1] + 1.0, 0.25)
    found = _stream(beats, steps)
    (event,) = _events(found, EventKind.ASYSTOLE)
    assert event.t_s == pytest.approx(39.7)
    assert event.severity == Severity.CRITICAL
    # reported in the step where the pause reached 4 s, not when the next beat came
    state, when = HeartState.initial(), None
    for now in steps:
        f, state = heart_step(state, beats[(beats > now - 0.25) & (beats <= now)], now_s=now)
        if f.events and when is None:
            when = now
    assert when == pytest.approx(43.75)
    # a 3 s pause is not asystole
    short = np.concatenate((0.5 + 0.8 * np.arange(50), 39.7 + 3.0 + 0.8 * np.arange(30)))
    assert not _events(_stream(short, steps), EventKind.ASYSTOLE)


def test_no_alarm_or_hr_while_the_signal_is_unusable() -> None:
    beats = np.concatenate((0.5 + 0.8 * np.arange(50), 39.7 + 10.0 + 0.4 * np.arange(150)))
    bad = (39.0, 95.0)
    found = _stream(beats, np.arange(0.5, 100.0, 0.5), ok=lambda t: not bad[0] < t <= bad[1])
    assert found.events == ()
    assert not [v for v in _kind(found, VitalKind.HR_BEAT) if bad[0] + 0.5 < v.t_s <= bad[1]]
    assert not [v for v in _kind(found, VitalKind.HR) if bad[0] + 10.0 < v.t_s <= bad[1]]
    # after the signal returns, a pause is counted from the recovery, not the last beat
    found = _stream(
        np.array([0.5, 1.3, 2.1]), np.arange(0.5, 20.0, 0.5), ok=lambda t: t <= 2.5 or t > 12.0
    )
    (event,) = _events(found, EventKind.ASYSTOLE)
    assert event.t_s == pytest.approx(12.0)


def test_normal_sinus_rhythm_raises_nothing() -> None:
    fs = 250.0
    src = EcgSynth(EcgConfig(fs_hz=fs, hr_bpm=62.0, hr_std_bpm=4.0, seed=8))
    ecg = src.read(round(fs * 330))
    beats = detect_r_peaks(ecg, fs_hz=fs) / fs
    found = _stream(beats, np.arange(2.0, 330.0, 2.0))
    assert found.events == ()
    hr = _kind(found, VitalKind.HR)
    assert len(hr) == 32
    assert all(abs(v.value - 62.0) < 6.0 for v in hr)


def test_rr_only_pause_is_asystole_and_empty_notifications_are_harmless() -> None:
    state = HeartState.initial()
    found, state = rr_step(state, [], end_s=1.0)
    assert found == Findings()
    found, state = rr_step(state, [800.0, 810.0, 4500.0, 800.0, 790.0], end_s=10.0)
    (event,) = found.events
    assert event.kind == EventKind.ASYSTOLE
    assert event.t_s == pytest.approx(10.0 - 1.59 - 4.5)


_WFDB_PANDAS = pytest.mark.filterwarnings("ignore:The inplace keyword:Warning")
_BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")


def _reference_beats_s(record: str, fs_hz: float) -> FloatArray:
    import wfdb

    if record == "100":
        ann = wfdb.rdann(str(MITDB / record), "atr")
        keep = [s for s, sym in zip(ann.sample, ann.symbol, strict=True) if sym in _BEAT_SYMBOLS]
        return np.asarray(keep, dtype=np.float64) / fs_hz
    lines = (MITDB / f"{record}.beats.csv").read_text().splitlines()
    samples = [int(s) for s in lines if s.strip() and not s.startswith("#")]
    return np.asarray(samples, dtype=np.float64) / fs_hz


@requires_mitdb
@_WFDB_PANDAS
@pytest.mark.parametrize("record", ["100", "119"])  # 119: ventricular bigeminy runs
def test_mitdb_detector_and_correction_agree_with_the_reference_beats(record: str) -> None:
    import wfdb

    rec = wfdb.rdrecord(str(MITDB / record))
    fs = float(rec.fs)
    found = detect_r_peaks(rec.p_signal[:, 0], fs_hz=fs) / fs
    ref = _reference_beats_s(record, fs)
    got = correct_rr(rr_from_beats(found), end_s=found[1:])
    want = correct_rr(rr_from_beats(ref), end_s=ref[1:])
    assert got.count(Artefact.ECTOPIC) > 50  # APCs in 100, PVCs in 119 are corrected
    a, b = hrv_time_domain(got.rr_ms), hrv_time_domain(want.rr_ms)
    assert a.sdnn_ms == pytest.approx(b.sdnn_ms, rel=0.03)
    assert a.rmssd_ms == pytest.approx(b.rmssd_ms, rel=0.03)
    true_hr = 60.0 * (ref.size - 1) / float(ref[-1] - ref[0])
    assert mean_hr_bpm(got.span_ms) == pytest.approx(true_hr, abs=0.5)


# -- review fixes: pause clock from the start, noisy rhythm, escalation -----------------------


def test_a_stream_starting_in_asystole_raises_it_from_its_start() -> None:
    # ECG path: no beat at all from t = 0, signal usable
    found = _stream(np.empty(0), np.arange(0.25, 10.0, 0.25))
    (event,) = _events(found, EventKind.ASYSTOLE)
    assert event.t_s == pytest.approx(0.0)
    assert event.severity == Severity.CRITICAL
    # the heart restarts at 6 s: still one asystole, dated at the stream's start
    late = 6.0 + 0.8 * np.arange(20)
    (event,) = _events(_stream(late, np.arange(0.25, 20.0, 0.25)), EventKind.ASYSTOLE)
    assert event.t_s == pytest.approx(0.0)
    # a first beat within 4 s of the start is not a pause
    assert _stream(3.5 + 0.8 * np.arange(20), np.arange(0.25, 20.0, 0.25)).events == ()
    # RR path: a strap connected during an arrest notifies without intervals
    state, raised_at = HeartState.initial(), []
    for t in np.arange(1.0, 20.0, 1.0):
        f, state = rr_step(state, [], end_s=float(t))
        raised_at += [(float(t), e) for e in f.events]
    ((when, event),) = raised_at
    assert (when, event.kind, event.t_s) == (5.0, EventKind.ASYSTOLE, pytest.approx(1.0))


def test_rr_notifications_without_intervals_advance_the_pause_clock() -> None:
    state, raised_at, t = HeartState.initial(), [], 0.0
    for _ in range(60):  # 60 bpm, one interval per notification
        t += 1.0
        f, state = rr_step(state, [1000.0], end_s=t)
        raised_at += [(t, e) for e in f.events]
    for _ in range(30):  # arrest: the strap keeps notifying, without RR values
        t += 1.0
        f, state = rr_step(state, [], end_s=t)
        raised_at += [(t, e) for e in f.events]
    ((when, event),) = raised_at
    assert event.kind == EventKind.ASYSTOLE
    assert event.t_s == pytest.approx(60.0)
    assert when == 64.0  # raised by the notification where the pause reached 4 s
    # beats coming back end the pause: a later arrest is raised again
    for _ in range(10):
        t += 1.0
        f, state = rr_step(state, [1000.0], end_s=t)
    last_beat = t
    for _ in range(5):
        t += 1.0
        f, state = rr_step(state, [], end_s=t)
        raised_at += [(t, e) for e in f.events]
    assert [w for w, _ in raised_at] == [64.0, last_beat + 4.0]


def _stream_noisy(
    beats: FloatArray, steps: Sequence[float], noisy: tuple[float, float]
) -> Findings:
    state, parts, prev = HeartState.initial(), [], -math.inf
    for now in steps:
        chunk = beats[(beats > prev) & (beats <= now)]
        ok = not noisy[0] < now <= noisy[1]
        found, state = heart_step(state, chunk, now_s=now, rhythm_ok=ok)
        parts.append(found)
        prev = now
    return Findings.merge(parts)


def test_runs_neither_start_nor_count_while_the_rhythm_is_untrusted() -> None:
    # noise detected as 150 bpm for 40 s: no tachycardia, no asystole, HR at low quality
    beats = _rate_steps([(60.0, 70.0), (40.0, 150.0), (60.0, 70.0)])
    steps = np.arange(1.0, beats[-1] + 2.0, 1.0)
    found = _stream_noisy(beats, steps, (60.0, 100.0))
    assert found.events == ()
    assert _events(_stream(beats, steps), EventKind.TACHYCARDIA)  # the same beats, trusted
    hr = _kind(found, VitalKind.HR)
    assert all(v.quality == 100 for v in hr if v.t_s <= 60.0 or v.t_s > 110.0)
    assert all(v.quality < 50 for v in hr if 70.0 <= v.t_s <= 100.0)
    assert all(v.quality == 0 for v in _kind(found, VitalKind.HR_BEAT) if 61.0 < v.t_s <= 100.0)
    # a true run interrupted by 5 s of noise restarts its 10 s after the noise
    beats = _rate_steps([(60.0, 70.0), (60.0, 150.0), (30.0, 70.0)])
    steps = np.arange(1.0, beats[-1] + 2.0, 1.0)
    (event,) = _events(_stream_noisy(beats, steps, (65.0, 70.0)), EventKind.TACHYCARDIA)
    assert event.t_s == pytest.approx(70.0, abs=2.5)


def test_motion_noise_on_simulated_ecg_raises_no_tachycardia() -> None:
    from scipy import signal

    from processing.streams import Signal, initial_state, step

    fs = 250.0
    ecg = EcgSynth(EcgConfig(fs_hz=fs, hr_bpm=70.0, seed=3)).read(round(140 * fs))
    a, b = round(40 * fs), round(100 * fs)
    sos = signal.butter(2, (1.0, 30.0), "bandpass", fs=fs, output="sos")
    noise = signal.sosfilt(sos, np.random.default_rng(5).standard_normal(b - a))
    ecg[a:b] += 300.0 * noise / np.std(noise)  # 300 uV of 1-30 Hz motion artefact
    state, parts = initial_state(Signal.ECG, fs_hz=fs), []
    for i in range(0, ecg.size, 250):
        found, state = step(state, ecg[i : i + 250])
        parts.append(found)
    found = Findings.merge(parts)
    assert found.events == ()
    hr = _kind(found, VitalKind.HR)
    assert all(v.quality < 50 for v in hr if 50.0 <= v.t_s <= 100.0)
    assert all(v.quality == 100 and abs(v.value - 70.0) < 2.0 for v in hr if v.t_s <= 40.0)


def test_a_run_in_the_hysteresis_band_is_not_reported_until_past_the_threshold() -> None:
    # 125 bpm for 4 s, then 115 bpm (between off 110 and on 120) for 30 s, then 130 bpm
    beats = _rate_steps([(30.0, 70.0), (4.0, 125.0), (30.0, 115.0), (20.0, 130.0), (20, 70.0)])
    steps = np.arange(1.0, beats[-1] + 2.0, 1.0)
    (event,) = _events(_stream(beats, steps), EventKind.TACHYCARDIA)
    assert event.detail["rate_bpm"] == pytest.approx(130.0, abs=1.0)
    # never reported while only in the band
    short = _rate_steps([(30.0, 70.0), (4.0, 125.0), (30.0, 115.0), (20, 70.0)])
    assert _stream(short, np.arange(1.0, short[-1] + 2.0, 1.0)).events == ()


def test_a_warned_run_that_worsens_is_escalated_once() -> None:
    beats = _rate_steps([(60.0, 75.0), (60.0, 130.0), (120.0, 210.0), (30.0, 75.0)])
    found = _stream(beats, np.arange(1.0, beats[-1] + 2.0, 1.0))
    warn, crit = _events(found, EventKind.TACHYCARDIA)
    assert warn.severity == Severity.WARNING
    assert warn.t_s == pytest.approx(60.5, abs=2.5)
    assert crit.severity == Severity.CRITICAL
    assert crit.t_s == pytest.approx(120.5, abs=2.5)
    assert crit.detail["rate_bpm"] == pytest.approx(210.0, abs=1.0)
    # above 180 for only 6 s: no escalation
    brief = _rate_steps([(60.0, 75.0), (60.0, 130.0), (6.0, 210.0), (30.0, 130.0), (30, 75.0)])
    (only,) = _events(_stream(brief, np.arange(1.0, brief[-1] + 2.0, 1.0)), EventKind.TACHYCARDIA)
    assert only.severity == Severity.WARNING
    # bradycardia 38 bpm, then complete block at 25 bpm
    beats = _rate_steps([(60.0, 70.0), (60.0, 38.0), (60.0, 25.0), (30.0, 70.0)])
    found = _stream(beats, np.arange(1.0, beats[-1] + 2.0, 1.0))
    warn, crit = _events(found, EventKind.BRADYCARDIA)
    assert warn.severity == Severity.WARNING
    assert crit.severity == Severity.CRITICAL
    assert crit.t_s == pytest.approx(120.5, abs=8.0)  # 3 beats of 2.4 s to the median
    assert crit.detail["rate_bpm"] == pytest.approx(25.0, abs=1.0)
