"""Temperature processing against the simulator's skin-temperature sensor
(``devices.sim.signals.temperature``): its ground truth gives the skin temperature, the
noise-free sensor curve (with its thermal lag) and the fever intervals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from devices.sim.signals.temperature import (
    FeverEpisode,
    TemperatureConfig,
    TemperatureSynth,
    TemperatureTruth,
)
from processing.findings import Event, EventKind, Findings, Severity, VitalKind
from processing.temperature import TempInputError, TempState, TempThresholds, temp_step

FloatArray = npt.NDArray[np.float64]
SEEDS = range(6)
# the fever's skin plateau 0.1 °C above the default fever threshold (skin 34.5 °C), with a
# sensor quantising to 0.1 °C: the smoothed value keeps crossing the threshold
NEAR_FEVER = FeverEpisode(1800.0, delta_c=1.375, rise_s=1800.0, plateau_s=4 * 3600.0)
NARROW = TempThresholds(fever_off_c=37.99, hypothermia_off_c=35.01, sustain_s=60.0)


def _synth(cfg: TemperatureConfig, hours: float) -> tuple[FloatArray, TemperatureTruth]:
    src = TemperatureSynth(cfg)
    return src.read(round(hours * 3600 * cfg.fs_hz)), src.truth()


def _run(
    x: FloatArray,
    fs_hz: float = 1.0,
    chunk_sizes: Sequence[int] | None = None,
    thresholds: TempThresholds | None = None,
) -> Findings:
    state = TempState.initial(fs_hz=fs_hz, thresholds=thresholds)
    sizes = chunk_sizes or [x.size]
    parts: list[Findings] = []
    pos, k = 0, 0
    while pos < x.size:
        n = sizes[k % len(sizes)]
        found, state = temp_step(state, x[pos : pos + n], fs_hz=fs_hz)
        parts.append(found)
        pos, k = pos + n, k + 1
    return Findings.merge(parts)


def _events(found: Findings, kind: EventKind) -> list[Event]:
    return [e for e in found.events if e.kind is kind]


def _window_mean(truth_c: FloatArray, end_s: float, fs_hz: float) -> float:
    return float(np.mean(truth_c[round((end_s - 60.0) * fs_hz) : round(end_s * fs_hz)]))


@pytest.mark.parametrize("seed", SEEDS)
def test_warm_up_then_within_0_1_c_of_skin(seed: int) -> None:
    cfg = TemperatureConfig(seed=seed, circadian_amplitude_c=0.5, noise_c=0.03)
    x, truth = _synth(cfg, 4.0)
    found = _run(x)
    vitals = [v for v in found.vitals if v.kind is VitalKind.TEMP]
    assert found.events == ()
    # nothing while the sensor is still > 0.1 °C away from the skin
    first = vitals[0].t_s
    lag = np.abs(truth.sensor_c - truth.skin_c)
    assert lag[round(first) - 60 : round(first)].max() <= 0.1
    assert first <= 25 * 60  # settles within 25 min of the cold start (τ = 3 min)
    assert lag[: round(first) - 300].max() > 0.1  # and not long before it could
    assert [v.t_s for v in vitals] == [first + 60.0 * i for i in range(len(vitals))]
    assert all(v.window_s == 60.0 for v in vitals)
    errors = [abs(v.value - _window_mean(truth.skin_c, v.t_s, 1.0)) for v in vitals]
    assert max(errors) <= 0.1


def test_fever_value_error_is_the_sensor_lag() -> None:
    """During a fever's rise the sensor trails the skin by its time constant times the
    slope (~0.1 °C); the smoothed value follows the sensor itself to within 0.03 °C."""
    x, truth = _synth(TemperatureConfig(seed=3, fevers=(FeverEpisode(3600.0),)), 8.0)
    vitals = [v for v in _run(x).vitals if v.kind is VitalKind.TEMP]
    to_skin = [abs(v.value - _window_mean(truth.skin_c, v.t_s, 1.0)) for v in vitals]
    to_sensor = [abs(v.value - _window_mean(truth.sensor_c, v.t_s, 1.0)) for v in vitals]
    assert max(to_skin) <= 0.15
    assert max(to_sensor) <= 0.03


def test_off_body_garment_reports_nothing() -> None:
    """A garment never donned reads the room (24 °C): flat, but not a body temperature."""
    x, _ = _synth(TemperatureConfig(seed=1, don_s=1e9), 3.0)
    assert _run(x) == Findings()


def test_donning_mid_stream_waits_for_settling() -> None:
    cfg = TemperatureConfig(seed=2, don_s=3600.0, resolution_c=0.1, noise_c=0.05)
    x, truth = _synth(cfg, 3.0)
    found = _run(x, chunk_sizes=[17])
    vitals = [v for v in found.vitals if v.kind is VitalKind.TEMP]
    assert found.events == ()
    assert 3600.0 + 10 * 60 <= vitals[0].t_s <= 3600.0 + 30 * 60
    errors = [abs(v.value - _window_mean(truth.skin_c, v.t_s, 1.0)) for v in vitals]
    assert max(errors) <= 0.1


@pytest.mark.parametrize("fs_hz", [1.0, 2.0])
def test_fever_raises_exactly_one_event(fs_hz: float) -> None:
    fever = FeverEpisode(2 * 3600.0)
    cfg = TemperatureConfig(fs_hz=fs_hz, seed=4, fevers=(fever,))
    x, truth = _synth(cfg, 9.0)
    found = _run(x, fs_hz)
    events = _events(found, EventKind.FEVER)
    assert len(events) == 1
    assert _events(found, EventKind.HYPOTHERMIA) == []
    event = events[0]
    assert event.severity is Severity.WARNING
    assert fever.start_s < event.t_s < fever.start_s + fever.rise_s + 1800.0
    # the core really is febrile at onset (core ≥ 37.8 °C)
    assert truth.core_c[round(event.t_s * fs_hz)] >= 37.8
    assert float(event.detail["core_est_c"]) >= 38.0


@pytest.mark.parametrize("seed", SEEDS)
def test_no_chatter_near_the_fever_threshold(seed: int) -> None:
    cfg = TemperatureConfig(seed=seed, fevers=(NEAR_FEVER,), resolution_c=0.1, noise_c=0.05)
    x, _ = _synth(cfg, 6.0)
    assert len(_events(_run(x, chunk_sizes=[60]), EventKind.FEVER)) == 1


def test_hysteresis_is_what_prevents_chatter() -> None:
    """The same near-threshold plateaus with (almost) no hysteresis and a short hold do
    chatter, so the single events above come from the hysteresis."""
    fevers = cold = 0
    for seed in SEEDS:
        cfg = TemperatureConfig(seed=seed, fevers=(NEAR_FEVER,), resolution_c=0.1, noise_c=0.05)
        fevers += len(_events(_run(_synth(cfg, 6.0)[0], thresholds=NARROW), EventKind.FEVER))
        cfg = TemperatureConfig(seed=seed, core_c=34.92, resolution_c=0.1, noise_c=0.05)
        cold += len(_events(_run(_synth(cfg, 6.0)[0], thresholds=NARROW), EventKind.HYPOTHERMIA))
    assert fevers >= len(SEEDS) + 2
    assert cold >= len(SEEDS) + 2


@pytest.mark.parametrize("seed", SEEDS)
def test_normal_temperature_raises_nothing(seed: int) -> None:
    cfg = TemperatureConfig(seed=seed, circadian_amplitude_c=0.6, resolution_c=0.1)
    x, _ = _synth(cfg, 12.0)
    assert _run(x, chunk_sizes=[3600]).events == ()


@pytest.mark.parametrize("seed", SEEDS)
def test_hypothermia_raises_exactly_one_event(seed: int) -> None:
    cfg = TemperatureConfig(seed=seed, core_c=34.92, resolution_c=0.1, noise_c=0.05)
    x, _ = _synth(cfg, 6.0)
    found = _run(x, chunk_sizes=[45])
    events = _events(found, EventKind.HYPOTHERMIA)
    assert len(events) == 1
    assert _events(found, EventKind.FEVER) == []
    assert float(events[0].detail["core_est_c"]) <= 35.0
    # only once the sensor has settled: never before the first TEMP vital's window
    first_vital = min(v.t_s for v in found.vitals)
    assert events[0].t_s >= first_vital - 60.0 - 120.0


def test_second_fever_after_recovery_is_reported_again() -> None:
    fevers = (FeverEpisode(3600.0, plateau_s=3600.0), FeverEpisode(6 * 3600.0, plateau_s=3600.0))
    x, _ = _synth(TemperatureConfig(seed=5, fevers=fevers), 10.0)
    onsets = [e.t_s for e in _events(_run(x), EventKind.FEVER)]
    assert len(onsets) == 2
    assert onsets[0] < fevers[0].end_s < onsets[1] < fevers[1].end_s


def test_single_sample_glitches_are_rejected() -> None:
    x, _ = _synth(TemperatureConfig(seed=6), 2.0)
    glitched = x.copy()
    glitched[2000::397] += 8.0
    clean = [v.value for v in _run(x).vitals]
    dirty = [v.value for v in _run(glitched).vitals]
    assert len(dirty) == len(clean) > 0
    assert np.max(np.abs(np.subtract(dirty, clean))) <= 0.02


def test_chunk_size_invariance_matches_one_shot() -> None:
    cfg = TemperatureConfig(seed=7, fevers=(FeverEpisode(3600.0),), resolution_c=0.1, noise_c=0.05)
    x, _ = _synth(cfg, 8.0)
    whole = _run(x)
    assert len(whole.vitals) > 400
    assert len(whole.events) == 1
    rng = np.random.default_rng(1)
    for sizes in ([1], [59, 61], rng.integers(1, 500, size=40).tolist()):
        chunked = _run(x, chunk_sizes=sizes)
        assert chunked.events == whole.events
        assert [(v.t_s, v.kind) for v in chunked.vitals] == [(v.t_s, v.kind) for v in whole.vitals]
        assert [v.value for v in chunked.vitals] == pytest.approx([v.value for v in whole.vitals])


def test_bad_input_raises_temp_input_error() -> None:
    state = TempState.initial(fs_hz=1.0)
    cases: list[tuple[npt.ArrayLike, str]] = [
        (np.zeros((10, 2)), "not_1d"),
        (np.array([33.0, np.nan]), "not_finite"),
        (np.array([33.0, -np.inf]), "not_finite"),
        (["warm"], "not_numeric"),
    ]
    for chunk, reason in cases:
        with pytest.raises(TempInputError) as info:
            temp_step(state, chunk, fs_hz=1.0)
        assert info.value.reason == reason
        assert isinstance(info.value, ValueError)
    with pytest.raises(TempInputError) as info:
        temp_step(state, np.full(5, 33.0), fs_hz=2.0)
    assert info.value.reason == "fs_mismatch"
    for fs in (0.0, -1.0, float("nan"), 1e4):
        with pytest.raises(TempInputError) as info:
            TempState.initial(fs_hz=fs)
        assert info.value.reason == "fs_range"
    with pytest.raises(TempInputError) as info:
        TempThresholds(fever_on_c=37.0, fever_off_c=37.5)
    assert info.value.reason == "bad_thresholds"
    found, same = temp_step(state, np.zeros(0), fs_hz=1.0)
    assert found == Findings()
    assert same is state
