"""The generic Heart Rate Service profile (service 0x180D) for any standard HR strap.

Matches advertisements that list the Heart Rate service, subscribes to Heart Rate
Measurement (0x2A37) and needs no start or stop command: notifications flow as soon as
the gateway enables them. Device-specific profiles that also expose 0x180D (a Polar H10
with its PMD service, say) belong before this one in ``PROFILES``; this is the fallback.
Also decodes Body Sensor Location (0x2A38), which the gateway may read once.

Pure: no Bluetooth stack, no I/O, no logging of payloads.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Final

from devices.errors import FrameDecodeError
from devices.frame import Frame, StreamKind
from devices.hrs.measurement import decode_heart_rate_measurement, heart_rate_frames
from devices.registry import Advertisement, GattWrite, Subscription, uuid16

if TYPE_CHECKING:
    from devices.registry import Profile, StreamDecoder

HEART_RATE_SERVICE_UUID: Final = uuid16(0x180D)
HEART_RATE_MEASUREMENT_UUID: Final = uuid16(0x2A37)
BODY_SENSOR_LOCATION_UUID: Final = uuid16(0x2A38)
HEART_RATE_CONTROL_POINT_UUID: Final = uuid16(0x2A39)

_KIND = "hrs"
_STREAMS: Final = (StreamKind.HR, StreamKind.RR, StreamKind.ENERGY)
_SUBSCRIPTIONS: Final = (Subscription(HEART_RATE_MEASUREMENT_UUID, streams=_STREAMS),)


class BodySensorLocation(enum.IntEnum):
    """Body Sensor Location values (GATT Specification Supplement); 7-255 are reserved."""

    OTHER = 0
    CHEST = 1
    WRIST = 2
    FINGER = 3
    HAND = 4
    EAR_LOBE = 5
    FOOT = 6


def decode_body_sensor_location(data: bytes) -> BodySensorLocation:
    """Decode a 0x2A38 read: exactly one byte with a defined value, else
    ``FrameDecodeError`` (a reserved value is not guessed into ``OTHER``)."""
    kind = "hrs.body_sensor_location"
    if len(data) != 1:
        raise FrameDecodeError(kind, "bad_length", f"{len(data)} bytes, need 1")
    try:
        return BodySensorLocation(data[0])
    except ValueError:
        raise FrameDecodeError(kind, "reserved_value", f"value {data[0]}") from None


class HeartRateDecoder:
    """Per-connection decoder for the Heart Rate Service. Holds no state: every
    notification is self-contained, so ``reset`` has nothing to forget."""

    __slots__ = ("_device_key",)

    def __init__(self, device_key: str) -> None:
        self._device_key = device_key

    @property
    def device_key(self) -> str:
        return self._device_key

    def decode(self, characteristic: str, data: bytes, received_ns: int) -> tuple[Frame, ...]:
        """Frames of one notification (see ``heart_rate_frames`` for timing).

        ``characteristic`` is the full 128-bit UUID string (any case). Anything but
        Heart Rate Measurement raises ``FrameDecodeError(kind="hrs",
        reason="unknown_characteristic")``: this profile subscribes to nothing else.
        """
        if characteristic.lower() != HEART_RATE_MEASUREMENT_UUID:
            raise FrameDecodeError(_KIND, "unknown_characteristic", characteristic)
        measurement = decode_heart_rate_measurement(data)
        return heart_rate_frames(measurement, device_key=self._device_key, received_ns=received_ns)

    def reset(self) -> None:
        """Nothing to forget: the decoder is stateless."""


class HeartRateProfile:
    """Generic Heart Rate Service strap: one subscription, no commands."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return "hrs"

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return _SUBSCRIPTIONS

    @property
    def start_commands(self) -> tuple[GattWrite, ...]:
        return ()

    @property
    def stop_commands(self) -> tuple[GattWrite, ...]:
        return ()

    def matches(self, advertisement: Advertisement) -> bool:
        """True when the advertisement lists the Heart Rate service (any UUID case)."""
        return any(u.lower() == HEART_RATE_SERVICE_UUID for u in advertisement.service_uuids)

    def new_decoder(self, device_key: str) -> HeartRateDecoder:
        return HeartRateDecoder(device_key)


HEART_RATE_PROFILE: Final = HeartRateProfile()

if TYPE_CHECKING:
    # Static proof that the classes satisfy the registry protocols.
    _profile: Profile = HEART_RATE_PROFILE
    _decoder: StreamDecoder = HEART_RATE_PROFILE.new_decoder("")
