"""PMD data frames: bytes -> ``PmdFrame`` (the decoder the gateway runs).

The byte layouts, supported frame types and factor rules are in ``layouts``; the
simulator's encoder is in ``encode`` (``encode_pmd_frame`` is re-exported here, as are
``PpiFields``, ``HEADER_BYTES``, ``COMPRESSED_BIT`` and ``BoolArray``). A frame type
without a layout raises ``FrameDecodeError("pmd.data", "unsupported_frame_type")`` -
notably ECG types 1-3 and MAG type 1, which carry per-sample status bits not modelled.

Values stay float64 after the factor: the SDK's float32 arithmetic and its truncation to
``Int`` for ACC/PPG are not copied (``trunc`` of ours gives the SDK's ints).

Sample times follow ``PmdTimeStampUtils`` (see ``sample_timestamps_ns``; exact integer
arithmetic instead of the SDK's doubles): with a previous frame timestamp the interval
is spread evenly over the samples (first = previous + delta); without one, the samples
go back from this frame's timestamp at ``1e9 / sample_rate_hz``. The last sample is
always the frame timestamp.
Float samples that are NaN or infinite are refused (``"not_finite"``), as is a factor
that is. PPI samples are timed back from the frame timestamp by their own intervals (all zero
when the timestamp is zero: such devices send no time). Timestamps >= 2**63 ns (year
2292) are rejected because sample times are int64.

Pure: numpy only, no I/O, no logging of payloads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from devices.errors import FrameDecodeError
from devices.frame import FloatArray, Int64Array
from devices.polar.encode import encode_pmd_frame
from devices.polar.layouts import (
    COMPRESSED_BIT,
    DATA_KIND,
    HEADER_BYTES,
    U32_MASK,
    UNITS,
    BoolArray,
    FactorRule,
    Layout,
    PpiFields,
    layout_for,
)
from devices.polar.pmd import MeasurementName, PmdMeasurementType

__all__ = [
    "COMPRESSED_BIT",
    "HEADER_BYTES",
    "BoolArray",
    "PmdFrame",
    "PmdHeader",
    "PpiFields",
    "encode_pmd_frame",
    "parse_pmd_frame",
    "read_pmd_header",
    "sample_timestamps_ns",
]

_MAX_TIMESTAMP_NS: Final = (1 << 63) - 1
_NS_PER_S: Final = 1_000_000_000
_F32_EXPONENT: Final = np.uint32(0x7F800000)
_M = PmdMeasurementType


@dataclass(frozen=True, slots=True)
class PmdFrame:
    """One decoded PMD data notification.

    ``samples``: float64, shape ``(n,)`` for one-channel measurements (ECG uV,
    temperature degC, pressure bar, PPI interval ms) and ``(n, channels)`` otherwise
    (ACC mG, gyro deg/s, magnetometer gauss: x, y, z; PPG: ppg0, ppg1, ppg2, ambient).
    ``sample_timestamps_ns``: int64 device time of each sample (ns since 2000-01-01).
    ``ppi`` is set for PPI frames only. Arrays are read-only.
    """

    measurement: MeasurementName
    frame_type: int
    compressed: bool
    timestamp_ns: int
    samples: FloatArray
    sample_timestamps_ns: Int64Array
    ppi: PpiFields | None = None

    @property
    def unit(self) -> str:
        return UNITS[PmdMeasurementType.coerce(self.measurement)]


@dataclass(frozen=True, slots=True)
class PmdHeader:
    """The first ten bytes of a data frame."""

    measurement: PmdMeasurementType
    timestamp_ns: int
    frame_type: int
    compressed: bool


def read_pmd_header(data: bytes) -> PmdHeader:
    """Decode the 10-byte header; ``FrameDecodeError`` if short or of unknown type."""
    if len(data) < HEADER_BYTES:
        raise FrameDecodeError(DATA_KIND, "short", f"{len(data)} bytes, need {HEADER_BYTES}")
    measurement = PmdMeasurementType.from_id(data[0])
    if measurement is None:
        raise FrameDecodeError(DATA_KIND, "unknown_measurement", f"type {data[0] & 0x3F}")
    timestamp = int.from_bytes(data[1:9], "little")
    return PmdHeader(measurement, timestamp, data[9] & 0x7F, bool(data[9] & COMPRESSED_BIT))


def _readonly(array: npt.NDArray[np.generic]) -> None:
    array.flags.writeable = False


def _round_half_even(base: Int64Array | int, numerator: Int64Array, denominator: int) -> Int64Array:
    """``base + numerator / denominator`` rounded half to even, as Kotlin's ``round``."""
    quotient, remainder = np.divmod(numerator, denominator)  # floor; remainder >= 0
    whole = base + quotient
    twice = 2 * remainder
    up = (twice > denominator) | ((twice == denominator) & (whole % 2 == 1))
    rounded: Int64Array = whole + up
    return rounded


def sample_timestamps_ns(
    previous_ns: int, timestamp_ns: int, n: int, sample_rate_hz: int
) -> Int64Array:
    """Sample times by the SDK's ``PmdTimeStampUtils.getTimeStamps`` rule, in exact integers.

    With ``previous_ns``: sample i at ``previous + (i + 1) * (timestamp - previous) / n``;
    without: sample i at ``timestamp - (n - 1 - i) * 1e9 / sample_rate_hz``; each rounded
    half to even, the last sample exactly ``timestamp_ns``. The SDK evaluates this in
    doubles, which at today's ~7e17 ns quantise to 128 ns and can even step backwards;
    both agree wherever the doubles are exact (all of the SDK's own test vectors). The
    SDK's guards are kept: no samples, no rate for a first frame, a timestamp not after
    the previous one, or samples before the epoch raise ``FrameDecodeError``.
    """
    if n <= 0:
        raise FrameDecodeError(DATA_KIND, "empty", "no samples")
    if timestamp_ns > _MAX_TIMESTAMP_NS:
        raise FrameDecodeError(DATA_KIND, "timestamp_overflow", "timestamp >= 2**63 ns")
    if previous_ns == 0:
        if sample_rate_hz <= 0:
            raise FrameDecodeError(DATA_KIND, "no_sample_rate", "first frame needs a sample rate")
        if sample_rate_hz > _NS_PER_S:
            raise FrameDecodeError(DATA_KIND, "bad_sample_rate", "above 1 GHz")
        if timestamp_ns * sample_rate_hz < n * _NS_PER_S:
            raise FrameDecodeError(DATA_KIND, "negative_timestamp", "samples before the epoch")
        back = np.arange(1 - n, 1, dtype=np.int64) * _NS_PER_S
        return _round_half_even(timestamp_ns, back, sample_rate_hz)
    if timestamp_ns <= previous_ns:
        raise FrameDecodeError(DATA_KIND, "non_monotonic_timestamp", "timestamp <= previous")
    step, rest = divmod(timestamp_ns - previous_ns, n)
    k = np.arange(1, n + 1, dtype=np.int64)
    return _round_half_even(previous_ns + k * step, k * rest, n)


def _raw_values(data: bytes, layout: Layout) -> npt.NDArray[np.float64]:
    size = layout.bits // 8
    body = len(data) - HEADER_BYTES
    if body == 0:
        raise FrameDecodeError(DATA_KIND, "empty", "no samples")
    if body % (size * layout.channels):
        raise FrameDecodeError(DATA_KIND, "truncated", f"{body} sample bytes")
    if layout.is_float:
        values: npt.NDArray[np.generic] = _finite_float32(
            np.frombuffer(data, "<u4", offset=HEADER_BYTES)
        )
    elif size == 3:
        raw = np.frombuffer(data, np.uint8, offset=HEADER_BYTES).reshape(-1, 3)
        wide = np.zeros((raw.shape[0], 4), dtype=np.uint8)
        wide[:, 1:] = raw
        values = wide.view("<i4").reshape(-1) >> 8  # arithmetic shift sign-extends
    else:
        values = np.frombuffer(data, "<i2" if size == 2 else np.int8, offset=HEADER_BYTES)
    return values.astype(np.float64)


def _finite_float32(bits: npt.NDArray[np.uint32]) -> npt.NDArray[np.float32]:
    """Reinterpret IEEE-754 bit patterns, refusing NaN and infinities (exponent all ones)."""
    if np.any((bits & _F32_EXPONENT) == _F32_EXPONENT):
        raise FrameDecodeError(DATA_KIND, "not_finite", "NaN or infinite float sample")
    return bits.view("<f4")


def _delta_values(data: bytes, layout: Layout) -> npt.NDArray[np.float64]:
    channels, ref_size = layout.channels, math.ceil(layout.bits / 8)
    offset = HEADER_BYTES + channels * ref_size
    if len(data) == HEADER_BYTES:
        raise FrameDecodeError(DATA_KIND, "empty", "no samples")
    if len(data) < offset:
        raise FrameDecodeError(DATA_KIND, "truncated", "reference sample")
    signed = not layout.is_float
    ref = [
        int.from_bytes(
            data[HEADER_BYTES + c * ref_size : HEADER_BYTES + (c + 1) * ref_size],
            "little",
            signed=signed,
        )
        for c in range(channels)
    ]
    parts = [np.array([ref], dtype=np.int64)]
    while offset < len(data):
        if offset + 2 > len(data):
            raise FrameDecodeError(DATA_KIND, "truncated", "delta block header")
        width, count = data[offset], data[offset + 1]
        offset += 2
        if count == 0:
            continue
        if not 1 <= width <= 32:
            raise FrameDecodeError(DATA_KIND, "bad_delta_width", f"width {width}")
        n_bits = width * count * channels
        n_bytes = (n_bits + 7) // 8
        if offset + n_bytes > len(data):
            raise FrameDecodeError(DATA_KIND, "delta_overrun", f"block of {n_bytes} bytes")
        block = np.frombuffer(data, np.uint8, count=n_bytes, offset=offset)
        bits = np.unpackbits(block, bitorder="little")[:n_bits].reshape(-1, width)
        unsigned = bits.astype(np.int64) @ (np.int64(1) << np.arange(width, dtype=np.int64))
        parts.append((unsigned - ((unsigned >> (width - 1)) << width)).reshape(count, channels))
        offset += n_bytes
    summed = np.cumsum(np.concatenate(parts), axis=0) & U32_MASK
    if layout.is_float:
        return _finite_float32(summed.astype(np.uint32)).astype(np.float64)
    return (((summed + (1 << 31)) & U32_MASK) - (1 << 31)).astype(np.float64)


def _apply_factor(values: npt.NDArray[np.float64], rule: FactorRule, factor: float) -> None:
    if rule == "milli":
        values *= factor * 1000.0
    elif rule == "always" or (rule == "unless_one" and factor != 1.0):
        values *= factor


def _ppi_frame(data: bytes, header: PmdHeader) -> PmdFrame:
    body = len(data) - HEADER_BYTES
    if body % 6:
        raise FrameDecodeError(DATA_KIND, "truncated", f"{body} PPI bytes")
    rows = np.frombuffer(data, np.uint8, offset=HEADER_BYTES).reshape(-1, 6).astype(np.int64)
    ppi_ms = rows[:, 1] | (rows[:, 2] << 8)
    flags = rows[:, 5]
    if header.timestamp_ns > _MAX_TIMESTAMP_NS:
        raise FrameDecodeError(DATA_KIND, "timestamp_overflow", "timestamp >= 2**63 ns")
    times = np.zeros(len(rows), dtype=np.int64)
    if header.timestamp_ns and len(rows):
        later = np.concatenate((np.cumsum(ppi_ms[:0:-1])[::-1], [0])) * 1_000_000
        times = header.timestamp_ns - later
        if times.size and times[0] < 0:
            raise FrameDecodeError(DATA_KIND, "negative_timestamp", "PPI before the epoch")
    fields = PpiFields(
        hr_bpm=rows[:, 0].copy(),
        error_estimate_ms=rows[:, 3] | (rows[:, 4] << 8),
        blocker=(flags & 1).astype(bool),
        skin_contact=(flags & 2).astype(bool),
        skin_contact_supported=(flags & 4).astype(bool),
    )
    samples = ppi_ms.astype(np.float64)
    for array in (samples, times, *(getattr(fields, f) for f in fields.__slots__)):
        _readonly(array)
    return PmdFrame("ppi", header.frame_type, False, header.timestamp_ns, samples, times, fields)


def parse_pmd_frame(
    data: bytes, *, sample_rate_hz: int, factor: float = 1.0, previous_timestamp_ns: int = 0
) -> PmdFrame:
    """Decode one PMD data notification (see the module docstring for every rule).

    ``sample_rate_hz`` is the negotiated rate (needed when ``previous_timestamp_ns`` is
    0); ``factor`` is the FACTOR the start response returned (1.0 when none);
    ``previous_timestamp_ns`` is the previous frame's timestamp of the same measurement
    and frame type, or 0. Malformed or unsupported input raises ``FrameDecodeError``.
    """
    if previous_timestamp_ns < 0:
        raise ValueError("previous_timestamp_ns must be >= 0")
    if not math.isfinite(factor):
        raise FrameDecodeError(DATA_KIND, "bad_factor", "factor is NaN or infinite")
    header = read_pmd_header(data)
    if header.measurement is _M.PPI and header.frame_type == 0 and not header.compressed:
        return _ppi_frame(data, header)
    layout = layout_for(header.measurement, header.frame_type, header.compressed)
    if layout is None:
        what = f"{header.measurement.label} {'compressed' if header.compressed else 'raw'}"
        raise FrameDecodeError(DATA_KIND, "unsupported_frame_type", f"{what} {header.frame_type}")
    values = _delta_values(data, layout) if header.compressed else _raw_values(data, layout)
    _apply_factor(values, layout.factor, factor)
    samples = values.reshape(-1) if layout.channels == 1 else values.reshape(-1, layout.channels)
    times = sample_timestamps_ns(
        previous_timestamp_ns, header.timestamp_ns, samples.shape[0], sample_rate_hz
    )
    _readonly(samples)
    _readonly(times)
    return PmdFrame(
        header.measurement.label,
        header.frame_type,
        header.compressed,
        header.timestamp_ns,
        samples,
        times,
    )
