"""Tests for gateway.gaps: the per-device gap tracker (issue 4, Gaps; acceptance 2).

Frames come from the real decoders where one exists: garment data frames are encoded
with the garment codec and decoded by a per-connection ``GarmentDecoder`` (a new one
after each reconnect, as a session does), HRS notifications through
``heart_rate_frames``. Ground truth is the device's sample grid (sample ``j`` at
``j / fs`` s of device time, sent in whole µs like the garment), so every count below is
exact. The property test removes random frames and pauses random stretches of random
streams and checks that the gaps add up to exactly the removed samples.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.frame import Frame, StreamKind, Timebase, Unit
from devices.garment.codec import GarmentFrame, encode_data_frame
from devices.garment.profile import GarmentDecoder
from devices.garment.spec import DATA_CHARACTERISTIC_UUID, GarmentStream
from devices.hrs import HeartRateMeasurement, heart_rate_frames
from gateway.gaps import DeviceGap, Gap, GapCause, GapTracker

S = 1_000_000_000
KEY = "dev-1"


def grid_us(j: int, fs_hz: int) -> int:
    """Device time of sample ``j`` in whole µs (floored, as a device clock ticks)."""
    return j * 1_000_000 // fs_hz


def frame(
    j0: int,
    n: int,
    *,
    fs_hz: int = 250,
    seq: int | None = None,
    stream: StreamKind = StreamKind.ECG,
    key: str = KEY,
) -> Frame:
    """``n`` samples of a regular device-timebase stream starting at grid sample ``j0``."""
    return Frame(
        device_key=key,
        stream=stream,
        time_ns=grid_us(j0, fs_hz) * 1000,
        timebase=Timebase.DEVICE,
        samples=np.zeros(n),
        unit=Unit.MICROVOLT,
        fs_hz=float(fs_hz),
        sequence=seq,
    )


class Garment:
    """Garment ECG data frames through the real codec and a per-connection decoder."""

    def __init__(self, fs_hz: int = 250, per_frame: int = 25) -> None:
        self.fs_hz, self.per_frame = fs_hz, per_frame
        self.sequence = 0
        self.decoder = GarmentDecoder(KEY)

    def reconnect(self) -> None:
        self.decoder = GarmentDecoder(KEY)  # a new connection decodes afresh

    def send(self, j0: int) -> Frame:
        raw = GarmentFrame(
            GarmentStream.ECG,
            self.sequence,
            grid_us(j0, self.fs_hz),
            float(self.fs_hz),
            np.zeros(self.per_frame),
        )
        self.sequence += 1  # survives STOP/START and reconnects
        (decoded,) = self.decoder.decode(DATA_CHARACTERISTIC_UUID, encode_data_frame(raw), 0)
        return decoded


def observe_all(tracker: GapTracker, frames: list[Frame]) -> list[DeviceGap]:
    return [gap for f in frames for gap in tracker.observe(f)]


# ------------------------------------------------------------------ regular device streams


def test_garment_link_loss_of_ten_seconds_is_exactly_2500_samples() -> None:
    """250 Hz, 25-sample frames, the link down for 10 s: the device's sequence goes on
    by one, its time jumps, and the gap counts exactly what was never sent."""
    garment, tracker = Garment(), GapTracker()
    before = [garment.send(25 * i) for i in range(40)]  # samples 0..999
    assert observe_all(tracker, before) == []
    tracker.link_lost()
    tracker.link_restored()
    garment.reconnect()
    resume = 1000 + 2500  # the stream restarts on the grid 10 s later
    after = [garment.send(resume + 25 * i) for i in range(4)]
    assert after[0].sequence == before[-1].sequence + 1

    gaps = observe_all(tracker, after)

    assert gaps == [
        DeviceGap(
            StreamKind.ECG,
            start_ns=1000 * 4_000_000,
            end_ns=3499 * 4_000_000,
            samples_missing=2500,
            cause=GapCause.LINK_LOSS,
            timebase=Timebase.DEVICE,
        )
    ]
    assert tracker.counters.missing_by_cause(GapCause.LINK_LOSS) == 2500
    assert tracker.counters.gaps_by_cause(GapCause.LINK_LOSS) == 1
    assert tracker.counters.sequence_mismatches == 0
    assert tracker.counters.frames == 44


@pytest.mark.parametrize("missing", [1, 7, 31, 2560, 256 * 3600 + 13])
def test_256_hz_with_microsecond_device_times_counts_exactly(missing: int) -> None:
    """At 256 Hz a sample period is 3906.25 µs, so device times are off the grid by up
    to 1 µs; the count is still exact and the bounds within 1 µs of the true grid."""
    tracker = GapTracker()
    n = 32
    first = [frame(n * i, n, fs_hz=256, seq=i) for i in range(10)]
    resume = 10 * n + missing
    gaps = observe_all(tracker, [*first, frame(resume, n, fs_hz=256, seq=10)])

    (gap,) = gaps
    assert gap.samples_missing == missing
    assert gap.cause is GapCause.DEVICE_SKIP
    assert abs(gap.start_ns - 10 * n * S / 256) <= 1000
    assert abs(gap.end_ns - (resume - 1) * S / 256) <= 1000


def test_sequence_skip_with_time_jump_is_a_device_skip() -> None:
    tracker = GapTracker()
    frames = [frame(0, 25, seq=0), frame(25, 25, seq=1), frame(100, 25, seq=4)]
    (gap,) = observe_all(tracker, frames)
    assert (gap.samples_missing, gap.cause) == (50, GapCause.DEVICE_SKIP)
    assert (gap.start_ns, gap.end_ns) == (50 * 4_000_000, 99 * 4_000_000)
    assert tracker.counters.sequence_mismatches == 0


def test_sequence_jump_without_time_jump_places_no_gap_but_is_counted() -> None:
    tracker = GapTracker()
    assert observe_all(tracker, [frame(0, 25, seq=0), frame(25, 25, seq=5)]) == []
    assert tracker.counters.sequence_mismatches == 1
    assert sum(tracker.counters.gaps.values()) == 0


def test_duplicate_overlap_and_sequence_reset_are_not_gaps() -> None:
    tracker = GapTracker()
    observe_all(tracker, [frame(0, 25, seq=0), frame(25, 25, seq=1)])
    assert tracker.observe(frame(25, 25, seq=1)) == ()  # duplicate: ignored
    assert tracker.counters.duplicates == 1
    assert tracker.observe(frame(60, 25, seq=2)) != ()  # still anchored at 25..49
    assert tracker.observe(frame(70, 25, seq=3)) == ()  # 15 samples back: overlap
    assert tracker.counters.overlaps == 1
    assert tracker.observe(frame(95, 25, seq=4)) == ()  # contiguous with the overlap
    assert tracker.observe(frame(119, 25, seq=5)) == ()  # one sample back: overlap
    assert tracker.counters.overlaps == 2
    assert tracker.observe(frame(10_000, 25, seq=0)) == ()  # sequence reset: reboot
    assert tracker.counters.restarts == 1
    (gap,) = tracker.observe(frame(10_050, 25, seq=1))  # counted on the new anchor
    assert gap.samples_missing == 25


def test_device_clock_restart_is_not_a_gap() -> None:
    """A reboot: device time jumps back by far more than a second (no sequence, like
    Polar PMD). The stream starts afresh; later holes count from the new timeline."""
    tracker = GapTracker()
    observe_all(tracker, [frame(250 * 3600 + 25 * i, 25) for i in range(5)])
    tracker.link_lost()
    tracker.link_restored()
    assert tracker.observe(frame(500, 25)) == ()
    assert tracker.counters.restarts == 1
    assert sum(tracker.counters.gaps.values()) == 0
    (gap,) = tracker.observe(frame(600, 25))
    # The link loss was spent on the restart: this later hole is the device's.
    assert (gap.samples_missing, gap.cause) == (75, GapCause.DEVICE_SKIP)


def test_device_restarted_resets_every_stream() -> None:
    tracker = GapTracker()
    tracker.observe(frame(0, 25, seq=0))
    tracker.observe(frame(0, 5, fs_hz=25, seq=0, stream=StreamKind.RESP))
    tracker.device_restarted()
    assert tracker.counters.restarts == 2
    assert tracker.observe(frame(5000, 25, seq=3)) == ()  # first frame of a new timeline


def test_rate_change_starts_the_stream_afresh() -> None:
    tracker = GapTracker()
    tracker.observe(frame(0, 25, fs_hz=250))
    assert tracker.observe(frame(10_000, 50, fs_hz=500)) == ()
    assert tracker.counters.reconfigurations == 1


# ------------------------------------------------------------------ causes


def test_link_loss_is_attributed_even_while_the_queue_drains() -> None:
    """Frames received before the loss but observed after ``link_lost()`` do not use up
    the attribution; after the reconnect both streams' holes are ``LINK_LOSS``; the next
    unexplained hole is a device skip again."""
    tracker = GapTracker()
    ecg = [frame(25 * i, 25, seq=i) for i in range(4)]
    resp = [frame(5 * i, 5, fs_hz=25, seq=i, stream=StreamKind.RESP) for i in range(4)]
    observe_all(tracker, [ecg[0], resp[0], ecg[1], resp[1]])
    tracker.link_lost()
    assert observe_all(tracker, [ecg[2], resp[2], ecg[3], resp[3]]) == []  # drained
    tracker.link_restored()
    ecg_gap = tracker.observe(frame(100 + 250 * 5, 25, seq=4))
    resp_gap = tracker.observe(frame(20 + 25 * 5, 5, fs_hz=25, seq=4, stream=StreamKind.RESP))
    skip = tracker.observe(frame(100 + 250 * 5 + 50, 25, seq=6))

    assert [g.cause for g in (*ecg_gap, *resp_gap, *skip)] == [
        GapCause.LINK_LOSS,
        GapCause.LINK_LOSS,
        GapCause.DEVICE_SKIP,
    ]
    assert [g.samples_missing for g in (*ecg_gap, *resp_gap, *skip)] == [1250, 125, 25]
    assert tracker.counters.link_losses == 1


def test_a_stream_contiguous_after_the_reconnect_owes_nothing() -> None:
    tracker = GapTracker()
    tracker.observe(frame(0, 25))
    tracker.link_lost()
    tracker.link_restored()
    assert tracker.observe(frame(25, 25)) == ()  # nothing was lost on this stream
    (gap,) = tracker.observe(frame(100, 25))
    assert gap.cause is GapCause.DEVICE_SKIP


def test_queue_overflow_is_attributed_to_the_stream_that_lost_a_frame() -> None:
    tracker = GapTracker()
    observe_all(tracker, [frame(0, 25, seq=0), frame(0, 5, fs_hz=25, stream=StreamKind.RESP)])
    tracker.notifications_dropped(1)
    assert tracker.observe(frame(5, 5, fs_hz=25, stream=StreamKind.RESP)) == ()
    (lost,) = tracker.observe(frame(50, 25, seq=2))
    (later,) = tracker.observe(frame(20, 5, fs_hz=25, stream=StreamKind.RESP))
    assert (lost.cause, lost.samples_missing) == (GapCause.QUEUE_OVERFLOW, 25)
    assert (later.cause, later.samples_missing) == (GapCause.DEVICE_SKIP, 10)
    assert tracker.counters.dropped_notifications == 1
    tracker.notifications_dropped(0)  # nothing dropped: no attribution
    (again,) = tracker.observe(frame(100, 25, seq=4))
    assert again.cause is GapCause.DEVICE_SKIP


def test_cause_hint_wins_and_link_loss_beats_overflow() -> None:
    tracker = GapTracker()
    tracker.observe(frame(0, 25))
    tracker.notifications_dropped(3)
    tracker.link_lost()
    tracker.link_restored()
    (gap,) = tracker.observe(frame(50, 25))
    assert gap.cause is GapCause.LINK_LOSS
    (hinted,) = tracker.observe(frame(100, 25), cause_hint=GapCause.SPOOL_FULL)
    assert hinted.cause is GapCause.SPOOL_FULL
    assert tracker.counters.samples_missing[(StreamKind.ECG, GapCause.SPOOL_FULL)] == 25


# ------------------------------------------------------------------ arrival-timed streams


def hrs(at_ns: int, rr_ms: tuple[float, ...] = ()) -> tuple[Frame, ...]:
    return heart_rate_frames(HeartRateMeasurement(70, rr_ms), device_key=KEY, received_ns=at_ns)


def test_hrs_heart_rate_gap_only_around_link_loss_with_an_estimated_count() -> None:
    """HRS notifies about once a second with arrival jitter. A slow notification is not a
    gap; a 10 s link loss is, bounded by the arrivals around it, about 10 missing."""
    rng = np.random.default_rng(4)
    tracker = GapTracker()
    arrivals = [i * S + int(rng.integers(-40, 40)) * 1_000_000 for i in range(30)]
    arrivals[20] += 900_000_000  # one late notification: jitter, not a loss
    for at in arrivals:
        assert tracker.observe(hrs(at)[0]) == ()
    tracker.link_lost()
    tracker.link_restored()
    back = arrivals[-1] + 11 * S + 30_000_000
    (gap,) = tracker.observe(hrs(back)[0])

    assert gap == DeviceGap(
        StreamKind.HR, arrivals[-1], back, 10, GapCause.LINK_LOSS, Timebase.ARRIVAL
    )
    assert tracker.observe(hrs(back + S)[0]) == ()
    tracker.link_lost()  # a short outage: the next notification is barely late
    tracker.link_restored()
    assert tracker.observe(hrs(back + 2 * S + 400_000_000)[0]) == ()
    assert tracker.counters.gaps == {(StreamKind.HR, GapCause.LINK_LOSS): 1}


def test_rr_gap_estimates_beats_from_the_median_interval() -> None:
    tracker = GapTracker()
    t = 0
    for _ in range(10):  # 800 ms beats, one per notification
        t += 800_000_000
        (_, rr) = hrs(t, (800.0,))
        assert tracker.observe(rr) == ()
    tracker.link_lost()
    tracker.link_restored()
    (_, rr) = hrs(t + 8 * 800_000_000, (800.0, 800.0))  # beats at +7 and +8 intervals
    (gap,) = tracker.observe(rr)
    assert (gap.start_ns, gap.end_ns) == (t, t + 7 * 800_000_000)
    assert (gap.samples_missing, gap.cause) == (6, GapCause.LINK_LOSS)


def test_arrival_gap_without_a_rate_is_still_published() -> None:
    tracker = GapTracker()
    tracker.observe(hrs(S)[0])
    tracker.link_lost()
    tracker.link_restored()
    (gap,) = tracker.observe(hrs(12 * S)[0])
    assert (gap.start_ns, gap.end_ns, gap.samples_missing) == (S, 12 * S, 0)
    assert tracker.counters.unestimated == 1


def test_arrival_regular_stream_uses_its_sequence() -> None:
    def batch(at_ns: int, seq: int) -> Frame:
        return Frame(KEY, StreamKind.TEMP, at_ns, Timebase.ARRIVAL, np.zeros(4), Unit.CELSIUS,
                     fs_hz=4.0, sequence=seq)  # fmt: skip

    tracker = GapTracker()
    assert tracker.observe(batch(0, 0)) == ()
    (gap,) = tracker.observe(batch(3 * S, 3))
    assert (gap.samples_missing, gap.cause) == (8, GapCause.DEVICE_SKIP)
    assert (gap.start_ns, gap.end_ns) == (750_000_000, 3 * S)


def test_battery_is_untracked_and_the_tracker_checks_its_input() -> None:
    tracker = GapTracker()
    battery = Frame(KEY, StreamKind.BATTERY, 0, Timebase.ARRIVAL, np.array([80.0]),
                    Unit.PERCENT, offsets_ns=np.zeros(1, dtype=np.int64))  # fmt: skip
    tracker.link_lost()
    tracker.link_restored()
    assert tracker.observe(battery) == ()
    assert tracker.observe(replace(battery, time_ns=3600 * S)) == ()
    with pytest.raises(ValueError, match="DEVICE or ARRIVAL"):
        tracker.observe(replace(frame(0, 25), timebase=Timebase.UTC))
    with pytest.raises(ValueError, match="another device"):
        tracker.observe(frame(0, 25, key="dev-2"))
    with pytest.raises(ValueError, match="count"):
        tracker.notifications_dropped(-1)


def test_to_gap_maps_device_bounds_and_keeps_arrival_bounds() -> None:
    device = DeviceGap(StreamKind.ECG, 100, 200, 26, GapCause.LINK_LOSS, Timebase.DEVICE)
    arrival = DeviceGap(StreamKind.HR, 100, 200, 3, GapCause.LINK_LOSS, Timebase.ARRIVAL)
    offset = 1_700_000_000 * S
    assert device.to_gap(lambda t: t + offset) == Gap(
        StreamKind.ECG, 100 + offset, 200 + offset, 26, GapCause.LINK_LOSS
    )
    assert arrival.to_gap(lambda t: t + offset) == Gap(
        StreamKind.HR, 100, 200, 3, GapCause.LINK_LOSS
    )


# ------------------------------------------------------------------ property


@st.composite
def holey_streams(draw: st.DrawFn) -> tuple[int, list[tuple[int, int, int]], int]:
    """(fs, received frames as (first sample, n, sequence), samples removed). Frames are
    dropped whole (the sequence then skips) or the device pauses (the sequence does not
    skip); the first and last frames always arrive, so every hole is observable."""
    fs = draw(st.sampled_from([1, 25, 50, 130, 200, 250, 256, 500, 1000]))
    count = draw(st.integers(2, 60))
    j, seq, removed = 0, 0, 0
    received: list[tuple[int, int, int]] = []
    for i in range(count):
        n = draw(st.integers(1, 40))
        edge = i in (0, count - 1)
        if not edge and draw(st.integers(0, 3)) == 0:
            pause = draw(st.integers(1, 5000))  # STOP/START or a reconnect
            j, removed = j + pause, removed + pause
        if not edge and draw(st.integers(0, 3)) == 0:
            j, seq, removed = j + n, seq + 1, removed + n  # frame lost
            continue
        received.append((j, n, seq))
        j, seq = j + n, seq + 1
    return fs, received, removed


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(holey_streams(), st.booleans())
def test_gaps_add_up_to_exactly_the_removed_samples(
    case: tuple[int, list[tuple[int, int, int]], int], with_sequence: bool
) -> None:
    fs, received, removed = case
    tracker = GapTracker()
    gaps: list[DeviceGap] = []
    for j0, n, seq in received:
        gaps += tracker.observe(frame(j0, n, fs_hz=fs, seq=seq if with_sequence else None))

    assert sum(g.samples_missing for g in gaps) == removed
    want = [(a + m, b - 1) for (a, m, _), (b, _, _) in itertools.pairwise(received) if b > a + m]
    assert len(gaps) == len(want)
    for gap, (first, last) in zip(gaps, want, strict=True):
        assert gap.samples_missing == last - first + 1
        assert abs(gap.start_ns - first * S / fs) <= 1000
        assert abs(gap.end_ns - last * S / fs) <= 1000
        assert gap.start_ns <= gap.end_ns
    assert tracker.counters.restarts == tracker.counters.overlaps == 0
    assert tracker.counters.sequence_mismatches == 0
