"""The ``Frame``: the one value that flows from decoders through the gateway.

A frame is a block of samples of one stream of one device: a start time, a sample rate
(or explicit per-sample offsets for irregular streams), the samples as a read-only numpy
array, the device's sequence number and quality flags. Frozen and typed; no dicts.
This module does no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


class StreamKind(enum.StrEnum):
    """What a frame measures."""

    ECG = "ecg"
    RESP = "resp"
    TEMP = "temp"
    ACCEL = "accel"
    GYRO = "gyro"
    MAG = "mag"
    HR = "hr"
    RR = "rr"
    PPI = "ppi"
    ENERGY = "energy"
    BATTERY = "battery"


class Unit(enum.StrEnum):
    """Physical unit of a frame's samples."""

    MICROVOLT = "uV"
    MILLI_G = "mG"
    DEG_PER_S = "dps"
    MICROTESLA = "uT"
    CELSIUS = "degC"
    BPM = "bpm"
    MILLISECOND = "ms"
    KILOJOULE = "kJ"
    PERCENT = "%"
    RESP_AU = "au"
    """Respiration band output in arbitrary units (inductance or impedance counts)."""


class Timebase(enum.StrEnum):
    """Which clock ``Frame.time_ns`` is on."""

    DEVICE = "device"
    """The device's own clock, ns (epoch of the device's choosing)."""
    ARRIVAL = "arrival"
    """Receive time on the gateway (devices without a clock), UTC ns."""
    UTC = "utc"
    """Mapped to UTC by the gateway's clock model."""


class Quality(enum.IntFlag):
    """Per-frame quality flags. ``NONE`` means nothing to report."""

    NONE = 0
    CONTACT_SUPPORTED = 1
    """The sensor reports skin contact (so ``NO_CONTACT`` is meaningful)."""
    NO_CONTACT = 2
    """Contact supported and not detected."""
    LEAD_OFF = 4
    SATURATED = 8
    """At least one sample hit the sensor's range."""
    DEVICE_ERROR = 16


FloatArray = npt.NDArray[np.float64]
Int64Array = npt.NDArray[np.int64]


def _readonly(array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    if array.flags.writeable:
        array = array.copy() if array.base is not None else array
        array.flags.writeable = False
    return array


@dataclass(frozen=True, slots=True)
class Frame:
    """A block of samples of one stream of one device.

    ``samples`` has shape ``(n,)`` for scalar streams and ``(n, 3)`` for 3-axis motion.
    Regular streams give ``fs_hz``; irregular ones (RR intervals, PPI) give
    ``offsets_ns``, the time of each sample relative to ``time_ns``.
    """

    device_key: str
    stream: StreamKind
    time_ns: int
    timebase: Timebase
    samples: FloatArray
    unit: Unit
    fs_hz: float | None = None
    offsets_ns: Int64Array | None = None
    sequence: int | None = None
    quality: Quality = Quality.NONE
    channels: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if (self.fs_hz is None) == (self.offsets_ns is None):
            raise ValueError("a frame has exactly one of fs_hz and offsets_ns")
        if self.fs_hz is not None and not self.fs_hz > 0:
            raise ValueError("fs_hz must be positive")
        if self.samples.ndim not in (1, 2):
            raise ValueError("samples must be 1-D or 2-D")
        if self.offsets_ns is not None and len(self.offsets_ns) != len(self.samples):
            raise ValueError("offsets_ns must have one entry per sample")
        object.__setattr__(self, "samples", _readonly(self.samples))
        if self.offsets_ns is not None:
            object.__setattr__(self, "offsets_ns", _readonly(self.offsets_ns))

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    def sample_times_ns(self) -> Int64Array:
        """Time of every sample on this frame's timebase."""
        if self.offsets_ns is not None:
            return self.time_ns + self.offsets_ns
        assert self.fs_hz is not None
        steps = np.arange(self.n_samples, dtype=np.float64) * (1e9 / self.fs_hz)
        return self.time_ns + np.round(steps).astype(np.int64)
