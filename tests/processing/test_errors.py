"""The shared input-error root of ``processing`` and its checks, and the named respiration
scenarios of the simulator the respiration tests and benchmark share."""

from __future__ import annotations

import math

import numpy as np
import pytest

from devices.sim.signals import SignalError
from devices.sim.signals.respiration import RESPIRATION_SCENARIOS, respiration_scenario
from processing.ecg import EcgInputError, detect_r_peaks
from processing.ecg.quality import EcgQualityState, ecg_sqi
from processing.errors import SignalInputError, check_rate, check_stream_rate, samples_1d
from processing.motion import MotionInputError
from processing.respiration import RespInputError, detect_breaths
from processing.temperature import TempInputError, TempState


def test_every_signal_error_is_a_signal_input_error_with_its_own_prefix() -> None:
    for error, prefix in (
        (EcgInputError, "ecg"),
        (RespInputError, "resp"),
        (TempInputError, "temperature"),
        (MotionInputError, "motion"),
    ):
        e = error("not_1d", "expected a 1-D array")
        assert isinstance(e, SignalInputError)
        assert isinstance(e, ValueError)
        assert (e.reason, e.detail) == ("not_1d", "expected a 1-D array")
        assert str(e) == f"{prefix}: not_1d (expected a 1-D array)"
        assert str(error("not_finite")) == f"{prefix}: not_finite"


def test_one_except_catches_every_processor_input_error() -> None:
    bad = np.array([1.0, np.nan, 3.0] * 100)
    calls = (
        lambda: detect_r_peaks(bad, fs_hz=250.0),
        lambda: ecg_sqi(bad, fs_hz=250.0),
        lambda: detect_breaths(bad, fs_hz=25.0),
        lambda: TempState.initial(fs_hz=1e4),
        lambda: EcgQualityState.initial(fs_hz=50.0),
    )
    reasons = []
    for call in calls:
        with pytest.raises(SignalInputError) as info:
            call()
        reasons.append(info.value.reason)
    assert reasons == ["not_finite", "not_finite", "not_finite", "fs_range", "fs_range"]


def test_checks_raise_the_given_class_without_signal_values() -> None:
    assert check_rate(250, low=125.0, high=1000.0, error=EcgInputError) == 250.0
    for fs in (124.9, 1000.1, math.nan, math.inf):
        with pytest.raises(EcgInputError, match="fs_range"):
            check_rate(fs, low=125.0, high=1000.0, error=EcgInputError)
    with pytest.raises(RespInputError) as info:
        check_stream_rate(50.0, 25.0, low=5.0, high=1000.0, error=RespInputError)
    assert info.value.reason == "fs_mismatch"
    with pytest.raises(TempInputError) as temp_info:
        samples_1d(np.array([[36.6123, 36.7456]]), error=TempInputError)
    assert temp_info.value.reason == "not_1d"
    assert "36.6" not in str(temp_info.value)
    x = samples_1d([1, 2, 3], error=MotionInputError)
    assert x.dtype == np.float64
    assert x.tolist() == [1.0, 2.0, 3.0]


def test_respiration_scenarios_are_named_and_typed() -> None:
    rates = {}
    for name in RESPIRATION_SCENARIOS:
        config = respiration_scenario(name, 3, fs_hz=50.0, band_seed=7, rest_rate_bpm=18.0)
        assert (config.fs_hz, config.seed, config.breathing.seed) == (50.0, 7, 3)
        rates[name] = config.breathing.rate_bpm
    assert rates["rest"] == 18.0
    assert rates["slow_paced"] == 6.0
    assert respiration_scenario("apnoea", 0).breathing.apnoeas
    assert respiration_scenario("low_snr", 0).snr_db == 5.0
    assert respiration_scenario("exercise", 0).artefact_rate_per_min == 2.0
    with pytest.raises(SignalError) as info:
        respiration_scenario("sprint", 0)
    assert info.value.reason == "unknown_scenario"
