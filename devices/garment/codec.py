"""Data frames of the biogw garment profile: bytes <-> ``GarmentFrame``.

One data frame is one notification of the data characteristic: an 18-byte header
(version, stream, encoding, rate code, flags, sample count, sequence, device time in µs)
and little-endian packed samples. Layout and examples: ``docs/garment-profile.md``.
Pure and vectorised (numpy, no per-sample Python loops); no I/O, no Bluetooth stack.
Malformed input raises ``FrameDecodeError``; unrepresentable values ``FrameEncodeError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.frame import FloatArray, Unit
from devices.garment.spec import (
    FRAME_FLAGS_RESERVED,
    HEADER_FORMAT,
    HEADER_SIZE,
    MAX_DEVICE_TIME_US,
    MAX_FRAME_DURATION_US,
    MAX_PAYLOAD_BYTES,
    MAX_SEQUENCE,
    PROTOCOL_VERSION,
    STREAM_SPECS,
    FrameFlags,
    GarmentStream,
    RateCode,
    SampleEncoding,
    StreamSpec,
    rate_code,
)

_SKIN_CONTACT: Final = int(FrameFlags.SKIN_CONTACT)  # ints: IntFlag arithmetic is slow
_CONTACT_SUPPORTED: Final = int(FrameFlags.CONTACT_SUPPORTED)
_KIND = "garment.data"
_HEADER = struct.Struct(HEADER_FORMAT)
_MAX_COUNT = 255
_STREAM_BY_ID = {int(stream): stream for stream in GarmentStream}
_ENCODING_BY_ID = {int(encoding): encoding for encoding in SampleEncoding}
_RATE_BY_ID = {int(code): code for code in RateCode}
_INT16 = np.dtype("<i2")
_INT32 = np.dtype("<i4")

Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class GarmentFrame:
    """One decoded data frame, samples in physical units.

    ``samples`` is float64, shape ``(n,)`` for ECG/RESP/TEMP and ``(n, 3)`` (x, y, z)
    for ACCEL/GYRO, read-only. ``device_time_us`` is the device's monotonic clock (µs
    since boot) at the first sample.
    """

    stream: GarmentStream
    sequence: int
    device_time_us: int
    fs_hz: float
    samples: FloatArray
    flags: FrameFlags = FrameFlags.NONE
    encoding: SampleEncoding = SampleEncoding.INT16

    def __post_init__(self) -> None:
        samples = self.samples
        if not isinstance(samples, np.ndarray) or samples.dtype != np.float64:
            samples = np.array(samples, dtype=np.float64)
        elif samples.flags.writeable:
            samples = samples.copy()  # never freeze or share the caller's array
        samples.flags.writeable = False
        object.__setattr__(self, "samples", samples)

    @property
    def device_time_ns(self) -> int:
        return self.device_time_us * 1000

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0]) if self.samples.ndim else 0

    @property
    def unit(self) -> Unit:
        return STREAM_SPECS[self.stream].unit

    def counts(self) -> Int64Array:
        """The integer counts the samples encode to (exact for decoded frames)."""
        lsb = STREAM_SPECS[self.stream].lsb
        return np.rint(self.samples / lsb).astype(np.int64)


def frame_size(stream: GarmentStream, n_samples: int, encoding: SampleEncoding) -> int:
    """Bytes of a frame with ``n_samples`` samples (header included)."""
    return HEADER_SIZE + n_samples * encoding.n_bytes * STREAM_SPECS[stream].n_channels


def max_samples(
    stream: GarmentStream,
    encoding: SampleEncoding = SampleEncoding.INT16,
    *,
    max_payload: int = MAX_PAYLOAD_BYTES,
) -> int:
    """How many samples fit one frame of at most ``max_payload`` bytes (0 if none)."""
    payload = min(max_payload, MAX_PAYLOAD_BYTES) - HEADER_SIZE
    per_sample = encoding.n_bytes * STREAM_SPECS[stream].n_channels
    return max(0, min(_MAX_COUNT, payload // per_sample))


def samples_per_frame(
    stream: GarmentStream,
    fs_hz: float,
    *,
    encoding: SampleEncoding = SampleEncoding.INT16,
    max_payload: int = MAX_PAYLOAD_BYTES,
) -> int:
    """Samples a device puts in each notification of ``stream`` at ``fs_hz``.

    At most 400 ms of signal, at most what fits ``max_payload`` bytes, at least one.
    Raises ``FrameEncodeError`` for a rate the stream does not have, or a payload too
    small for even one sample.
    """
    spec = STREAM_SPECS[stream]
    code = _checked_rate(spec, fs_hz)
    if encoding not in spec.encodings:
        raise FrameEncodeError(_KIND, f"{stream.name} has no {encoding.name} encoding")
    capacity = max_samples(stream, encoding, max_payload=max_payload)
    if capacity < 1:
        raise FrameEncodeError(_KIND, f"payload of {max_payload} bytes holds no sample")
    by_duration = MAX_FRAME_DURATION_US // code.period_us
    return min(capacity, max(1, by_duration))


def quantize(
    stream: GarmentStream,
    values: npt.ArrayLike,
    *,
    encoding: SampleEncoding = SampleEncoding.INT16,
) -> FloatArray:
    """Round physical values to the nearest encodable ones, clipping at the encoding's
    range like a saturating ADC. The result survives encode/decode exactly.
    Raises ``FrameEncodeError`` for non-finite values."""
    spec = STREAM_SPECS[stream]
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise FrameEncodeError(_KIND, "samples must be finite")
    counts = np.clip(np.rint(array / spec.lsb), encoding.min_count, encoding.max_count)
    result: FloatArray = counts * spec.lsb
    return result


def _checked_rate(spec: StreamSpec, fs_hz: float) -> RateCode:
    code = rate_code(fs_hz)
    if code is None or code not in spec.rates:
        raise FrameEncodeError(_KIND, f"{spec.stream.name} has no rate {fs_hz!r} Hz")
    return code


def _check_header_fields(frame: GarmentFrame, spec: StreamSpec) -> None:
    if frame.encoding not in spec.encodings:
        raise FrameEncodeError(_KIND, f"{spec.stream.name} has no {frame.encoding!r} encoding")
    if not 0 <= frame.sequence <= MAX_SEQUENCE:
        raise FrameEncodeError(_KIND, "sequence out of u32 range")
    if not 0 <= frame.device_time_us <= MAX_DEVICE_TIME_US:
        raise FrameEncodeError(_KIND, "device_time_us out of range")
    flags = int(frame.flags)
    if flags & ~0xFF or flags & FRAME_FLAGS_RESERVED:
        raise FrameEncodeError(_KIND, "reserved flag bits set")
    if flags & FrameFlags.SKIN_CONTACT and not flags & FrameFlags.CONTACT_SUPPORTED:
        raise FrameEncodeError(_KIND, "SKIN_CONTACT without CONTACT_SUPPORTED")


def _counts_for(frame: GarmentFrame, spec: StreamSpec) -> npt.NDArray[np.int32]:
    samples = frame.samples
    expected_ndim = 2 if spec.channels else 1
    if samples.ndim != expected_ndim or (spec.channels and samples.shape[1] != 3):
        shape = "(n, 3)" if spec.channels else "(n,)"
        raise FrameEncodeError(_KIND, f"{spec.stream.name} samples must have shape {shape}")
    if samples.shape[0] < 1:
        raise FrameEncodeError(_KIND, "a frame holds at least one sample")
    if samples.shape[0] > _MAX_COUNT:
        raise FrameEncodeError(_KIND, f"a frame holds at most {_MAX_COUNT} samples")
    if not np.all(np.isfinite(samples)):
        raise FrameEncodeError(_KIND, "samples must be finite")
    counts = np.rint(samples / spec.lsb)
    encoding = frame.encoding
    if counts.min() < encoding.min_count or counts.max() > encoding.max_count:
        raise FrameEncodeError(_KIND, f"sample out of {encoding.name} range")
    return counts.astype(_INT32).reshape(-1)


def encode_data_frame(frame: GarmentFrame, *, max_payload: int = MAX_PAYLOAD_BYTES) -> bytes:
    """Encode one frame for one notification.

    Raises ``FrameEncodeError`` for an unknown rate or encoding, out-of-range values,
    bad flags, or a frame longer than ``max_payload`` (at most 244) bytes.
    """
    spec = STREAM_SPECS[frame.stream]
    code = _checked_rate(spec, frame.fs_hz)
    _check_header_fields(frame, spec)
    counts = _counts_for(frame, spec)
    n = int(frame.samples.shape[0])
    size = frame_size(frame.stream, n, frame.encoding)
    if size > min(max_payload, MAX_PAYLOAD_BYTES):
        raise FrameEncodeError(_KIND, f"frame of {size} bytes exceeds {max_payload}")
    if frame.encoding is SampleEncoding.INT16:
        body = counts.astype(_INT16).tobytes()
    else:
        body = counts.astype(_INT32).view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    header = _HEADER.pack(
        PROTOCOL_VERSION,
        frame.stream,
        frame.encoding,
        code,
        int(frame.flags),
        n,
        frame.sequence,
        frame.device_time_us,
    )
    return header + body


def _decode_int24(data: bytes | bytearray | memoryview, count: int) -> npt.NDArray[np.int32]:
    raw = np.frombuffer(data, dtype=np.uint8, count=3 * count, offset=HEADER_SIZE)
    padded = np.zeros((count, 4), dtype=np.uint8)
    padded[:, 1:] = raw.reshape(count, 3)
    # The 24-bit value sits in the top three bytes; the arithmetic shift sign-extends.
    values: npt.NDArray[np.int32] = padded.view(_INT32).reshape(count) >> 8
    return values


@dataclass(frozen=True, slots=True)
class _Header:
    stream: GarmentStream
    encoding: SampleEncoding
    rate: RateCode
    flags: int
    n_samples: int
    sequence: int
    device_time_us: int


def _decode_header(data: bytes | bytearray | memoryview) -> _Header:
    size = len(data)
    if size < HEADER_SIZE:
        raise FrameDecodeError(_KIND, "short", f"{size} bytes, header is {HEADER_SIZE}")
    if size > MAX_PAYLOAD_BYTES:
        raise FrameDecodeError(_KIND, "oversize", f"{size} bytes")
    version, stream_id, enc_id, rate_id, flags, n, sequence, time_us = _HEADER.unpack_from(data)
    if version != PROTOCOL_VERSION:
        raise FrameDecodeError(_KIND, "unsupported_version", str(version))
    stream = _STREAM_BY_ID.get(stream_id)
    if stream is None:
        raise FrameDecodeError(_KIND, "unknown_stream", str(stream_id))
    spec = STREAM_SPECS[stream]
    encoding = _ENCODING_BY_ID.get(enc_id)
    if encoding is None or encoding not in spec.encodings:
        raise FrameDecodeError(_KIND, "bad_encoding", f"{enc_id} for {stream.name}")
    code = _RATE_BY_ID.get(rate_id)
    if code is None or code not in spec.rates:
        raise FrameDecodeError(_KIND, "bad_rate", f"{rate_id} for {stream.name}")
    if flags & FRAME_FLAGS_RESERVED:
        raise FrameDecodeError(_KIND, "bad_flags", f"reserved bits {flags:#04x}")
    if flags & _SKIN_CONTACT and not flags & _CONTACT_SUPPORTED:
        raise FrameDecodeError(_KIND, "bad_flags", "contact without contact support")
    if n == 0:
        raise FrameDecodeError(_KIND, "empty", "sample count 0")
    if size != frame_size(stream, n, encoding):
        raise FrameDecodeError(_KIND, "length_mismatch", f"{size} bytes for {n} samples")
    if time_us > MAX_DEVICE_TIME_US:
        raise FrameDecodeError(_KIND, "bad_time", "device time beyond 2**53 µs")
    return _Header(stream, encoding, code, flags, n, sequence, time_us)


def decode_data_frame(data: bytes | bytearray | memoryview) -> GarmentFrame:
    """Decode one data-characteristic notification.

    Raises ``FrameDecodeError`` for a short, oversize or inconsistent frame, an unknown
    version, stream, encoding or rate, reserved flag bits, or a bad device time.
    """
    header = _decode_header(data)
    spec = STREAM_SPECS[header.stream]
    values = header.n_samples * spec.n_channels
    if header.encoding is SampleEncoding.INT16:
        counts: npt.NDArray[np.signedinteger] = np.frombuffer(
            data, dtype=_INT16, count=values, offset=HEADER_SIZE
        )
    else:
        counts = _decode_int24(data, values)
    if spec.channels:
        counts = counts.reshape(header.n_samples, spec.n_channels)
    samples: FloatArray = counts.astype(np.float64)
    if spec.lsb != 1.0:
        samples *= spec.lsb
    samples.flags.writeable = False  # hand over without the defensive copy
    return GarmentFrame(
        stream=header.stream,
        sequence=header.sequence,
        device_time_us=header.device_time_us,
        fs_hz=header.rate.hz,
        samples=samples,
        flags=FrameFlags(header.flags),
        encoding=header.encoding,
    )
