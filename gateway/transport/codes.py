"""The wire format's code tables (docs/wire-format.md section 5): enum member ↔ byte.

Codes are fixed here, never derived from enum order: adding a member must not renumber
the others (tests check every member has a distinct code). The reverse tables serve the
decoder. This module must not do anything but hold constants.
"""

from __future__ import annotations

from typing import Final

from devices.frame import StreamKind, Timebase, Unit
from gateway.gaps import GapCause

__all__ = [
    "CAUSES",
    "CAUSE_CODES",
    "STREAMS",
    "STREAM_CODES",
    "TIMEBASES",
    "TIMEBASE_CODES",
    "UNITS",
    "UNIT_CODES",
]

STREAM_CODES: Final[dict[StreamKind, int]] = {
    StreamKind.ECG: 1,
    StreamKind.RESP: 2,
    StreamKind.TEMP: 3,
    StreamKind.ACCEL: 4,
    StreamKind.GYRO: 5,
    StreamKind.MAG: 6,
    StreamKind.HR: 7,
    StreamKind.RR: 8,
    StreamKind.PPI: 9,
    StreamKind.ENERGY: 10,
    StreamKind.BATTERY: 11,
}
UNIT_CODES: Final[dict[Unit, int]] = {
    Unit.MICROVOLT: 1,
    Unit.MILLI_G: 2,
    Unit.DEG_PER_S: 3,
    Unit.MICROTESLA: 4,
    Unit.CELSIUS: 5,
    Unit.BPM: 6,
    Unit.MILLISECOND: 7,
    Unit.KILOJOULE: 8,
    Unit.PERCENT: 9,
    Unit.RESP_AU: 10,
}
TIMEBASE_CODES: Final[dict[Timebase, int]] = {
    Timebase.DEVICE: 1,
    Timebase.ARRIVAL: 2,
    Timebase.UTC: 3,
}
CAUSE_CODES: Final[dict[GapCause, int]] = {
    GapCause.LINK_LOSS: 1,
    GapCause.DEVICE_SKIP: 2,
    GapCause.QUEUE_OVERFLOW: 3,
    GapCause.SPOOL_FULL: 4,
}
STREAMS: Final = {v: k for k, v in STREAM_CODES.items()}
UNITS: Final = {v: k for k, v in UNIT_CODES.items()}
TIMEBASES: Final = {v: k for k, v in TIMEBASE_CODES.items()}
CAUSES: Final = {v: k for k, v in CAUSE_CODES.items()}
