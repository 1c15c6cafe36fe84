"""Where a simulated Polar H10's samples and beats come from.

Role: ``PolarSources`` bundles the H10's ECG and accelerometer sources and the R-peak
times its RR intervals are taken from; ``synthetic`` builds them from a
``WearerScenario`` (ECG 130 Hz, ACC 200 Hz), seeded per device. Any ``SignalSource``
with the right unit and a rate the strap can decimate from fits.

It must not: know PMD frames or the Heart Rate Service, touch bumble or asyncio, or
read any clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from typing import Any

from devices.frame import FloatArray
from devices.sim.signals import SignalSource
from devices.sim.signals.replay import WfdbReplay
from devices.sim.signals.scenario import WearerScenario, build_wearer

__all__ = ["PolarSources"]


@dataclass(frozen=True, slots=True)
class PolarSources:
    """The H10's signals: ECG in µV at 130 Hz (or a multiple), accelerometer in mG
    (x/y/z) at a multiple of 200 Hz, and the R-peak times (s since boot) generated so
    far, from which RR intervals are taken."""

    ecg: SignalSource[Any]
    accel: SignalSource[Any]
    beats: Callable[[], FloatArray]

    @classmethod
    def synthetic(cls, seed: int, *, scenario: WearerScenario | None = None) -> PolarSources:
        """Synthetic sources for ``scenario`` (ECG 130 Hz, ACC 200 Hz), seeded with
        ``seed`` (which replaces the scenario's own)."""
        scenario = dataclasses.replace(
            scenario or WearerScenario(), ecg_fs_hz=130.0, accel_fs_hz=200.0, seed=seed
        )
        wearer = build_wearer(scenario)
        ecg = wearer.ecg
        return cls(ecg, wearer.motion, lambda: ecg.truth().r_peak_times_s)

    def with_ecg_replay(self, record_path: str | PathLike[str]) -> PolarSources:
        """The same accelerometer with the ECG replayed from a WFDB record at 130 Hz;
        the RR intervals then come from the record's reference beat annotations."""
        replay = WfdbReplay(record_path, fs_hz=130.0)
        return PolarSources(replay, self.accel, lambda: replay.truth().times_s)
