"""Respiration from a respiratory band (and EDR from the ECG): accuracy and speed, one core.

Synthetic band signals with known breaths (``devices.sim.signals.respiration``), six
scenarios x ``SEEDS`` seeds x 5 min at 25 Hz: rest, slow paced breathing, tachypnoea,
exercise with motion artefacts (~2 a minute), apnoea episodes (15, 30, 12 s), low SNR
(5 dB). Printed per scenario: mean absolute error of the 32 s window rates against the
truth (same definition: ``60 n / sum(onset-to-onset durations)`` inside the window; the
batch ``detect_breaths`` + ``window_rates`` path, which the stream reproduces exactly) and
the worst seed; apnoeas found (onset within 3 s of the true one) and false apnoeas; then
the streaming speed (``resp_step`` fed 1 s chunks) in x real time at 25 and 100 Hz, and
the ECG-derived rate (``edr_rate`` on R peaks from ``detect_r_peaks``) against the band's
truth for simulated wearers at rest. Run: ``python -m benchmarks.bench_resp``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from devices.sim.signals.motion import Activity, MotionEpisode
from devices.sim.signals.respiration import (
    RESPIRATION_SCENARIOS,
    RespirationSynth,
    RespirationTruth,
    respiration_scenario,
)
from devices.sim.signals.scenario import WearerScenario, build_wearer
from processing.ecg import detect_r_peaks, remove_baseline
from processing.respiration import (
    RespState,
    detect_breaths,
    edr_rate,
    resp_step,
    window_rates,
)

FloatArray = npt.NDArray[np.float64]
DURATION_S = 300.0
SEEDS = 5
SCENARIOS = RESPIRATION_SCENARIOS


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    mae_bpm: float
    worst_bpm: float
    windows: int
    apnoeas: int
    found: int
    false: int


def synthesize(name: str, seed: int, fs_hz: float = 25.0) -> tuple[FloatArray, RespirationTruth]:
    config = respiration_scenario(
        name,
        seed,
        fs_hz=fs_hz,
        duration_s=DURATION_S,
        band_seed=2000 + seed,
        rest_rate_bpm=12.0 + seed % 5,
    )
    source = RespirationSynth(config)
    return source.read(round(DURATION_S * fs_hz)), source.truth()


def score(name: str, seeds: int) -> Row:
    errors: list[FloatArray] = []
    per_seed: list[float] = []
    apnoeas = found = false = 0
    for seed in range(seeds):
        resp, truth = synthesize(name, seed)
        breaths = detect_breaths(resp, fs_hz=25.0)
        ref = window_rates(truth.onset_times_s, t_end_s=DURATION_S, window_s=32.0)
        est = window_rates(
            breaths.onset_s, t_end_s=DURATION_S, window_s=32.0,
            usable=~breaths.artefact, confirmed_s=breaths.confirmed_s,
        )  # fmt: skip
        known = np.isfinite(ref.rate_bpm)
        err = np.abs(est.rate_bpm[known] - ref.rate_bpm[known])
        err = np.where(np.isfinite(err), err, np.inf)  # a missing estimate is a failure
        errors.append(err)
        per_seed.append(float(np.mean(err)))
        apnoeas += truth.apnoea_start_s.size
        near = np.abs(breaths.apnoea_start_s[:, None] - truth.apnoea_start_s[None, :]) <= 3.0
        found += int(np.count_nonzero(near.any(axis=0)))
        false += int(np.count_nonzero(~near.any(axis=1)))
    pooled = np.concatenate(errors)
    return Row(name, float(np.mean(pooled)), max(per_seed), pooled.size, apnoeas, found, false)


def stream_speed(fs_hz: float, rounds: int = 3) -> float:
    resp, _ = synthesize("exercise", 0, fs_hz)
    chunk = round(fs_hz)
    best = float("inf")
    for _ in range(rounds):
        state = RespState.initial(fs_hz=fs_hz)
        start = time.perf_counter()
        for i in range(0, resp.size, chunk):
            _, state = resp_step(state, resp[i : i + chunk], fs_hz=fs_hz)
        best = min(best, time.perf_counter() - start)
    return DURATION_S / best


def edr_errors(seeds: int) -> tuple[float, float]:
    """MAE (breaths/min) of the 30 s EDR rate at rest, and its worst wearer."""
    per_wearer = []
    for seed in range(seeds):
        signals = build_wearer(
            WearerScenario(activities=(MotionEpisode(Activity.REST, DURATION_S),), seed=seed)
        )
        fs = signals.ecg.fs_hz
        ecg = signals.ecg.read(round(DURATION_S * fs))
        signals.respiration.read(round(DURATION_S * signals.respiration.fs_hz))
        onsets = signals.respiration.truth().onset_times_s
        peaks = detect_r_peaks(ecg, fs_hz=fs)
        beats, amplitudes = peaks / fs, remove_baseline(ecg, fs_hz=fs)[peaks]
        ref = window_rates(onsets, t_end_s=DURATION_S, window_s=30.0).rate_bpm
        est = np.array(
            [
                edr_rate(beats, amplitudes, start_s=30.0 * k, end_s=30.0 * (k + 1)).rate_bpm
                for k in range(ref.size)
            ]
        )
        per_wearer.append(float(np.mean(np.abs(est - ref))))
    return float(np.mean(per_wearer)), max(per_wearer)


def main() -> None:
    print(f"== Respiration band: 32 s window rates and apnoea, {SEEDS} seeds x 5 min, 25 Hz")
    print(f"{'scenario':<12}{'windows':>8}{'MAE bpm':>9}{'worst':>8}"
          f"{'apnoeas':>9}{'found':>7}{'false':>7}")  # fmt: skip
    for name in SCENARIOS:
        r = score(name, SEEDS)
        print(f"{r.scenario:<12}{r.windows:>8}{r.mae_bpm:>9.2f}{r.worst_bpm:>8.2f}"
              f"{r.apnoeas:>9}{r.found:>7}{r.false:>7}")  # fmt: skip
    for fs in (25.0, 100.0):
        print(f"streaming resp_step, 1 s chunks at {fs:g} Hz: {stream_speed(fs):,.0f} x real time")
    mean, worst = edr_errors(SEEDS)
    print(f"EDR 30 s rate at rest ({SEEDS} wearers, detect_r_peaks): "
          f"MAE {mean:.2f} breaths/min, worst wearer {worst:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
