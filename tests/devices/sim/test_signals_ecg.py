"""The synthetic ECG: rate, beat placement, morphology, HRV, PVCs, noise and speed.

Heart rate is checked two ways: from the truth R peaks, and independently of the truth
by a plain peak picker on the samples (scipy ``find_peaks``), whose peaks must also be
where the truth says.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from scipy import signal as sps
from scipy.interpolate import CubicSpline

from devices.sim.signals import FloatArray, Schedule, SignalError
from devices.sim.signals.ecg import EcgConfig, EcgSynth
from devices.sim.signals.respiration import BreathingConfig, BreathTrain


def _run(config: EcgConfig, seconds: float) -> tuple[FloatArray, EcgSynth]:
    source = EcgSynth(config)
    return source.read(round(seconds * config.fs_hz)), source


@pytest.mark.parametrize("fs_hz", [130.0, 250.0, 360.0, 500.0])
@pytest.mark.parametrize("hr_bpm", [48.0, 72.0, 150.0])
def test_heart_rate_matches_configuration(fs_hz: float, hr_bpm: float) -> None:
    seconds = 120.0
    x, source = _run(EcgConfig(fs_hz=fs_hz, hr_bpm=hr_bpm, hr_std_bpm=2.0, seed=1), seconds)
    truth = source.truth()
    assert np.mean(truth.hr_bpm) == pytest.approx(hr_bpm, abs=1.5)
    assert len(truth.r_peak_times_s) / seconds * 60 == pytest.approx(hr_bpm, abs=2.0)
    np.testing.assert_allclose(truth.hr_mean_bpm, hr_bpm)
    # independent of the truth: a peak picker on the samples
    peaks, _ = sps.find_peaks(x, height=500.0, distance=int(0.25 * fs_hz))
    assert len(peaks) == len(truth.r_peak_times_s)
    detected_hr = 60.0 / np.diff(peaks / fs_hz)
    assert np.mean(detected_hr) == pytest.approx(hr_bpm, abs=1.5)
    np.testing.assert_allclose(peaks / fs_hz, truth.r_peak_times_s, atol=1.0 / fs_hz + 0.004)


@pytest.mark.parametrize(
    "noise",
    [{}, {"baseline_wander_uv": 60.0, "emg_noise_uv": 15.0, "powerline_uv": 30.0}],
    ids=["clean", "noisy"],
)
def test_signal_maximum_in_each_rr_window_is_at_the_truth_r_peak(noise: dict[str, float]) -> None:
    fs = 250.0
    config = EcgConfig(fs_hz=fs, hr_bpm=80.0, hr_std_bpm=4.0, seed=2, **noise)
    x, source = _run(config, 90.0)
    r = source.truth().r_peak_times_s
    tolerance_s = 1.0 / fs + (0.003 if not noise else 0.012)
    for prev, peak, nxt in zip(r[:-2], r[1:-1], r[2:], strict=True):
        lo = round((peak - (peak - prev) / 2) * fs)
        hi = round((peak + (nxt - peak) / 2) * fs)
        found = (lo + int(np.argmax(x[lo:hi]))) / fs
        assert abs(found - peak) < tolerance_s


def test_amplitude_in_microvolts_and_pqrst_morphology() -> None:
    fs = 500.0
    x, source = _run(EcgConfig(fs_hz=fs, hr_bpm=60.0, hr_std_bpm=0.5, seed=3), 60.0)
    r = source.truth().r_peak_times_s[1:-1]
    index = np.round(r * fs).astype(int)
    assert np.median(x[index]) == pytest.approx(1000.0, rel=0.05)
    offsets = np.arange(-int(0.4 * fs), int(0.5 * fs))
    beat = np.mean([x[i + offsets] for i in index], axis=0)
    t_ms = offsets / fs * 1000.0

    def window(lo: float, hi: float) -> FloatArray:
        return np.asarray(beat[(t_ms >= lo) & (t_ms <= hi)], dtype=np.float64)

    assert window(-250, -100).max() > 150  # P wave
    assert window(-60, -15).min() < -50  # Q
    assert window(15, 60).min() < -100  # S
    assert window(150, 400).max() > 250  # T wave
    assert abs(window(-400, -320)).max() < 30  # isoelectric before P
    # a sharp QRS, not a sine: above half the R height for well under 60 ms
    assert np.sum(beat > 500) / fs < 0.06


def test_tachycardia_episode_follows_the_schedule() -> None:
    hr = Schedule.from_pairs([(0, 65), (60, 160), (120, 65)], "step")
    _, source = _run(EcgConfig(fs_hz=250.0, hr_bpm=hr, seed=4), 180.0)
    truth = source.truth()
    t = truth.r_peak_times_s
    for lo, hi, expected in [(5, 58, 65), (65, 118, 160), (125, 178, 65)]:
        inside = (t > lo) & (t < hi)
        assert np.mean(truth.hr_bpm[inside]) == pytest.approx(expected, abs=2.0)
        np.testing.assert_allclose(truth.hr_mean_bpm[inside], expected)


def _rr_band_powers(config: EcgConfig, seconds: float) -> tuple[float, float, float]:
    """LF and HF power of the beat-to-beat RR series (spline-resampled at 4 Hz), RR std."""
    _, source = _run(config, seconds)
    truth = source.truth()
    grid = np.arange(truth.r_peak_times_s[1], truth.r_peak_times_s[-1], 0.25)
    rr = CubicSpline(truth.r_peak_times_s[1:], truth.rr_ms[1:] / 1000.0)(grid)
    f, pxx = sps.welch(rr - rr.mean(), fs=4.0, nperseg=512)
    lf = float(np.sum(pxx[(f >= 0.04) & (f < 0.15)]))
    hf = float(np.sum(pxx[(f >= 0.15) & (f < 0.4)]))
    return lf, hf, float(np.std(truth.rr_ms[1:]))


def test_hrv_lf_hf_ratio_and_rr_spread() -> None:
    base = EcgConfig(fs_hz=130.0, hr_bpm=75.0, hr_std_bpm=3.0, seed=5)
    lf_a, hf_a, rr_sd = _rr_band_powers(dataclasses.replace(base, lf_hf_ratio=0.5), 900.0)
    lf_b, hf_b, _ = _rr_band_powers(dataclasses.replace(base, lf_hf_ratio=4.0), 900.0)
    # The parameter is the ratio of the continuous RR process (as in ECGSYN); sampling it
    # beat by beat (each RR averages the modulation over one interval) attenuates HF, so
    # the beat-series estimate reads somewhat higher than configured.
    assert 0.35 < lf_a / hf_a < 1.2
    assert 2.5 < lf_b / hf_b < 8.0
    assert 3.0 < (lf_b / hf_b) / (lf_a / hf_a) < 12.0
    # ECGSYN: RR std = 60 * hr_std / hr^2 s = 32 ms at 75 ± 3 bpm
    assert rr_sd == pytest.approx(32.0, rel=0.3)


def test_rsa_follows_a_shared_breath_train() -> None:
    breaths = BreathTrain(BreathingConfig(rate_bpm=9.0, seed=6))
    config = EcgConfig(fs_hz=130.0, hr_bpm=60.0, hr_std_bpm=3.0, lf_hf_ratio=0.1, seed=6)
    source = EcgSynth(config, rsa=breaths)
    source.read(130 * 300)
    truth = source.truth()
    drive = breaths.rsa_drive(truth.r_peak_times_s[1:])
    # RR shortens (HR rises) with inspiration: strongly correlated with the breathing drive
    assert np.corrcoef(drive, truth.hr_bpm[1:])[0, 1] > 0.6
    f_breath = 9.0 / 60.0
    grid = np.arange(10.0, 290.0, 0.25)
    rr = np.interp(grid, truth.r_peak_times_s[1:], truth.rr_ms[1:])
    f, pxx = sps.welch(rr - rr.mean(), fs=4.0, nperseg=512)
    assert abs(f[np.argmax(pxx)] - f_breath) < 0.03


def test_premature_ventricular_beats_and_compensatory_pause() -> None:
    config = EcgConfig(fs_hz=360.0, hr_bpm=70.0, pvc_probability=0.15, pvc_coupling=0.6, seed=7)
    x, source = _run(config, 300.0)
    truth = source.truth()
    labels = truth.beat_labels
    pvc = np.flatnonzero(labels == "V")
    assert 20 < len(pvc) < 80
    assert not np.any((labels[1:] == "V") & (labels[:-1] == "V"))
    sinus_rr = 60.0 / 70.0 * 1000.0
    inner = pvc[(pvc > 0) & (pvc < len(labels) - 1)]
    np.testing.assert_allclose(truth.rr_ms[inner], 0.6 * sinus_rr, rtol=0.1)
    np.testing.assert_allclose(truth.rr_ms[inner] + truth.rr_ms[inner + 1], 2 * sinus_rr, rtol=0.1)
    # wide tall QRS: the ventricular beats stand out above the normal R waves
    idx = np.round(truth.r_peak_times_s * 360.0).astype(int)
    assert np.median(x[idx[labels == "V"]]) > 1.4 * np.median(x[idx[labels == "N"]])


def test_noise_options_have_the_configured_size() -> None:
    fs = 250.0
    clean, _ = _run(EcgConfig(fs_hz=fs, seed=8), 60.0)
    line, _ = _run(EcgConfig(fs_hz=fs, powerline_uv=40.0, powerline_hz=60.0, seed=8), 60.0)
    emg, _ = _run(EcgConfig(fs_hz=fs, emg_noise_uv=25.0, seed=8), 60.0)
    wander, _ = _run(EcgConfig(fs_hz=fs, baseline_wander_uv=100.0, seed=8), 60.0)
    hum = line - clean
    assert np.max(np.abs(hum)) == pytest.approx(40.0, rel=0.01)
    f, pxx = sps.periodogram(hum, fs=fs)
    assert f[np.argmax(pxx)] == pytest.approx(60.0, abs=0.1)
    assert np.std(emg - clean) == pytest.approx(25.0, rel=0.05)
    drift = wander - clean
    assert np.std(drift) == pytest.approx(100.0, rel=0.5)
    f, pxx = sps.welch(drift, fs=fs, nperseg=4096)
    assert np.sum(pxx[f > 1.0]) < 0.05 * np.sum(pxx)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fs_hz": 0.0},
        {"hr_bpm": 300.0},
        {"hr_bpm": Schedule.from_pairs([(0, 60), (10, 10)])},
        {"pvc_probability": 0.9},
        {"powerline_uv": 10.0, "powerline_hz": 200.0, "fs_hz": 250.0},
        {"emg_noise_uv": -1.0},
    ],
)
def test_invalid_configuration_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(SignalError):
        EcgConfig(**kwargs)  # type: ignore[arg-type]


def test_faster_than_100x_real_time_at_250_hz() -> None:
    config = EcgConfig(
        fs_hz=250.0, hr_std_bpm=3.0, baseline_wander_uv=30.0, emg_noise_uv=10.0, seed=9
    )
    source = EcgSynth(config)
    simulated_s = 600.0
    start = time.perf_counter()
    for _ in range(int(simulated_s)):
        source.read(250)
    elapsed = time.perf_counter() - start
    assert simulated_s / elapsed > 100.0
