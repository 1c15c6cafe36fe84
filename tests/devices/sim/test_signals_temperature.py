"""Skin temperature: sensor warm-up, fever, drift, noise, a simulated day."""

from __future__ import annotations

import math

import numpy as np
import pytest

from devices.frame import Unit
from devices.sim.signals import SignalError
from devices.sim.signals.temperature import FeverEpisode, TemperatureConfig, TemperatureSynth


def test_warm_up_approaches_skin_exponentially_after_donning() -> None:
    config = TemperatureConfig(
        ambient_c=22.0, don_s=60.0, warmup_tau_s=120.0, drift_c=0.0, noise_c=0.0
    )
    source = TemperatureSynth(config)
    x = source.read(1800)
    truth = source.truth()
    assert source.unit is Unit.CELSIUS
    assert source.fs_hz == 1.0
    np.testing.assert_allclose(x[:60], 22.0)
    np.testing.assert_array_equal(x, truth.sensor_c)
    skin = 37.0 - 3.5
    np.testing.assert_allclose(truth.skin_c, skin)
    t = truth.times_s
    expected = skin + (22.0 - skin) * np.exp(-(t[60:] - 59.0) / 120.0)
    np.testing.assert_allclose(x[60:], expected, atol=0.01)
    assert np.all(np.diff(x[60:]) >= 0)
    assert abs(x[-1] - skin) < 0.01


def test_fever_raises_core_and_skin_and_the_sensor_follows() -> None:
    fever = FeverEpisode(
        start_s=1800.0, delta_c=2.0, rise_s=1800.0, plateau_s=3600.0, fall_s=1800.0
    )
    config = TemperatureConfig(fevers=(fever,), drift_c=0.0, noise_c=0.0, fever_skin_coupling=0.8)
    source = TemperatureSynth(config)
    source.read(4 * 3600)
    truth = source.truth()
    plateau = (truth.times_s > 3600 + 600) & (truth.times_s < 7200)
    np.testing.assert_allclose(truth.core_c[plateau], 39.0)
    np.testing.assert_allclose(truth.skin_c[plateau], 33.5 + 1.6)
    np.testing.assert_allclose(truth.sensor_c[plateau], 35.1, atol=0.01)
    assert truth.core_c[-1] == pytest.approx(37.0)
    np.testing.assert_allclose(truth.fever_start_s, [1800.0])
    np.testing.assert_allclose(truth.fever_end_s, [fever.end_s])
    assert np.all(np.diff(truth.core_c[(truth.times_s > 1800) & (truth.times_s < 3600)]) > 0)


def test_noise_drift_and_quantisation() -> None:
    config = TemperatureConfig(noise_c=0.05, drift_c=0.2, resolution_c=0.01, seed=3)
    source = TemperatureSynth(config)
    x = source.read(6 * 3600)
    truth = source.truth()
    residual = x - truth.sensor_c
    assert np.std(residual) == pytest.approx(0.05, rel=0.1)
    np.testing.assert_allclose(x * 100, np.round(x * 100), atol=1e-6)
    drift = truth.skin_c - (37.0 - 3.5)
    assert 0.05 < np.std(drift) < 0.4
    assert np.max(np.abs(np.diff(drift))) < 0.01  # slow: minutes, not seconds


def test_a_simulated_day_with_circadian_rhythm() -> None:
    config = TemperatureConfig(circadian_amplitude_c=0.4, clock_hour_at_start=0.0, drift_c=0.0)
    source = TemperatureSynth(config)
    for _ in range(24):
        source.read(3600)
    truth = source.truth()
    assert len(truth.times_s) == 86_400
    peak_hour = truth.times_s[np.argmax(truth.core_c)] / 3600.0
    assert peak_hour == pytest.approx(17.0, abs=0.1)
    assert np.ptp(truth.core_c) == pytest.approx(0.8, abs=0.01)
    assert math.isclose(truth.times_s[-1], 86_399.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: TemperatureConfig(fs_hz=0.0),
        lambda: TemperatureConfig(warmup_tau_s=0.0),
        lambda: TemperatureConfig(noise_c=-0.1),
        lambda: FeverEpisode(start_s=0.0, delta_c=9.0),
    ],
)
def test_invalid_configuration_is_refused(make: object) -> None:
    with pytest.raises(SignalError):
        make()  # type: ignore[operator]
