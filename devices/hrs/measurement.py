"""Heart Rate Measurement (characteristic 0x2A37): decoder, encoder and frames.

Decodes the notification defined by the Bluetooth SIG Heart Rate Service 1.0 and the
GATT Specification Supplement ("Heart Rate Measurement") into a frozen value, turns that
value into ``Frame``s, and encodes values back to bytes for the simulated garments.

Wire format (little endian)::

    flags  uint8   bit0   heart rate is uint16 (else uint8)
                   bit1   sensor contact detected (meaningful only with bit2)
                   bit2   sensor contact status supported
                   bit3   Energy Expended present (uint16, kJ)
                   bit4   RR-Interval present (uint16 each, 1/1024 s)
                   bit5-7 reserved for future use: ignored, as the spec requires
    hr     uint8 | uint16
    energy uint16            if bit3
    rr     uint16 * n        if bit4, oldest first, to the end of the payload

Decisions (each tested):

- A payload shorter than its flags require, or with bytes left over when bit 4 is clear,
  raises ``FrameDecodeError``; no field is ever guessed.
- An odd number of bytes in the RR field (a dangling half RR value) raises
  ``FrameDecodeError(reason="odd_rr_bytes")``: the spec defines RR values as uint16 only,
  so the payload was truncated or corrupted and we cannot tell which RR is whole.
- Bit 4 set with no RR bytes decodes to ``rr_intervals_ms == ()``. Straps do this in
  seconds without a detected beat (Polar's own client accepts it, ``rrPresent`` with an
  empty list); it is not a short frame because nothing is lost.

Pure: no I/O, no Bluetooth stack, no logging of payloads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.frame import Frame, Quality, StreamKind, Timebase, Unit

_KIND = "hrs.measurement"

_FLAG_HR_UINT16 = 0x01
_FLAG_CONTACT_DETECTED = 0x02
_FLAG_CONTACT_SUPPORTED = 0x04
_FLAG_ENERGY = 0x08
_FLAG_RR = 0x10

_RR_UNITS_PER_S = 1024
_UINT16_MAX = 0xFFFF
ENERGY_SATURATED_KJ = _UINT16_MAX
"""The spec says Energy Expended stays at 0xFFFF once 65535 kJ is reached."""


@dataclass(frozen=True, slots=True)
class HeartRateMeasurement:
    """One decoded Heart Rate Measurement notification.

    ``rr_intervals_ms`` are oldest first, each exactly ``units * 1000 / 1024``.
    ``sensor_contact`` is ``None`` when the sensor does not support contact detection.
    ``energy_expended_kj`` is ``None`` when the field is absent.
    """

    heart_rate_bpm: int
    rr_intervals_ms: tuple[float, ...] = ()
    sensor_contact: bool | None = None
    energy_expended_kj: int | None = None


def rr_ms_from_units(units: int) -> float:
    """An RR interval in 1/1024 s units as milliseconds, exactly ``units * 1000 / 1024``.

    Exact in binary floating point (a uint16 times 1000 over a power of two), so values
    from this function survive ``encode_heart_rate_measurement`` unchanged.
    """
    return units * 1000 / _RR_UNITS_PER_S


def rr_units_from_ms(rr_ms: float) -> int:
    """The nearest RR value in 1/1024 s units (half to even). Inverse of
    ``rr_ms_from_units`` for its outputs; any other value moves by at most 0.49 ms."""
    if not math.isfinite(rr_ms) or rr_ms < 0:
        raise FrameEncodeError(_KIND, "rr_out_of_range")
    units = round(rr_ms * _RR_UNITS_PER_S / 1000)
    if units > _UINT16_MAX:
        raise FrameEncodeError(_KIND, "rr_out_of_range")
    return units


def _u16(data: bytes, offset: int, field_name: str) -> int:
    if offset + 2 > len(data):
        raise FrameDecodeError(_KIND, "short", f"{field_name} needs 2 bytes at {offset}")
    return data[offset] | (data[offset + 1] << 8)


def decode_heart_rate_measurement(data: bytes) -> HeartRateMeasurement:
    """Decode one 0x2A37 notification; raises ``FrameDecodeError`` for malformed input."""
    if len(data) < 2:
        raise FrameDecodeError(_KIND, "short", f"{len(data)} bytes, need at least 2")
    flags = data[0]
    if flags & _FLAG_HR_UINT16:
        heart_rate = _u16(data, 1, "uint16 heart rate")
        offset = 3
    else:
        heart_rate = data[1]
        offset = 2
    contact: bool | None = None
    if flags & _FLAG_CONTACT_SUPPORTED:
        contact = bool(flags & _FLAG_CONTACT_DETECTED)
    energy: int | None = None
    if flags & _FLAG_ENERGY:
        energy = _u16(data, offset, "energy expended")
        offset += 2
    rr: tuple[float, ...] = ()
    if flags & _FLAG_RR:
        tail = len(data) - offset
        if tail % 2:
            raise FrameDecodeError(_KIND, "odd_rr_bytes", f"{tail} bytes of RR intervals")
        rr = tuple(rr_ms_from_units(_u16(data, i, "rr")) for i in range(offset, len(data), 2))
    elif offset != len(data):
        raise FrameDecodeError(_KIND, "trailing_bytes", f"{len(data) - offset} extra bytes")
    return HeartRateMeasurement(
        heart_rate_bpm=heart_rate,
        rr_intervals_ms=rr,
        sensor_contact=contact,
        energy_expended_kj=energy,
    )


def encode_heart_rate_measurement(
    m: HeartRateMeasurement, *, uint16: bool = False, contact_supported: bool | None = None
) -> bytes:
    """Encode ``m`` as a 0x2A37 payload (for the simulator).

    ``uint16`` selects the 16-bit heart-rate format; a rate above 255 without it raises
    ``FrameEncodeError``. ``contact_supported`` defaults to ``m.sensor_contact is not
    None``; ``False`` sends "not supported" (bits 1-2 clear) whatever ``m`` says, and
    ``True`` with ``m.sensor_contact is None`` raises (no status to send).

    RR values are rounded to the nearest 1/1024 s. Values made by ``rr_ms_from_units``
    (multiples of 1000/1024 ms) round-trip exactly; any other value comes back moved by
    up to 0.49 ms. Bit 4 is set whenever ``rr_intervals_ms`` is non-empty. The payload is
    not cut to an ATT MTU: fitting the notification is the caller's business.
    """
    supported = m.sensor_contact is not None if contact_supported is None else contact_supported
    if supported and m.sensor_contact is None:
        raise FrameEncodeError(_KIND, "contact_status_missing")
    limit = _UINT16_MAX if uint16 else 0xFF
    if not 0 <= m.heart_rate_bpm <= limit:
        raise FrameEncodeError(_KIND, "heart_rate_out_of_range")
    flags = _FLAG_HR_UINT16 if uint16 else 0
    body = bytearray(m.heart_rate_bpm.to_bytes(2 if uint16 else 1, "little"))
    if supported:
        flags |= _FLAG_CONTACT_SUPPORTED | (_FLAG_CONTACT_DETECTED if m.sensor_contact else 0)
    if m.energy_expended_kj is not None:
        if not 0 <= m.energy_expended_kj <= _UINT16_MAX:
            raise FrameEncodeError(_KIND, "energy_out_of_range")
        flags |= _FLAG_ENERGY
        body += m.energy_expended_kj.to_bytes(2, "little")
    if m.rr_intervals_ms:
        flags |= _FLAG_RR
        for rr_ms in m.rr_intervals_ms:
            body += rr_units_from_ms(rr_ms).to_bytes(2, "little")
    return bytes([flags]) + bytes(body)


def _contact_quality(sensor_contact: bool | None) -> Quality:
    if sensor_contact is None:
        return Quality.NONE
    if sensor_contact:
        return Quality.CONTACT_SUPPORTED
    return Quality.CONTACT_SUPPORTED | Quality.NO_CONTACT


def _point_frame(
    stream: StreamKind, unit: Unit, value: float, quality: Quality, device_key: str, at_ns: int
) -> Frame:
    return Frame(
        device_key=device_key,
        stream=stream,
        time_ns=at_ns,
        timebase=Timebase.ARRIVAL,
        samples=np.array([value], dtype=np.float64),
        unit=unit,
        offsets_ns=np.zeros(1, dtype=np.int64),
        quality=quality,
    )


def _rr_frame(
    rr_intervals_ms: tuple[float, ...], quality: Quality, device_key: str, last_beat_ns: int
) -> Frame:
    if not all(math.isfinite(rr) and rr >= 0 for rr in rr_intervals_ms):
        raise FrameDecodeError(_KIND, "rr_out_of_range", "RR must be finite and >= 0")
    rr = np.array(rr_intervals_ms, dtype=np.float64)
    after_first_ms = np.concatenate(([0.0], np.cumsum(rr[1:])))
    offsets = np.round(after_first_ms * 1e6).astype(np.int64)
    return Frame(
        device_key=device_key,
        stream=StreamKind.RR,
        time_ns=last_beat_ns - int(offsets[-1]),
        timebase=Timebase.ARRIVAL,
        samples=rr,
        unit=Unit.MILLISECOND,
        offsets_ns=offsets,
        quality=quality,
    )


def heart_rate_frames(
    m: HeartRateMeasurement, *, device_key: str, received_ns: int
) -> tuple[Frame, ...]:
    """The frames one measurement yields: HR, then RR (if any), then energy (if present).

    Timing convention. A Heart Rate Service sensor has no clock on the wire, so every
    frame is on ``Timebase.ARRIVAL``:

    - HR: one sample at ``received_ns``.
    - RR: sample *i* is timed at the beat that *ends* interval *i*. The last beat is
      placed at ``received_ns`` and earlier beats are counted back by the intervals
      themselves, so ``time_ns`` is the first beat and ``offsets_ns`` are cumulative
      sums of the later intervals (rounded to whole ns). The last sample therefore
      always lands exactly on ``received_ns``.
    - Energy: one sample at ``received_ns``; ``Quality.SATURATED`` at 0xFFFF kJ.

    Jitter: straps notify about once a second, so the last beat really happened
    between 0 and ~1 s (plus link latency: a connection interval or more, and any
    retransmissions) before ``received_ns``. Absolute beat times are thus biased late
    and jitter by up to about a second; the intervals *within* one frame are exact to
    1/1024 s, and beats of consecutive frames may overlap or leave gaps in time. Use
    the RR values, not the beat times, for HRV. Contact status sets ``CONTACT_SUPPORTED``
    / ``NO_CONTACT`` on the HR and RR frames. A hand-built ``m`` with a negative or
    non-finite RR raises ``FrameDecodeError`` (decoded values never have one).
    """
    quality = _contact_quality(m.sensor_contact)
    frames = [
        _point_frame(
            StreamKind.HR, Unit.BPM, float(m.heart_rate_bpm), quality, device_key, received_ns
        )
    ]
    if m.rr_intervals_ms:
        frames.append(_rr_frame(m.rr_intervals_ms, quality, device_key, received_ns))
    if m.energy_expended_kj is not None:
        saturated = m.energy_expended_kj >= ENERGY_SATURATED_KJ
        energy_quality = Quality.SATURATED if saturated else Quality.NONE
        energy = float(m.energy_expended_kj)
        frames.append(
            _point_frame(
                StreamKind.ENERGY, Unit.KILOJOULE, energy, energy_quality, device_key, received_ns
            )
        )
    return tuple(frames)
