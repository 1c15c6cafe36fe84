"""Faults a simulated device can suffer on demand, and the record each one leaves.

Role: the per-device fault state the frame path consults for every frame (stall, skip,
corrupt), the ``FaultInjector`` tests and the CLI call while a device streams (drop the
link, go out of range, stall, corrupt, skip, drift the clock), the ``FaultRecord`` each
injection writes to the device's sent log, and byte-mangling helpers the device models
use to build frames their decoders must reject.

Semantics (durations are in device seconds, i.e. scaled by the simulation ``speed``):

* **stall** ``seconds``: the device keeps sampling and numbering frames but loses them
  (outcome ``stalled``), as a firmware whose radio queue is blocked would; the gap shows
  as a sequence/timestamp jump.
* **skip** ``k``: the next ``k`` frames of each selected stream are generated and dropped
  (outcome ``skipped``), so each stream's sequence jumps by exactly ``k``.
* **corrupt** ``n``: the next ``n`` frames of each selected stream are notified with
  mangled bytes (outcome ``corrupted``) that the profile's decoder must reject.
* **drift** ``ppm``: from now on the device clock runs ``ppm`` parts per million fast
  (negative: slow) against the event loop's clock; timestamps stay continuous.
* **drop_link** / **out of range**: the radio loses every link of the device; out of
  range, its advertisements and connection attempts reach no one for the duration.

It must not: know a GATT profile (models supply their own corruption), sleep other than
for an out-of-range timer (run in the device's task group), or touch other devices.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "FaultHost",
    "FaultInjector",
    "FaultKind",
    "FaultRecord",
    "FaultState",
    "FrameAction",
    "replace_byte",
    "truncate",
]


class FaultKind(enum.StrEnum):
    LINK_DROP = "link_drop"
    OUT_OF_RANGE = "out_of_range"
    BACK_IN_RANGE = "back_in_range"
    STALL = "stall"
    SKIP = "skip"
    CORRUPT = "corrupt"
    DRIFT = "drift"


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One injected fault (or its end, for ``back_in_range``), as the sent log keeps it.

    ``device_time_ns`` is the device clock (ns since boot) when it took effect;
    ``count`` is frames per stream (skip, corrupt) or links lost (link drop, out of
    range); ``duration_s`` device seconds (stall, out of range); ``ppm`` the new drift.
    """

    device: str
    kind: FaultKind
    device_time_ns: int
    streams: tuple[str, ...] = ()
    count: int = 0
    duration_s: float = 0.0
    ppm: float = 0.0


class FrameAction(enum.Enum):
    """What the frame path does with the next frame of a stream."""

    SEND = "send"
    STALL = "stall"
    SKIP = "skip"
    CORRUPT = "corrupt"


class FaultState:
    """Pending faults per stream, consulted once per generated frame.

    A stall wins over everything (it consumes no skip or corrupt budget); then skips,
    then corruptions. Streams outside ``streams`` (e.g. a battery level) are never
    faulted.
    """

    def __init__(self, streams: Iterable[str]) -> None:
        self.streams = tuple(streams)
        self._stall_until_ns: dict[str, int] = {}
        self._skip: dict[str, int] = {}
        self._corrupt: dict[str, int] = {}
        self._corrupted: dict[str, int] = {}

    def select(self, streams: Iterable[str] | None) -> tuple[str, ...]:
        """The streams a fault applies to: ``None`` means every stream."""
        if streams is None:
            return self.streams
        chosen = tuple(dict.fromkeys(streams))
        unknown = [s for s in chosen if s not in self.streams]
        if unknown or not chosen:
            raise ValueError(f"streams must be a non-empty subset of {self.streams}: {unknown}")
        return chosen

    def stall(self, streams: tuple[str, ...], until_ns: int) -> None:
        for stream in streams:
            self._stall_until_ns[stream] = max(until_ns, self._stall_until_ns.get(stream, 0))

    def skip(self, streams: tuple[str, ...], frames: int) -> None:
        for stream in streams:
            self._skip[stream] = self._skip.get(stream, 0) + frames

    def corrupt(self, streams: tuple[str, ...], frames: int) -> None:
        for stream in streams:
            self._corrupt[stream] = self._corrupt.get(stream, 0) + frames

    def corrupted_so_far(self, stream: str) -> int:
        """How many frames of ``stream`` were corrupted (models cycle corruption kinds)."""
        return self._corrupted.get(stream, 0)

    def action(self, stream: str, now_ns: int) -> FrameAction:
        """Decide the fate of the next frame of ``stream`` and consume its budget."""
        if now_ns < self._stall_until_ns.get(stream, 0):
            return FrameAction.STALL
        if self._skip.get(stream, 0) > 0:
            self._skip[stream] -= 1
            return FrameAction.SKIP
        if self._corrupt.get(stream, 0) > 0:
            self._corrupt[stream] -= 1
            self._corrupted[stream] = self._corrupted.get(stream, 0) + 1
            return FrameAction.CORRUPT
        return FrameAction.SEND


class FaultHost(Protocol):
    """What the injector needs from a simulated device (``SimPeripheral`` provides it)."""

    @property
    def name(self) -> str: ...

    @property
    def fault_state(self) -> FaultState: ...

    def device_now_ns(self) -> int: ...

    def set_drift_ppm(self, ppm: float) -> None: ...

    async def lose_link(self, out_of_range_s: float | None) -> int: ...

    def record_fault(self, record: FaultRecord) -> None: ...


class FaultInjector:
    """Inject faults into one running device; every call is recorded in its sent log."""

    def __init__(self, host: FaultHost) -> None:
        self._host = host

    def _record(
        self,
        kind: FaultKind,
        *,
        streams: tuple[str, ...] = (),
        count: int = 0,
        duration_s: float = 0.0,
        ppm: float = 0.0,
    ) -> FaultRecord:
        now = self._host.device_now_ns()
        record = FaultRecord(self._host.name, kind, now, streams, count, duration_s, ppm)
        self._host.record_fault(record)
        return record

    async def drop_link(self, *, out_of_range_s: float | None = None) -> FaultRecord:
        """Lose every link now (HCI 0x08 at both ends). With ``out_of_range_s`` the
        device also stays out of range that long (device seconds): reconnects fail
        until a ``back_in_range`` record is logged."""
        if out_of_range_s is not None and not (
            math.isfinite(out_of_range_s) and out_of_range_s > 0
        ):
            raise ValueError("out_of_range_s must be a positive number of seconds")
        links = await self._host.lose_link(out_of_range_s)
        if out_of_range_s is None:
            return self._record(FaultKind.LINK_DROP, count=links)
        return self._record(FaultKind.OUT_OF_RANGE, count=links, duration_s=out_of_range_s)

    def stall(self, seconds: float, *, streams: Iterable[str] | None = None) -> FaultRecord:
        """Lose every frame of the selected streams for ``seconds`` device seconds."""
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError("seconds must be positive")
        state = self._host.fault_state
        chosen = state.select(streams)
        state.stall(chosen, self._host.device_now_ns() + round(seconds * 1e9))
        return self._record(FaultKind.STALL, streams=chosen, duration_s=float(seconds))

    def skip(self, frames: int, *, streams: Iterable[str] | None = None) -> FaultRecord:
        """Drop the next ``frames`` frames of each selected stream (sequence jumps)."""
        return self._budget(FaultKind.SKIP, frames, streams)

    def corrupt(self, frames: int, *, streams: Iterable[str] | None = None) -> FaultRecord:
        """Mangle the next ``frames`` notified frames of each selected stream."""
        return self._budget(FaultKind.CORRUPT, frames, streams)

    def drift(self, ppm: float) -> FaultRecord:
        """Run the device clock ``ppm`` parts per million fast (negative: slow) from now."""
        if not (math.isfinite(ppm) and -1e6 < ppm < 1e6):
            raise ValueError("ppm must be finite and within +-1e6")
        self._host.set_drift_ppm(float(ppm))
        return self._record(FaultKind.DRIFT, ppm=float(ppm))

    def _budget(self, kind: FaultKind, frames: int, streams: Iterable[str] | None) -> FaultRecord:
        if frames < 1:
            raise ValueError("frames must be at least 1")
        state = self._host.fault_state
        chosen = state.select(streams)
        if kind is FaultKind.SKIP:
            state.skip(chosen, frames)
        else:
            state.corrupt(chosen, frames)
        return self._record(kind, streams=chosen, count=frames)


def truncate(data: bytes, drop: int = 1) -> bytes:
    """``data`` without its last ``drop`` bytes (at least one byte is dropped)."""
    return data[: max(0, len(data) - max(1, drop))]


def replace_byte(data: bytes, index: int, value: int) -> bytes:
    """``data`` with the byte at ``index`` set to ``value``."""
    mangled = bytearray(data)
    mangled[index] = value & 0xFF
    return bytes(mangled)
