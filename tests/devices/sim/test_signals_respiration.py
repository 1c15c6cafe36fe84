"""The respiration band: rate schedule, breath shape, apnoea, noise, artefacts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from devices.sim.signals import FloatArray, Interval, Schedule, SignalError
from devices.sim.signals.respiration import (
    BreathingConfig,
    BreathTrain,
    RespirationConfig,
    RespirationSynth,
    RespirationTruth,
)

FS = 25.0


def _run(config: RespirationConfig, seconds: float) -> tuple[FloatArray, RespirationTruth]:
    source = RespirationSynth(config)
    x = source.read(round(seconds * config.fs_hz))
    return x, source.truth()


def test_rate_follows_paced_normal_and_tachypnoea_schedule() -> None:
    schedule = Schedule.from_pairs([(0, 6), (120, 15), (240, 32)], "step")
    config = RespirationConfig(breathing=BreathingConfig(rate_bpm=schedule, rate_cv=0.05, seed=1))
    x, truth = _run(config, 360.0)
    onsets = truth.onset_times_s
    peaks, _ = sps.find_peaks(x, prominence=300.0)
    for lo, hi, expected in [(0, 120, 6.0), (120, 240, 15.0), (240, 360, 32.0)]:
        # skip the breath that straddles the change
        inside = (onsets > lo + 60.0 / expected) & (onsets < hi - 60.0 / expected)
        assert np.median(truth.rate_bpm[inside]) == pytest.approx(expected, rel=0.06)
        # independent of the truth: peaks counted on the samples
        counted = np.sum((peaks / FS >= lo) & (peaks / FS < hi)) / (hi - lo) * 60.0
        assert counted == pytest.approx(expected, rel=0.12)


def test_truth_onsets_and_peaks_are_the_waveform_minima_and_maxima() -> None:
    config = RespirationConfig(fs_hz=50.0, breathing=BreathingConfig(rate_bpm=14.0, seed=2))
    x, truth = _run(config, 400.0)
    fs = config.fs_hz
    onsets, peaks = truth.onset_times_s, truth.peak_times_s
    breaths = zip(onsets[:-1], peaks[:-1], onsets[1:], strict=True)
    for i, (onset, peak, next_onset) in enumerate(breaths):
        lo, hi = round(onset * fs), round(next_onset * fs)
        assert abs((lo + int(np.argmax(x[lo:hi]))) / fs - peak) <= 1.0 / fs
        assert np.max(x[lo:hi]) == pytest.approx(truth.amplitude_au[i], rel=0.01)
        assert x[lo] == pytest.approx(0.0, abs=0.01 * truth.amplitude_au[i])
    # inspiration shorter than expiration (Ti/Ttot ~ 0.4)
    fraction = (peaks[:-1] - onsets[:-1]) / np.diff(onsets)
    assert np.mean(fraction) == pytest.approx(0.4, abs=0.03)
    # amplitudes vary breath to breath around the configured tidal amplitude
    assert np.mean(truth.amplitude_au) == pytest.approx(1000.0, rel=0.1)
    assert np.std(truth.amplitude_au) > 40.0


def test_apnoea_is_flat_for_its_whole_interval() -> None:
    apnoeas = (Interval(30.0, 45.0), Interval(80.0, 100.0))
    config = RespirationConfig(
        offset_au=500.0, breathing=BreathingConfig(rate_bpm=16.0, apnoeas=apnoeas, seed=3)
    )
    x, truth = _run(config, 130.0)
    assert len(truth.apnoea_start_s) == 2
    for start, end, scheduled in zip(
        truth.apnoea_start_s, truth.apnoea_end_s, apnoeas, strict=True
    ):
        assert start <= scheduled.start_s
        assert end == scheduled.end_s
        assert end - start >= 10.0
        inside = x[int(np.ceil(start * FS)) : int(end * FS)]
        np.testing.assert_allclose(inside, 500.0)
        assert not np.any((truth.onset_times_s > start) & (truth.onset_times_s < end))
    assert np.ptp(x[: int(25 * FS)]) > 500.0  # breathing before


def test_apnoea_stays_quiet_under_noise_and_drift() -> None:
    breathing = BreathingConfig(rate_bpm=15.0, apnoeas=(Interval(40.0, 60.0),), seed=4)
    config = RespirationConfig(drift_au=30.0, snr_db=25.0, breathing=breathing, seed=4)
    x, truth = _run(config, 100.0)
    start, end = truth.apnoea_start_s[0], truth.apnoea_end_s[0]
    quiet = x[int(np.ceil(start * FS)) : int(end * FS)]
    breathing_part = x[int(5 * FS) : int(35 * FS)]
    assert np.std(quiet) < 0.15 * np.std(breathing_part)


def test_snr_sets_the_white_noise_level() -> None:
    breathing = BreathingConfig(seed=5)
    clean, _ = _run(RespirationConfig(breathing=breathing, seed=5), 300.0)
    noisy, _ = _run(RespirationConfig(breathing=breathing, snr_db=10.0, seed=5), 300.0)
    noise = noisy - clean
    snr = 20 * np.log10(np.std(clean) / np.std(noise))
    assert snr == pytest.approx(10.0, abs=1.5)


def test_artefacts_are_placed_and_reported() -> None:
    config = RespirationConfig(
        artefacts=(Interval(20.0, 23.0),),
        artefact_rate_per_min=2.0,
        breathing=BreathingConfig(seed=6),
        seed=6,
    )
    x, truth = _run(config, 300.0)
    clean, _ = _run(RespirationConfig(breathing=BreathingConfig(seed=6), seed=6), 300.0)
    assert 20.0 in truth.artefact_start_s
    assert 3 <= len(truth.artefact_start_s) <= 25
    difference = x - clean
    t = np.arange(len(x)) / FS
    inside = np.zeros(len(x), dtype=bool)
    for start, end in zip(truth.artefact_start_s, truth.artefact_end_s, strict=True):
        inside |= (t >= start) & (t < end)
        assert np.max(np.abs(difference[(t >= start) & (t < end)])) > 200.0
    np.testing.assert_allclose(difference[~inside], 0.0, atol=1e-9)


def test_breath_train_is_shared_and_order_independent() -> None:
    config = BreathingConfig(rate_bpm=12.0, seed=7)
    a, b = BreathTrain(config), BreathTrain(config)
    late_first = a.volume(np.array([500.0]))
    b.volume(np.linspace(0, 100, 50))
    assert b.volume(np.array([500.0]))[0] == late_first[0]
    n = min(len(a.onsets), len(b.onsets))
    np.testing.assert_array_equal(a.onsets.view()[:n], b.onsets.view()[:n])
    drive = a.rsa_drive(np.arange(0.0, 600.0, 0.1))
    assert np.mean(drive) == pytest.approx(0.0, abs=0.1)
    assert np.std(drive) == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize(
    "make",
    [
        lambda: BreathingConfig(rate_bpm=100.0),
        lambda: BreathingConfig(apnoeas=(Interval(10.0, 15.0),)),
        lambda: BreathingConfig(apnoeas=(Interval(10.0, 30.0), Interval(20.0, 40.0))),
        lambda: RespirationConfig(fs_hz=-1.0),
    ],
)
def test_invalid_configuration_is_refused(make: object) -> None:
    with pytest.raises(SignalError):
        make()  # type: ignore[operator]
