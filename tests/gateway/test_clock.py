"""Tests for gateway.clock: simulated device clocks with known truth, no sleeps, no I/O.

The simulation is vectorised with numpy; only the model update runs per frame.
Acceptance 1 of issue 4: 50 ppm drift, 20 ms (s.d.) receive jitter, 24 h simulated,
mapped times within 5 ms of truth after a 2-minute warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from gateway.clock import ClockModel, ClockNotReadyError, ClockState
from gateway.errors import ConfigError

NS = 1_000_000_000
UTC0_NS = 1_790_000_000 * NS  # an arbitrary UTC epoch in 2026
FRAME_S = 0.4
WARMUP_S = 120.0

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Sim:
    true_ns: IntArray  # true UTC of each frame's first sample
    device_ns: IntArray  # device clock reading at that instant
    received_ns: IntArray  # true + latency


def simulate(
    *,
    hours: float,
    ppm: float,
    seed: int,
    device0_ns: int = 5 * NS,
    extra_latency_ns: IntArray | None = None,
) -> Sim:
    """Frames every 0.4 s; latency = exponential (s.d. 20 ms) plus 200 ms stalls that delay
    every frame sent during the stall until it ends (about one stall every 5 minutes)."""
    rng = np.random.default_rng(seed)
    n = int(hours * 3600 / FRAME_S)
    t_s = np.arange(n) * FRAME_S
    true_ns = UTC0_NS + np.round(t_s * NS).astype(np.int64)
    device_ns = device0_ns + np.round(t_s * (1.0 + ppm * 1e-6) * NS).astype(np.int64)
    latency_s = rng.exponential(0.020, n)
    stall_start = np.sort(rng.uniform(0.0, t_s[-1], max(1, int(hours * 12))))
    i = np.searchsorted(stall_start, t_s, side="right") - 1
    since = t_s - stall_start[np.maximum(i, 0)]
    stalled = (i >= 0) & (since < 0.2)
    latency_s = np.where(stalled, np.maximum(latency_s, 0.2 - since), latency_s)
    latency_ns = np.round(latency_s * NS).astype(np.int64)
    if extra_latency_ns is not None:
        latency_ns = latency_ns + extra_latency_ns
    return Sim(true_ns, device_ns, true_ns + latency_ns)


def run(
    model: ClockModel, sim: Sim, state: ClockState | None = None
) -> tuple[IntArray, ClockState]:
    """Feed every frame; map each frame's device time right after its own update."""
    st = model.reset() if state is None else state
    mapped = np.empty(len(sim.true_ns), dtype=np.int64)
    update, to_utc = model.update, model.to_utc
    for k, (d, r) in enumerate(zip(sim.device_ns.tolist(), sim.received_ns.tolist(), strict=True)):
        st = update(st, d, r)
        mapped[k] = to_utc(st, d)
    return mapped, st


def errors_after_warmup_ms(sim: Sim, mapped: IntArray, start: int = 0) -> npt.NDArray[np.float64]:
    err_ms: npt.NDArray[np.float64] = (mapped - sim.true_ns).astype(np.float64) / 1e6
    return err_ms[start + int(WARMUP_S / FRAME_S) :]


@pytest.mark.parametrize(("ppm", "seed"), [(50.0, 1), (-50.0, 2), (0.0, 3)])
def test_24h_drift_within_5ms_after_warmup(ppm: float, seed: int) -> None:
    sim = simulate(hours=24.0, ppm=ppm, seed=seed)
    mapped, state = run(ClockModel(), sim)
    err = errors_after_warmup_ms(sim, mapped)
    abs_err = np.abs(err)
    print(
        f"ppm={ppm:+.0f}: max |err| {abs_err.max():.3f} ms, p99 {np.percentile(abs_err, 99):.3f} ms"
    )
    assert abs_err.max() < 5.0
    assert state.drift_ns_per_s / NS == pytest.approx(-ppm * 1e-6 / (1 + ppm * 1e-6), abs=3e-6)
    assert state.restarts == 0


def test_transient_latency_step_is_ignored() -> None:
    """A 60 s rise of the latency floor by 30 ms (e.g. a connection-parameter update)."""
    n = int(2 * 3600 / FRAME_S)
    extra = np.zeros(n, dtype=np.int64)
    step = slice(int(1800 / FRAME_S), int(1860 / FRAME_S))
    extra[step] = 30_000_000
    sim = simulate(hours=2.0, ppm=50.0, seed=4, extra_latency_ns=extra)
    mapped, _ = run(ClockModel(), sim)
    assert np.abs(errors_after_warmup_ms(sim, mapped)).max() < 5.0


def test_permanent_latency_step_is_followed_within_window() -> None:
    """A lasting +30 ms floor is indistinguishable from a clock step for any receive-only
    method: the mapping must stay within 5 ms until about half the window has the new floor,
    and settle on truth + 30 ms once the whole window has it."""
    model = ClockModel()
    n = int(2 * 3600 / FRAME_S)
    extra = np.zeros(n, dtype=np.int64)
    k0 = int(3600 / FRAME_S)
    extra[k0:] = 30_000_000
    sim = simulate(hours=2.0, ppm=50.0, seed=5, extra_latency_ns=extra)
    mapped, _ = run(model, sim)
    err = (mapped - sim.true_ns).astype(np.float64) / 1e6
    before = err[int(WARMUP_S / FRAME_S) : k0 + int(0.25 * model.window_s / FRAME_S)]
    settled = err[k0 + int((model.window_s + 2 * model.bucket_s) / FRAME_S) :]
    assert np.abs(before).max() < 5.0
    assert np.abs(settled - 30.0).max() < 5.0


def test_reset_after_reconnect_restarts_fit() -> None:
    """The device restarts its clock after a reconnect: explicit reset, then a new warm-up."""
    model = ClockModel()
    first = simulate(hours=0.5, ppm=50.0, seed=6)
    _, state = run(model, first)
    second = simulate(hours=0.5, ppm=50.0, seed=7, device0_ns=0)
    second = Sim(second.true_ns + 1900 * NS, second.device_ns, second.received_ns + 1900 * NS)
    mapped, after = run(model, second, model.reset(state))
    assert np.abs(errors_after_warmup_ms(second, mapped)).max() < 5.0
    assert after.restarts == 0


def test_backwards_device_time_starts_new_session() -> None:
    model = ClockModel()
    first = simulate(hours=0.5, ppm=-30.0, seed=8, device0_ns=3600 * NS)
    _, state = run(model, first)
    second = simulate(hours=0.5, ppm=40.0, seed=9, device0_ns=0)
    second = Sim(second.true_ns + 2000 * NS, second.device_ns, second.received_ns + 2000 * NS)
    mapped, after = run(model, second, state)
    assert after.restarts == 1
    assert np.abs(errors_after_warmup_ms(second, mapped)).max() < 5.0


def test_latency_floor_is_subtracted() -> None:
    model = ClockModel(latency_floor_ns=7_500_000)
    n = int(0.5 * 3600 / FRAME_S)
    sim = simulate(
        hours=0.5, ppm=50.0, seed=10, extra_latency_ns=np.full(n, 7_500_000, dtype=np.int64)
    )
    mapped, _ = run(model, sim)
    assert np.abs(errors_after_warmup_ms(sim, mapped)).max() < 5.0


def test_state_is_immutable_and_first_sample_maps_to_its_arrival() -> None:
    model = ClockModel()
    empty = model.reset()
    with pytest.raises(ClockNotReadyError):
        model.to_utc(empty, 0)
    state = model.update(empty, 10 * NS, UTC0_NS + 3_000_000)
    assert empty.ref_device_ns is None
    assert state.samples == 1
    assert model.to_utc(state, 10 * NS) == UTC0_NS + 3_000_000
    lower = model.update(state, 10 * NS + 400_000_000, UTC0_NS + 400_000_000 + 1_000_000)
    assert model.to_utc(lower, 10 * NS) == UTC0_NS + 1_000_000
    assert model.to_utc(state, 10 * NS) == UTC0_NS + 3_000_000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bucket_s": 0.0},
        {"window_s": 10.0, "bucket_s": 10.0},
        {"latency_floor_ns": -1},
        {"restart_s": 0.0},
    ],
)
def test_invalid_config_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="ClockModel"):
        ClockModel(**kwargs)  # type: ignore[arg-type]
