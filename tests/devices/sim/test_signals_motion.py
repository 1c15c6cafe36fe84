"""The chest accelerometer: posture gravity vectors, gait steps, falls, labels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from devices.sim.signals import FloatArray, SignalError
from devices.sim.signals.motion import (
    GRAVITY_MG,
    Activity,
    MotionConfig,
    MotionEpisode,
    MotionSynth,
    MotionTruth,
    Posture,
)

REST, WALK, RUN, FALL = Activity.REST, Activity.WALK, Activity.RUN, Activity.FALL


def _run(config: MotionConfig, seconds: float) -> tuple[FloatArray, MotionTruth]:
    source = MotionSynth(config)
    return source.read(round(seconds * config.fs_hz)), source.truth()


def test_posture_table_is_unit_gravity_along_the_documented_axes() -> None:
    for vector in GRAVITY_MG.values():
        assert np.linalg.norm(vector) == pytest.approx(1000.0)
    assert GRAVITY_MG[Posture.UPRIGHT][1] == 1000.0  # y: superior
    assert GRAVITY_MG[Posture.SUPINE][2] == 1000.0  # z: anterior, facing up when supine
    assert GRAVITY_MG[Posture.RIGHT][0] == 1000.0  # x: left side up when lying on the right


def test_each_resting_posture_reads_its_gravity_vector() -> None:
    postures = list(Posture)
    episodes = tuple(MotionEpisode(REST, 10.0, p) for p in postures)
    x, truth = _run(MotionConfig(fs_hz=50.0, episodes=episodes, seed=1), 10.0 * len(postures))
    assert list(truth.posture) == [str(p) for p in postures]
    t = np.arange(len(x)) / 50.0
    for start, posture in zip(truth.segment_start_s, postures, strict=True):
        still = x[(t >= start + 3.0) & (t < start + 10.0)]  # after the 1.5 s transition
        mean = still.mean(axis=0)
        assert np.linalg.norm(mean) == pytest.approx(1000.0, abs=10.0)
        expected = np.asarray(GRAVITY_MG[posture])
        cos_angle = mean @ expected / (np.linalg.norm(mean) * 1000.0)
        assert cos_angle > np.cos(np.radians(15.0))  # within the random tilt
        assert np.std(np.linalg.norm(still, axis=1)) < 10.0


@pytest.mark.parametrize("fs_hz", [25.0, 50.0, 100.0, 200.0])
@pytest.mark.parametrize("landing", [Posture.SUPINE, Posture.LEFT, Posture.PRONE])
def test_fall_has_free_fall_dip_impact_and_lying_still(fs_hz: float, landing: Posture) -> None:
    episodes = (
        MotionEpisode(WALK, 10.0),
        MotionEpisode(FALL, 2.0, landing),
        MotionEpisode(REST, 10.0, landing),
    )
    x, truth = _run(MotionConfig(fs_hz=fs_hz, episodes=episodes, seed=2), 22.0)
    assert len(truth.fall_times_s) == 1
    impact, free_fall = truth.fall_times_s[0], truth.free_fall_start_s[0]
    assert 10.0 < free_fall < impact < 12.0
    t = np.arange(len(x)) / fs_hz
    magnitude = np.linalg.norm(x, axis=1)
    dip = magnitude[(t > free_fall + 0.1) & (t < impact - 0.08)]
    assert dip.size > 0
    assert dip.max() < 500.0
    near_impact = magnitude[np.abs(t - impact) < 0.1]
    assert near_impact.max() > 2500.0
    after = x[(t > impact + 2.0) & (t < 22.0)]
    assert np.std(np.linalg.norm(after, axis=1)) < 10.0
    vertical = after.mean(axis=0) @ np.asarray(GRAVITY_MG[landing]) / 1000.0
    assert vertical == pytest.approx(1000.0, rel=0.05)
    assert abs(after.mean(axis=0)[1]) < 200.0  # lying: little gravity along the body axis


@pytest.mark.parametrize(("activity", "cadence_hz"), [(WALK, 1.9), (RUN, 2.8)])
def test_gait_steps_match_cadence_and_vertical_peaks(activity: Activity, cadence_hz: float) -> None:
    fs = 100.0
    episodes = (MotionEpisode(REST, 5.0), MotionEpisode(activity, 60.0), MotionEpisode(REST, 5.0))
    x, truth = _run(MotionConfig(fs_hz=fs, episodes=episodes, seed=3), 70.0)
    steps = truth.step_times_s
    assert np.all((steps > 5.0) & (steps < 65.0))
    assert 1.0 / np.median(np.diff(steps)) == pytest.approx(cadence_hz, rel=0.03)
    # independent of the truth: peaks of the vertical (y) axis are the steps
    peaks, _ = sps.find_peaks(x[:, 1], height=1100.0, distance=int(0.25 * fs))
    peak_times = peaks / fs
    assert len(peak_times) == len(steps)
    np.testing.assert_allclose(peak_times, steps, atol=0.03)
    swing = np.ptp(x[(np.arange(len(x)) / fs > 20) & (np.arange(len(x)) / fs < 50), 1])
    assert swing > (400.0 if activity is WALK else 1800.0)


def test_custom_cadence_and_labels_with_clipped_end() -> None:
    episodes = (MotionEpisode(WALK, 30.0, cadence_hz=1.6), MotionEpisode(REST, 10.0))
    source = MotionSynth(MotionConfig(fs_hz=50.0, episodes=episodes, seed=4))
    source.read(50 * 20)
    partial = source.truth()
    assert list(partial.activity) == ["walk"]
    assert partial.segment_end_s[-1] == pytest.approx(20.0)
    source.read(50 * 30)
    truth = source.truth()
    assert list(truth.activity) == ["walk", "rest"]
    np.testing.assert_allclose(truth.segment_start_s, [0.0, 30.0])
    np.testing.assert_allclose(truth.segment_end_s, [30.0, 50.0])  # last one held, clipped
    assert 1.0 / np.median(np.diff(truth.step_times_s)) == pytest.approx(1.6, rel=0.03)


def test_readings_are_clipped_to_the_sensor_range() -> None:
    episodes = (MotionEpisode(REST, 3.0), MotionEpisode(FALL, 2.0, Posture.SUPINE))
    config = MotionConfig(fs_hz=200.0, episodes=episodes, impact_mg=3000.0, range_mg=3500.0)
    x, _ = _run(config, 6.0)
    assert np.max(np.abs(x)) <= 3500.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: MotionEpisode(WALK, 10.0, Posture.SUPINE),
        lambda: MotionEpisode(FALL, 2.0, Posture.UPRIGHT),
        lambda: MotionEpisode(FALL, 0.5, Posture.LEFT),
        lambda: MotionEpisode(REST, 0.0),
        lambda: MotionConfig(episodes=(MotionEpisode(FALL, 2.0, Posture.LEFT),)),
        lambda: MotionConfig(episodes=()),
        lambda: MotionConfig(impact_mg=500.0),
    ],
)
def test_invalid_schedule_is_refused(make: object) -> None:
    with pytest.raises(SignalError):
        make()  # type: ignore[operator]
