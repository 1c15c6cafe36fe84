"""One simulated wearer: ECG, respiration, temperature and motion on a shared timeline.

The motion schedule drives the others: heart rate and breathing rate rise with activity
(ramped over ~30 s, roughly how fast they follow exercise onset), a fever raises the
heart rate by ``FEVER_HR_BPM_PER_C`` per °C of core rise (the commonly quoted 8-10 bpm/°C
rule of thumb), running and falls put motion artefacts on the respiration band, and with
``couple_rsa`` the ECG's respiratory sinus arrhythmia follows the very breaths the band
shows (one shared ``BreathTrain``). Must not: import asyncio/bumble, do I/O, read clocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devices.sim.signals import Interval, Schedule, SignalError
from devices.sim.signals.ecg import EcgConfig, EcgSynth
from devices.sim.signals.motion import Activity, MotionConfig, MotionEpisode, MotionSynth
from devices.sim.signals.respiration import (
    BreathingConfig,
    BreathTrain,
    RespirationConfig,
    RespirationSynth,
)
from devices.sim.signals.temperature import FeverEpisode, TemperatureConfig, TemperatureSynth

__all__ = [
    "FEVER_HR_BPM_PER_C",
    "GarmentSignals",
    "WearerScenario",
    "breathing_rate_schedule",
    "build_wearer",
    "heart_rate_schedule",
]

FEVER_HR_BPM_PER_C = 10.0
_RAMP_S = 30.0
_HR_ABOVE_REST = {Activity.REST: 0.0, Activity.WALK: 25.0, Activity.RUN: 70.0, Activity.FALL: 20.0}
_RESP_ABOVE_REST = {Activity.REST: 0.0, Activity.WALK: 6.0, Activity.RUN: 16.0, Activity.FALL: 4.0}


@dataclass(frozen=True, slots=True)
class WearerScenario:
    """What the wearer does; ``activities`` is the motion schedule (last one held)."""

    activities: tuple[MotionEpisode, ...] = (MotionEpisode(Activity.REST, 600.0),)
    resting_hr_bpm: float = 65.0
    resting_resp_bpm: float = 14.0
    hr_std_bpm: float = 2.0
    fevers: tuple[FeverEpisode, ...] = ()
    apnoeas: tuple[Interval, ...] = ()
    couple_rsa: bool = True
    pvc_probability: float = 0.0
    ecg_fs_hz: float = 250.0
    resp_fs_hz: float = 25.0
    temp_fs_hz: float = 1.0
    accel_fs_hz: float = 50.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.activities:
            raise SignalError("scenario", "no_activities")


@dataclass(frozen=True, slots=True)
class GarmentSignals:
    """The four sources of one wearer (``breaths`` is shared by ECG and respiration)."""

    ecg: EcgSynth
    respiration: RespirationSynth
    temperature: TemperatureSynth
    motion: MotionSynth
    breaths: BreathTrain


def _episode_spans(activities: tuple[MotionEpisode, ...]) -> list[tuple[float, float]]:
    ends = np.cumsum([ep.duration_s for ep in activities])
    return list(zip([0.0, *ends[:-1].tolist()], ends.tolist(), strict=True))


def _activity_schedule(
    activities: tuple[MotionEpisode, ...], rest: float, above: dict[Activity, float]
) -> tuple[list[float], list[float]]:
    times, values = [0.0], [rest + above[activities[0].activity]]
    for (start, end), ep in zip(_episode_spans(activities)[1:], activities[1:], strict=True):
        ramp = min(_RAMP_S, (end - start) / 2)
        times += [start, start + ramp]
        values += [values[-1], rest + above[ep.activity]]
    return times, values


def heart_rate_schedule(scenario: WearerScenario) -> Schedule:
    """Mean HR over time: resting + activity, plus the fever's share, as a linear schedule."""
    times, values = _activity_schedule(scenario.activities, scenario.resting_hr_bpm, _HR_ABOVE_REST)
    grid = np.unique(
        np.concatenate(
            [np.asarray(times)]
            + [np.arange(f.start_s, f.end_s + 60.0, 60.0) for f in scenario.fevers]
        )
    )
    hr = np.interp(grid, times, values)
    for fever in scenario.fevers:
        hr += FEVER_HR_BPM_PER_C * fever.offset_c(grid)
    return Schedule(tuple(grid.tolist()), tuple(hr.tolist()))


def breathing_rate_schedule(scenario: WearerScenario) -> Schedule:
    times, values = _activity_schedule(
        scenario.activities, scenario.resting_resp_bpm, _RESP_ABOVE_REST
    )
    grid = np.unique(np.asarray(times))
    return Schedule(tuple(grid.tolist()), tuple(np.interp(grid, times, values).tolist()))


def build_wearer(scenario: WearerScenario) -> GarmentSignals:
    """Construct the four synthetic sources of ``scenario``, independently seeded."""
    seeds = [int(s) for s in np.random.SeedSequence(scenario.seed).generate_state(5)]
    breaths = BreathTrain(
        BreathingConfig(
            rate_bpm=breathing_rate_schedule(scenario), apnoeas=scenario.apnoeas, seed=seeds[0]
        )
    )
    spans = _episode_spans(scenario.activities)
    artefacts = tuple(
        Interval(start, end)
        for (start, end), ep in zip(spans, scenario.activities, strict=True)
        if ep.activity in (Activity.RUN, Activity.FALL)
    )
    ecg = EcgSynth(
        EcgConfig(
            fs_hz=scenario.ecg_fs_hz,
            hr_bpm=heart_rate_schedule(scenario),
            hr_std_bpm=scenario.hr_std_bpm,
            pvc_probability=scenario.pvc_probability,
            baseline_wander_uv=30.0,
            emg_noise_uv=8.0,
            seed=seeds[1],
        ),
        rsa=breaths if scenario.couple_rsa else None,
    )
    respiration = RespirationSynth(
        RespirationConfig(
            fs_hz=scenario.resp_fs_hz,
            drift_au=50.0,
            snr_db=30.0,
            artefacts=artefacts,
            seed=seeds[2],
        ),
        breaths=breaths,
    )
    temperature = TemperatureSynth(
        TemperatureConfig(fs_hz=scenario.temp_fs_hz, fevers=scenario.fevers, seed=seeds[3])
    )
    motion = MotionSynth(
        MotionConfig(fs_hz=scenario.accel_fs_hz, episodes=scenario.activities, seed=seeds[4])
    )
    return GarmentSignals(ecg, respiration, temperature, motion, breaths)
