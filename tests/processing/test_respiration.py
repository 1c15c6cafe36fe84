"""Respiration from a respiratory band: batch and streaming breath detection, rates, apnoea.

Synthetic band signals with known breaths (``devices.sim.signals.respiration``) in six
scenarios, several seeds each, 5 min each: rest, slow paced breathing, tachypnoea,
exercise with motion artefacts, apnoea episodes, low SNR. Truth rate per window is
computed with the same definition as the estimate (``window_rates``: the intervals
between consecutive onsets inside the window, ``60 n / sum(durations)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
import numpy.typing as npt
import pytest

from devices.sim.signals.respiration import (
    RESPIRATION_SCENARIOS,
    SCENARIO_APNOEAS,
    BreathingConfig,
    Interval,
    RespirationSynth,
    RespirationTruth,
    respiration_scenario,
)
from processing.findings import EventKind, Findings, Severity, Vital, VitalKind
from processing.respiration import (
    APNOEA_S,
    RespInputError,
    RespState,
    breath_rates,
    detect_breaths,
    resp_step,
    window_rates,
)

FloatArray = npt.NDArray[np.float64]
DURATION_S = 300.0
SEEDS = (0, 1, 2)
SCENARIOS = RESPIRATION_SCENARIOS
APNOEAS = SCENARIO_APNOEAS


@dataclass(frozen=True, slots=True)
class Case:
    resp: FloatArray
    fs_hz: float
    truth: RespirationTruth


@cache
def case(name: str, seed: int, fs_hz: float = 25.0) -> Case:
    """One synthetic band recording (offset, drift, 25 dB SNR unless stated)."""
    config = respiration_scenario(
        name,
        seed,
        fs_hz=fs_hz,
        duration_s=DURATION_S,
        band_seed=1000 + seed,
        rest_rate_bpm=12.0 + 2.0 * seed,
    )
    source = RespirationSynth(config)
    resp = source.read(round(DURATION_S * fs_hz))
    return Case(resp, fs_hz, source.truth())


def stream(resp: FloatArray, fs_hz: float, sizes: Iterator[int]) -> Findings:
    state = RespState.initial(fs_hz=fs_hz)
    parts = []
    start = 0
    while start < resp.size:
        n = next(sizes)
        found, state = resp_step(state, resp[start : start + n], fs_hz=fs_hz)
        parts.append(found)
        start += n
    return Findings.merge(parts)


def random_sizes(seed: int, high: int = 200) -> Iterator[int]:
    rng = np.random.default_rng(seed)
    while True:
        yield int(rng.integers(1, high))


def fixed_sizes(n: int) -> Iterator[int]:
    while True:
        yield n


def window_mae(estimate: FloatArray, truth: FloatArray) -> float:
    """Mean absolute error over the windows with a truth rate; a missing estimate there
    counts as a failure (infinite)."""
    known = np.isfinite(truth)
    if np.any(~np.isfinite(estimate[known])):
        return math.inf
    return float(np.mean(np.abs(estimate[known] - truth[known])))


# --- definitions ------------------------------------------------------------------------


def test_window_rate_definition() -> None:
    onsets = np.array([1.0, 4.0, 7.0, 10.0, 31.0, 35.0, 39.0])
    rates = window_rates(onsets, t_end_s=61.0, window_s=30.0)
    assert rates.t_s.tolist() == [30.0, 60.0]
    assert rates.rate_bpm[0] == pytest.approx(60.0 * 3 / 9.0)  # 3 intervals over 9 s
    assert rates.rate_bpm[1] == pytest.approx(60.0 * 2 / 8.0)
    assert rates.intervals.tolist() == [3, 2]
    usable = np.array([True, True, False, True, True, True, True])
    masked = window_rates(onsets, t_end_s=61.0, usable=usable)
    assert masked.rate_bpm[0] == pytest.approx(60.0 * 2 / 6.0)  # the 4->7 s interval left out
    assert masked.quality[0] == 67


def test_window_rate_needs_two_onsets() -> None:
    rates = window_rates(np.array([5.0, 40.0]), t_end_s=60.0)
    assert np.all(np.isnan(rates.rate_bpm))


# --- batch accuracy ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_window_rate_mae_within_one_breath_per_min(name: str) -> None:
    """The issue's acceptance: MAE <= 1 breath/min over 32 s windows, per scenario."""
    errors = []
    for seed in SEEDS:
        c = case(name, seed)
        breaths = detect_breaths(c.resp, fs_hz=c.fs_hz)
        end = c.resp.size / c.fs_hz
        truth = window_rates(c.truth.onset_times_s, t_end_s=end, window_s=32.0)
        found = window_rates(
            breaths.onset_s, t_end_s=end, window_s=32.0,
            usable=~breaths.artefact, confirmed_s=breaths.confirmed_s,
        )  # fmt: skip
        errors.append(window_mae(found.rate_bpm, truth.rate_bpm))
    assert max(errors) <= 1.0, errors


@pytest.mark.parametrize("fs_hz", [25.0, 50.0, 100.0])
def test_sample_rates(fs_hz: float) -> None:
    c = case("low_snr", 1, fs_hz)
    breaths = detect_breaths(c.resp, fs_hz=fs_hz)
    truth = window_rates(c.truth.onset_times_s, t_end_s=DURATION_S, window_s=32.0)
    found = window_rates(
        breaths.onset_s, t_end_s=DURATION_S, window_s=32.0,
        usable=~breaths.artefact, confirmed_s=breaths.confirmed_s,
    )  # fmt: skip
    assert window_mae(found.rate_bpm, truth.rate_bpm) <= 1.0


def test_onsets_match_truth_breath_for_breath() -> None:
    """At rest every breath after the warm-up is found once, near its true onset."""
    c = case("rest", 0)
    breaths = detect_breaths(c.resp, fs_hz=c.fs_hz)
    truth = c.truth.onset_times_s[c.truth.onset_times_s > 10.0]
    found = breaths.onset_s[breaths.onset_s > 9.0]
    nearest = np.abs(found[None, :] - truth[:, None]).min(axis=1)
    assert np.all(nearest < 0.8)
    assert found.size == truth.size
    # the onset sits where the rise leaves the trough: a little after the true onset
    lag = found - truth
    assert 0.0 < float(np.median(lag)) < 0.6


def test_per_breath_rates_follow_truth() -> None:
    c = case("rest", 2)
    rates = breath_rates(detect_breaths(c.resp, fs_hz=c.fs_hz))
    truth_t = c.truth.onset_times_s[1:]
    truth_rate = 60.0 / np.diff(c.truth.onset_times_s)
    nearest = np.abs(rates.t_s[:, None] - truth_t[None, :]).argmin(axis=1)
    error = np.abs(rates.rate_bpm - truth_rate[nearest])
    assert float(np.median(error)) < 0.5
    assert np.all(rates.duration_s > 0)
    assert np.all(rates.rate_bpm == 60.0 / rates.duration_s)


def test_artefacts_are_marked_on_the_breaths_they_touch() -> None:
    c = case("exercise", 1)
    breaths = detect_breaths(c.resp, fs_hz=c.fs_hz)
    assert c.truth.artefact_start_s.size >= 5
    marked = breaths.onset_s[breaths.artefact]
    assert marked.size >= c.truth.artefact_start_s.size // 2
    # a marked breath ends at most one breath (< 3 s here) after an artefact's end
    near = [
        np.any((t >= c.truth.artefact_start_s) & (t <= c.truth.artefact_end_s + 3.0))
        for t in marked
    ]
    assert all(near)
    assert not np.any(detect_breaths(case("rest", 1).resp, fs_hz=25.0).artefact)


# --- apnoea -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_every_apnoea_detected_batch(seed: int) -> None:
    c = case("apnoea", seed)
    breaths = detect_breaths(c.resp, fs_hz=c.fs_hz)
    assert breaths.apnoea_start_s.size == c.truth.apnoea_start_s.size == len(APNOEAS)
    assert np.allclose(breaths.apnoea_start_s, c.truth.apnoea_start_s, atol=3.0)
    assert np.allclose(breaths.apnoea_end_s, c.truth.apnoea_end_s, atol=1.0)


@pytest.mark.parametrize("name", [s for s in SCENARIOS if s != "apnoea"])
def test_no_false_apnoea(name: str) -> None:
    for seed in SEEDS:
        c = case(name, seed)
        assert detect_breaths(c.resp, fs_hz=c.fs_hz).apnoea_start_s.size == 0
        found = stream(c.resp, c.fs_hz, random_sizes(seed))
        assert found.events == ()


@pytest.mark.parametrize("seed", SEEDS)
def test_apnoea_alarm_raised_during_the_pause(seed: int) -> None:
    c = case("apnoea", seed)
    events = stream(c.resp, c.fs_hz, fixed_sizes(25)).events
    assert len(events) == len(APNOEAS)  # one event per apnoea
    for event, start, end in zip(events, c.truth.apnoea_start_s, c.truth.apnoea_end_s, strict=True):
        assert event.kind is EventKind.APNOEA
        assert event.severity is Severity.CRITICAL
        assert event.end_s is None
        assert abs(event.t_s - start) < 3.0
        assert float(event.detail["pause_s"]) == APNOEA_S
        alarm = event.t_s + APNOEA_S
        last_breath = c.truth.onset_times_s[c.truth.onset_times_s < start][-1]
        before = float(event.detail["last_breath_before_s"])
        assert event.t_s - before == pytest.approx(last_breath, abs=0.8)
        assert alarm < end  # raised while the wearer is still not breathing


def test_breath_after_apnoea_spans_the_pause() -> None:
    c = case("apnoea", 2)
    found = stream(c.resp, c.fs_hz, fixed_sizes(100))
    long_breaths = [
        v for v in found.vitals if v.kind is VitalKind.BREATH_RATE and v.window_s > APNOEA_S
    ]
    assert len(long_breaths) == len(APNOEAS)
    for v, end in zip(long_breaths, c.truth.apnoea_end_s, strict=True):
        assert abs(v.t_s - end) < 1.0  # timed at the first onset after the pause
        assert v.value == pytest.approx(60.0 / v.window_s)


def test_band_falling_silent_raises_one_alarm() -> None:
    c = case("rest", 0)
    silent = np.concatenate((c.resp[: 120 * 25], np.full(60 * 25, c.resp[120 * 25])))
    events = stream(silent, 25.0, fixed_sizes(50)).events
    assert len(events) == 1
    assert 110.0 < events[0].t_s < 125.0


@pytest.mark.parametrize("factor", [3.5, 5.0])
@pytest.mark.parametrize("seed", SEEDS)
def test_breathing_becoming_shallower_is_relearned(seed: int, factor: float) -> None:
    """A band that loosens at 120 s (depth / 3.5 or / 5 for good): at most one apnoea, at
    the drop, and the window rates from 60 s after it on are right again."""
    c = case("rest", seed)
    drop = round(120.0 * c.fs_hz)
    resp = c.resp.copy()
    resp[drop:] = resp[drop] + (resp[drop:] - resp[drop]) / factor
    breaths = detect_breaths(resp, fs_hz=c.fs_hz)
    assert breaths.apnoea_start_s.size <= 1
    assert np.all((breaths.apnoea_start_s > 110.0) & (breaths.apnoea_start_s < 135.0))
    end = resp.size / c.fs_hz
    truth = window_rates(c.truth.onset_times_s, t_end_s=end, window_s=30.0)
    found = window_rates(
        breaths.onset_s, t_end_s=end, window_s=30.0,
        usable=~breaths.artefact, confirmed_s=breaths.confirmed_s,
    )  # fmt: skip
    late = found.t_s >= 210.0  # the windows starting 60 s or more after the drop
    assert np.count_nonzero(late) == 4
    assert np.all(np.abs(found.rate_bpm[late] - truth.rate_bpm[late]) <= 1.0), (
        found.rate_bpm[late],
        truth.rate_bpm[late],
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_long_apnoea_after_relearning_counts_no_noise_as_breath(seed: int) -> None:
    """A 60 s apnoea (drift and 25 dB noise go on): the depths are forgotten during it, yet
    the noise is no breath; one apnoea, no onset until breathing resumes."""
    config = replace(
        respiration_scenario("apnoea", seed, band_seed=1000 + seed),
        breathing=BreathingConfig(rate_bpm=14.0, apnoeas=(Interval(100.0, 160.0),), seed=seed),
    )
    source = RespirationSynth(config)
    resp = source.read(round(DURATION_S * config.fs_hz))
    truth = source.truth()
    breaths = detect_breaths(resp, fs_hz=config.fs_hz)
    assert np.allclose(breaths.apnoea_start_s, truth.apnoea_start_s, atol=3.0)
    assert np.allclose(breaths.apnoea_end_s, truth.apnoea_end_s, atol=1.0)
    pause = (breaths.onset_s > truth.apnoea_start_s[0] + 1.0) & (breaths.onset_s < 159.0)
    assert not np.any(pause)
    assert np.count_nonzero(breaths.onset_s > 170.0) >= 20  # breathing found again


def test_flat_signal_reports_nothing() -> None:
    assert stream(np.full(3000, 7.0), 25.0, fixed_sizes(100)) == Findings()
    assert detect_breaths(np.zeros(3000), fs_hz=25.0).onset_index.size == 0


# --- streaming --------------------------------------------------------------------------


def _key(v: Vital) -> tuple[str, float]:
    return (v.kind.value, v.t_s)


@pytest.mark.parametrize("name", SCENARIOS)
def test_streaming_agrees_with_batch_and_truth(name: str) -> None:
    for seed in SEEDS:
        c = case(name, seed)
        found = stream(c.resp, c.fs_hz, random_sizes(seed))
        windows = [v for v in found.vitals if v.kind is VitalKind.RESP_RATE]
        breaths = detect_breaths(c.resp, fs_hz=c.fs_hz)
        batch = window_rates(
            breaths.onset_s, t_end_s=DURATION_S - 5.0, window_s=30.0,
            usable=~breaths.artefact, confirmed_s=breaths.confirmed_s,
        )  # fmt: skip
        reported = np.isfinite(batch.rate_bpm)
        assert [v.t_s for v in windows] == batch.t_s[reported].tolist()
        assert [v.value for v in windows] == pytest.approx(batch.rate_bpm[reported].tolist())
        assert all(v.window_s == 30.0 and v.t_s % 30.0 == 0.0 for v in windows)
        truth = window_rates(c.truth.onset_times_s, t_end_s=DURATION_S - 5.0, window_s=30.0)
        assert window_mae(batch.rate_bpm, truth.rate_bpm) <= 1.0
        per_breath = [v for v in found.vitals if v.kind is VitalKind.BREATH_RATE]
        assert [v.t_s for v in per_breath] == pytest.approx(breaths.onset_s[1:].tolist())


def test_streaming_is_chunk_invariant() -> None:
    c = case("apnoea", 1)
    one = stream(c.resp, c.fs_hz, fixed_sizes(c.resp.size))
    for sizes in (fixed_sizes(1), fixed_sizes(37), random_sizes(5, high=2000)):
        other = stream(c.resp, c.fs_hz, sizes)
        assert sorted(other.vitals, key=_key) == sorted(one.vitals, key=_key)
        assert other.events == one.events


def test_decision_delay_is_bounded() -> None:
    """Each finding is out within a few seconds of the time it is about (1 s chunks)."""
    c = case("apnoea", 0)
    state = RespState.initial(fs_hz=c.fs_hz)
    for start in range(0, c.resp.size, 25):
        found, state = resp_step(state, c.resp[start : start + 25], fs_hz=c.fs_hz)
        now = (start + 25) / c.fs_hz
        for v in found.vitals:
            assert now - v.t_s <= (6.0 if v.kind is VitalKind.RESP_RATE else 3.0)
        for e in found.events:
            assert now - (e.t_s + float(e.detail["pause_s"])) <= 1.0


def test_vitals_are_time_ordered_within_a_step() -> None:
    c = case("tachypnoea", 0)
    found, _ = resp_step(RespState.initial(fs_hz=25.0), c.resp, fs_hz=25.0)
    times = [v.t_s for v in found.vitals]
    assert times == sorted(times)
    assert len(times) > 100


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resp", "fs_hz", "reason"),
    [
        (np.array([1.0, np.nan, 2.0]), 25.0, "not_finite"),
        (np.array([1.0, np.inf]), 25.0, "not_finite"),
        (np.ones((4, 2)), 25.0, "not_1d"),
        (np.ones(10), 0.0, "fs_range"),
        (np.ones(10), math.nan, "fs_range"),
        (np.ones(10), 5000.0, "fs_range"),
    ],
)
def test_bad_input_raises_with_reason(resp: FloatArray, fs_hz: float, reason: str) -> None:
    with pytest.raises(RespInputError) as info:
        detect_breaths(resp, fs_hz=fs_hz)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_stream_rejects_bad_chunk_and_keeps_state() -> None:
    c = case("rest", 0)
    state = RespState.initial(fs_hz=25.0)
    first, state = resp_step(state, c.resp[:500], fs_hz=25.0)
    bad = c.resp[500:525].copy()
    bad[3] = np.nan
    with pytest.raises(RespInputError) as info:
        resp_step(state, bad, fs_hz=25.0)
    assert info.value.reason == "not_finite"
    with pytest.raises(RespInputError) as info:
        resp_step(state, c.resp[500:525], fs_hz=50.0)
    assert info.value.reason == "fs_mismatch"
    rest, _ = resp_step(state, c.resp[500:], fs_hz=25.0)  # as if the bad chunks never came
    whole = stream(c.resp, 25.0, fixed_sizes(c.resp.size))
    assert sorted(first.vitals + rest.vitals, key=_key) == sorted(whole.vitals, key=_key)
