"""The biogw garment profile as a ``devices.registry.Profile``.

Says how the gateway drives a garment (subscribe to control point, status, data and
the standard Battery Level; write START; write STOP) and turns its notifications into
``Frame`` values: data on the device timebase, battery level on arrival time. The
per-connection decoder keeps only the last raw sequence number per stream (to unwrap the
u32 counter) and the last status. Pure: no I/O, no Bluetooth stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from devices.errors import FrameDecodeError, ProfileError
from devices.frame import Frame, Quality, Timebase
from devices.garment.codec import GarmentFrame, decode_data_frame
from devices.garment.control import (
    GarmentStatus,
    decode_control_response,
    decode_status,
    encode_start_request,
    encode_stop_request,
)
from devices.garment.spec import (
    CONTROL_POINT_UUID,
    DATA_CHARACTERISTIC_UUID,
    DEFAULT_RATES_HZ,
    GARMENT_SERVICE_UUID,
    STATUS_UUID,
    STREAM_SPECS,
    SUPPORTED_RATES_HZ,
    ControlOpcode,
    FrameFlags,
    GarmentStream,
)
from devices.info.battery import BATTERY_LEVEL_UUID, battery_frame, decode_battery_level
from devices.registry import Advertisement, GattWrite, Subscription

PROFILE_NAME: Final = "biogw-garment"
_WRAP: Final = 1 << 32
_HALF: Final = 1 << 31


def _frame_quality(flags: int) -> Quality:
    quality = Quality.NONE
    if flags & FrameFlags.CONTACT_SUPPORTED:
        quality |= Quality.CONTACT_SUPPORTED
        if not flags & FrameFlags.SKIN_CONTACT:
            quality |= Quality.NO_CONTACT
    if flags & FrameFlags.LEAD_OFF:
        quality |= Quality.LEAD_OFF
    if flags & FrameFlags.SATURATED:
        quality |= Quality.SATURATED
    if flags & FrameFlags.SENSOR_FAULT:
        quality |= Quality.DEVICE_ERROR
    return quality


_QUALITY_BY_FLAGS: Final = tuple(_frame_quality(flags) for flags in range(256))
"""Every flags byte's quality, computed once (flag arithmetic on enums is slow)."""


def frame_quality(flags: FrameFlags | int) -> Quality:
    """Map a data frame's flags onto the gateway's quality flags (every bit honoured)."""
    return _QUALITY_BY_FLAGS[int(flags) & 0xFF]


class GarmentDecoder:
    """Per-connection decoder of one garment's notifications."""

    def __init__(self, device_key: str) -> None:
        self._device_key = device_key
        self._sequences: dict[GarmentStream, tuple[int, int]] = {}
        self._status: GarmentStatus | None = None

    @property
    def status(self) -> GarmentStatus | None:
        """The last status notification of this connection, if any."""
        return self._status

    def reset(self) -> None:
        self._sequences.clear()
        self._status = None

    def decode(self, characteristic: str, data: bytes, received_ns: int) -> tuple[Frame, ...]:
        """Data -> one ``Frame``; Battery Level -> one ``StreamKind.BATTERY`` frame;
        status -> () (kept in ``status``); control-point success -> (); a control-point
        failure raises ``ProfileError``; malformed data raises ``FrameDecodeError``."""
        uuid = characteristic.lower()
        if uuid == DATA_CHARACTERISTIC_UUID:
            return (self._to_frame(decode_data_frame(data)),)
        if uuid == BATTERY_LEVEL_UUID:
            percent = decode_battery_level(data)
            return (battery_frame(percent, device_key=self._device_key, received_ns=received_ns),)
        if uuid == STATUS_UUID:
            self._status = decode_status(data)
            return ()
        if uuid == CONTROL_POINT_UUID:
            response = decode_control_response(data)
            if not response.ok:
                op = response.request_opcode
                name = op.name if isinstance(op, ControlOpcode) else f"{op:#04x}"
                detail = f" (stream id {response.failed_stream_id})"
                raise ProfileError(PROFILE_NAME, f"{name} refused: {response.result.name}{detail}")
            return ()
        raise FrameDecodeError("garment", "unknown_characteristic", uuid)

    def _unwrap(self, stream: GarmentStream, raw: int) -> int:
        """Extend the u32 sequence (RFC 1982 serial arithmetic): a forward step of less
        than 2**31 continues the count; anything else re-anchors at the raw value."""
        previous = self._sequences.get(stream)
        extended = raw
        if previous is not None:
            last_raw, last_extended = previous
            step = (raw - last_raw) % _WRAP
            if step < _HALF:
                extended = last_extended + step
        self._sequences[stream] = (raw, extended)
        return extended

    def _to_frame(self, frame: GarmentFrame) -> Frame:
        spec = STREAM_SPECS[frame.stream]
        return Frame(
            device_key=self._device_key,
            stream=spec.kind,
            time_ns=frame.device_time_ns,
            timebase=Timebase.DEVICE,
            samples=frame.samples,
            unit=spec.unit,
            fs_hz=frame.fs_hz,
            sequence=self._unwrap(frame.stream, frame.sequence),
            quality=frame_quality(frame.flags),
            channels=spec.channels,
        )


class GarmentProfile:
    """Drives a biogw garment: which streams at which rates (default ``DEFAULT_RATES_HZ``)."""

    def __init__(self, rates_hz: Mapping[GarmentStream, float] | None = None) -> None:
        rates = dict(DEFAULT_RATES_HZ if rates_hz is None else rates_hz)
        if not rates:
            raise ProfileError(PROFILE_NAME, "no stream to start")
        for stream, fs_hz in rates.items():
            if not isinstance(stream, GarmentStream):
                raise ProfileError(PROFILE_NAME, f"unknown stream {stream!r}")
            if fs_hz not in SUPPORTED_RATES_HZ[stream]:
                raise ProfileError(PROFILE_NAME, f"{stream.name} has no rate {fs_hz!r} Hz")
        ordered = {stream: float(rates[stream]) for stream in sorted(rates)}
        self._rates_hz: Mapping[GarmentStream, float] = MappingProxyType(ordered)
        kinds = tuple(STREAM_SPECS[stream].kind.value for stream in ordered)
        self._subscriptions = (
            Subscription(CONTROL_POINT_UUID),
            Subscription(STATUS_UUID),
            Subscription(DATA_CHARACTERISTIC_UUID, streams=kinds),
            Subscription(BATTERY_LEVEL_UUID, streams=("battery",)),
        )
        self._start = (GattWrite(CONTROL_POINT_UUID, encode_start_request(ordered)),)
        self._stop = (GattWrite(CONTROL_POINT_UUID, encode_stop_request()),)

    @property
    def name(self) -> str:
        return PROFILE_NAME

    @property
    def rates_hz(self) -> Mapping[GarmentStream, float]:
        return self._rates_hz

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """Control point first (its indications must be on before any write), then
        status, then the data characteristic, then Battery Level (docs/garment-profile.md
        section 1.1: every garment serves the Battery Service with notify)."""
        return self._subscriptions

    @property
    def start_commands(self) -> tuple[GattWrite, ...]:
        return self._start

    @property
    def stop_commands(self) -> tuple[GattWrite, ...]:
        """STOP with no stream list: every stream stops."""
        return self._stop

    def matches(self, advertisement: Advertisement) -> bool:
        return any(u.lower() == GARMENT_SERVICE_UUID for u in advertisement.service_uuids)

    def new_decoder(self, device_key: str) -> GarmentDecoder:
        return GarmentDecoder(device_key)


GARMENT_PROFILE: Final = GarmentProfile()
