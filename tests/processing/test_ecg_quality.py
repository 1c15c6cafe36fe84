"""ECG signal quality and flat-line / lead-off detection (processing.ecg.quality).

Truth: the ECGSYN simulator (clean and with known EMG noise), pure noise, flat, railed and
mains-only segments spliced in at known times, and the MIT-BIH Arrhythmia records 100, 105,
106 and 119 (Moody & Mark 2001; PhysioNet) in ../shared/data, converted to µV.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from devices.sim.signals.ecg import EcgConfig, EcgSynth
from processing.ecg.peaks import EcgInputError
from processing.ecg.quality import EcgQualityState, ecg_quality_step, ecg_sqi
from processing.findings import EventKind, Findings, Severity, VitalKind
from tests.shared_data import MITDB, requires_mitdb

FloatArray = npt.NDArray[np.float64]
FS = 250.0


def _ecg(seconds: float, fs_hz: float = FS, **options: float) -> FloatArray:
    return EcgSynth(EcgConfig(fs_hz=fs_hz, seed=2, **options)).read(round(seconds * fs_hz))


def _run(x: FloatArray, chunk: int, fs_hz: float = FS) -> tuple[Findings, list[bool]]:
    """Stream ``x`` in chunks; also the ``usable`` flag after each chunk."""
    state = EcgQualityState.initial(fs_hz=fs_hz)
    parts, usable = [], []
    for i in range(0, x.size, chunk):
        found, state = ecg_quality_step(state, x[i : i + chunk], fs_hz=fs_hz)
        parts.append(found)
        usable.append(state.usable)
    return Findings.merge(parts), usable


def _sqis(found: Findings) -> list[float]:
    return [v.value for v in found.vitals if v.kind == VitalKind.ECG_SQI]


@pytest.mark.parametrize("fs_hz", [125.0, 250.0, 500.0])
@pytest.mark.parametrize("hr_bpm", [40.0, 70.0, 140.0])
def test_clean_simulated_ecg_scores_high(fs_hz: float, hr_bpm: float) -> None:
    x = _ecg(60.0, fs_hz, hr_bpm=hr_bpm, emg_noise_uv=5.0)
    found, usable = _run(x, 97, fs_hz)
    assert _sqis(found) == pytest.approx([1.0] * 6, abs=0.05)
    assert [v.t_s for v in found.vitals] == pytest.approx([10.0 * k for k in range(1, 7)])
    assert all(v.window_s == 10.0 for v in found.vitals)
    assert found.events == ()
    assert all(usable)
    assert ecg_sqi(x[: round(10 * fs_hz)], fs_hz=fs_hz) >= 0.95


def test_moderate_noise_still_usable_heavy_noise_not() -> None:
    moderate = _sqis(_run(_ecg(60.0, emg_noise_uv=150.0, baseline_wander_uv=100.0), 250)[0])
    assert min(moderate) >= 0.7
    heavy, usable = _run(_ecg(60.0, emg_noise_uv=600.0), 250)
    assert max(_sqis(heavy)) <= 0.2
    assert not usable[-1]
    assert heavy.events == ()  # noisy is not flat or lead-off


def test_noise_and_mains_alone_score_low() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(round(10 * FS)) / FS
    assert ecg_sqi(200.0 * rng.standard_normal(t.size), fs_hz=FS) < 0.1
    assert ecg_sqi(np.cumsum(rng.standard_normal(t.size)) * 20.0, fs_hz=FS) < 0.1
    assert ecg_sqi(1000.0 * np.sin(2 * np.pi * 1.2 * t), fs_hz=FS) < 0.1
    assert ecg_sqi(np.zeros(t.size), fs_hz=FS) == 0.0
    # one spike or baseline step in noise is peaky (high kurtosis) but is not an ECG
    spike = 15.0 * rng.standard_normal(t.size)
    spike[1000:1003] += 2000.0
    assert ecg_sqi(spike, fs_hz=FS) < 0.1
    assert (
        ecg_sqi(15.0 * rng.standard_normal(t.size) + np.where(t < 3.0, 300.0, 0.0), fs_hz=FS) < 0.1
    )


def test_beats_replaced_by_baseline_noise_score_low_in_the_stream() -> None:
    x = _ecg(40.0, emg_noise_uv=15.0, baseline_wander_uv=50.0)
    x[round(20 * FS) : round(35 * FS)] = 15.0 * np.random.default_rng(3).standard_normal(
        round(15 * FS)
    )
    found, usable = _run(x, 64)
    sqi = _sqis(found)
    assert sqi[2] < 0.25
    assert min(sqi[:2] + sqi[3:]) >= 0.95
    assert not usable[round(31 * FS / 64)]  # unusable once the all-noise window has closed


def test_streaming_sqi_does_not_depend_on_chunking() -> None:
    x = _ecg(40.0, emg_noise_uv=100.0)
    x[round(12 * FS) : round(16 * FS)] = 0.0
    a, _ = _run(x, 1)
    b, _ = _run(x, 333)
    c, _ = _run(x, x.size)
    assert _sqis(a) == pytest.approx(_sqis(b), abs=1e-9)
    assert _sqis(a) == pytest.approx(_sqis(c), abs=1e-9)
    assert a.events == b.events == c.events


def _spliced(kind: str, start_s: float = 22.0, seconds: float = 5.0) -> FloatArray:
    x = _ecg(60.0, emg_noise_uv=10.0)
    lo, hi = round(start_s * FS), round((start_s + seconds) * FS)
    if kind == "flat":
        x[lo:hi] = 0.0
    elif kind == "flat_noise":  # a disconnected input: one ADC step of noise
        x[lo:hi] = np.random.default_rng(1).integers(-1, 2, hi - lo) * 0.5
    elif kind == "rail":
        x[lo:hi] = 300_000.0
    elif kind == "swing":  # saturating from rail to rail
        x[lo:hi] = np.where(np.arange(hi - lo) % 200 < 100, 150_000.0, -150_000.0)
    elif kind == "mains":
        x[lo:hi] = 3000.0 * np.sin(2 * np.pi * 50.0 * np.arange(hi - lo) / FS)
    return x


@pytest.mark.parametrize(
    ("kind", "event"),
    [
        ("flat", EventKind.FLAT_LINE),
        ("flat_noise", EventKind.FLAT_LINE),
        ("rail", EventKind.LEAD_OFF),
        ("swing", EventKind.LEAD_OFF),
        ("mains", EventKind.LEAD_OFF),
    ],
)
def test_flat_and_lead_off_segments_give_one_event_at_onset(kind: str, event: EventKind) -> None:
    found, usable = _run(_spliced(kind), 125)  # 0.5 s chunks
    (only,) = found.events
    assert only.kind == event
    assert only.severity == Severity.WARNING
    assert only.t_s == pytest.approx(22.0, abs=0.5)
    # unusable from within 1 s of the onset to within 1.5 s of the end, usable elsewhere
    times = 0.5 * (np.arange(len(usable)) + 1)
    bad = ~np.asarray(usable)
    assert np.all(bad[(times >= 23.0) & (times <= 27.0)])
    assert not np.any(bad[(times < 22.0) | (times >= 28.5)])
    assert _sqis(found)[2] <= 0.7
    assert min(_sqis(found)[:2] + _sqis(found)[3:]) >= 0.95


def test_short_dropout_is_not_an_episode() -> None:
    found, usable = _run(_spliced("flat", seconds=1.5), 125)
    assert found.events == ()
    assert all(usable[:40])
    assert all(usable[60:])


def test_long_episode_reports_once() -> None:
    found, _ = _run(_spliced("flat", start_s=5.0, seconds=40.0), 50)
    assert [e.kind for e in found.events] == [EventKind.FLAT_LINE]
    assert _sqis(found)[1:4] == [0.0, 0.0, 0.0]


def test_known_adc_rail_marks_clipping() -> None:
    x = np.clip(_ecg(30.0) * 3.0, -5000.0, 2000.0)  # R waves of 3 mV clip at +2 mV
    state = EcgQualityState.initial(fs_hz=FS, rail_uv=1999.0)
    found, state = ecg_quality_step(state, x, fs_hz=FS)
    assert [e.kind for e in found.events] == []  # one clipped sample per beat is not lead-off
    x[round(10 * FS) : round(15 * FS)] = 2000.0
    found, _ = ecg_quality_step(EcgQualityState.initial(fs_hz=FS, rail_uv=1999.0), x, fs_hz=FS)
    assert [e.kind for e in found.events] == [EventKind.LEAD_OFF]


def test_bad_input_raises() -> None:
    state = EcgQualityState.initial(fs_hz=FS)
    with pytest.raises(EcgInputError) as info:
        ecg_quality_step(state, np.array([0.0, np.nan]), fs_hz=FS)
    assert info.value.reason == "not_finite"
    with pytest.raises(EcgInputError):
        ecg_quality_step(state, np.zeros(10), fs_hz=500.0)
    with pytest.raises(EcgInputError):
        EcgQualityState.initial(fs_hz=50.0)
    assert ecg_quality_step(state, np.zeros(0), fs_hz=FS) == (Findings(), state)


_WFDB_PANDAS = pytest.mark.filterwarnings("ignore:The inplace keyword:Warning")


@requires_mitdb
@_WFDB_PANDAS
@pytest.mark.parametrize(
    ("record", "median_floor", "usable_share"),
    [("100", 0.99, 0.99), ("105", 0.9, 0.85), ("106", 0.9, 0.9), ("119", 0.99, 0.95)],
)
def test_mitdb_records_score_high(record: str, median_floor: float, usable_share: float) -> None:
    import wfdb

    rec = wfdb.rdrecord(str(MITDB / record))
    x = np.asarray(rec.p_signal[:, 0], dtype=np.float64) * 1000.0  # mV -> µV
    fs = float(rec.fs)
    state = EcgQualityState.initial(fs_hz=fs)
    found, state = ecg_quality_step(state, x, fs_hz=fs)
    sqi = np.asarray(_sqis(found))
    assert sqi.size == x.size // round(10 * fs)
    assert float(np.median(sqi)) >= median_floor
    assert float(np.mean(sqi >= 0.5)) >= usable_share
    assert found.events == ()
