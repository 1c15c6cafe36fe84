"""processing.streams: the composed per-stream pipelines the ingester runs.

The ECG pipeline gates rhythm alarms by the leads' state per second of signal, so its
findings do not depend on how the stream is cut, also when the line goes flat halfway
(a flat line is a lead problem, never an asystole).
"""

from __future__ import annotations

import numpy as np
import pytest

from devices.sim.signals.scenario import WearerScenario, build_wearer
from processing.findings import EventKind, Findings
from processing.streams import Signal, initial_state, rr_intervals_step, step

FS = 250.0


def _run(x: np.ndarray, chunk: int) -> Findings:
    state = initial_state(Signal.ECG, fs_hz=FS)
    parts = []
    for start in range(0, x.size, chunk):
        found, state = step(state, x[start : start + chunk])
        parts.append(found)
    return Findings.merge(parts)


def _ecg_flat_from(seconds: int, flat_from_s: int, flat_s: int) -> np.ndarray:
    ecg = np.asarray(build_wearer(WearerScenario(seed=9)).ecg.read(seconds * 250))
    flat = slice(flat_from_s * 250, (flat_from_s + flat_s) * 250)
    ecg[flat] = ecg[flat.start]
    return ecg


@pytest.mark.parametrize("chunk_s", [0.2, 1.0, 5.0, 20.0, 90.0])
def test_a_flat_line_is_a_lead_problem_whatever_the_chunking(chunk_s: float) -> None:
    x = _ecg_flat_from(90, 40, 8)
    found = _run(x, round(chunk_s * FS))
    kinds = [e.kind for e in found.events]
    assert EventKind.FLAT_LINE in kinds or EventKind.LEAD_OFF in kinds
    assert EventKind.ASYSTOLE not in kinds
    reference = _run(x, 250)
    assert sorted(map(repr, found.vitals)) == sorted(map(repr, reference.vitals))
    assert sorted(map(repr, found.events)) == sorted(map(repr, reference.events))


def test_a_real_pause_with_the_leads_on_is_an_asystole() -> None:
    x = np.asarray(build_wearer(WearerScenario(seed=9)).ecg.read(60 * 250))
    quiet = slice(30 * 250, 36 * 250)  # no QRS for 6 s, but a live (noisy) baseline
    x[quiet] = np.random.default_rng(1).normal(0.0, 15.0, quiet.stop - quiet.start)
    found = _run(x, 5 * 250)
    asystoles = [e for e in found.events if e.kind is EventKind.ASYSTOLE]
    assert len(asystoles) == 1
    assert 28.5 <= asystoles[0].t_s <= 31.0


def test_rr_streams_take_intervals_not_samples() -> None:
    state = initial_state(Signal.RR)
    with pytest.raises(ValueError, match="rr_intervals_step"):
        step(state, np.ones(3))
    found, _ = rr_intervals_step(state, np.full(30, 800.0), end_s=24.0)
    assert any(v.value == pytest.approx(75.0) for v in found.vitals)
    with pytest.raises(ValueError, match="positive sample rate"):
        initial_state(Signal.ECG)


def test_the_findings_of_one_long_step_are_in_time_order() -> None:
    x = np.asarray(build_wearer(WearerScenario(seed=9)).ecg.read(120 * 250))
    found, _ = step(initial_state(Signal.ECG, fs_hz=FS), x)
    times = [v.t_s for v in found.vitals]
    assert len(times) > 100
    assert times == sorted(times)
