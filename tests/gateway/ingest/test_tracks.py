"""gateway.ingest.tracks: stored frames of simulated wearers in, vitals and alerts out.

The frames are cut from the simulator's synthetic wearer (ECG 250 Hz, respiration band
25 Hz, temperature 1 Hz, accelerometer 50 Hz) with known truth; the first sample is at
``T0_NS`` (UTC), so truth time t is ``T0_NS + t`` on the stored vitals' clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from uuid import UUID, uuid4

import numpy as np
import pytest

from devices.frame import Frame, Quality, StreamKind, Timebase, Unit
from devices.sim.signals.motion import Activity, MotionEpisode, Posture
from devices.sim.signals.scenario import GarmentSignals, WearerScenario, build_wearer
from gateway.ingest import tracks as tracks_module
from gateway.ingest.tracks import Tracks
from gateway.ingest.vital_rows import AlertRow, VitalRow
from gateway.router import ClinicalFrame, ResearchFrame
from processing.findings import Findings
from processing.streams import StreamState
from tests.processing.truth_rates import true_heart_rate, true_resp_rate

T0_NS = 1_790_000_000 * 1_000_000_000
SUBJECT = UUID("0b9f3c1e-5a2d-4e8f-9c7b-1d2e3f4a5b6c")
CONSENT = uuid4()
DEVICE = "5f0c2d4e-8a1b-4c3d-9e2f-6a7b8c9d0e1f"
_UNITS = {
    StreamKind.ECG: Unit.MICROVOLT,
    StreamKind.RESP: Unit.RESP_AU,
    StreamKind.TEMP: Unit.CELSIUS,
    StreamKind.ACCEL: Unit.MILLI_G,
}
_FRAME_S = {StreamKind.ECG: 0.2, StreamKind.RESP: 1.0, StreamKind.TEMP: 5.0, StreamKind.ACCEL: 0.64}


def _frames(
    stream: StreamKind, samples: np.ndarray, fs_hz: float, *, start_s: float = 0.0
) -> Iterator[Frame]:
    per = max(1, round(_FRAME_S[stream] * fs_hz))
    channels = ("x", "y", "z") if stream is StreamKind.ACCEL else ()
    for seq, first in enumerate(range(0, len(samples), per)):
        yield Frame(
            DEVICE,
            stream,
            T0_NS + round((start_s + first / fs_hz) * 1e9),
            Timebase.DEVICE,
            np.ascontiguousarray(samples[first : first + per]),
            _UNITS[stream],
            fs_hz=fs_hz,
            sequence=seq,
            channels=channels,
        )


def _clinical(frames: Iterator[Frame]) -> list[ClinicalFrame]:
    return [ClinicalFrame(SUBJECT, f, CONSENT) for f in frames]


@pytest.fixture(scope="module")
def wearer() -> tuple[GarmentSignals, dict[StreamKind, np.ndarray]]:
    # rest, then walking: the heart and breathing rates ramp up (~25 bpm, ~6/min), so a
    # finding placed at the wrong time misses the truth
    walk = (MotionEpisode(Activity.REST, 40.0), MotionEpisode(Activity.WALK, 200.0))
    signals = build_wearer(WearerScenario(activities=walk, seed=11))
    seconds = 130
    data = {
        StreamKind.ECG: signals.ecg.read(seconds * 250),
        StreamKind.RESP: signals.respiration.read(seconds * 25),
        StreamKind.TEMP: signals.temperature.read(seconds),
        StreamKind.ACCEL: signals.motion.read(seconds * 50),
    }
    return signals, data


def _feed_all(
    tracks: Tracks, frames: list[ClinicalFrame], batch: int = 40
) -> tuple[list[VitalRow], list[AlertRow]]:
    vitals: list[VitalRow] = []
    alerts: list[AlertRow] = []
    for i in range(0, len(frames), batch):
        part = frames[i : i + batch]
        v, a = tracks.feed(part, now_ns=part[-1].frame.time_ns)
        vitals += v
        alerts += a
    return vitals, alerts


def _interleaved(data: dict[StreamKind, np.ndarray]) -> list[ClinicalFrame]:
    rates = {
        StreamKind.ECG: 250.0,
        StreamKind.RESP: 25.0,
        StreamKind.TEMP: 1.0,
        StreamKind.ACCEL: 50.0,
    }
    frames = [f for stream, x in data.items() for f in _clinical(_frames(stream, x, rates[stream]))]
    frames.sort(key=lambda f: f.frame.time_ns)
    return frames


def test_heart_and_respiration_rates_from_stored_frames_match_the_truth(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]],
) -> None:
    signals, data = wearer
    vitals, _ = _feed_all(Tracks(), _interleaved(data))
    beats = np.asarray(signals.ecg.truth().r_peak_times_s)
    onsets = np.asarray(signals.respiration.truth().onset_times_s)
    hr = [v for v in vitals if v.kind == "hr_bpm"]
    rr = [v for v in vitals if v.kind == "resp_rate_bpm"]
    assert len(hr) >= 11
    assert len(rr) >= 3
    for v in hr:
        end_s = (v.ts_ns - T0_NS) / 1e9
        assert v.owner == SUBJECT
        assert abs(v.value - true_heart_rate(beats, end_s - v.window_s, end_s)) <= 2.0
    for v in rr:
        end_s = (v.ts_ns - T0_NS) / 1e9
        assert abs(v.value - true_resp_rate(onsets, end_s - v.window_s, end_s)) <= 1.0
    late = [  # the same heart rates against a truth 5 s off: the check can fail
        abs(v.value - true_heart_rate(beats, end_s - v.window_s - 5, end_s - 5))
        for v in hr
        if (end_s := (v.ts_ns - T0_NS) / 1e9) > 0
    ]
    assert max(late) > 2.0
    kinds = {v.kind for v in vitals}
    assert {"hr_beat_bpm", "sdnn_ms", "ecg_sqi", "enmo_mg", "posture"} <= kinds
    assert "resp_rate_edr_bpm" not in kinds, "the band is present: no ECG-derived rate"


def test_redelivered_frames_are_skipped_and_add_nothing(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]],
) -> None:
    _, data = wearer
    frames = _clinical(_frames(StreamKind.ECG, data[StreamKind.ECG][: 250 * 40], 250.0))
    tracks = Tracks()
    first, _ = _feed_all(tracks, frames)
    again, _ = _feed_all(tracks, frames[-50:])
    assert first
    assert not again
    assert tracks.skipped == 50
    assert tracks.restarts == 0


def test_a_gap_restarts_the_stream_and_its_windows(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]],
) -> None:
    _, data = wearer
    ecg = data[StreamKind.ECG]
    before = list(_frames(StreamKind.ECG, ecg[: 250 * 30], 250.0))
    after = list(_frames(StreamKind.ECG, ecg[250 * 35 : 250 * 70], 250.0, start_s=35.0))
    tracks = Tracks()
    vitals, _ = _feed_all(tracks, _clinical(iter(before + after)))
    assert tracks.restarts == 1
    ends = sorted((v.ts_ns - T0_NS) / 1e9 for v in vitals if v.kind == "hr_bpm")
    assert any(e <= 30 for e in ends)
    assert any(e >= 45 for e in ends)
    assert not any(30 < e < 45 for e in ends), "a window across the gap"


def test_research_frames_are_tracked_by_pseudonym(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]],
) -> None:
    _, data = wearer
    frames = [
        ResearchFrame(
            "p-7f3a",
            f.stream,
            f.time_ns,
            f.samples,
            f.unit,
            f.fs_hz,
            None,
            f.sequence,
            Quality.NONE,
            f.channels,
        )
        for f in _frames(StreamKind.ECG, data[StreamKind.ECG][: 250 * 40], 250.0)
    ]
    vitals, _ = Tracks().feed(frames, now_ns=frames[-1].time_ns)
    assert vitals
    assert {v.owner for v in vitals} == {"p-7f3a"}
    assert any(v.kind == "hr_bpm" for v in vitals)


def test_bad_samples_are_rejected_and_the_other_streams_go_on(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]],
) -> None:
    _, data = wearer
    ecg = data[StreamKind.ECG][: 250 * 40].copy()
    ecg[250 * 5 : 250 * 5 + 10] = np.nan
    resp = data[StreamKind.RESP][: 25 * 40]
    frames = _clinical(_frames(StreamKind.ECG, ecg, 250.0)) + _clinical(
        _frames(StreamKind.RESP, resp, 25.0)
    )
    frames.sort(key=lambda f: f.frame.time_ns)
    tracks = Tracks()
    vitals, _ = _feed_all(tracks, frames)
    assert tracks.rejected >= 1
    assert any(v.kind == "breath_rate_bpm" for v in vitals)
    assert any(v.kind == "hr_bpm" and v.ts_ns - T0_NS > 15e9 for v in vitals), "ECG resumed"


def test_idle_streams_are_forgotten(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]],
) -> None:
    _, data = wearer
    frames = _clinical(_frames(StreamKind.ECG, data[StreamKind.ECG][:2500], 250.0))
    tracks = Tracks(idle_s=60)
    tracks.feed(frames, now_ns=T0_NS)
    assert len(tracks) == 1
    tracks.feed([], now_ns=T0_NS + 61 * 10**9)
    assert len(tracks) == 0


def test_ecg_derived_respiration_without_a_band(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]],
) -> None:
    signals, data = wearer
    frames = _clinical(_frames(StreamKind.ECG, data[StreamKind.ECG], 250.0))
    vitals, _ = _feed_all(Tracks(), frames)
    edr = [v for v in vitals if v.kind == "resp_rate_edr_bpm"]
    assert edr, "no ECG-derived respiration rate without a band"
    onsets = np.asarray(signals.respiration.truth().onset_times_s)
    errors = [
        abs(
            v.value
            - true_resp_rate(onsets, (v.ts_ns - T0_NS) / 1e9 - v.window_s, (v.ts_ns - T0_NS) / 1e9)
        )
        for v in edr
    ]
    assert float(np.mean(errors)) <= 3.0


def test_rr_interval_frames_give_heart_rate() -> None:
    rng = np.random.default_rng(5)
    rr_ms = 800 + 30 * rng.standard_normal(150)
    beats_ns = T0_NS + np.cumsum(rr_ms * 1e6).astype(np.int64)
    frames = []
    for i in range(0, 150, 2):  # a strap notifies about once a second: two beats each
        offsets = beats_ns[i : i + 2] - beats_ns[i]
        frames.append(
            ClinicalFrame(
                SUBJECT,
                Frame(
                    DEVICE,
                    StreamKind.RR,
                    int(beats_ns[i]),
                    Timebase.ARRIVAL,
                    rr_ms[i : i + 2].copy(),
                    Unit.MILLISECOND,
                    offsets_ns=offsets.astype(np.int64),
                ),
                CONSENT,
            )
        )
    vitals, _ = _feed_all(Tracks(), frames, batch=5)
    hr = [v.value for v in vitals if v.kind == "hr_bpm"]
    assert hr
    assert all(abs(h - 60000 / rr_ms.mean()) <= 3.0 for h in hr)


def test_batching_does_not_change_the_findings(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]],
) -> None:
    _, data = wearer
    frames = _interleaved({k: v[: len(v) * 60 // 130] for k, v in data.items()})

    def run(tracks: Tracks, batch: int) -> list[VitalRow]:
        vitals, _ = _feed_all(tracks, frames, batch=batch)
        rest, _ = tracks.feed([], now_ns=T0_NS + 10**13)  # forgotten: the rest is processed
        return vitals + rest

    one_by_one = run(Tracks(), 1)
    at_once = run(Tracks(), len(frames))
    unbuffered = run(Tracks(min_chunk_s=0.0), 3)
    assert one_by_one
    assert sorted(map(repr, one_by_one)) == sorted(map(repr, at_once))
    assert sorted(map(repr, unbuffered)) == sorted(map(repr, at_once))


def test_an_idle_streams_last_samples_are_processed_when_it_is_forgotten(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]],
) -> None:
    _, data = wearer
    frames = _clinical(_frames(StreamKind.ECG, data[StreamKind.ECG][: 250 * 20], 250.0))
    tracks = Tracks(idle_s=60, min_chunk_s=30.0)  # nothing reaches the processor early
    early, _ = tracks.feed(frames, now_ns=T0_NS)
    late, _ = tracks.feed([], now_ns=T0_NS + 61 * 10**9)
    assert not early
    assert any(v.kind == "hr_bpm" for v in late)
    assert len(tracks) == 0


def test_a_fall_in_the_garments_motion_stream_becomes_a_critical_alert() -> None:
    activities = (
        MotionEpisode(Activity.REST, 20.0),
        MotionEpisode(Activity.WALK, 40.0),
        MotionEpisode(Activity.FALL, 3.0, Posture.SUPINE),
        MotionEpisode(Activity.REST, 30.0, Posture.SUPINE),
    )
    signals = build_wearer(WearerScenario(activities=activities, seed=5))
    accel = signals.motion.read(95 * 50)
    frames = _clinical(_frames(StreamKind.ACCEL, accel, 50.0))
    tracks = Tracks()
    falls: list[tuple[float, float]] = []  # (fall time, arrival of the frame that told)
    for frame in frames:
        _, alerts = tracks.feed([frame], now_ns=frame.frame.time_ns)
        arrived_s = (frame.frame.time_ns - T0_NS) / 1e9 + len(frame.frame.samples) / 50.0
        falls += [((a.ts_ns - T0_NS) / 1e9, arrived_s) for a in alerts if a.kind == "fall"]
    (truth,) = signals.motion.truth().fall_times_s
    assert len(falls) == 1, falls
    fall_s, told_s = falls[0]
    assert abs(fall_s - truth) <= 1.0
    assert told_s - truth <= 5.0, "reported within 5 s of the impact"


def _rr_frames(
    rr_ms: np.ndarray, *, first_beat_ns: int, per: int = 2, device: str = DEVICE
) -> list[ClinicalFrame]:
    steps = np.nan_to_num(rr_ms[1:], nan=800.0) * 1e6
    beats_ns = first_beat_ns + np.concatenate(([0], np.cumsum(steps))).astype(np.int64)
    frames = []
    for i in range(0, len(rr_ms), per):
        frame = Frame(
            device, StreamKind.RR, int(beats_ns[i]), Timebase.ARRIVAL, rr_ms[i : i + per].copy(),
            Unit.MILLISECOND, offsets_ns=(beats_ns[i : i + per] - beats_ns[i]).astype(np.int64),
        )  # fmt: skip
        frames.append(ClinicalFrame(SUBJECT, frame, CONSENT))
    return frames


def test_a_link_loss_of_a_strap_restarts_its_rr_stream_and_is_no_asystole() -> None:
    rr = np.full(60, 800.0)
    before = _rr_frames(rr, first_beat_ns=T0_NS)
    after = _rr_frames(rr, first_beat_ns=T0_NS + 110 * 10**9)  # 62 s without notifications
    tracks = Tracks()
    vitals, alerts = _feed_all(tracks, before + after, batch=3)
    assert tracks.restarts == 1
    assert not [a for a in alerts if a.kind == "asystole"]
    assert any(v.kind == "hr_bpm" and v.ts_ns > T0_NS + 110 * 10**9 for v in vitals)


def test_rr_intervals_are_skipped_while_the_same_devices_ecg_is_processed(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]],
) -> None:
    _, data = wearer
    ecg = _clinical(_frames(StreamKind.ECG, data[StreamKind.ECG][: 250 * 40], 250.0))
    rr = _rr_frames(np.full(60, 600.0), first_beat_ns=T0_NS)
    frames = sorted(ecg + rr, key=lambda f: f.frame.time_ns)
    tracks = Tracks()
    vitals, _ = _feed_all(tracks, frames)
    hr = [v.value for v in vitals if v.kind == "hr_bpm"]
    assert hr
    assert all(h < 90.0 for h in hr), "no heart rate from the strap's 600 ms intervals"
    assert tracks.skipped >= len(rr) - 1


def test_a_stream_no_processor_can_take_is_counted_and_the_others_go_on(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]],
) -> None:
    _, data = wearer
    bad = _clinical(_frames(StreamKind.ECG, data[StreamKind.ECG][:5000], 2000.0))  # > 1 kHz
    good = _clinical(_frames(StreamKind.RESP, data[StreamKind.RESP][: 25 * 60], 25.0))
    strap = "9a1d2c3b-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
    rr = _rr_frames(np.array([800.0, np.nan, 790.0]), first_beat_ns=T0_NS, per=1, device=strap)
    tracks = Tracks()
    vitals, _ = _feed_all(tracks, sorted(bad + good + rr, key=lambda f: f.frame.time_ns))
    assert tracks.rejected >= 2  # the ECG rate, the NaN interval
    assert tracks.failed == 0
    assert any(v.kind == "breath_rate_bpm" for v in vitals)


def test_findings_follow_the_frames_clock_when_the_sample_clock_runs_slow(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]],
) -> None:
    _, data = wearer
    stretch = 1.001  # the device's 250 Hz are 249.75 Hz of UTC: 0.12 s off after 2 min
    frames = [
        ClinicalFrame(
            SUBJECT, replace(f, time_ns=T0_NS + round((f.time_ns - T0_NS) * stretch)), CONSENT
        )
        for f in _frames(StreamKind.ECG, data[StreamKind.ECG], 250.0)
    ]
    vitals, _ = _feed_all(Tracks(), frames)
    hr = [v for v in vitals if v.kind == "hr_bpm"]
    assert len(hr) >= 11
    for v in hr:
        stream_s = round((v.ts_ns - T0_NS) / 1e9 / stretch / 10) * 10  # its window end
        assert abs(v.ts_ns - (T0_NS + stream_s * stretch * 1e9)) <= 5e6, "within 5 ms"


def test_a_failing_processor_costs_its_own_stream_only(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A processing bug is a fault no real input makes on purpose: the ECG step is
    replaced by one that raises, the only fake in these tests."""
    _, data = wearer
    real_step = tracks_module.step

    def broken(state: StreamState, chunk: np.ndarray) -> tuple[Findings, StreamState]:
        if np.ndim(chunk) == 1 and getattr(state, "fs_hz", 0.0) == 250.0:
            raise RuntimeError("a bug")
        return real_step(state, chunk)

    monkeypatch.setattr(tracks_module, "step", broken)
    frames = _interleaved({k: v[: len(v) * 30 // 130] for k, v in data.items()})
    tracks = Tracks()
    vitals, _ = _feed_all(tracks, frames)
    assert tracks.failed >= 1
    kinds = {v.kind for v in vitals}
    assert "hr_bpm" not in kinds
    assert {"breath_rate_bpm", "enmo_mg"} <= kinds


def test_a_stream_that_goes_quiet_has_its_last_samples_processed(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]],
) -> None:
    _, data = wearer
    frames = _clinical(_frames(StreamKind.ECG, data[StreamKind.ECG][: 250 * 20], 250.0))
    tracks = Tracks(min_chunk_s=30.0)  # nothing reaches the processor while frames come
    early, _ = tracks.feed(frames, now_ns=T0_NS)
    still, _ = tracks.feed([], now_ns=T0_NS + 59 * 10**9)
    late, _ = tracks.feed([], now_ns=T0_NS + 61 * 10**9)  # quiet for 2 x 30 s
    assert not early
    assert not still
    assert any(v.kind == "hr_bpm" for v in late)
    assert len(tracks) == 1, "quiet, not forgotten"


def test_frames_the_device_flags_lead_off_raise_one_alert_and_no_asystole(
    wearer: tuple[GarmentSignals, dict[StreamKind, np.ndarray]],
) -> None:
    _, data = wearer
    frames = []
    for f in _frames(StreamKind.ECG, data[StreamKind.ECG][: 250 * 60], 250.0):
        at_s = (f.time_ns - T0_NS) / 1e9
        if 20 <= at_s < 32:  # the garment says the leads are off and sends zeros
            f = replace(f, samples=np.zeros_like(f.samples), quality=Quality.LEAD_OFF)
        frames.append(ClinicalFrame(SUBJECT, f, CONSENT))
    tracks = Tracks()
    vitals, alerts = _feed_all(tracks, frames, batch=5)
    assert [(a.kind, a.detail) for a in alerts] == [("lead_off", {"source": "device"})]
    assert alerts[0].ts_ns == T0_NS + 20 * 10**9
    assert tracks.restarts == 1
    assert any(v.kind == "hr_bpm" and v.ts_ns > T0_NS + 40 * 10**9 for v in vitals)


def test_a_strap_notifying_without_beats_is_an_asystole_while_it_lasts() -> None:
    strap = "9a1d2c3b-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
    before = _rr_frames(np.full(40, 800.0), first_beat_ns=T0_NS, device=strap)
    last_beat_ns = T0_NS + 39 * 800 * 10**6
    silent = [  # heart rate notifications, once a second, no RR interval: no beat
        ClinicalFrame(
            SUBJECT,
            Frame(
                strap,
                StreamKind.HR,
                last_beat_ns + k * 10**9,
                Timebase.ARRIVAL,
                np.array([0.0]),
                Unit.BPM,
                offsets_ns=np.zeros(1, dtype=np.int64),
            ),
            CONSENT,
        )
        for k in range(1, 9)
    ]
    tracks = Tracks()
    _, alerts = _feed_all(tracks, before + silent, batch=2)
    asystoles = [a for a in alerts if a.kind == "asystole"]
    assert len(asystoles) == 1
    assert abs(asystoles[0].ts_ns - last_beat_ns) <= 10**9
    assert tracks.restarts == 0
