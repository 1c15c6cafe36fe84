"""A simulated Polar H10 chest strap: Heart Rate Service and Polar Measurement Data.

Role: ``SimulatedPolarH10`` serves what a real H10 serves (Heart Rate Service 0x180D with
measurement notifications about once a second carrying the RR intervals of the beats
since the previous one, contact flags and body sensor location; Battery; Device
Information; the PMD service with its control point and data characteristic) over a
bumble GATT server negotiating the H10's ATT MTU of 232.

PMD, as captured from a real H10 (phdiethelm/h10_ecg exploration/gatttool.md): the
control point reads ``0f 05 00...`` (17 bytes: ECG and ACC); "get settings" for ECG
answers ``f0 01 00 00 00 00 01 82 00 01 01 0e 00`` (130 Hz, 14 bit); a start without
settings answers INVALID_PARAMETER (``f0 02 00 05 00``: an error ends with a "more"
byte of 0); a good start answers ``f0 02 00 00 00 00`` (success, no "more", one
reserved parameter byte, which the SDK reads as "no settings"). ECG frames are raw
type 0 with 73 int24 µV samples (229 bytes); ACC frames raw type 1 with 36 int16 mG
x/y/z samples (226 bytes), at 25/50/100/200 Hz
and range 2/4/8 G. Frame timestamps are the last sample's time in ns since 2000-01-01 on
the device clock. Other op codes answer INVALID_OP_CODE, other measurement types
INVALID_MEASUREMENT_TYPE (what the captured H10 answered to SDK-mode requests).

RR intervals come from the ECG source's ground-truth R peaks (``PolarSources.beats``),
rounded to 1/1024 s: the beats the strap "detected" are exactly the synthetic ones. The
ECG is sampled continuously (the strap always computes heart rate), whether or not the
PMD ECG stream is running. Sample ``j`` of a stream at ``fs`` is the source at ``j / fs``
s after boot; truth time ``t`` s is PMD time ``epoch_ns + t * 1e9``.

It must not: import gateway code, decode what it sends, or read the wall clock except
once for the default epoch (a strap whose clock was set by its phone app).
"""

from __future__ import annotations

import time
from typing import Final

import numpy as np
from bumble import core, gatt
from bumble.core import AdvertisingData
from bumble.device import Connection

from devices.errors import FrameDecodeError
from devices.frame import FloatArray
from devices.hrs import (
    BODY_SENSOR_LOCATION_UUID,
    HEART_RATE_MEASUREMENT_UUID,
    HEART_RATE_SERVICE_UUID,
    BodySensorLocation,
    HeartRateMeasurement,
    encode_heart_rate_measurement,
    rr_ms_from_units,
    rr_units_from_ms,
)
from devices.info import DeviceInformation
from devices.polar import (
    H10_ACC_FRAME_TYPE,
    H10_ACC_SAMPLES_PER_FRAME,
    H10_ECG_FRAME_TYPE,
    H10_ECG_SAMPLES_PER_FRAME,
    PMD_CONTROL_POINT_UUID,
    PMD_DATA_UUID,
    PMD_SERVICE_UUID,
    PmdControlRequest,
    PmdErrorCode,
    PmdMeasurementType,
    PmdOpCode,
    PmdSettings,
    PmdSettingType,
    decode_control_request,
    encode_control_response,
    encode_pmd_features,
    encode_pmd_frame,
    encode_settings,
)
from devices.sim.clock import SampleGrid, SourceCursor
from devices.sim.faults import replace_byte, truncate
from devices.sim.gap import ad_structures
from devices.sim.gatt_table import DeviceLink
from devices.sim.peripheral import SimPeripheral
from devices.sim.polar_sources import PolarSources
from devices.sim.radio import VirtualRadio
from devices.sim.sentlog import SentLogSink
from devices.sim.signals.scenario import WearerScenario

__all__ = [
    "EPOCH_2000_UNIX_NS",
    "H10_ATT_MTU",
    "POLAR_MODEL",
    "SimulatedPolarH10",
    "polar_name",
]

POLAR_MODEL: Final = "polar_h10"
H10_ATT_MTU: Final = 232
EPOCH_2000_UNIX_NS: Final = 946_684_800 * 1_000_000_000
_ECG: Final = PmdMeasurementType.ECG
_ACC: Final = PmdMeasurementType.ACC
_ECG_GRID: Final = SampleGrid.from_hz(130)
_ECG_FRAME_BYTES: Final = 10 + 3 * H10_ECG_SAMPLES_PER_FRAME
_ACC_FRAME_BYTES: Final = 10 + 6 * H10_ACC_SAMPLES_PER_FRAME
_INT24: Final = (-(1 << 23), (1 << 23) - 1)
_ALLOWED: Final[dict[PmdMeasurementType, dict[PmdSettingType, tuple[int, ...]]]] = {
    _ECG: {PmdSettingType.SAMPLE_RATE: (130,), PmdSettingType.RESOLUTION: (14,)},
    _ACC: {
        PmdSettingType.SAMPLE_RATE: (25, 50, 100, 200),
        PmdSettingType.RESOLUTION: (16,),
        PmdSettingType.RANGE: (2, 4, 8),
    },
}
_SETTING_ERRORS: Final = {
    PmdSettingType.SAMPLE_RATE: PmdErrorCode.INVALID_SAMPLE_RATE,
    PmdSettingType.RESOLUTION: PmdErrorCode.INVALID_RESOLUTION,
    PmdSettingType.RANGE: PmdErrorCode.INVALID_RANGE,
}
_HEART_RATE_16: Final = 0x180D
_POLAR_SERVICE_16: Final = 0xFEEE  # Polar's 16-bit member UUID, as real straps advertise


def polar_name(device_id: str) -> str:
    """The advertised name of an H10: ``Polar H10 <8 hex digits>``."""
    return f"Polar H10 {device_id}"


class SimulatedPolarH10(SimPeripheral):
    """One H10 on the radio; ``async with SimulatedPolarH10(radio, address=...)``."""

    model = POLAR_MODEL
    stream_names = ("ecg", "accel", "hr")
    max_mtu = H10_ATT_MTU

    def __init__(
        self,
        radio: VirtualRadio,
        *,
        address: str,
        device_id: str | None = None,
        seed: int = 0,
        require_bonding: bool = False,
        passkey: int | None = None,
        speed: float = 1.0,
        log: SentLogSink | None = None,
        sources: PolarSources | None = None,
        scenario: WearerScenario | None = None,
        epoch_ns: int | None = None,
        battery_percent: int | None = None,
        drain_percent_per_hour: float = 0.25,
        advertising_interval_ms: float = 100.0,
    ) -> None:
        state = np.random.SeedSequence([seed, 0x810]).generate_state(2)
        self.device_id = (device_id or f"{int(state[0]):08X}").upper()
        if len(self.device_id) != 8 or any(c not in "0123456789ABCDEF" for c in self.device_id):
            raise ValueError("device_id is 8 hex digits")
        super().__init__(
            radio,
            address=address,
            name=polar_name(self.device_id),
            info=DeviceInformation(
                manufacturer_name="Polar Electro Oy",
                model_number="H10",
                serial_number=f"C{int(state[1]) % 10**8:08d}",
                hardware_revision="39044024.10",
                firmware_revision="3.1.1",
            ),
            require_bonding=require_bonding,
            passkey=passkey,
            speed=speed,
            log=log,
            battery_percent=70 + int(state[1]) % 31 if battery_percent is None else battery_percent,
            drain_percent_per_hour=drain_percent_per_hour,
            advertising_interval_ms=advertising_interval_ms,
        )
        self.sources = sources or PolarSources.synthetic(seed, scenario=scenario)
        self.epoch_ns = time.time_ns() - EPOCH_2000_UNIX_NS if epoch_ns is None else epoch_ns
        """Device clock at boot, in ns since 2000-01-01 (PMD timestamps add to it)."""
        self._ecg = SourceCursor(self.sources.ecg)
        self._acc = SourceCursor(self.sources.accel)
        if self._ecg.factor(_ECG_GRID) is None or any(
            self._acc.factor(SampleGrid.from_hz(fs)) is None
            for fs in _ALLOWED[_ACC][PmdSettingType.SAMPLE_RATE]
        ):
            raise ValueError("sources: ECG at a multiple of 130 Hz, ACC of 200 Hz")
        self._beats_reported = 0
        self._heart_rate_bpm = round(_resting_hr(scenario))
        self._hr_char = self.attributes.characteristic(
            HEART_RATE_MEASUREMENT_UUID, gatt.Characteristic.NOTIFY
        )
        location = bytes([BodySensorLocation.CHEST])
        self._location_char = self.attributes.characteristic(
            BODY_SENSOR_LOCATION_UUID, gatt.Characteristic.READ, read=lambda: location
        )
        self._data_char = self.attributes.characteristic(PMD_DATA_UUID, gatt.Characteristic.NOTIFY)
        self._control_char = self.control_point(
            PMD_CONTROL_POINT_UUID,
            gatt.Characteristic.READ | gatt.Characteristic.WRITE | gatt.Characteristic.INDICATE,
            self._handle_pmd,
            read=lambda: encode_pmd_features((_ECG, _ACC)),
            one_at_a_time=False,
        )

    # --- GATT ---------------------------------------------------------------------

    def _services(self) -> list[gatt.Service]:
        return [
            gatt.Service(HEART_RATE_SERVICE_UUID, [self._hr_char, self._location_char]),
            gatt.Service(PMD_SERVICE_UUID, [self._control_char, self._data_char]),
        ]

    def _advertising(self) -> tuple[bytes, bytes]:
        uuids16 = _HEART_RATE_16.to_bytes(2, "little") + _POLAR_SERVICE_16.to_bytes(2, "little")
        advertising = ad_structures(
            (AdvertisingData.FLAGS, bytes([0x06])),
            (AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode()),
            (AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, uuids16),
        )
        scan_response = ad_structures(
            (
                AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                core.UUID(PMD_SERVICE_UUID).uuid_128_bytes,
            )
        )
        return advertising, scan_response

    def _corrupt(self, stream: str, data: bytes, index: int) -> bytes:
        kind = (index - 1) % 3
        if stream == "hr":
            # Too short for a heart rate, or a dangling byte after the RR intervals.
            return data[:1] if kind == 0 else data + b"\x00"
        if kind == 0:
            return truncate(data, 1)  # a partial sample
        if kind == 1:
            return replace_byte(data, 0, 4)  # measurement type 4 is unused
        return replace_byte(data, 9, 0x7F)  # frame type 127 does not exist

    def _on_link_up(self, link: DeviceLink) -> None:
        self.spawn(self._heart_rate(link.connection), "hr", link=link)

    # --- PMD control point ----------------------------------------------------------

    def _handle_pmd(self, connection: Connection, data: bytes) -> bytes:
        measurement_id = data[1] & 0x3F if len(data) > 1 else 0
        try:
            request = decode_control_request(data)
        except FrameDecodeError:
            op = data[0] if data else 0
            if op not in tuple(PmdOpCode) or op == PmdOpCode.NULL_ITEM:
                return encode_control_response(op, measurement_id, PmdErrorCode.INVALID_OP_CODE)
            settings_sent = op == PmdOpCode.REQUEST_MEASUREMENT_START and len(data) > 2
            error = PmdErrorCode.INVALID_PARAMETER if settings_sent else PmdErrorCode.INVALID_LENGTH
            return encode_control_response(op, measurement_id, error)
        op, m = request.op_code, request.measurement
        if op not in (
            PmdOpCode.GET_MEASUREMENT_SETTINGS,
            PmdOpCode.REQUEST_MEASUREMENT_START,
            PmdOpCode.STOP_MEASUREMENT,
        ):
            return encode_control_response(op, measurement_id, PmdErrorCode.INVALID_OP_CODE)
        if m is None or m not in _ALLOWED:
            return encode_control_response(
                op, measurement_id, PmdErrorCode.INVALID_MEASUREMENT_TYPE
            )
        if request.offline:
            return encode_control_response(op, m, PmdErrorCode.NOT_SUPPORTED)
        if op is PmdOpCode.STOP_MEASUREMENT:
            self.stop_stream(_stream_of(m))
            return encode_control_response(op, m)
        if connection.att_mtu - 3 < (_ECG_FRAME_BYTES if m is _ECG else _ACC_FRAME_BYTES):
            return encode_control_response(op, m, PmdErrorCode.INVALID_MTU)
        if op is PmdOpCode.GET_MEASUREMENT_SETTINGS:
            available = encode_settings(PmdSettings.of(_ALLOWED[m]))
            return encode_control_response(op, m, parameters=available)
        return self._start(request, m, connection)

    def _start(
        self, request: PmdControlRequest, m: PmdMeasurementType, connection: Connection
    ) -> bytes:
        op = request.op_code
        settings = request.settings or PmdSettings()
        allowed = _ALLOWED[m]
        if set(settings) != set(allowed) or any(len(v) != 1 for v in settings.values()):
            return encode_control_response(op, m, PmdErrorCode.INVALID_PARAMETER)
        for kind, values in settings.items():
            if values[0] not in allowed[kind]:
                return encode_control_response(op, m, _SETTING_ERRORS[kind])
        if _stream_of(m) in self.running_streams:
            return encode_control_response(op, m, PmdErrorCode.ALREADY_IN_STATE)
        if m is _ECG:
            self.start_stream("ecg", self._run_ecg(connection))
        else:
            rate = settings[PmdSettingType.SAMPLE_RATE][0]
            range_g = settings[PmdSettingType.RANGE][0]
            self.start_stream("accel", self._run_acc(connection, rate, range_g))
        return encode_control_response(op, m, parameters=b"\x00")

    # --- streaming --------------------------------------------------------------------

    async def _run_ecg(self, connection: Connection) -> None:
        n = H10_ECG_SAMPLES_PER_FRAME
        factor = self._ecg.factor(_ECG_GRID)
        assert factor is not None  # checked at construction
        first = _ECG_GRID.first_at_or_after(self.clock.now_ns())
        await self._ecg.seek(first * factor)

        async def produce(start: int) -> None:
            samples = np.clip(np.rint(self._ecg.read(n, factor)), *_INT24)
            timestamp = self.epoch_ns + _ECG_GRID.time_ns(start + n - 1)
            await self._send_pmd(connection, "ecg", _ECG, samples, timestamp, 130.0)

        await self.paced(_ECG_GRID, first, n, produce)

    async def _run_acc(self, connection: Connection, rate_hz: int, range_g: int) -> None:
        n = H10_ACC_SAMPLES_PER_FRAME
        grid = SampleGrid.from_hz(rate_hz)
        factor = self._acc.factor(grid)
        assert factor is not None  # checked at construction
        first = grid.first_at_or_after(self.clock.now_ns())
        await self._acc.seek(first * factor)
        limit = min(range_g * 1000, 0x7FFF)

        async def produce(start: int) -> None:
            samples = np.clip(np.rint(self._acc.read(n, factor)), -limit, limit)
            timestamp = self.epoch_ns + grid.time_ns(start + n - 1)
            await self._send_pmd(connection, "accel", _ACC, samples, timestamp, float(rate_hz))

        await self.paced(grid, first, n, produce)

    async def _send_pmd(
        self,
        connection: Connection,
        stream: str,
        m: PmdMeasurementType,
        samples: FloatArray,
        timestamp_ns: int,
        fs_hz: float,
    ) -> None:
        frame_type = H10_ECG_FRAME_TYPE if m is _ECG else H10_ACC_FRAME_TYPE
        data = encode_pmd_frame(
            m, frame_type=frame_type, compressed=False, timestamp_ns=timestamp_ns, samples=samples
        )
        samples.flags.writeable = False
        await self.emit(
            connection,
            self._data_char,
            data,
            stream=stream,
            samples=samples,
            fs_hz=fs_hz,
            device_time_ns=timestamp_ns,
        )

    async def _heart_rate(self, connection: Connection) -> None:
        """One Heart Rate Measurement a second with the RR intervals of the beats since
        the previous one: every beat after the link came up is reported exactly once
        (lost with its notification when nobody subscribed)."""
        tick_ns = self.clock.now_ns()
        since_s = tick_ns / 1e9
        factor = self._ecg.factor(_ECG_GRID)
        assert factor is not None
        while True:
            tick_ns += 1_000_000_000
            await self.clock.sleep_until(tick_ns)
            if "ecg" not in self.running_streams:  # else the ECG stream keeps it current
                await self._ecg.seek(_ECG_GRID.first_at_or_after(tick_ns) * factor)
            beats = self.sources.beats()
            rr_ms = tuple(
                rr_ms_from_units(rr_units_from_ms(1000.0 * (beats[i] - beats[i - 1])))
                for i in range(max(self._beats_reported, 1), len(beats))
                if beats[i] > since_s
            )
            self._beats_reported = len(beats)
            if rr_ms:
                self._heart_rate_bpm = min(255, round(60_000.0 / float(np.mean(rr_ms))))
            measurement = HeartRateMeasurement(self._heart_rate_bpm, rr_ms, sensor_contact=True)
            samples = np.array([float(self._heart_rate_bpm)])
            samples.flags.writeable = False
            await self.emit(
                connection,
                self._hr_char,
                encode_heart_rate_measurement(measurement),
                stream="hr",
                samples=samples,
                fs_hz=None,
                device_time_ns=None,
                rr_intervals_ms=rr_ms,
            )


def _stream_of(m: PmdMeasurementType) -> str:
    return "ecg" if m is _ECG else "accel"


def _resting_hr(scenario: WearerScenario | None) -> float:
    """The heart rate an H10 reports before it has seen two beats."""
    return (scenario or WearerScenario()).resting_hr_bpm
