"""Temperature processing against the simulator's skin-temperature sensor
(``devices.sim.signals.temperature``): its ground truth gives the skin temperature, the
noise-free sensor curve (with its thermal lag) and the fever intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

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
# a febrile wearer whose vasodilated chest skin follows the core fully, 2 °C below it (skin
# 35.0 °C at a 37.0 °C core, inside the normal range; 36.5 °C at a 38.5 °C fever)
WARM_SKIN = {"core_skin_gradient_c": 2.0, "fever_skin_coupling": 1.0}
# the fever's skin plateau 0.1 °C above the default fever threshold (skin 36.0 °C), with a
# sensor quantising to 0.1 °C: the smoothed value keeps crossing the threshold
NEAR_FEVER = FeverEpisode(1800.0, delta_c=1.1, rise_s=1800.0, plateau_s=4 * 3600.0)
# skin 30.92 °C, 0.08 °C below the default hypothermia threshold (skin 31.0 °C)
NEAR_COLD = {"core_c": 34.92, "core_skin_gradient_c": 4.0}
NARROW = TempThresholds(fever_off_c=35.99, hypothermia_off_c=31.01, sustain_s=60.0)


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
    cfg = TemperatureConfig(fs_hz=fs_hz, seed=4, fevers=(fever,), **WARM_SKIN)
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
    assert float(event.detail["skin_c"]) >= 36.0
    assert event.detail["threshold_c"] == 36.0


@pytest.mark.parametrize("seed", SEEDS)
def test_no_chatter_near_the_fever_threshold(seed: int) -> None:
    cfg = TemperatureConfig(
        seed=seed, fevers=(NEAR_FEVER,), resolution_c=0.1, noise_c=0.05, **WARM_SKIN
    )
    x, _ = _synth(cfg, 6.0)
    assert len(_events(_run(x, chunk_sizes=[60]), EventKind.FEVER)) == 1


def test_hysteresis_is_what_prevents_chatter() -> None:
    """The same near-threshold plateaus with (almost) no hysteresis and a short hold do
    chatter, so the single events above come from the hysteresis."""
    fevers = cold = 0
    for seed in SEEDS:
        cfg = TemperatureConfig(
            seed=seed, fevers=(NEAR_FEVER,), resolution_c=0.1, noise_c=0.05, **WARM_SKIN
        )
        fevers += len(_events(_run(_synth(cfg, 6.0)[0], thresholds=NARROW), EventKind.FEVER))
        cfg = TemperatureConfig(seed=seed, resolution_c=0.1, noise_c=0.05, **NEAR_COLD)
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
    cfg = TemperatureConfig(seed=seed, resolution_c=0.1, noise_c=0.05, **NEAR_COLD)
    x, _ = _synth(cfg, 6.0)
    found = _run(x, chunk_sizes=[45])
    events = _events(found, EventKind.HYPOTHERMIA)
    assert len(events) == 1
    assert _events(found, EventKind.FEVER) == []
    assert float(events[0].detail["skin_c"]) <= 31.0
    # only once the sensor has settled: never before the first TEMP vital's window
    first_vital = min(v.t_s for v in found.vitals)
    assert events[0].t_s >= first_vital - 60.0 - 120.0


def test_second_fever_after_recovery_is_reported_again() -> None:
    fevers = (FeverEpisode(3600.0, plateau_s=3600.0), FeverEpisode(6 * 3600.0, plateau_s=3600.0))
    x, _ = _synth(TemperatureConfig(seed=5, fevers=fevers, **WARM_SKIN), 10.0)
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
    cfg = TemperatureConfig(
        seed=7, fevers=(FeverEpisode(3600.0),), resolution_c=0.1, noise_c=0.05, **WARM_SKIN
    )
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


# -- normal life: warm chest skin, doffing, restarts -----------------------------------------


def _lag(start_c: float, target_c: float, n: int, tau_s: float = 180.0) -> FloatArray:
    """A sensor (first-order lag, 1 Hz) going from ``start_c`` towards ``target_c``."""
    t = np.arange(1, n + 1, dtype=np.float64)
    return np.asarray(target_c + (start_c - target_c) * np.exp(-t / tau_s))


@pytest.mark.parametrize("gradient_c", [2.4, 1.6])
def test_warm_but_normal_chest_skin_raises_nothing(gradient_c: float) -> None:
    """A healthy wearer (core 37 °C) whose chest skin under clothing is 34.6 or 35.4 °C,
    inside the normal 33-35.5 °C, gets TEMP vitals and no fever."""
    cfg = TemperatureConfig(seed=8, core_skin_gradient_c=gradient_c, circadian_amplitude_c=0.1)
    x, _ = _synth(cfg, 3.0)
    found = _run(x, chunk_sizes=[10])
    assert found.events == ()
    vitals = [v for v in found.vitals if v.kind is VitalKind.TEMP]
    assert len(vitals) > 120
    assert abs(vitals[-1].value - (37.0 - gradient_c)) <= 0.2


@pytest.mark.parametrize("room_c", [29.5, 31.5, 24.0])
def test_doffed_garment_goes_off_body_until_redonned(room_c: float) -> None:
    """Worn 40 min (skin 33.5 °C), taken off into a room at ``room_c`` (a 29.5 °C summer
    room is inside the on-body range) for 60 min, worn again: no alarm, no TEMP vital while
    off, TEMP vitals again within 25 min of re-donning."""
    worn, truth = _synth(TemperatureConfig(seed=9), 40 / 60)
    rng = np.random.default_rng(9)
    off = _lag(float(truth.sensor_c[-1]), room_c, 3600) + rng.normal(0.0, 0.02, 3600)
    again = _lag(room_c, 33.5, 3600) + rng.normal(0.0, 0.02, 3600)
    x = np.concatenate((worn, off, again))
    for sizes in ([10], [x.size]):
        found = _run(x, chunk_sizes=sizes)
        assert found.events == ()
        times = [v.t_s for v in found.vitals if v.kind is VitalKind.TEMP]
        assert any(t <= 2400.0 for t in times)
        assert not [t for t in times if 2400.0 + 60.0 < t <= 6000.0]
        back = [t for t in times if t > 6000.0]
        assert back
        assert back[0] <= 6000.0 + 25 * 60


def test_doffing_rearms_the_fever_alarm() -> None:
    """A febrile wearer (skin 36.5 °C): one fever; garment off for 30 min into a 29.5 °C
    room (no hypothermia), back on while still febrile: the fever is reported again."""
    cfg = TemperatureConfig(seed=10, fevers=(FeverEpisode(0.0, delta_c=1.5, rise_s=60.0),))
    worn, _ = _synth(replace(cfg, **WARM_SKIN), 1.0)
    rng = np.random.default_rng(10)
    off = _lag(float(worn[-1]), 29.5, 1800) + rng.normal(0.0, 0.02, 1800)
    again = _lag(29.5, 36.5, 3600) + rng.normal(0.0, 0.02, 3600)
    found = _run(np.concatenate((worn, off, again)), chunk_sizes=[30])
    assert _events(found, EventKind.HYPOTHERMIA) == []
    onsets = [e.t_s for e in _events(found, EventKind.FEVER)]
    assert len(onsets) == 2
    assert onsets[0] < 3600.0 < 3600.0 + 1800.0 < onsets[1]


def test_restart_during_a_slow_fever_rise_settles_promptly() -> None:
    """A stream restarted 25 min into a slow fever rise (~0.04 °C/min, nearly linear) gives
    TEMP vitals within 12 min and the same fever onset as the continuous stream, instead of
    waiting for the rise to flatten below the settling slope."""
    fever = FeverEpisode(1800.0, delta_c=2.5, rise_s=5400.0)
    x, truth = _synth(TemperatureConfig(seed=11, fevers=(fever,), **WARM_SKIN), 4.0)
    cut = round(fever.start_s + 1500.0)
    whole = _run(x, chunk_sizes=[10])
    restarted = _run(x[cut:], chunk_sizes=[10])
    fevers = _events(whole, EventKind.FEVER)
    again = _events(restarted, EventKind.FEVER)
    assert len(fevers) == len(again) == 1
    assert abs((again[0].t_s + cut) - fevers[0].t_s) <= 60.0
    vitals = [v for v in restarted.vitals if v.kind is VitalKind.TEMP]
    assert vitals[0].t_s <= 12 * 60
    # the restarted values are the continuous stream's (same sensor lag, no extra error)
    reference = {v.t_s: v.value for v in whole.vitals if v.kind is VitalKind.TEMP}
    shifted = [(v.t_s + cut, v.value) for v in vitals if v.t_s + cut in reference]
    assert len(shifted) >= len(vitals) - 1
    assert max(abs(value - reference[t]) for t, value in shifted) <= 0.05
    skin = truth.skin_c[cut:]
    assert max(abs(v.value - _window_mean(skin, v.t_s, 1.0)) for v in vitals) <= 0.2
