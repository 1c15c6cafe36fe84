"""PMD data frames: bytes -> ``PmdFrame`` and back (the encoder feeds the simulator).

Layout (Polar BLE SDK ``PmdDataFrame``)::

    0     measurement type (bits 0-5; bits 6-7 are masked off as the SDK does)
    1..8  timestamp: uint64 LE, ns since 2000-01-01 on the device clock, of the LAST sample
    9     frame type: bits 0-6 type, bit 7 set = delta-compressed
    10..  samples

Raw frames are little-endian signed ints (8/16/24 bit) or IEEE-754 float32, channel by
channel per sample. Compressed frames (``BlePMDClient.parseDeltaFramesAll``) hold one
reference sample (``ceil(bits/8)`` bytes per channel), then blocks of
``width:u8 count:u8`` and ``ceil(width*count*channels/8)`` bytes of deltas, each delta
``width`` bits two's complement, packed LSB first; sample k = sample k-1 + delta, in
32-bit wrap-around arithmetic (float frames add deltas to the float32 bit patterns).

Supported (measurement, frame type): ECG raw 0 (uV); PPG raw 0 and compressed 0 (four
channels: ppg0-2, ambient); ACC raw 0/1/2 and compressed 0/1 (mG); PPI raw 0; GYRO
compressed 0/1 (deg/s); MAG compressed 0 (gauss); TEMPERATURE, SKIN_TEMP, PRESSURE raw 0
and compressed 0 (degC, bar). Anything else raises ``FrameDecodeError("pmd.data",
"unsupported_frame_type")`` - notably ECG types 1-3 and MAG type 1, which carry per-sample
status bits this module does not model.

Factor, as the SDK applies it: raw frames never; ACC compressed 0 always ``x factor x
1000`` (G to mG); PPG compressed 0 always ``x factor``; every other compressed frame ``x
factor`` when ``factor != 1``. Values stay float64: the SDK's float32 arithmetic and its
truncation to ``Int`` for ACC/PPG are not copied (``trunc`` of ours gives the SDK's ints).

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
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.frame import FloatArray, Int64Array
from devices.polar.pmd import MeasurementName, PmdMeasurementType

_KIND: Final = "pmd.data"
HEADER_BYTES: Final = 10
COMPRESSED_BIT: Final = 0x80
_MAX_TIMESTAMP_NS: Final = (1 << 63) - 1
_NS_PER_S: Final = 1_000_000_000
_U32: Final = 0xFFFFFFFF
_F32_MAX: Final = float(np.finfo(np.float32).max)
_F32_EXPONENT: Final = np.uint32(0x7F800000)

BoolArray = npt.NDArray[np.bool_]
_M = PmdMeasurementType
_Factor = Literal["none", "always", "milli", "unless_one"]


@dataclass(frozen=True, slots=True)
class _Layout:
    channels: int
    bits: int
    is_float: bool = False
    factor: _Factor = "none"


_RAW: Final[dict[tuple[PmdMeasurementType, int], _Layout]] = {
    (_M.ECG, 0): _Layout(1, 24),
    (_M.PPG, 0): _Layout(4, 24),
    (_M.ACC, 0): _Layout(3, 8),
    (_M.ACC, 1): _Layout(3, 16),
    (_M.ACC, 2): _Layout(3, 24),
    (_M.TEMPERATURE, 0): _Layout(1, 32, is_float=True),
    (_M.SKIN_TEMP, 0): _Layout(1, 32, is_float=True),
    (_M.PRESSURE, 0): _Layout(1, 32, is_float=True),
}
_COMPRESSED: Final[dict[tuple[PmdMeasurementType, int], _Layout]] = {
    (_M.PPG, 0): _Layout(4, 24, factor="always"),
    (_M.ACC, 0): _Layout(3, 16, factor="milli"),
    (_M.ACC, 1): _Layout(3, 16, factor="unless_one"),
    (_M.GYRO, 0): _Layout(3, 16, factor="unless_one"),
    (_M.GYRO, 1): _Layout(3, 32, is_float=True, factor="unless_one"),
    (_M.MAG, 0): _Layout(3, 16, factor="unless_one"),
    (_M.TEMPERATURE, 0): _Layout(1, 32, is_float=True, factor="unless_one"),
    (_M.SKIN_TEMP, 0): _Layout(1, 32, is_float=True, factor="unless_one"),
    (_M.PRESSURE, 0): _Layout(1, 32, is_float=True, factor="unless_one"),
}
_UNITS: Final[dict[PmdMeasurementType, str]] = {
    _M.ECG: "uV",
    _M.PPG: "counts",
    _M.ACC: "mG",
    _M.PPI: "ms",
    _M.GYRO: "dps",
    _M.MAG: "G",
    _M.TEMPERATURE: "degC",
    _M.SKIN_TEMP: "degC",
    _M.PRESSURE: "bar",
}


@dataclass(frozen=True, slots=True)
class PpiFields:
    """Per-interval fields of a PPI frame besides the interval (``PmdFrame.samples``)."""

    hr_bpm: Int64Array
    error_estimate_ms: Int64Array
    blocker: BoolArray
    """Flag bit 0: the interval is unreliable (movement, poor contact)."""
    skin_contact: BoolArray
    """Flag bit 1."""
    skin_contact_supported: BoolArray
    """Flag bit 2 (bits 3-7 are undefined and ignored, as by the SDK)."""


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
        return _UNITS[PmdMeasurementType.coerce(self.measurement)]


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
        raise FrameDecodeError(_KIND, "short", f"{len(data)} bytes, need {HEADER_BYTES}")
    measurement = PmdMeasurementType.from_id(data[0])
    if measurement is None:
        raise FrameDecodeError(_KIND, "unknown_measurement", f"type {data[0] & 0x3F}")
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
        raise FrameDecodeError(_KIND, "empty", "no samples")
    if timestamp_ns > _MAX_TIMESTAMP_NS:
        raise FrameDecodeError(_KIND, "timestamp_overflow", "timestamp >= 2**63 ns")
    if previous_ns == 0:
        if sample_rate_hz <= 0:
            raise FrameDecodeError(_KIND, "no_sample_rate", "first frame needs a sample rate")
        if sample_rate_hz > _NS_PER_S:
            raise FrameDecodeError(_KIND, "bad_sample_rate", "above 1 GHz")
        if timestamp_ns * sample_rate_hz < n * _NS_PER_S:
            raise FrameDecodeError(_KIND, "negative_timestamp", "samples before the epoch")
        back = np.arange(1 - n, 1, dtype=np.int64) * _NS_PER_S
        return _round_half_even(timestamp_ns, back, sample_rate_hz)
    if timestamp_ns <= previous_ns:
        raise FrameDecodeError(_KIND, "non_monotonic_timestamp", "timestamp <= previous")
    step, rest = divmod(timestamp_ns - previous_ns, n)
    k = np.arange(1, n + 1, dtype=np.int64)
    return _round_half_even(previous_ns + k * step, k * rest, n)


def _raw_values(data: bytes, layout: _Layout) -> npt.NDArray[np.float64]:
    size = layout.bits // 8
    body = len(data) - HEADER_BYTES
    if body == 0:
        raise FrameDecodeError(_KIND, "empty", "no samples")
    if body % (size * layout.channels):
        raise FrameDecodeError(_KIND, "truncated", f"{body} sample bytes")
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
        raise FrameDecodeError(_KIND, "not_finite", "NaN or infinite float sample")
    return bits.view("<f4")


def _delta_values(data: bytes, layout: _Layout) -> npt.NDArray[np.float64]:
    channels, ref_size = layout.channels, math.ceil(layout.bits / 8)
    offset = HEADER_BYTES + channels * ref_size
    if len(data) == HEADER_BYTES:
        raise FrameDecodeError(_KIND, "empty", "no samples")
    if len(data) < offset:
        raise FrameDecodeError(_KIND, "truncated", "reference sample")
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
            raise FrameDecodeError(_KIND, "truncated", "delta block header")
        width, count = data[offset], data[offset + 1]
        offset += 2
        if count == 0:
            continue
        if not 1 <= width <= 32:
            raise FrameDecodeError(_KIND, "bad_delta_width", f"width {width}")
        n_bits = width * count * channels
        n_bytes = (n_bits + 7) // 8
        if offset + n_bytes > len(data):
            raise FrameDecodeError(_KIND, "delta_overrun", f"block of {n_bytes} bytes")
        block = np.frombuffer(data, np.uint8, count=n_bytes, offset=offset)
        bits = np.unpackbits(block, bitorder="little")[:n_bits].reshape(-1, width)
        unsigned = bits.astype(np.int64) @ (np.int64(1) << np.arange(width, dtype=np.int64))
        parts.append((unsigned - ((unsigned >> (width - 1)) << width)).reshape(count, channels))
        offset += n_bytes
    summed = np.cumsum(np.concatenate(parts), axis=0) & _U32
    if layout.is_float:
        return _finite_float32(summed.astype(np.uint32)).astype(np.float64)
    return (((summed + (1 << 31)) & _U32) - (1 << 31)).astype(np.float64)


def _apply_factor(values: npt.NDArray[np.float64], rule: _Factor, factor: float) -> None:
    if rule == "milli":
        values *= factor * 1000.0
    elif rule == "always" or (rule == "unless_one" and factor != 1.0):
        values *= factor


def _ppi_frame(data: bytes, header: PmdHeader) -> PmdFrame:
    body = len(data) - HEADER_BYTES
    if body % 6:
        raise FrameDecodeError(_KIND, "truncated", f"{body} PPI bytes")
    rows = np.frombuffer(data, np.uint8, offset=HEADER_BYTES).reshape(-1, 6).astype(np.int64)
    ppi_ms = rows[:, 1] | (rows[:, 2] << 8)
    flags = rows[:, 5]
    if header.timestamp_ns > _MAX_TIMESTAMP_NS:
        raise FrameDecodeError(_KIND, "timestamp_overflow", "timestamp >= 2**63 ns")
    times = np.zeros(len(rows), dtype=np.int64)
    if header.timestamp_ns and len(rows):
        later = np.concatenate((np.cumsum(ppi_ms[:0:-1])[::-1], [0])) * 1_000_000
        times = header.timestamp_ns - later
        if times.size and times[0] < 0:
            raise FrameDecodeError(_KIND, "negative_timestamp", "PPI before the epoch")
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
        raise FrameDecodeError(_KIND, "bad_factor", "factor is NaN or infinite")
    header = read_pmd_header(data)
    if header.measurement is _M.PPI and header.frame_type == 0 and not header.compressed:
        return _ppi_frame(data, header)
    key = (header.measurement, header.frame_type)
    layout = (_COMPRESSED if header.compressed else _RAW).get(key)
    if layout is None:
        what = f"{header.measurement.label} {'compressed' if header.compressed else 'raw'}"
        raise FrameDecodeError(_KIND, "unsupported_frame_type", f"{what} {header.frame_type}")
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


# ---------------------------------------------------------------- encoding (simulator)


def _signed_width(value: int) -> int:
    return (value if value >= 0 else ~value).bit_length() + 1


def _wire_ints(samples: npt.NDArray[np.float64], layout: _Layout) -> npt.NDArray[np.int64]:
    """Samples as the integers the wire carries (float32 bit patterns for float layouts)."""
    if not np.all(np.isfinite(samples)):
        raise FrameEncodeError(_KIND, "not_finite")
    if layout.is_float:
        if samples.size and float(np.abs(samples).max()) > _F32_MAX:
            raise FrameEncodeError(_KIND, "float32_overflow")
        return samples.astype(np.float32).view(np.uint32).astype(np.int64)
    if not np.array_equal(samples, np.round(samples)):
        raise FrameEncodeError(_KIND, "not_integral")
    limit = 1 << (layout.bits - 1)
    if samples.size and (samples.min() < -limit or samples.max() >= limit):
        raise FrameEncodeError(_KIND, f"out_of_{layout.bits}_bit_range")
    return samples.astype(np.int64)


def _pack_block(deltas: npt.NDArray[np.int64]) -> bytes:
    width = max(_signed_width(int(deltas.max())), _signed_width(int(deltas.min())))
    masked = (deltas.reshape(-1) & ((1 << width) - 1)).astype(np.uint64)
    bits = ((masked[:, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    packed = np.packbits(bits.reshape(-1), bitorder="little").tobytes()
    return bytes((width, deltas.shape[0])) + packed


def _encode_delta(wire: npt.NDArray[np.int64], layout: _Layout, block_samples: int) -> bytes:
    size = math.ceil(layout.bits / 8)
    signed = not layout.is_float
    out = bytearray()
    for value in wire[0]:
        out += int(value).to_bytes(size, "little", signed=signed)
    deltas = np.diff(wire, axis=0)
    if layout.is_float:  # float32 bit patterns: deltas modulo 2**32, as signed 32-bit
        deltas = ((deltas + (1 << 31)) & _U32) - (1 << 31)
    for start in range(0, deltas.shape[0], block_samples):
        out += _pack_block(deltas[start : start + block_samples])
    return bytes(out)


def _encode_raw(wire: npt.NDArray[np.int64], layout: _Layout) -> bytes:
    size = layout.bits // 8
    as_u32 = (wire.reshape(-1) & _U32).astype("<u4")
    return as_u32.view(np.uint8).reshape(-1, 4)[:, :size].tobytes()


def _encode_ppi(samples: npt.NDArray[np.float64], ppi: PpiFields | None) -> bytes:
    if ppi is None:
        raise FrameEncodeError(_KIND, "ppi_fields_required")
    flags = (ppi.blocker, ppi.skin_contact, ppi.skin_contact_supported)
    if any(len(f) != len(samples) for f in (ppi.hr_bpm, ppi.error_estimate_ms, *flags)):
        raise FrameEncodeError(_KIND, "ppi_length_mismatch")
    out = np.zeros((len(samples), 6), dtype=np.uint8)
    for start, size, field in ((0, 1, ppi.hr_bpm), (1, 2, samples), (3, 2, ppi.error_estimate_ms)):
        values = np.asarray(field, dtype=np.float64)
        if not np.array_equal(values, np.round(values)) or (
            values.size and (values.min() < 0 or values.max() >= 1 << (8 * size))
        ):
            raise FrameEncodeError(_KIND, "ppi_field_out_of_range")
        little = values.astype("<u2").view(np.uint8).reshape(-1, 2)
        out[:, start : start + size] = little[:, :size]
    for bit, flag in enumerate(flags):
        out[:, 5] |= np.asarray(flag, dtype=np.uint8) << bit
    return out.tobytes()


def _encode_header(
    measurement: PmdMeasurementType, frame_type: int, compressed: bool, timestamp_ns: int
) -> bytes:
    if not 0 <= frame_type <= 0x7F:
        raise FrameEncodeError(_KIND, "bad_frame_type")
    if not 0 <= timestamp_ns <= 0xFFFFFFFFFFFFFFFF:
        raise FrameEncodeError(_KIND, "timestamp_out_of_range")
    type_byte = frame_type | (COMPRESSED_BIT if compressed else 0)
    return bytes((measurement,)) + timestamp_ns.to_bytes(8, "little") + bytes((type_byte,))


def encode_pmd_frame(
    measurement: PmdMeasurementType | str,
    *,
    frame_type: int,
    compressed: bool,
    timestamp_ns: int,
    samples: npt.ArrayLike,
    ppi: PpiFields | None = None,
    block_samples: int = 255,
) -> bytes:
    """Encode a data frame as a device sends it (the inverse of ``parse_pmd_frame``).

    ``samples`` are the wire values before any factor: integers for integer layouts
    (ECG uV, ACC mG for raw frames, raw counts for compressed ones), floats for float
    layouts (rounded to float32). Compressed frames put at most ``block_samples`` deltas
    in a block, each block with the smallest bit width that holds its deltas. PPI frames
    take the intervals (ms) as ``samples`` and the other fields from ``ppi``.
    """
    m = PmdMeasurementType.coerce(measurement)
    if not 1 <= block_samples <= 0xFF:
        raise FrameEncodeError(_KIND, "bad_block_samples")
    head = _encode_header(m, frame_type, compressed, timestamp_ns)
    array = np.asarray(samples, dtype=np.float64)
    if m is _M.PPI and frame_type == 0 and not compressed:
        if array.ndim != 1:
            raise FrameEncodeError(_KIND, "bad_shape")
        return head + _encode_ppi(array, ppi)
    layout = (_COMPRESSED if compressed else _RAW).get((m, frame_type))
    if layout is None:
        raise FrameEncodeError(_KIND, "unsupported_frame_type")
    if array.ndim == 1 and layout.channels == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[1] != layout.channels or array.shape[0] == 0:
        raise FrameEncodeError(_KIND, "bad_shape")
    wire = _wire_ints(array, layout)
    body = _encode_delta(wire, layout, block_samples) if compressed else _encode_raw(wire, layout)
    return head + body
