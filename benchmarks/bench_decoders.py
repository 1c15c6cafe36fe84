"""Decoder throughput on one core: PMD ECG, compressed PMD ACC, garment profile frames.

Each case decodes a realistic frame (as the simulator, and the real device, sends it)
in a tight loop for a fixed time and reports frames/s and samples/s, best of several
rounds. The decoders are pure functions, so one core is one Python thread here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from devices.frame import Frame, StreamKind, Timebase, Unit
from devices.garment.codec import GarmentFrame, decode_data_frame, encode_data_frame, quantize
from devices.garment.profile import GARMENT_PROFILE
from devices.garment.spec import DATA_CHARACTERISTIC_UUID, GarmentStream
from devices.polar import (
    H10_ECG_SAMPLES_PER_FRAME,
    PMD_DATA_UUID,
    POLAR_H10_PROFILE,
    encode_pmd_frame,
    parse_pmd_frame,
)
from gateway.router import ClinicalFrame
from gateway.transport import wire

POLAR_EPOCH_OFFSET_NS = 599_616_000_000_000_000  # 2019-01-01 in ns since 2000-01-01


@dataclass(frozen=True, slots=True)
class Throughput:
    case: str
    frames_per_s: float
    samples_per_s: float


def _measure(case: str, fn: Callable[[], object], samples: int, *, seconds: float) -> Throughput:
    best = 0.0
    for _ in range(5):
        n = 0
        start = time.perf_counter()
        deadline = start + seconds / 5
        while True:
            for _ in range(200):
                fn()
            n += 200
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return Throughput(case, best, best * samples)


def _ecg_frame(rng: np.random.Generator, index: int = 0) -> bytes:
    ecg_uv = rng.integers(-2000, 2000, H10_ECG_SAMPLES_PER_FRAME)
    period_ns = round(H10_ECG_SAMPLES_PER_FRAME * 1e9 / 130)
    return encode_pmd_frame(
        "ecg",
        frame_type=0,
        compressed=False,
        timestamp_ns=POLAR_EPOCH_OFFSET_NS + index * period_ns,
        samples=ecg_uv,
    )


def _cycling(
    decode: Callable[[bytes], object], frames: list[bytes], reset: Callable[[], None]
) -> Callable[[], object]:
    """Decode ``frames`` in order, forever; ``reset`` the decoder state at each wrap so a
    stateful decoder sees a monotonic device clock."""
    state = {"i": 0}

    def step() -> object:
        i = state["i"]
        if i == len(frames):
            reset()
            i = 0
        state["i"] = i + 1
        return decode(frames[i])

    return step


def _acc_compressed_frame(rng: np.random.Generator) -> bytes:
    walk = np.cumsum(rng.integers(-40, 40, (72, 3)), axis=0) + np.array([0, 0, 1000])
    return encode_pmd_frame(
        "acc", frame_type=1, compressed=True, timestamp_ns=POLAR_EPOCH_OFFSET_NS, samples=walk
    )


def _garment_ecg_frame(rng: np.random.Generator) -> bytes:
    samples = quantize(GarmentStream.ECG, rng.normal(0, 500, 100))
    frame = GarmentFrame(
        stream=GarmentStream.ECG,
        sequence=1,
        device_time_us=1_000_000,
        fs_hz=250.0,
        samples=samples,
    )
    return encode_data_frame(frame)


def run(seconds_per_case: float = 2.0) -> list[Throughput]:
    rng = np.random.default_rng(7)
    ecg = _ecg_frame(rng)
    acc = _acc_compressed_frame(rng)
    garment = _garment_ecg_frame(rng)
    n_acc = parse_pmd_frame(acc, sample_rate_hz=200).samples.shape[0]
    polar = POLAR_H10_PROFILE.new_decoder("bench")
    ecg_run = [_ecg_frame(rng, i) for i in range(1000)]
    garment_decoder = GARMENT_PROFILE.new_decoder("bench")
    clinical = ClinicalFrame(
        uuid.uuid4(),
        Frame("bench", StreamKind.ECG, 0, Timebase.UTC, rng.normal(0, 500, 100), Unit.MICROVOLT,
              fs_hz=250.0, sequence=1),
        uuid.uuid4(),
    )  # fmt: skip
    cases: list[tuple[str, Callable[[], object], int]] = [
        (
            "PMD ECG raw (73 samples), parse_pmd_frame",
            lambda: parse_pmd_frame(ecg, sample_rate_hz=130, previous_timestamp_ns=1),
            73,
        ),
        (
            "PMD ECG raw, H10 profile -> Frame",
            _cycling(lambda b: polar.decode(PMD_DATA_UUID, b, 0), ecg_run, polar.reset),
            73,
        ),
        (
            f"PMD ACC delta-compressed ({n_acc}x3), parse_pmd_frame",
            lambda: parse_pmd_frame(acc, sample_rate_hz=200, previous_timestamp_ns=1),
            n_acc,
        ),
        (
            "garment ECG int16 (100 samples), decode_data_frame",
            lambda: decode_data_frame(garment),
            100,
        ),
        (
            "garment ECG, garment profile -> Frame",
            lambda: garment_decoder.decode(DATA_CHARACTERISTIC_UUID, garment, 0),
            100,
        ),
        (
            "wire format, clinical ECG frame encode+decode",
            lambda: wire.decode(wire.encode_clinical(clinical)),
            100,
        ),
    ]
    return [_measure(name, fn, n, seconds=seconds_per_case) for name, fn, n in cases]


def main() -> None:
    print("== decoder throughput, one core (best of 5)")
    print(f"{'case':<58}{'frames/s':>12}{'samples/s':>14}")
    for r in run():
        print(f"{r.case:<58}{r.frames_per_s:>12,.0f}{r.samples_per_s:>14,.0f}")


if __name__ == "__main__":
    main()
