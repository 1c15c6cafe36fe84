"""Wire lookups and value checks shared by the garment control, features and status codecs.

Byte -> enum lookups (stream, rate code, sample encoding) and the small checks every
encoder applies: a rate a stream supports, a full scale within its sensor range, stream
lists without repeats, strictly ascending lists. Encoders get ``FrameEncodeError`` with
the value kind they pass in; lookups return ``None`` for unknown bytes so each decoder
raises its own error. Pure: no I/O, no encoding or decoding of whole values here.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise
from typing import Final

from devices.errors import FrameEncodeError
from devices.garment.spec import (
    STREAM_SPECS,
    GarmentStream,
    RateCode,
    SampleEncoding,
    rate_code,
)

__all__ = [
    "ENCODINGS_BY_ID",
    "RATES_BY_ID",
    "STREAMS_BY_ID",
    "ascending",
    "full_scale_ok",
    "rate_for",
    "sorted_unique",
]

STREAMS_BY_ID: Final = {int(s): s for s in GarmentStream}
RATES_BY_ID: Final = {int(c): c for c in RateCode}
ENCODINGS_BY_ID: Final = {int(e): e for e in SampleEncoding}


def rate_for(stream: GarmentStream, fs_hz: float, kind: str) -> RateCode:
    """The rate code of ``fs_hz`` if ``stream`` supports it, else ``FrameEncodeError``."""
    code = rate_code(fs_hz)
    if code is None or code not in STREAM_SPECS[stream].rates:
        raise FrameEncodeError(kind, f"{stream.name} has no rate {fs_hz!r} Hz")
    return code


def full_scale_ok(stream: GarmentStream, full_scale: int) -> bool:
    """0 (the device default) up to the stream's largest sensor range."""
    return 0 <= full_scale <= STREAM_SPECS[stream].max_full_scale


def sorted_unique(streams: Iterable[GarmentStream], kind: str) -> tuple[GarmentStream, ...]:
    """The streams ascending by id; ``FrameEncodeError`` if one is listed twice."""
    items = tuple(GarmentStream(s) for s in streams)
    if len(set(items)) != len(items):
        raise FrameEncodeError(kind, "a stream is listed twice")
    return tuple(sorted(items))


def ascending(values: tuple[float, ...] | tuple[int, ...]) -> bool:
    """Strictly ascending (so also free of repeats)."""
    return all(a < b for a, b in pairwise(values))
