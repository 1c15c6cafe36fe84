"""PMD data-frame layouts: the header, the sample layout per frame type, PPI fields, units.

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
PPI raw 0 rows are ``hr:u8 interval_ms:u16 error_ms:u16 flags:u8`` (``PpiFields``).

Supported (measurement, frame type): ECG raw 0 (uV); PPG raw 0 and compressed 0 (four
channels: ppg0-2, ambient); ACC raw 0/1/2 and compressed 0/1 (mG); PPI raw 0; GYRO
compressed 0/1 (deg/s); MAG compressed 0 (gauss); TEMPERATURE, SKIN_TEMP, PRESSURE raw 0
and compressed 0 (degC, bar). ECG types 1-3 and MAG type 1 carry per-sample status bits
that are not modelled, so they have no layout here.

Factor, as the SDK applies it: raw frames never; ACC compressed 0 always ``x factor x
1000`` (G to mG); PPG compressed 0 always ``x factor``; every other compressed frame ``x
factor`` when ``factor != 1``.

This module holds the tables shared by the decoder (``frames``) and the simulator's
encoder (``encode``): it decodes and encodes nothing itself. Pure: numpy types only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from devices.frame import Int64Array
from devices.polar.pmd import PmdMeasurementType

__all__ = [
    "COMPRESSED_BIT",
    "DATA_KIND",
    "HEADER_BYTES",
    "U32_MASK",
    "UNITS",
    "BoolArray",
    "FactorRule",
    "Layout",
    "PpiFields",
    "layout_for",
]

DATA_KIND: Final = "pmd.data"
"""The ``kind`` of every ``FrameDecodeError``/``FrameEncodeError`` about a data frame."""
HEADER_BYTES: Final = 10
COMPRESSED_BIT: Final = 0x80
U32_MASK: Final = 0xFFFFFFFF

BoolArray = npt.NDArray[np.bool_]
FactorRule = Literal["none", "always", "milli", "unless_one"]
_M = PmdMeasurementType


@dataclass(frozen=True, slots=True)
class Layout:
    """Samples of one (measurement, frame type): channels per sample, bits per value."""

    channels: int
    bits: int
    is_float: bool = False
    factor: FactorRule = "none"


_RAW: Final[dict[tuple[PmdMeasurementType, int], Layout]] = {
    (_M.ECG, 0): Layout(1, 24),
    (_M.PPG, 0): Layout(4, 24),
    (_M.ACC, 0): Layout(3, 8),
    (_M.ACC, 1): Layout(3, 16),
    (_M.ACC, 2): Layout(3, 24),
    (_M.TEMPERATURE, 0): Layout(1, 32, is_float=True),
    (_M.SKIN_TEMP, 0): Layout(1, 32, is_float=True),
    (_M.PRESSURE, 0): Layout(1, 32, is_float=True),
}
_COMPRESSED: Final[dict[tuple[PmdMeasurementType, int], Layout]] = {
    (_M.PPG, 0): Layout(4, 24, factor="always"),
    (_M.ACC, 0): Layout(3, 16, factor="milli"),
    (_M.ACC, 1): Layout(3, 16, factor="unless_one"),
    (_M.GYRO, 0): Layout(3, 16, factor="unless_one"),
    (_M.GYRO, 1): Layout(3, 32, is_float=True, factor="unless_one"),
    (_M.MAG, 0): Layout(3, 16, factor="unless_one"),
    (_M.TEMPERATURE, 0): Layout(1, 32, is_float=True, factor="unless_one"),
    (_M.SKIN_TEMP, 0): Layout(1, 32, is_float=True, factor="unless_one"),
    (_M.PRESSURE, 0): Layout(1, 32, is_float=True, factor="unless_one"),
}
UNITS: Final[dict[PmdMeasurementType, str]] = {
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


def layout_for(measurement: PmdMeasurementType, frame_type: int, compressed: bool) -> Layout | None:
    """The sample layout of a supported frame, or ``None`` (PPI is not a sample layout)."""
    return (_COMPRESSED if compressed else _RAW).get((measurement, frame_type))


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
