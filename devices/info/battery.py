"""Battery Service (0x180F): the Battery Level characteristic (0x2A19) and its frame.

Battery Level is one uint8, a percentage 0-100; anything else (wrong length, 101-255)
raises ``FrameDecodeError`` rather than being clamped into a made-up level.
Pure: no I/O, no Bluetooth stack.
"""

from __future__ import annotations

import numpy as np

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.frame import Frame, StreamKind, Timebase, Unit
from devices.registry import uuid16

BATTERY_SERVICE_UUID = uuid16(0x180F)
BATTERY_LEVEL_UUID = uuid16(0x2A19)

_KIND = "bas.battery_level"


def decode_battery_level(data: bytes) -> int:
    """Battery level in percent from a 0x2A19 read or notification."""
    if len(data) != 1:
        raise FrameDecodeError(_KIND, "bad_length", f"{len(data)} bytes, need 1")
    if data[0] > 100:
        raise FrameDecodeError(_KIND, "out_of_range", f"{data[0]} %")
    return data[0]


def encode_battery_level(percent: int) -> bytes:
    """``percent`` (0-100) as a 0x2A19 value, for the simulator."""
    if not 0 <= percent <= 100:
        raise FrameEncodeError(_KIND, "out_of_range")
    return bytes([percent])


def battery_frame(percent: int, *, device_key: str, received_ns: int) -> Frame:
    """One ``StreamKind.BATTERY`` sample in percent, timed at arrival (no device clock)."""
    if not 0 <= percent <= 100:
        raise FrameDecodeError(_KIND, "out_of_range", f"{percent} %")
    return Frame(
        device_key=device_key,
        stream=StreamKind.BATTERY,
        time_ns=received_ns,
        timebase=Timebase.ARRIVAL,
        samples=np.array([float(percent)], dtype=np.float64),
        unit=Unit.PERCENT,
        offsets_ns=np.zeros(1, dtype=np.int64),
    )
