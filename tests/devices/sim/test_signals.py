"""The shared contract of every signal source: determinism, chunk invariance, truth export.

Each source is read once in one call and once in awkward chunk sizes (0, 1, block
boundaries, several blocks at once); the samples and the ground truth must be identical.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devices.frame import Unit
from devices.sim.signals import (
    Interval,
    Schedule,
    SignalError,
    SignalSource,
    as_schedule,
    export_truth,
)
from devices.sim.signals.ecg import EcgConfig, EcgSynth, EcgTruth
from devices.sim.signals.motion import Activity, MotionConfig, MotionEpisode, MotionSynth, Posture
from devices.sim.signals.replay import WfdbReplay
from devices.sim.signals.respiration import (
    BreathingConfig,
    BreathTrain,
    RespirationConfig,
    RespirationSynth,
)
from devices.sim.signals.scenario import (
    FEVER_HR_BPM_PER_C,
    WearerScenario,
    build_wearer,
    heart_rate_schedule,
)
from devices.sim.signals.temperature import FeverEpisode, TemperatureConfig, TemperatureSynth
from tests.shared_data import MITDB, requires_mitdb

Factory = Callable[[int], SignalSource[Any]]


def _ecg(seed: int) -> SignalSource[Any]:
    return EcgSynth(
        EcgConfig(
            fs_hz=250,
            hr_bpm=Schedule.from_pairs([(0, 70), (5, 140)], "step"),
            hr_std_bpm=3,
            baseline_wander_uv=40,
            emg_noise_uv=10,
            powerline_uv=20,
            pvc_probability=0.1,
            seed=seed,
        )
    )


def _ecg_rsa(seed: int) -> SignalSource[Any]:
    return EcgSynth(EcgConfig(fs_hz=130, seed=seed), rsa=BreathTrain(BreathingConfig(seed=seed)))


def _resp(seed: int) -> SignalSource[Any]:
    breathing = BreathingConfig(rate_bpm=20, apnoeas=(Interval(8, 20),), seed=seed)
    return RespirationSynth(
        RespirationConfig(
            drift_au=80, snr_db=20, artefact_rate_per_min=6, breathing=breathing, seed=seed
        )
    )


def _temp(seed: int) -> SignalSource[Any]:
    fever = FeverEpisode(start_s=600, rise_s=600, plateau_s=600, fall_s=600)
    return TemperatureSynth(TemperatureConfig(fevers=(fever,), resolution_c=0.01, seed=seed))


def _motion(seed: int) -> SignalSource[Any]:
    episodes = (
        MotionEpisode(Activity.REST, 2),
        MotionEpisode(Activity.WALK, 6),
        MotionEpisode(Activity.RUN, 4),
        MotionEpisode(Activity.FALL, 2, Posture.PRONE),
        MotionEpisode(Activity.REST, 5, Posture.SUPINE),
    )
    return MotionSynth(MotionConfig(fs_hz=50, episodes=episodes, seed=seed))


def _replay(seed: int) -> SignalSource[Any]:
    del seed
    return WfdbReplay(MITDB / "119", fs_hz=130)


FACTORIES: dict[str, tuple[Factory, int]] = {
    # name: (factory, samples to read)
    "ecg": (_ecg, 250 * 12),
    "ecg_rsa": (_ecg_rsa, 130 * 12),
    "respiration": (_resp, 25 * 40),
    "temperature": (_temp, 2400),
    "motion": (_motion, 50 * 22),
    "replay_looping": (_replay, 234_723 + 500),
}


def _chunks(total: int) -> list[int]:
    rng = np.random.default_rng(7)
    sizes = [0, 1, 2, 3, 97, 0, 401]
    while sum(sizes) < total:
        sizes.append(int(rng.integers(1, max(2, total // 6))))
    sizes[-1] -= sum(sizes) - total
    return sizes


def _assert_truth_equal(a: object, b: object) -> None:
    assert type(a) is type(b)
    for field in dataclasses.fields(a):  # type: ignore[arg-type]
        np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name))


def _params() -> list[object]:
    return [
        pytest.param(name, marks=requires_mitdb) if name.startswith("replay") else name
        for name in FACTORIES
    ]


@pytest.mark.parametrize("name", _params())
def test_chunked_reads_equal_one_read(name: str) -> None:
    factory, total = FACTORIES[name]
    whole_source, chunked_source = factory(3), factory(3)
    whole = whole_source.read(total)
    parts = [chunked_source.read(n) for n in _chunks(total)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    _assert_truth_equal(whole_source.truth(), chunked_source.truth())


@pytest.mark.parametrize("name", [n for n in FACTORIES if not n.startswith("replay")])
def test_same_seed_same_signal_other_seed_other_signal(name: str) -> None:
    factory, total = FACTORIES[name]
    total = min(total, 2000)
    a, b, c = factory(11).read(total), factory(11).read(total), factory(12).read(total)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", _params())
def test_read_shapes_and_units(name: str) -> None:
    factory, _ = FACTORIES[name]
    source = factory(0)
    assert source.fs_hz > 0
    assert isinstance(source.unit, Unit)
    empty = source.read(0)
    some = source.read(5)
    expected = (5, 3) if source.channels == 3 else (5,)
    assert some.shape == expected
    assert empty.shape[0] == 0
    assert some.dtype == np.float64
    assert np.all(np.isfinite(some))
    with pytest.raises(SignalError, match="negative"):
        source.read(-1)


def test_truth_covers_only_what_was_read() -> None:
    ecg = EcgSynth(EcgConfig(fs_hz=250, hr_bpm=60))
    ecg.read(250 * 10)
    first = ecg.truth()
    assert first.r_peak_times_s.max() < 10.0
    ecg.read(250 * 10)
    second = ecg.truth()
    assert len(second.r_peak_times_s) > len(first.r_peak_times_s)
    np.testing.assert_array_equal(
        second.r_peak_times_s[: len(first.r_peak_times_s)], first.r_peak_times_s
    )


@pytest.mark.parametrize("name", [n for n in FACTORIES if not n.startswith("replay")])
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_truth_round_trips(name: str, fmt: str, tmp_path: Path) -> None:
    factory, total = FACTORIES[name]
    source = factory(5)
    source.read(total)
    truth = source.truth()
    path = tmp_path / f"truth.{fmt}"
    export_truth(truth, path)
    fields = {f.name: np.asarray(getattr(truth, f.name)) for f in dataclasses.fields(truth)}
    if fmt == "json":
        doc = json.loads(path.read_text())
        assert doc["truth"] == type(truth).__name__
        for key, values in fields.items():
            loaded = [math.nan if v is None else v for v in doc["fields"][key]]
            np.testing.assert_array_equal(np.asarray(loaded, dtype=values.dtype), values)
    else:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        for key, values in fields.items():
            cells = [r["value"] for r in rows if r["field"] == key]
            assert len(cells) == len(values)
            if values.dtype.kind == "f":
                parsed = np.array([float(c) if c else math.nan for c in cells])
                np.testing.assert_array_equal(parsed, values)
            else:
                assert cells == [str(v) for v in values.tolist()]


def test_export_truth_writes_nan_as_null(tmp_path: Path) -> None:
    ecg = EcgSynth(EcgConfig(fs_hz=130))
    ecg.read(130 * 3)
    truth = dataclasses.replace(ecg.truth(), rr_ms=np.array([math.nan, 800.0]))
    export_truth(truth, tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text())["fields"]["rr_ms"] == [None, 800.0]


def test_export_truth_rejects_unknown_format_and_non_truth(tmp_path: Path) -> None:
    empty = np.zeros(0)
    truth = EcgTruth(empty, np.zeros(0, dtype=np.str_), empty, empty, empty)
    with pytest.raises(SignalError, match="unknown_format"):
        export_truth(truth, tmp_path / "t.xml")
    with pytest.raises(SignalError, match="not_truth"):
        export_truth({"a": 1}, tmp_path / "t.json")


def test_schedule_linear_and_step() -> None:
    t = np.array([-1.0, 0.0, 5.0, 10.0, 20.0])
    linear = Schedule.from_pairs([(0, 60), (10, 160)])
    np.testing.assert_allclose(linear(t), [60, 60, 110, 160, 160])
    step = Schedule.from_pairs([(0, 60), (10, 160)], "step")
    np.testing.assert_allclose(step(t), [60, 60, 60, 160, 160])
    assert as_schedule(72.0).at(1e6) == 72.0
    with pytest.raises(SignalError, match="unsorted"):
        Schedule((0.0, 0.0), (1.0, 2.0))
    with pytest.raises(SignalError, match="bad_knots"):
        Schedule((), ())
    with pytest.raises(SignalError, match="empty"):
        Interval(5.0, 5.0)


def test_scenario_couples_signals_on_one_timeline() -> None:
    activities = (
        MotionEpisode(Activity.REST, 120),
        MotionEpisode(Activity.RUN, 120),
        MotionEpisode(Activity.REST, 60),
    )
    wearer = build_wearer(
        WearerScenario(activities=activities, ecg_fs_hz=130, resp_fs_hz=25, seed=4)
    )
    duration_s = 240
    wearer.ecg.read(130 * duration_s)
    wearer.respiration.read(25 * duration_s)
    wearer.temperature.read(duration_s)
    wearer.motion.read(50 * duration_s)
    ecg, resp, motion = wearer.ecg.truth(), wearer.respiration.truth(), wearer.motion.truth()
    resting = (ecg.r_peak_times_s > 20) & (ecg.r_peak_times_s < 110)
    running = ecg.r_peak_times_s > 170
    assert np.mean(ecg.hr_bpm[running]) > np.mean(ecg.hr_bpm[resting]) + 50
    resp_rest = resp.rate_bpm[(resp.onset_times_s > 20) & (resp.onset_times_s < 110)]
    resp_run = resp.rate_bpm[resp.onset_times_s > 170]
    assert np.median(resp_run) > np.median(resp_rest) + 10
    assert list(motion.activity) == ["rest", "run"]
    assert len(resp.artefact_start_s) == 1
    assert resp.artefact_start_s[0] == 120.0
    # the band and the ECG's RSA share one breath train
    np.testing.assert_array_equal(
        wearer.breaths.onsets.view()[: len(resp.onset_times_s)], resp.onset_times_s
    )


def test_scenario_is_independent_of_read_order_between_sources() -> None:
    scenario = WearerScenario(
        activities=(MotionEpisode(Activity.WALK, 30), MotionEpisode(Activity.REST, 30)),
        apnoeas=(Interval(20, 32),),
        ecg_fs_hz=130,
        seed=9,
    )
    first, second = build_wearer(scenario), build_wearer(scenario)
    # first: ECG far ahead of the band; second: interleaved in small, uneven chunks
    ecg_sizes = [130 - (i % 3) + 1 for i in range(50)]
    resp_sizes = [25 + (i % 3) - 1 for i in range(50)]
    ecg_a = first.ecg.read(sum(ecg_sizes))
    resp_a = first.respiration.read(sum(resp_sizes))
    ecg_b, resp_b = [], []
    for ecg_n, resp_n in zip(ecg_sizes, resp_sizes, strict=True):
        resp_b.append(second.respiration.read(resp_n))
        ecg_b.append(second.ecg.read(ecg_n))
    np.testing.assert_array_equal(np.concatenate(ecg_b), ecg_a)
    np.testing.assert_array_equal(np.concatenate(resp_b), resp_a)
    _assert_truth_equal(first.respiration.truth(), second.respiration.truth())


def test_scenario_fever_raises_heart_rate() -> None:
    fever = FeverEpisode(start_s=600, delta_c=2.0, rise_s=600, plateau_s=1200, fall_s=600)
    scenario = WearerScenario(
        activities=(MotionEpisode(Activity.REST, 4000),), fevers=(fever,), resting_hr_bpm=60
    )
    hr = heart_rate_schedule(scenario)
    assert hr.at(100.0) == pytest.approx(60.0)
    assert hr.at(1800.0) == pytest.approx(60.0 + 2.0 * FEVER_HR_BPM_PER_C)
    assert hr.at(3500.0) == pytest.approx(60.0)
