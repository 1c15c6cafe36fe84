"""The Polar H10 chest strap profile: PMD ECG + accelerometer, plus standard heart rate.

What the gateway does with an H10 (all as data, see ``devices.registry``):

- subscribe, in order, to the PMD control point (indications), PMD data
  (notifications), Heart Rate Measurement 0x2A37 (notifications) and Battery Level
  0x2A19 (notifications; the Polar BLE SDK's ``BleBasClient`` enables them on every
  connect, so the H10's Battery Service notifies);
- write the start requests for ECG (130 Hz, 14 bit - the only setting an H10 offers)
  and ACC (25/50/100/200 Hz, 16 bit, range 2/4/8 G), and the stop requests on the way out.

The decoder keeps, per connection, the previous frame timestamp per (measurement, frame
type) - updated as soon as a header is readable, even if the payload then fails, as the
SDK's ``BlePMDClient.processPmdData`` does - and the FACTOR each start response returned.
Consequence (as in the SDK): a frame whose timestamp was corrupted in flight is accepted
with absurd sample times, and the next good frame is rejected as non-monotonic; decoding
recovers with the frame after that. The gateway's clock mapping is where such outliers
are to be caught.
A failed start response, or the device stopping a stream we run, raises ``ProfileError``
so the session can restart streaming; other control-point traffic yields no frames.

H10 facts used by the simulator (MTU 232, so 229 bytes of notification payload): ECG
frames carry 73 samples (10 + 3 * 73 = 229 bytes, the count H10 users report); ACC
frames are raw type 1 (int16 mG, not delta-compressed: third-party H10 parsers read
``02 <ts> 01 x y z ...``), and 36 samples is what fits (10 + 6 * 36 = 226 bytes) - an
MTU-derived figure, not one read off a capture.

Pure: no Bluetooth stack, no I/O, no logging of payloads.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from devices.errors import FrameDecodeError, ProfileError
from devices.frame import Frame, StreamKind, Timebase, Unit
from devices.hrs import (
    HEART_RATE_MEASUREMENT_UUID,
    decode_heart_rate_measurement,
    heart_rate_frames,
)
from devices.info.battery import BATTERY_LEVEL_UUID, battery_frame, decode_battery_level
from devices.polar.control import (
    PmdControlResponse,
    PmdMeasurementStopped,
    PmdOpCode,
    PmdSettings,
    PmdSettingType,
    decode_control_point_notification,
    encode_start_request,
    encode_stop_request,
)
from devices.polar.frames import parse_pmd_frame, read_pmd_header
from devices.polar.pmd import (
    PMD_CONTROL_POINT_UUID,
    PMD_DATA_UUID,
    PMD_SERVICE_UUID,
    PmdMeasurementType,
)
from devices.registry import Advertisement, GattWrite, Subscription

if TYPE_CHECKING:
    from devices.registry import Profile, StreamDecoder

_NAME: Final = "polar-h10"
H10_ECG_RATES_HZ: Final = (130,)
H10_ECG_RESOLUTION_BITS: Final = 14
H10_ACC_RATES_HZ: Final = (25, 50, 100, 200)
H10_ACC_RANGES_G: Final = (2, 4, 8)
H10_ACC_RESOLUTION_BITS: Final = 16
H10_ECG_SAMPLES_PER_FRAME: Final = 73
H10_ACC_SAMPLES_PER_FRAME: Final = 36
H10_ECG_FRAME_TYPE: Final = 0
H10_ACC_FRAME_TYPE: Final = 1

_ECG: Final = PmdMeasurementType.ECG
_ACC: Final = PmdMeasurementType.ACC


class PolarH10Decoder:
    """Per-connection decoder: previous timestamps and start-response factors."""

    __slots__ = ("_device_key", "_factors", "_previous", "_rates")

    def __init__(self, device_key: str, *, ecg_rate_hz: int, acc_rate_hz: int) -> None:
        self._device_key = device_key
        self._rates: dict[PmdMeasurementType, int] = {_ECG: ecg_rate_hz, _ACC: acc_rate_hz}
        self._factors: dict[PmdMeasurementType, float] = {}
        self._previous: dict[tuple[PmdMeasurementType, int], int] = {}

    def decode(self, characteristic: str, data: bytes, received_ns: int) -> tuple[Frame, ...]:
        """Frames of one notification; ``()`` for control-point responses; one
        ``StreamKind.BATTERY`` frame (arrival time) for a Battery Level notification.

        Raises ``FrameDecodeError`` for malformed data (including an unknown
        characteristic) and ``ProfileError`` for a refused start, a device-initiated
        stop of ECG/ACC, or PMD data of a measurement this profile never starts.
        """
        uuid = characteristic.lower()
        if uuid == PMD_DATA_UUID:
            return (self._data_frame(data),)
        if uuid == PMD_CONTROL_POINT_UUID:
            self._control(data)
            return ()
        if uuid == HEART_RATE_MEASUREMENT_UUID:
            measurement = decode_heart_rate_measurement(data)
            return heart_rate_frames(
                measurement, device_key=self._device_key, received_ns=received_ns
            )
        if uuid == BATTERY_LEVEL_UUID:
            percent = decode_battery_level(data)
            return (battery_frame(percent, device_key=self._device_key, received_ns=received_ns),)
        raise FrameDecodeError("pmd", "unknown_characteristic", characteristic)

    def reset(self) -> None:
        """Forget previous timestamps and factors (start responses re-teach factors)."""
        self._previous.clear()
        self._factors.clear()

    def _data_frame(self, data: bytes) -> Frame:
        header = read_pmd_header(data)
        rate = self._rates.get(header.measurement)
        if rate is None:
            raise ProfileError(_NAME, f"unexpected PMD measurement {header.measurement.label}")
        key = (header.measurement, header.frame_type)
        previous = self._previous.get(key, 0)
        self._previous[key] = header.timestamp_ns
        pmd = parse_pmd_frame(
            data,
            sample_rate_hz=rate,
            factor=self._factors.get(header.measurement, 1.0),
            previous_timestamp_ns=previous,
        )
        is_ecg = header.measurement is _ECG
        return Frame(
            device_key=self._device_key,
            stream=StreamKind.ECG if is_ecg else StreamKind.ACCEL,
            time_ns=int(pmd.sample_timestamps_ns[0]),
            timebase=Timebase.DEVICE,
            samples=pmd.samples,
            unit=Unit.MICROVOLT if is_ecg else Unit.MILLI_G,
            fs_hz=float(rate),
            channels=() if is_ecg else ("x", "y", "z"),
        )

    def _control(self, data: bytes) -> None:
        message = decode_control_point_notification(data)
        if isinstance(message, PmdMeasurementStopped):
            ours = [m for m in (_ECG, _ACC) if int(m) in message.measurement_ids]
            if ours:
                names = ", ".join(m.label for m in ours)
                raise ProfileError(_NAME, f"device stopped measurement: {names}")
            return
        self._response(message)

    def _response(self, response: PmdControlResponse) -> None:
        measurement = response.measurement
        if response.op_code is PmdOpCode.REQUEST_MEASUREMENT_START:
            label = measurement.label if measurement else f"type {response.measurement_id}"
            if not response.ok:
                raise ProfileError(_NAME, f"start {label} refused: {response.error.name}")
            if measurement is not None:
                factor = response.settings().factor
                if factor is not None and not math.isfinite(factor):
                    raise FrameDecodeError("pmd.control", "bad_factor", "NaN or infinite")
                self._factors[measurement] = 1.0 if factor is None else factor
        elif response.op_code is PmdOpCode.STOP_MEASUREMENT and response.ok:
            # The SDK forgets every previous timestamp once a stop succeeds.
            self._previous.clear()


class PolarH10Profile:
    """Polar H10: ECG and accelerometer over PMD, heart rate over the standard service."""

    __slots__ = ("_acc_range_g", "_acc_rate_hz", "_ecg_rate_hz")

    def __init__(
        self, ecg_rate_hz: int = 130, acc_rate_hz: int = 200, acc_range_g: int = 8
    ) -> None:
        if ecg_rate_hz not in H10_ECG_RATES_HZ:
            raise ProfileError(_NAME, f"ECG rate {ecg_rate_hz} Hz not in {H10_ECG_RATES_HZ}")
        if acc_rate_hz not in H10_ACC_RATES_HZ:
            raise ProfileError(_NAME, f"ACC rate {acc_rate_hz} Hz not in {H10_ACC_RATES_HZ}")
        if acc_range_g not in H10_ACC_RANGES_G:
            raise ProfileError(_NAME, f"ACC range {acc_range_g} G not in {H10_ACC_RANGES_G}")
        self._ecg_rate_hz = ecg_rate_hz
        self._acc_rate_hz = acc_rate_hz
        self._acc_range_g = acc_range_g

    @property
    def name(self) -> str:
        return _NAME

    @property
    def ecg_settings(self) -> PmdSettings:
        return PmdSettings.of(
            {
                PmdSettingType.SAMPLE_RATE: (self._ecg_rate_hz,),
                PmdSettingType.RESOLUTION: (H10_ECG_RESOLUTION_BITS,),
            }
        )

    @property
    def acc_settings(self) -> PmdSettings:
        return PmdSettings.of(
            {
                PmdSettingType.SAMPLE_RATE: (self._acc_rate_hz,),
                PmdSettingType.RESOLUTION: (H10_ACC_RESOLUTION_BITS,),
                PmdSettingType.RANGE: (self._acc_range_g,),
            }
        )

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return (
            Subscription(PMD_CONTROL_POINT_UUID),
            Subscription(PMD_DATA_UUID, streams=("ecg", "accel")),
            Subscription(HEART_RATE_MEASUREMENT_UUID, streams=("hr", "rr", "energy")),
            Subscription(BATTERY_LEVEL_UUID, streams=("battery",)),
        )

    @property
    def start_commands(self) -> tuple[GattWrite, ...]:
        return (
            GattWrite(PMD_CONTROL_POINT_UUID, encode_start_request(_ECG, self.ecg_settings)),
            GattWrite(PMD_CONTROL_POINT_UUID, encode_start_request(_ACC, self.acc_settings)),
        )

    @property
    def stop_commands(self) -> tuple[GattWrite, ...]:
        return (
            GattWrite(PMD_CONTROL_POINT_UUID, encode_stop_request(_ECG)),
            GattWrite(PMD_CONTROL_POINT_UUID, encode_stop_request(_ACC)),
        )

    def matches(self, advertisement: Advertisement) -> bool:
        """A name starting with "Polar H10", or the PMD service in the advertisement."""
        if advertisement.name is not None and advertisement.name.startswith("Polar H10"):
            return True
        return any(u.lower() == PMD_SERVICE_UUID for u in advertisement.service_uuids)

    def new_decoder(self, device_key: str) -> PolarH10Decoder:
        return PolarH10Decoder(
            device_key, ecg_rate_hz=self._ecg_rate_hz, acc_rate_hz=self._acc_rate_hz
        )


POLAR_H10_PROFILE: Final = PolarH10Profile()

if TYPE_CHECKING:
    # Static proof that the classes satisfy the registry protocols.
    _profile: Profile = POLAR_H10_PROFILE
    _decoder: StreamDecoder = POLAR_H10_PROFILE.new_decoder("")
