"""Motion processing against the simulator's accelerometer (``devices.sim.signals.motion``),
whose ground truth gives the fall (impact) times, step times and labelled posture segments.

The simulator renders at the garment's source rate (200 Hz); a lower rate is taken as every
k-th sample, as the garment does. Acceptance (the issue's): a simulated fall is detected
within 5 s, posture changes are detected, no fall is reported during walking or running.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from scipy import signal

from devices.sim.signals.motion import (
    Activity,
    MotionConfig,
    MotionEpisode,
    MotionSynth,
    MotionTruth,
)
from devices.sim.signals.motion import Posture as SimPosture
from processing.findings import Event, EventKind, Findings, Severity, Vital, VitalKind
from processing.motion import (
    MotionInputError,
    MotionState,
    Posture,
    classify_posture,
    detect_falls,
    enmo_mg,
    estimate_gravity,
    motion_step,
    step_cadence,
)

FloatArray = npt.NDArray[np.float64]
RATES_HZ = (25.0, 50.0, 200.0)
SOURCE_HZ = 200.0
E = MotionEpisode
_CODE = {p: Posture[p.name] for p in SimPosture}


def _synth(
    episodes: Sequence[MotionEpisode], duration_s: float, fs_hz: float, seed: int
) -> tuple[FloatArray, MotionTruth]:
    src = MotionSynth(MotionConfig(fs_hz=SOURCE_HZ, episodes=tuple(episodes), seed=seed))
    acc = src.read(round(duration_s * SOURCE_HZ))
    return acc[:: round(SOURCE_HZ / fs_hz)], src.truth()


def _stream(
    acc: FloatArray, fs_hz: float, chunk_sizes: Sequence[int]
) -> tuple[Findings, list[tuple[Event, float]]]:
    """Feed ``acc`` in chunks cycling through ``chunk_sizes``; events with the end time of
    the chunk that reported them."""
    state = MotionState.initial(fs_hz=fs_hz)
    parts: list[Findings] = []
    reported: list[tuple[Event, float]] = []
    pos, k = 0, 0
    while pos < acc.shape[0]:
        n = chunk_sizes[k % len(chunk_sizes)]
        found, state = motion_step(state, acc[pos : pos + n], fs_hz=fs_hz)
        pos, k = pos + n, k + 1
        parts.append(found)
        reported += [(e, min(pos, acc.shape[0]) / fs_hz) for e in found.events]
    return Findings.merge(parts), reported


def _vitals(found: Findings, kind: VitalKind) -> list[Vital]:
    return [v for v in found.vitals if v.kind is kind]


def _events(found: Findings, kind: EventKind) -> list[Event]:
    return [e for e in found.events if e.kind is kind]


def _segment_at(truth: MotionTruth, lo_s: float, hi_s: float, margin_s: float) -> int | None:
    """The truth segment containing ``[lo_s - margin, hi_s]`` after ``margin`` from its start."""
    for i, (a, b) in enumerate(zip(truth.segment_start_s, truth.segment_end_s, strict=True)):
        if a + margin_s <= lo_s and hi_s <= b:
            return i
    return None


# -- falls ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fs_hz", RATES_HZ)
@pytest.mark.parametrize(
    ("landing", "seed"),
    [(SimPosture.SUPINE, 1), (SimPosture.PRONE, 2), (SimPosture.LEFT, 3), (SimPosture.RIGHT, 4)],
)
def test_fall_is_reported_within_5_s(fs_hz: float, landing: SimPosture, seed: int) -> None:
    schedule = (
        E(Activity.REST, 30.0),
        E(Activity.WALK, 40.0),
        E(Activity.FALL, 2.0, landing),
        E(Activity.REST, 40.0, landing),
    )
    acc, truth = _synth(schedule, 112.0, fs_hz, seed)
    assert truth.fall_times_s.size == 1
    fall_s = float(truth.fall_times_s[0])
    one_s = round(fs_hz)
    found, reported = _stream(acc, fs_hz, [one_s, 2 * one_s, one_s // 2 + 1])
    falls = [(e, at) for e, at in reported if e.kind is EventKind.FALL]
    assert len(falls) == 1
    event, reported_at = falls[0]
    assert event.severity is Severity.CRITICAL
    assert abs(event.t_s - fall_s) <= 1.0
    assert reported_at - fall_s <= 5.0
    assert event.detail["posture"] == landing.value
    assert detect_falls(acc, fs_hz=fs_hz) == pytest.approx([event.t_s])
    # the posture change to lying is reported too
    changes = _events(found, EventKind.POSTURE_CHANGE)
    assert [(c.detail["from"], c.detail["to"]) for c in changes] == [("upright", landing.value)]


@pytest.mark.parametrize("fs_hz", RATES_HZ)
def test_no_fall_during_walking_and_running(fs_hz: float) -> None:
    schedule = (
        E(Activity.WALK, 90.0),
        E(Activity.RUN, 60.0),
        E(Activity.WALK, 30.0, cadence_hz=1.5),
        E(Activity.RUN, 40.0, cadence_hz=3.2),
        E(Activity.WALK, 60.0, cadence_hz=2.2),
    )
    total_s = 0.0
    for seed in (11, 12, 13):
        acc, truth = _synth(schedule, 280.0, fs_hz, seed)
        assert truth.fall_times_s.size == 0
        found, _ = _stream(acc, fs_hz, [round(3.7 * fs_hz)])
        assert _events(found, EventKind.FALL) == []
        assert _events(found, EventKind.POSTURE_CHANGE) == []
        assert detect_falls(acc, fs_hz=fs_hz).size == 0
        total_s += acc.shape[0] / fs_hz
    assert total_s >= 600.0


def test_impact_while_upright_is_not_a_fall() -> None:
    """A hard knock (several g) with the wearer staying upright is not a fall."""
    fs = 50.0
    acc, _ = _synth((E(Activity.REST, 60.0),), 60.0, fs, 5)
    t = np.arange(acc.shape[0]) / fs
    acc = acc + 4000.0 * np.exp(-0.5 * ((t - 30.0) / 0.03) ** 2)[:, None] * np.array([0, 1, 0])
    found, _ = _stream(acc, fs, [100])
    assert _events(found, EventKind.FALL) == []
    assert detect_falls(acc, fs_hz=fs).size == 0


def _limb_movement(n: int, fs_hz: float, rms_mg: float, seed: int) -> FloatArray:
    """Band-limited (0.5-3 Hz) 3-axis movement of ``rms_mg`` total RMS: a wearer moving
    their limbs or trying to get up while lying (the simulator's REST is still)."""
    sos = signal.butter(2, (0.5, 3.0), "bandpass", fs=fs_hz, output="sos")
    noise = np.random.default_rng(seed).normal(0.0, 1.0, (n + round(10 * fs_hz), 3))
    mv = np.asarray(signal.sosfilt(sos, noise, axis=0))[-n:]
    return np.asarray(mv * (rms_mg / np.sqrt(np.mean(np.sum(mv**2, axis=1)))))


@pytest.mark.parametrize("fs_hz", [25.0, 50.0])
@pytest.mark.parametrize("rms_mg", [150.0, 250.0])
def test_fall_then_moving_on_the_floor_is_reported_after_20_s(fs_hz: float, rms_mg: float) -> None:
    """Impact, then lying supine while moving (fails the stillness test): the not-up path
    reports the fall with the impact time, 20-25 s after it, for any chunking."""
    schedule = (
        E(Activity.WALK, 30.0),
        E(Activity.FALL, 2.0, SimPosture.SUPINE),
        E(Activity.REST, 90.0, SimPosture.SUPINE),
    )
    acc, truth = _synth(schedule, 122.0, fs_hz, 21)
    fall_s = float(truth.fall_times_s[0])
    lo = round((fall_s + 1.0) * fs_hz)
    acc = acc.copy()
    acc[lo:] += _limb_movement(acc.shape[0] - lo, fs_hz, rms_mg, 22)
    for sizes in ([round(fs_hz)], [7, round(3.3 * fs_hz)], [acc.shape[0]]):
        _, reported = _stream(acc, fs_hz, sizes)
        falls = [(e, at) for e, at in reported if e.kind is EventKind.FALL]
        assert len(falls) == 1, sizes
        event, reported_at = falls[0]
        assert abs(event.t_s - fall_s) <= 1.0
        assert event.detail["rule"] == "not_up"
        assert event.detail["posture"] == "supine"
        if len(sizes) > 1 or sizes[0] < acc.shape[0]:
            assert 20.0 <= reported_at - fall_s <= 25.0
    assert detect_falls(acc, fs_hz=fs_hz) == pytest.approx([event.t_s])


def test_fall_lying_still_is_reported_once_by_the_fast_path() -> None:
    """A still faller satisfies both paths; only the fast one reports (no duplicate)."""
    fs = 50.0
    schedule = (
        E(Activity.WALK, 30.0),
        E(Activity.FALL, 2.0, SimPosture.LEFT),
        E(Activity.REST, 60.0, SimPosture.LEFT),
    )
    acc, _ = _synth(schedule, 92.0, fs, 23)
    for sizes in ([25], [acc.shape[0]]):
        found, _ = _stream(acc, fs, sizes)
        assert [e.detail["rule"] for e in _events(found, EventKind.FALL)] == ["still"]


def test_lying_down_and_moving_without_impact_is_not_a_fall() -> None:
    """A deliberate lie-down (no impact) followed by movement in bed is not a fall."""
    fs = 50.0
    schedule = (E(Activity.WALK, 30.0), E(Activity.REST, 90.0, SimPosture.SUPINE))
    acc, _ = _synth(schedule, 120.0, fs, 24)
    acc = acc + _limb_movement(acc.shape[0], fs, 200.0, 25)
    found, _ = _stream(acc, fs, [50])
    assert _events(found, EventKind.FALL) == []
    assert detect_falls(acc, fs_hz=fs).size == 0


def test_impact_while_upright_and_moving_is_not_a_fall() -> None:
    """A knock while upright followed by movement (fails stillness) stays upright: no fall
    by either path."""
    fs = 50.0
    acc, _ = _synth((E(Activity.REST, 60.0),), 60.0, fs, 26)
    t = np.arange(acc.shape[0]) / fs
    acc = acc + 4000.0 * np.exp(-0.5 * ((t - 20.0) / 0.03) ** 2)[:, None] * np.array([0, 1, 0])
    acc = acc + _limb_movement(acc.shape[0], fs, 200.0, 27)
    found, _ = _stream(acc, fs, [100])
    assert _events(found, EventKind.FALL) == []
    assert detect_falls(acc, fs_hz=fs).size == 0


# -- posture -------------------------------------------------------------------------------


def test_classify_posture_reference_vectors() -> None:
    refs = {
        Posture.UPRIGHT: (0.0, 1000.0, 0.0),
        Posture.SUPINE: (0.0, 0.0, 1000.0),
        Posture.PRONE: (0.0, 0.0, -1000.0),
        Posture.LEFT: (-1000.0, 0.0, 0.0),
        Posture.RIGHT: (1000.0, 0.0, 0.0),
    }
    codes = classify_posture(np.array(list(refs.values())))
    assert codes.tolist() == [int(p) for p in refs]
    assert int(classify_posture(np.array([0.0, 1000.0, 0.0]))) == Posture.UPRIGHT
    reclined = np.radians([50.0, 70.0])  # leaning back 50° (sitting) and 70° (lying)
    tilted = np.stack((0 * reclined, np.cos(reclined), np.sin(reclined)), axis=1) * 1000.0
    assert classify_posture(tilted).tolist() == [Posture.UPRIGHT, Posture.SUPINE]


@pytest.mark.parametrize("fs_hz", RATES_HZ)
def test_posture_changes_across_all_five_postures(fs_hz: float) -> None:
    order = (
        SimPosture.UPRIGHT,
        SimPosture.SUPINE,
        SimPosture.LEFT,
        SimPosture.PRONE,
        SimPosture.RIGHT,
        SimPosture.UPRIGHT,
        SimPosture.RIGHT,
        SimPosture.SUPINE,
    )
    schedule = [E(Activity.REST, 45.0, p) for p in order]
    acc, truth = _synth(schedule, 45.0 * len(order), fs_hz, 21)
    found, _ = _stream(acc, fs_hz, [round(fs_hz * 0.8)])

    changes = _events(found, EventKind.POSTURE_CHANGE)
    expected = [(a.value, b.value) for a, b in itertools.pairwise(order)]
    assert [(c.detail["from"], c.detail["to"]) for c in changes] == expected
    starts = truth.segment_start_s[1:]
    for change, start in zip(changes, starts, strict=True):
        assert change.severity is Severity.INFO
        assert start <= change.t_s <= start + 3.0

    windows = _vitals(found, VitalKind.POSTURE)
    checked = matched = 0
    for v in windows:
        seg = _segment_at(truth, v.t_s - v.window_s, v.t_s, margin_s=3.0)
        if seg is None:
            continue
        checked += 1
        matched += int(v.value) == _CODE[SimPosture(truth.posture[seg])]
    assert checked >= 20
    assert matched / checked >= 0.95


def test_brief_posture_blips_are_debounced() -> None:
    """Lying down for 2 s (under the 3 s hold) is not a posture change."""
    fs = 50.0
    schedule = (
        E(Activity.REST, 30.0),
        E(Activity.REST, 2.0, SimPosture.SUPINE),
        E(Activity.REST, 30.0),
    )
    acc, _ = _synth(schedule, 62.0, fs, 8)
    found, _ = _stream(acc, fs, [50])
    assert _events(found, EventKind.POSTURE_CHANGE) == []


# -- activity and cadence ------------------------------------------------------------------


@pytest.mark.parametrize("fs_hz", RATES_HZ)
@pytest.mark.parametrize("cadence_hz", [None, 1.4, 2.3])
def test_cadence_matches_truth_step_rate(fs_hz: float, cadence_hz: float | None) -> None:
    schedule = (
        E(Activity.REST, 20.0),
        E(Activity.WALK, 80.0, cadence_hz=cadence_hz),
        E(Activity.REST, 30.0),
        E(Activity.RUN, 50.0),
        E(Activity.REST, 20.0),
    )
    acc, truth = _synth(schedule, 200.0, fs_hz, 31)
    found, _ = _stream(acc, fs_hz, [round(fs_hz * 1.3)])
    steps = truth.step_times_s
    checked = 0
    for v in _vitals(found, VitalKind.CADENCE):
        seg = _segment_at(truth, v.t_s - v.window_s, v.t_s, margin_s=3.0)
        if seg is None:
            continue
        if truth.activity[seg] == Activity.REST:
            assert v.value == 0.0
            continue
        inside = steps[(steps >= v.t_s - v.window_s) & (steps < v.t_s)]
        rate = 60.0 * (inside.size - 1) / (inside[-1] - inside[0])
        assert abs(v.value - rate) <= 5.0, (v.t_s, v.value, rate)
        checked += 1
    assert checked >= 9

    walk = (steps > 25.0) & (steps < 95.0)
    batch = step_cadence(acc[round(25 * fs_hz) : round(95 * fs_hz)], fs_hz=fs_hz)
    assert abs(batch.step_times_s.size - int(walk.sum())) <= 2
    truth_rate = 60.0 * (walk.sum() - 1) / (steps[walk][-1] - steps[walk][0])
    assert batch.cadence_spm == pytest.approx(truth_rate, abs=5.0)


def test_enmo_and_activity_windows() -> None:
    assert enmo_mg(
        np.array([[0.0, 1000.0, 0.0], [0.0, 0.0, 500.0], [0.0, 2000.0, 0.0]])
    ).tolist() == [
        0.0,
        0.0,
        1000.0,
    ]
    fs = 50.0
    schedule = (E(Activity.REST, 30.0), E(Activity.WALK, 30.0), E(Activity.RUN, 30.0))
    acc, _ = _synth(schedule, 91.0, fs, 41)  # the last window is out 0.2 s after its end
    found, _ = _stream(acc, fs, [333])
    enmo = {round(v.t_s): v.value for v in _vitals(found, VitalKind.ACTIVITY)}
    assert max(enmo[10], enmo[20], enmo[30]) < 15.0
    assert min(enmo[50], enmo[60]) > 50.0
    assert min(enmo[80], enmo[90]) > 2 * max(enmo[50], enmo[60])


# -- streaming contract --------------------------------------------------------------------


@pytest.mark.parametrize("fs_hz", [25.0, 200.0])
def test_chunk_size_invariance_and_batch_agreement(fs_hz: float) -> None:
    schedule = (
        E(Activity.REST, 15.0),
        E(Activity.WALK, 25.0),
        E(Activity.FALL, 2.0, SimPosture.LEFT),
        E(Activity.REST, 20.0, SimPosture.LEFT),
        E(Activity.REST, 20.0),
    )
    acc, _ = _synth(schedule, 82.0, fs_hz, 51)
    whole, _ = _stream(acc, fs_hz, [acc.shape[0]])
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, round(3 * fs_hz), size=50).tolist()
    chunked, _ = _stream(acc, fs_hz, sizes)
    single, _ = _stream(acc, fs_hz, [1] if fs_hz < 100 else [7])
    for other in (chunked, single):
        assert other.events == whole.events
        assert [(v.t_s, v.kind) for v in other.vitals] == [(v.t_s, v.kind) for v in whole.vitals]
        assert [v.value for v in other.vitals] == pytest.approx([v.value for v in whole.vitals])
    assert len(_vitals(whole, VitalKind.POSTURE)) == 8
    assert [e.t_s for e in _events(whole, EventKind.FALL)] == pytest.approx(
        detect_falls(acc, fs_hz=fs_hz).tolist()
    )
    codes = classify_posture(estimate_gravity(acc, fs_hz=fs_hz))
    n = round(10 * fs_hz)
    batch_windows = [
        int(np.bincount(codes[i : i + n], minlength=5).argmax()) for i in range(0, 8 * n, n)
    ]
    assert [int(v.value) for v in _vitals(whole, VitalKind.POSTURE)] == batch_windows


def test_bad_input_raises_motion_input_error() -> None:
    state = MotionState.initial(fs_hz=50.0)
    cases: list[tuple[npt.ArrayLike, str]] = [
        (np.zeros((10, 2)), "bad_shape"),
        (np.zeros(30), "bad_shape"),
        (np.array([[0.0, np.nan, 0.0]]), "not_finite"),
        (np.array([[0.0, np.inf, 0.0]]), "not_finite"),
        ([["a", "b", "c"]], "not_numeric"),
    ]
    for chunk, reason in cases:
        with pytest.raises(MotionInputError) as info:
            motion_step(state, chunk, fs_hz=50.0)
        assert info.value.reason == reason
        assert isinstance(info.value, ValueError)
    with pytest.raises(MotionInputError) as info:
        motion_step(state, np.zeros((5, 3)), fs_hz=25.0)
    assert info.value.reason == "fs_mismatch"
    with pytest.raises(MotionInputError) as info:
        MotionState.initial(fs_hz=5.0)
    assert info.value.reason == "fs_range"
    with pytest.raises(MotionInputError):
        classify_posture(np.zeros((4, 2)))
    found, same = motion_step(state, np.zeros((0, 3)), fs_hz=50.0)
    assert found == Findings()
    assert same is state
