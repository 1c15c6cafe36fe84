"""PMD data frames as a device sends them: the simulator's encoder (inverse of ``frames``).

``encode_pmd_frame`` writes the header and the samples in the layouts of ``layouts``:
raw frames value by value, compressed frames as a reference sample and blocks of
deltas, each block with the smallest bit width that holds its deltas; PPI frames as
6-byte rows. Samples that the wire cannot carry (not finite, not integral for an integer
layout, out of range, beyond float32) raise ``FrameEncodeError``, never a clipped or
rounded value. Used by the simulator and the tests; the gateway only decodes.

Pure: numpy only, no I/O, no logging of payloads.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from devices.errors import FrameEncodeError
from devices.polar.layouts import (
    COMPRESSED_BIT,
    DATA_KIND,
    U32_MASK,
    Layout,
    PpiFields,
    layout_for,
)
from devices.polar.pmd import PmdMeasurementType

__all__ = ["encode_pmd_frame"]

_F32_MAX: Final = float(np.finfo(np.float32).max)


def _signed_width(value: int) -> int:
    return (value if value >= 0 else ~value).bit_length() + 1


def _wire_ints(samples: npt.NDArray[np.float64], layout: Layout) -> npt.NDArray[np.int64]:
    """Samples as the integers the wire carries (float32 bit patterns for float layouts)."""
    if not np.all(np.isfinite(samples)):
        raise FrameEncodeError(DATA_KIND, "not_finite")
    if layout.is_float:
        if samples.size and float(np.abs(samples).max()) > _F32_MAX:
            raise FrameEncodeError(DATA_KIND, "float32_overflow")
        return samples.astype(np.float32).view(np.uint32).astype(np.int64)
    if not np.array_equal(samples, np.round(samples)):
        raise FrameEncodeError(DATA_KIND, "not_integral")
    limit = 1 << (layout.bits - 1)
    if samples.size and (samples.min() < -limit or samples.max() >= limit):
        raise FrameEncodeError(DATA_KIND, f"out_of_{layout.bits}_bit_range")
    return samples.astype(np.int64)


def _pack_block(deltas: npt.NDArray[np.int64]) -> bytes:
    width = max(_signed_width(int(deltas.max())), _signed_width(int(deltas.min())))
    masked = (deltas.reshape(-1) & ((1 << width) - 1)).astype(np.uint64)
    bits = ((masked[:, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    packed = np.packbits(bits.reshape(-1), bitorder="little").tobytes()
    return bytes((width, deltas.shape[0])) + packed


def _encode_delta(wire: npt.NDArray[np.int64], layout: Layout, block_samples: int) -> bytes:
    size = math.ceil(layout.bits / 8)
    signed = not layout.is_float
    out = bytearray()
    for value in wire[0]:
        out += int(value).to_bytes(size, "little", signed=signed)
    deltas = np.diff(wire, axis=0)
    if layout.is_float:  # float32 bit patterns: deltas modulo 2**32, as signed 32-bit
        deltas = ((deltas + (1 << 31)) & U32_MASK) - (1 << 31)
    for start in range(0, deltas.shape[0], block_samples):
        out += _pack_block(deltas[start : start + block_samples])
    return bytes(out)


def _encode_raw(wire: npt.NDArray[np.int64], layout: Layout) -> bytes:
    size = layout.bits // 8
    as_u32 = (wire.reshape(-1) & U32_MASK).astype("<u4")
    return as_u32.view(np.uint8).reshape(-1, 4)[:, :size].tobytes()


def _encode_ppi(samples: npt.NDArray[np.float64], ppi: PpiFields | None) -> bytes:
    if ppi is None:
        raise FrameEncodeError(DATA_KIND, "ppi_fields_required")
    flags = (ppi.blocker, ppi.skin_contact, ppi.skin_contact_supported)
    if any(len(f) != len(samples) for f in (ppi.hr_bpm, ppi.error_estimate_ms, *flags)):
        raise FrameEncodeError(DATA_KIND, "ppi_length_mismatch")
    out = np.zeros((len(samples), 6), dtype=np.uint8)
    for start, size, field in ((0, 1, ppi.hr_bpm), (1, 2, samples), (3, 2, ppi.error_estimate_ms)):
        values = np.asarray(field, dtype=np.float64)
        if not np.array_equal(values, np.round(values)) or (
            values.size and (values.min() < 0 or values.max() >= 1 << (8 * size))
        ):
            raise FrameEncodeError(DATA_KIND, "ppi_field_out_of_range")
        little = values.astype("<u2").view(np.uint8).reshape(-1, 2)
        out[:, start : start + size] = little[:, :size]
    for bit, flag in enumerate(flags):
        out[:, 5] |= np.asarray(flag, dtype=np.uint8) << bit
    return out.tobytes()


def _encode_header(
    measurement: PmdMeasurementType, frame_type: int, compressed: bool, timestamp_ns: int
) -> bytes:
    if not 0 <= frame_type <= 0x7F:
        raise FrameEncodeError(DATA_KIND, "bad_frame_type")
    if not 0 <= timestamp_ns <= 0xFFFFFFFFFFFFFFFF:
        raise FrameEncodeError(DATA_KIND, "timestamp_out_of_range")
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
        raise FrameEncodeError(DATA_KIND, "bad_block_samples")
    head = _encode_header(m, frame_type, compressed, timestamp_ns)
    array = np.asarray(samples, dtype=np.float64)
    if m is PmdMeasurementType.PPI and frame_type == 0 and not compressed:
        if array.ndim != 1:
            raise FrameEncodeError(DATA_KIND, "bad_shape")
        return head + _encode_ppi(array, ppi)
    layout = layout_for(m, frame_type, compressed)
    if layout is None:
        raise FrameEncodeError(DATA_KIND, "unsupported_frame_type")
    if array.ndim == 1 and layout.channels == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[1] != layout.channels or array.shape[0] == 0:
        raise FrameEncodeError(DATA_KIND, "bad_shape")
    wire = _wire_ints(array, layout)
    body = _encode_delta(wire, layout, block_samples) if compressed else _encode_raw(wire, layout)
    return head + body
