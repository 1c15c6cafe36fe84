"""Per-stream processing state of the ingester: stored frames in, vitals and alerts out.

Role: ``Tracks.feed`` takes the frames of committed batches (clinical or research) and
runs ``processing.streams`` on each stream of each wearer (a *track*: wearer, device and
stream on the clinical path; pseudonym and stream on the research path). It maps the
processors' stream-relative times to UTC (research: the shifted time the frames carry)
and returns the rows to store.

* Continuity: a track is a run of contiguous frames. A frame starting later than the
  expected next sample (by more than 1.5 sample periods and 50 ms) is a gap: the track
  restarts (new state, new time origin), as after a reconnect. A frame that ends at or
  before what was already processed is a redelivery and is skipped; one that overlaps
  otherwise (a device reboot that moved its clock back) restarts the track too.
* Samples are handed to the processors in chunks of at least ``min_chunk_s`` (1 s):
  frames of 0.1-0.5 s each would otherwise pay the processors' per-call cost many times
  over (measured: 4 streams of a wearer at 333x real time fed frame by frame). Findings
  come up to that much later; a stream that goes quiet has its held-back samples
  processed after twice that long without a frame (``feed`` with no frames flushes them:
  the vitals stage calls it every second while idle).
* Times: each chunk re-anchors the stream timeline on its first frame's time, so a
  device whose sample clock runs off its nominal rate does not drift away from UTC over a
  long stream (the findings of one chunk are placed by that chunk's anchor).
* RR-interval streams (Heart Rate Service straps) have no sample rate: each frame's
  intervals are fed with the time of its last beat; a frame whose first interval starts
  more than 2 s after the last beat fed is a gap (a link loss, not an asystole) and
  restarts the track. While the same device's ECG is being processed its RR intervals
  are skipped (a Polar H10 sends both: one heart series, not two). A strap notifies its
  heart rate even when no beat comes (no RR interval then): such a notification more
  than 2 s after the last beat moves the RR stream's clock on, so an asystole is raised
  while it lasts (a link loss sends nothing, and is no asystole).
* A processor that refuses its input (``ValueError``: a rate it cannot take, non-finite
  samples) or fails (a bug) loses that stream's state, which starts afresh with the next
  frame; it is counted (``rejected``, ``failed``) and never stops the other streams.
* ECG and RR frames the device flags lead-off or no-contact are not processed (their
  samples are not the heart's); the first of such an episode is a ``lead_off`` alert
  (``detail.source = "device"``), and the hole they leave restarts the stream.
* Events of severity ``info`` (posture changes) are not returned as alerts: the posture
  vital records them, and the alerts are for the care team.
* Tracks without data for ``idle_s`` are forgotten (bounded memory).
* ECG-derived respiration rates are dropped while the wearer's respiratory band is
  delivering (the band is the better source).

Not thread-safe: one caller at a time (the vitals stage runs it in a worker thread).
Must not: do I/O, log values, topics or subject ids.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import numpy as np

from devices.frame import Frame, Quality, StreamKind
from gateway.ingest.vital_rows import AlertRow, Owner, VitalRow, alert_rows, vital_rows
from gateway.router import ClinicalFrame, ResearchFrame
from processing.findings import Findings
from processing.streams import Signal, StreamState, initial_state, rr_intervals_step, step

__all__ = ["TrackKey", "Tracks"]

logger = logging.getLogger(__name__)

_SIGNALS: Final = {
    StreamKind.ECG: Signal.ECG,
    StreamKind.RESP: Signal.RESP,
    StreamKind.TEMP: Signal.TEMP,
    StreamKind.ACCEL: Signal.ACCEL,
    StreamKind.RR: Signal.RR,
}
_XYZ: Final = ("x", "y", "z")
_GAP_MIN_NS: Final = 50_000_000
_BAND_FRESH_NS: Final = 60 * 1_000_000_000
"""A band delivering within this long suppresses ECG-derived respiration."""
_ECG_FRESH_NS: Final = 10 * 1_000_000_000
"""The same device's ECG processed within this long suppresses its RR intervals."""
_CONTACT_STREAMS: Final = frozenset({StreamKind.ECG, StreamKind.RR})
_OFF: Final = Quality.LEAD_OFF | Quality.NO_CONTACT
_RR_GAP_NS: Final = 2_000_000_000
"""RR frames carry arrival times, late by up to about a second: a longer hole is a gap."""

TrackKey = tuple[Owner, str | None, StreamKind]


@dataclass(slots=True)
class _Track:
    state: StreamState
    origin_ns: int
    """UTC (or shifted) time of the stream timeline's zero."""
    next_ns: int
    """Expected start of the next frame (sampled) or last beat fed (RR)."""
    seen_ns: int
    """Clock of the last feed, for forgetting idle tracks."""
    fs_hz: float = 0.0
    min_samples: int = 1
    pending: list[np.ndarray] = field(default_factory=list)
    """Samples not yet handed to the processor (fewer than ``min_samples``)."""
    pending_n: int = 0
    pending_ns: int = 0
    """Time of the first pending sample (the next chunk's anchor)."""
    fed: int = 0
    """Samples handed to the processor so far."""
    heard_ns: int = 0
    """RR streams: the last heart-rate-only notification that moved the clock on."""


@dataclass(slots=True)
class _Work:
    """Frames of one track in a batch, in time order."""

    key: TrackKey
    frames: list[Frame | ResearchFrame]


class Tracks:
    def __init__(self, *, idle_s: float = 600.0, min_chunk_s: float = 1.0) -> None:
        self._tracks: dict[TrackKey, _Track] = {}
        self._min_chunk_s = min_chunk_s
        self._band_ns: dict[Owner, int] = {}
        self._ecg_ns: dict[tuple[Owner, str | None], int] = {}
        self._off: set[TrackKey] = set()
        """Streams whose device reports its leads off (or no skin contact) right now."""
        self._idle_ns = int(idle_s * 1e9)
        self.skipped = 0
        """Frames not processed: redelivered, or of a shape no processor takes."""
        self.restarts = 0
        """Tracks restarted after a gap or a clock step back."""
        self.rejected = 0
        """Chunks a processor refused (non-finite samples, a rate it cannot take): the
        track starts afresh with the next frame."""
        self.failed = 0
        """Processor failures (bugs): the track starts afresh with the next frame."""

    def __len__(self) -> int:
        return len(self._tracks)

    def feed(
        self, frames: Iterable[ClinicalFrame | ResearchFrame], *, now_ns: int
    ) -> tuple[list[VitalRow], list[AlertRow]]:
        """Process ``frames`` (any order, any tracks); return the new vitals and alerts."""
        vitals: list[VitalRow] = []
        alerts: list[AlertRow] = []
        works = _group(frames)
        for work in works:  # before any ECG or RR of the batch is processed
            owner, device, stream = work.key
            if stream is StreamKind.RESP:
                self._band_ns[owner] = now_ns
            elif stream is StreamKind.ECG:
                self._ecg_ns[(owner, device)] = now_ns
        heart_only = [w for w in works if w.key[2] is StreamKind.HR]
        for work in works:
            key = work.key
            if key[2] is StreamKind.HR:
                continue
            alerts.extend(self._device_lead_off(work))
            found = self._guarded(key, partial(self._run, work, now_ns))
            self._rows(key[0], found, now_ns, vitals, alerts)
        for work in heart_only:  # after the batch's RR frames
            owner, device, _ = key = (work.key[0], work.key[1], StreamKind.RR)
            found = self._guarded(key, partial(self._pause, key, work.frames, now_ns))
            self._rows(owner, found, now_ns, vitals, alerts)
        for key, track in self._stale(now_ns) + self._quiet(now_ns):
            found = self._guarded(key, partial(self._flush, key, track))
            self._rows(key[0], found, now_ns, vitals, alerts)
        return vitals, alerts

    def _device_lead_off(self, work: _Work) -> list[AlertRow]:
        """Take out the ECG and RR frames the device flags lead-off or no-contact (their
        samples are not the heart's); the first of an episode is a ``lead_off`` alert.
        The hole they leave restarts the stream, so it never reads as an asystole."""
        key = work.key
        if key[2] not in _CONTACT_STREAMS:
            return []
        kept: list[Frame | ResearchFrame] = []
        out: list[AlertRow] = []
        for frame in work.frames:
            if not frame.quality & _OFF:
                self._off.discard(key)
                kept.append(frame)
                continue
            self.skipped += 1
            if key not in self._off:
                self._off.add(key)
                detail: dict[str, float | str] = {"source": "device"}
                out.append(AlertRow(key[0], frame.time_ns, "lead_off", "warning", None, detail))
        work.frames = kept
        return out

    def _pause(
        self, key: TrackKey, notifications: Sequence[Frame | ResearchFrame], now_ns: int
    ) -> list[tuple[int, Findings]]:
        """A strap keeps notifying its heart rate when no beat comes (an asystole sends no
        RR interval): a notification more than 2 s after the last beat fed moves the RR
        stream's clock on, so the pause is measured while it lasts. Notifications that
        carry RR intervals end exactly at their last beat and change nothing."""
        track = self._tracks.get(key)
        if track is None:
            return []
        out: list[tuple[int, Findings]] = []
        for frame in notifications:
            if frame.time_ns <= max(track.next_ns + _RR_GAP_NS, track.heard_ns):
                continue
            if frame.quality & _OFF:
                continue  # no skin contact: no reading at all, not a pause
            end_s = (frame.time_ns - track.origin_ns) / 1e9
            found, track.state = rr_intervals_step(track.state, np.empty(0), end_s=end_s)
            track.heard_ns, track.seen_ns = frame.time_ns, now_ns
            out.append((track.origin_ns, found))
        return out

    def _quiet(self, now_ns: int) -> list[tuple[TrackKey, _Track]]:
        """Tracks holding samples back that got no frame for twice the chunk length (or
        1 s): their samples are processed now rather than when the stream resumes."""
        quiet_ns = max(2 * self._min_chunk_s, 1.0) * 1e9
        return [
            (key, track)
            for key, track in self._tracks.items()
            if track.pending and now_ns - track.seen_ns > quiet_ns
        ]

    def _rows(
        self,
        owner: Owner,
        found: list[tuple[int, Findings]],
        now_ns: int,
        vitals: list[VitalRow],
        alerts: list[AlertRow],
    ) -> None:
        band_live = self._band_live(owner, now_ns)
        for origin_ns, findings in found:
            vitals.extend(vital_rows(owner, origin_ns, findings, band_live))
            alerts.extend(alert_rows(owner, origin_ns, findings.events))

    def _guarded(
        self, key: TrackKey, run: Callable[[], list[tuple[int, Findings]]]
    ) -> list[tuple[int, Findings]]:
        """``run()``; a processor refusing its input or failing costs that track only."""
        try:
            return run()
        except ValueError:
            self.rejected += 1
        except Exception as exc:  # a processing bug must not stop ingestion
            self.failed += 1
            logger.warning("vitals: the %s processor failed (%s)", key[2], type(exc).__name__)
        self._tracks.pop(key, None)
        return []

    def _band_live(self, owner: Owner, now_ns: int) -> bool:
        return now_ns - self._band_ns.get(owner, -_BAND_FRESH_NS - 1) <= _BAND_FRESH_NS

    def _run(self, work: _Work, now_ns: int) -> list[tuple[int, Findings]]:
        key = work.key
        stream = key[2]
        if stream is StreamKind.RR:
            return self._run_rr(key, work.frames, now_ns)
        out: list[tuple[int, Findings]] = []
        for frame in work.frames:
            samples = _signal_samples(frame)
            if samples is None or frame.fs_hz is None or frame.offsets_ns is not None:
                self.skipped += 1
                continue
            track = self._tracks.get(key)
            period_ns = 1e9 / frame.fs_hz
            end_ns = frame.time_ns + round(len(samples) * period_ns)
            if track is not None and math.isclose(track.fs_hz, frame.fs_hz, rel_tol=1e-9):
                if end_ns <= track.next_ns + period_ns / 2:
                    self.skipped += 1  # already processed (a redelivery)
                    continue
                tolerance = max(1.5 * period_ns, _GAP_MIN_NS)
                if abs(frame.time_ns - track.next_ns) <= tolerance:
                    if not track.pending:
                        track.pending_ns = frame.time_ns
                    track.pending.append(samples)
                    track.pending_n += len(samples)
                    track.next_ns, track.seen_ns = end_ns, now_ns
                    continue
                self.restarts += 1
            if track is not None:
                out.extend(self._flush(key, track))
            self._tracks.pop(key, None)
            min_samples = max(1, round(self._min_chunk_s * frame.fs_hz))
            state = initial_state(_SIGNALS[stream], fs_hz=frame.fs_hz)
            track = _Track(state, frame.time_ns, end_ns, now_ns, frame.fs_hz, min_samples)
            track.pending, track.pending_n, track.pending_ns = (
                [samples],
                len(samples),
                frame.time_ns,
            )
            self._tracks[key] = track
        track = self._tracks.get(key)
        if track is not None and track.pending_n >= track.min_samples:
            out.extend(self._flush(key, track))
        return out

    def _flush(self, key: TrackKey, track: _Track) -> list[tuple[int, Findings]]:
        """Hand the track's pending samples to its processor; the findings are placed on
        the timeline anchored at this chunk's first frame."""
        if not track.pending:
            return []
        chunk = track.pending
        samples = chunk[0] if len(chunk) == 1 else np.concatenate(chunk)
        track.pending, track.pending_n = [], 0
        track.origin_ns = track.pending_ns - round(track.fed * 1e9 / track.fs_hz)
        track.fed += len(samples)
        found, track.state = step(track.state, samples)
        return [(track.origin_ns, found)]

    def _run_rr(
        self, key: TrackKey, frames: Sequence[Frame | ResearchFrame], now_ns: int
    ) -> list[tuple[int, Findings]]:
        out: list[tuple[int, Findings]] = []
        owner, device, _ = key
        ecg_live = now_ns - self._ecg_ns.get((owner, device), -_ECG_FRESH_NS - 1) <= _ECG_FRESH_NS
        for frame in frames:
            rr_ms = _signal_samples(frame)
            if ecg_live or rr_ms is None or frame.offsets_ns is None or len(rr_ms) == 0:
                self.skipped += 1
                continue
            if not np.all(np.isfinite(rr_ms)) or not np.all(rr_ms > 0):
                self.rejected += 1
                continue
            end_ns = frame.time_ns + int(frame.offsets_ns[-1])
            start_ns = frame.time_ns - round(float(rr_ms[0]) * 1e6)
            track = self._tracks.get(key)
            if track is not None and end_ns <= track.next_ns:
                self.skipped += 1
                continue
            if track is not None and start_ns > track.next_ns + _RR_GAP_NS:
                self.restarts += 1
                track = None
            if track is None:
                track = _Track(initial_state(Signal.RR), start_ns, end_ns, now_ns)
                self._tracks[key] = track
            found, track.state = rr_intervals_step(
                track.state, rr_ms, end_s=(end_ns - track.origin_ns) / 1e9
            )
            track.next_ns, track.seen_ns = end_ns, now_ns
            out.append((track.origin_ns, found))
        return out

    def _stale(self, now_ns: int) -> list[tuple[TrackKey, _Track]]:
        """Forget the tracks idle for ``idle_s``; return them (their last samples are
        still to be processed)."""
        stale = [k for k, t in self._tracks.items() if now_ns - t.seen_ns > self._idle_ns]
        self._band_ns = {o: t for o, t in self._band_ns.items() if now_ns - t <= self._idle_ns}
        self._ecg_ns = {d: t for d, t in self._ecg_ns.items() if now_ns - t <= self._idle_ns}
        return [(key, self._tracks.pop(key)) for key in stale]


def _group(frames: Iterable[ClinicalFrame | ResearchFrame]) -> list[_Work]:
    works: dict[TrackKey, _Work] = {}
    for item in frames:
        key: TrackKey
        frame: Frame | ResearchFrame
        if isinstance(item, ClinicalFrame):
            frame = item.frame
            key = (item.subject_id, frame.device_key, frame.stream)
        else:
            frame = item
            key = (item.pseudonym, None, item.stream)
        if frame.stream not in _SIGNALS and frame.stream is not StreamKind.HR:
            continue
        works.setdefault(key, _Work(key, [])).frames.append(frame)
    for work in works.values():
        work.frames.sort(key=lambda f: f.time_ns)
    return list(works.values())


def _signal_samples(frame: Frame | ResearchFrame) -> np.ndarray | None:
    """The processor's input: the samples of a scalar stream (the first channel of a
    multi-channel one), x/y/z for the accelerometer; None when the frame does not fit."""
    samples = frame.samples
    if samples.shape[0] == 0:
        return None
    if frame.stream is StreamKind.ACCEL:
        if samples.ndim != 2 or frame.channels[:3] != _XYZ:
            return None
        return np.asarray(samples[:, :3], dtype=np.float64)
    if samples.ndim == 2:
        return np.asarray(samples[:, 0], dtype=np.float64)
    return np.asarray(samples, dtype=np.float64)
