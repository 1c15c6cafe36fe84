"""Where a simulated garment's samples come from: its signal sources, and a gyroscope.

Role: ``GarmentSources`` bundles the ECG, respiration, temperature, accelerometer and
optional gyroscope sources of one garment (``synthetic`` builds them from a
``WearerScenario``, seeded per device; any ``SignalSource``, such as a replay, fits) and
``RestingGyro`` is the small gyroscope stand-in ``devices.sim.signals`` lacks.

It must not: build, quantise or encode frames, choose stream rates (the garment model
does), touch bumble or asyncio, or read any clock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from devices.frame import FloatArray, Unit
from devices.garment.spec import GarmentStream
from devices.sim.signals import BlockSource, ColouredNoise, SignalSource, rng_streams
from devices.sim.signals.replay import WfdbReplay
from devices.sim.signals.scenario import GarmentSignals, WearerScenario, build_wearer

__all__ = ["GarmentSources", "RestingGyro"]

_SOURCE_RATES_HZ = {"ecg": 500.0, "resp": 100.0, "temp": 1.0, "accel": 200.0, "gyro": 200.0}


class RestingGyro(BlockSource[None]):
    """Angular rate of a resting torso (°/s, x/y/z): band-limited noise around zero.

    ``devices.sim.signals`` has no gyroscope model; this is the small stand-in the
    optional gyroscope stream uses. It has no ground truth (``truth()`` is ``None``).
    """

    def __init__(self, *, fs_hz: float = 200.0, rms_dps: float = 1.5, seed: int = 0) -> None:
        super().__init__(fs_hz=fs_hz, unit=Unit.DEG_PER_S, channels=3, block_len=round(fs_hz))
        self._axes = [
            ColouredNoise(rng, fs_hz=fs_hz, cutoff_hz=min(2.0, fs_hz / 4), rms=rms_dps)
            for rng in rng_streams(seed, 3)
        ]

    def _render(self, start: int, count: int) -> FloatArray:
        return np.stack([axis.next(count) for axis in self._axes], axis=1)

    def truth(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class GarmentSources:
    """Where a garment's samples come from. A stream offers every protocol rate that
    divides its source's rate (ECG at 500 Hz: 125, 250 and 500 Hz)."""

    ecg: SignalSource[Any]
    resp: SignalSource[Any]
    temp: SignalSource[Any]
    accel: SignalSource[Any]
    gyro: SignalSource[Any] | None = None
    wearer: GarmentSignals | None = None
    """The synthetic wearer behind the sources (shared breath train), if synthetic."""

    @classmethod
    def synthetic(
        cls, seed: int, *, scenario: WearerScenario | None = None, gyro: bool = False
    ) -> GarmentSources:
        """The four sources of ``build_wearer`` for ``scenario`` at 500/100/1/200 Hz,
        seeded with ``seed`` (which replaces the scenario's own)."""
        wearer = build_wearer(
            dataclasses.replace(
                scenario or WearerScenario(),
                ecg_fs_hz=_SOURCE_RATES_HZ["ecg"],
                resp_fs_hz=_SOURCE_RATES_HZ["resp"],
                temp_fs_hz=_SOURCE_RATES_HZ["temp"],
                accel_fs_hz=_SOURCE_RATES_HZ["accel"],
                seed=seed,
            )
        )
        gyro_source = RestingGyro(seed=seed + 1) if gyro else None
        return cls(
            wearer.ecg, wearer.respiration, wearer.temperature, wearer.motion, gyro_source, wearer
        )

    def with_ecg_replay(self, record_path: str | PathLike[str]) -> GarmentSources:
        """The same sources with the ECG replayed from a WFDB record (resampled to the
        ECG source rate, looping at its end); the other streams stay synthetic."""
        replay = WfdbReplay(record_path, fs_hz=_SOURCE_RATES_HZ["ecg"])
        return dataclasses.replace(self, ecg=replay)

    def for_stream(self, stream: GarmentStream) -> SignalSource[Any] | None:
        return {
            GarmentStream.ECG: self.ecg,
            GarmentStream.RESP: self.resp,
            GarmentStream.TEMP: self.temp,
            GarmentStream.ACCEL: self.accel,
            GarmentStream.GYRO: self.gyro,
        }[stream]
