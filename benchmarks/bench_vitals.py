"""The ingester's vitals processing: wearers per core, as ``tracks.Tracks`` runs it.

Simulated wearers (ECG 250 Hz, respiration band 25 Hz, temperature 1 Hz, accelerometer
50 Hz: the demo garment's defaults) are cut into the frames a garment sends (ECG 0.2 s,
respiration 1 s, temperature 5 s, accelerometer 0.64 s) and fed to one ``Tracks`` in
batches of 0.25 s of arrivals, as the vitals stage receives committed batches. Printed:
signal seconds processed per wall second for all four streams of one wearer (x real
time), hence wearers one core keeps up with, and per stream alone. Best of 3 rounds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid4

import numpy as np

from devices.frame import Frame, StreamKind, Timebase, Unit
from devices.sim.signals import SignalSource
from devices.sim.signals.scenario import WearerScenario, build_wearer
from gateway.ingest.tracks import Tracks
from gateway.router import ClinicalFrame

_RATES = {
    StreamKind.ECG: 250.0,
    StreamKind.RESP: 25.0,
    StreamKind.TEMP: 1.0,
    StreamKind.ACCEL: 50.0,
}
_FRAME_S = {StreamKind.ECG: 0.2, StreamKind.RESP: 1.0, StreamKind.TEMP: 5.0, StreamKind.ACCEL: 0.64}
_UNITS = {
    StreamKind.ECG: Unit.MICROVOLT,
    StreamKind.RESP: Unit.RESP_AU,
    StreamKind.TEMP: Unit.CELSIUS,
    StreamKind.ACCEL: Unit.MILLI_G,
}
T0_NS = 1_790_000_000 * 10**9


def wearer_frames(
    seconds: int, seed: int, streams: Sequence[StreamKind] = tuple(_RATES)
) -> list[ClinicalFrame]:
    """One simulated wearer's frames over ``seconds``, in arrival (time) order."""
    signals = build_wearer(WearerScenario(seed=seed))
    sources: dict[StreamKind, SignalSource[Any]] = {
        StreamKind.ECG: signals.ecg,
        StreamKind.RESP: signals.respiration,
        StreamKind.TEMP: signals.temperature,
        StreamKind.ACCEL: signals.motion,
    }
    subject, device, consent = UUID(int=seed + 1, version=4), str(uuid4()), uuid4()
    frames: list[ClinicalFrame] = []
    for stream in streams:
        fs = _RATES[stream]
        x = sources[stream].read(round(seconds * fs))
        per = max(1, round(_FRAME_S[stream] * fs))
        channels = ("x", "y", "z") if stream is StreamKind.ACCEL else ()
        for seq, first in enumerate(range(0, len(x), per)):
            frame = Frame(
                device, stream, T0_NS + round(first / fs * 1e9), Timebase.DEVICE,
                np.ascontiguousarray(x[first : first + per]), _UNITS[stream],
                fs_hz=fs, sequence=seq, channels=channels,
            )  # fmt: skip
            frames.append(ClinicalFrame(subject, frame, consent))
    frames.sort(key=lambda f: f.frame.time_ns)
    return frames


def _batches(frames: list[ClinicalFrame], batch_s: float) -> list[list[ClinicalFrame]]:
    out: list[list[ClinicalFrame]] = []
    edge = T0_NS
    for frame in frames:
        if not out or frame.frame.time_ns >= edge:
            out.append([])
            edge = frame.frame.time_ns + round(batch_s * 1e9)
        out[-1].append(frame)
    return out


def measure(frames: list[ClinicalFrame], seconds: float, rounds: int = 3) -> float:
    """x real time of feeding ``frames`` (``seconds`` of signal) to a fresh ``Tracks``."""
    batches = _batches(frames, 0.25)
    best = float("inf")
    for _ in range(rounds):
        tracks = Tracks()
        began = time.perf_counter()
        for batch in batches:
            tracks.feed(batch, now_ns=batch[-1].frame.time_ns)
        best = min(best, time.perf_counter() - began)
    return seconds / best


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600, help="signal per wearer")
    args = parser.parse_args(argv)
    seconds = args.seconds
    print(f"vitals processing (gateway.ingest.tracks), {seconds} s of one simulated wearer")
    print(f"{'streams':<28} {'x real time':>12}")
    whole = measure(wearer_frames(seconds, 1), seconds)
    print(f"{'ECG+resp+temp+accel':<28} {whole:>12,.0f}")
    for stream in _RATES:
        alone = measure(wearer_frames(seconds, 1, (stream,)), seconds)
        print(f"{stream.value + f' {_RATES[stream]:g} Hz':<28} {alone:>12,.0f}")
    print(f"one core keeps up with about {whole:,.0f} wearers (all four streams each)")


if __name__ == "__main__":
    main()
