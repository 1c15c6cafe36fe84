"""A simulated biogw garment: the open garment profile served by a bumble GATT server.

Role: ``SimulatedGarment`` speaks ``docs/garment-profile.md`` exactly: the garment
service (data notify; control point write + indicate answering every write with one
response; features read; status read + notify), Battery (level read + notify, slowly
draining) and Device Information. It streams ECG, respiration, temperature and
accelerometer (gyroscope optional, off by default) at the requested rates with the frame
sizes of ``codec.samples_per_frame`` for the link's MTU, per-stream u32 sequence numbers
that survive STOP/START and reconnects, and device time in µs since boot from its own
clock. Samples come from ``GarmentSources`` (``garment_sources``: synthetic, seeded per
device, or any ``SignalSource`` such as a replay) and are quantised with
``codec.quantize`` so what is sent is exactly what a decoder returns.

Sample grid: sample ``j`` of a stream at rate ``fs`` is the source signal at ``j / fs``
seconds after boot, so a source's ground truth (R peaks, breaths, activity) is on the
device's timeline: truth time ``t`` s is device time ``t * 1e6`` µs. A stream starts at
the first grid sample at or after its START. Battery notifications and status values
are not in the sent log (only sensor frames are).

It must not: import gateway code, decode frames it sends, or read the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final

import numpy as np
from bumble import core, gatt
from bumble.core import AdvertisingData
from bumble.device import Connection

from devices.errors import FrameEncodeError
from devices.frame import FloatArray, Unit
from devices.garment.codec import GarmentFrame, encode_data_frame, quantize, samples_per_frame
from devices.garment.control import (
    ControlRequest,
    ControlRequestError,
    ControlResponse,
    GarmentFeatures,
    GarmentStatus,
    GetConfigRequest,
    GetTimeRequest,
    SetConfigRequest,
    StartRequest,
    StopRequest,
    StreamConfig,
    StreamFeatures,
    StreamSettings,
    decode_control_request,
    encode_control_response,
    encode_features,
    encode_status,
    validate_request,
)
from devices.garment.spec import (
    CONTROL_POINT_UUID,
    DATA_CHARACTERISTIC_UUID,
    FEATURES_UUID,
    GARMENT_SERVICE_UUID,
    MAX_PAYLOAD_BYTES,
    MAX_SEQUENCE,
    PROTOCOL_VERSION,
    STATUS_UUID,
    STREAM_SPECS,
    Capabilities,
    FrameFlags,
    GarmentStream,
    RateCode,
    ResultCode,
    SampleEncoding,
    StatusFlags,
    rate_code,
)
from devices.info import DeviceInformation
from devices.sim.clock import SampleGrid, SourceCursor
from devices.sim.faults import replace_byte, truncate
from devices.sim.gap import ad_structures
from devices.sim.garment_sources import GarmentSources
from devices.sim.peripheral import SimPeripheral
from devices.sim.radio import VirtualRadio
from devices.sim.sentlog import SentLogSink
from devices.sim.signals.scenario import WearerScenario

__all__ = [
    "ACCEL_FULL_SCALES_G",
    "GARMENT_MODEL",
    "GYRO_FULL_SCALES_DPS",
    "SimulatedGarment",
    "garment_name",
]

GARMENT_MODEL: Final = "garment"
ACCEL_FULL_SCALES_G = (2, 4, 8, 16)
GYRO_FULL_SCALES_DPS = (250, 500, 1000, 2000)
_DEFAULT_FULL_SCALE = {GarmentStream.ACCEL: 8, GarmentStream.GYRO: 2000}
_FULL_SCALES = {GarmentStream.ACCEL: ACCEL_FULL_SCALES_G, GarmentStream.GYRO: GYRO_FULL_SCALES_DPS}
_FULL_SCALE_TO_UNITS = {GarmentStream.ACCEL: 1000.0, GarmentStream.GYRO: 1.0}  # g -> mG, dps
_CONTACT_STREAMS = frozenset({GarmentStream.ECG, GarmentStream.RESP, GarmentStream.TEMP})
_CONTACT = FrameFlags.CONTACT_SUPPORTED | FrameFlags.SKIN_CONTACT
_BATTERY_LOW_PERCENT = 15
_UNITS = {
    GarmentStream.ECG: Unit.MICROVOLT,
    GarmentStream.RESP: Unit.RESP_AU,
    GarmentStream.TEMP: Unit.CELSIUS,
    GarmentStream.ACCEL: Unit.MILLI_G,
    GarmentStream.GYRO: Unit.DEG_PER_S,
}


def garment_name(suffix: str) -> str:
    """The advertised name of a garment: ``biogw garment <suffix>``."""
    return f"biogw garment {suffix}"


@dataclass(slots=True)
class _Stream:
    stream: GarmentStream
    name: str
    cursor: SourceCursor
    features: StreamFeatures
    settings: StreamSettings
    rate: RateCode
    samples_per_frame: int = 0
    sequence: int = 0


def _grid(code: RateCode) -> SampleGrid:
    return SampleGrid(Fraction(1_000_000, code.period_us))


def _stream_features(stream: GarmentStream, cursor: SourceCursor) -> StreamFeatures:
    spec = STREAM_SPECS[stream]
    source = cursor.source
    if source.unit is not _UNITS[stream] or source.channels != spec.n_channels:
        raise ValueError(f"{stream.name} source must give {_UNITS[stream]} x {spec.n_channels}")
    codes = [code for code in spec.rates if cursor.factor(_grid(code)) is not None]
    if not codes:
        raise ValueError(f"{stream.name} source at {source.fs_hz} Hz serves no protocol rate")
    default = spec.default_rate if spec.default_rate in codes else codes[-1]
    return StreamFeatures(
        stream,
        spec.encodings,
        tuple(code.hz for code in codes),
        default.hz,
        _FULL_SCALES.get(stream, ()),
    )


class SimulatedGarment(SimPeripheral):
    """One garment on the radio; ``async with SimulatedGarment(radio, address=...)``."""

    model = GARMENT_MODEL
    stream_names = tuple(STREAM_SPECS[s].kind.value for s in GarmentStream)
    max_mtu = 247

    def __init__(
        self,
        radio: VirtualRadio,
        *,
        address: str,
        name: str | None = None,
        seed: int = 0,
        require_bonding: bool = False,
        passkey: int | None = None,
        speed: float = 1.0,
        log: SentLogSink | None = None,
        sources: GarmentSources | None = None,
        scenario: WearerScenario | None = None,
        gyro: bool = False,
        battery_percent: int | None = None,
        drain_percent_per_hour: float = 2.0,
        advertising_interval_ms: float = 100.0,
    ) -> None:
        state = np.random.SeedSequence([seed, 0x6A]).generate_state(2)
        suffix = address.replace(":", "").upper()[-4:]
        super().__init__(
            radio,
            address=address,
            name=name or garment_name(suffix),
            info=DeviceInformation(
                manufacturer_name="biogw",
                model_number="biogw sim garment",
                serial_number=f"SIM-{address.replace(':', '').upper()}",
                hardware_revision="sim-1",
                firmware_revision="1.0.0",
            ),
            require_bonding=require_bonding,
            passkey=passkey,
            speed=speed,
            log=log,
            battery_percent=60 + int(state[1]) % 41 if battery_percent is None else battery_percent,
            drain_percent_per_hour=drain_percent_per_hour,
            advertising_interval_ms=advertising_interval_ms,
        )
        self.sources = sources or GarmentSources.synthetic(seed, scenario=scenario, gyro=gyro)
        self.boot_id = int(state[0])
        self._streams_state: dict[GarmentStream, _Stream] = {}
        for stream in GarmentStream:
            source = self.sources.for_stream(stream)
            if source is None:
                continue
            cursor = SourceCursor(source)
            features = _stream_features(stream, cursor)
            settings = StreamSettings(SampleEncoding.INT16, 0)
            default = rate_code(features.default_rate_hz)
            assert default is not None  # features only list protocol rates
            name = STREAM_SPECS[stream].kind.value
            self._streams_state[stream] = _Stream(stream, name, cursor, features, settings, default)
        self.features = GarmentFeatures(
            PROTOCOL_VERSION,
            Capabilities.CONTACT_DETECTION,
            self.boot_id,
            tuple(s.features for s in self._streams_state.values()),
        )
        self._data_char = self.attributes.characteristic(
            DATA_CHARACTERISTIC_UUID, gatt.Characteristic.NOTIFY
        )
        self._status_char = self.attributes.characteristic(
            STATUS_UUID, gatt.Characteristic.READ | gatt.Characteristic.NOTIFY, read=self._status
        )
        self._features_char = self.attributes.characteristic(
            FEATURES_UUID, gatt.Characteristic.READ, read=lambda: encode_features(self.features)
        )
        self._control_char = self.control_point(
            CONTROL_POINT_UUID,
            gatt.Characteristic.WRITE | gatt.Characteristic.INDICATE,
            self._handle_control,
        )

    # --- GATT ---------------------------------------------------------------------

    def _services(self) -> list[gatt.Service]:
        chars = [self._data_char, self._control_char, self._features_char, self._status_char]
        return [gatt.Service(GARMENT_SERVICE_UUID, chars)]

    def _advertising(self) -> tuple[bytes, bytes]:
        # Flags (3) + the 128-bit service UUID (18) leave 10 bytes: a shortened name.
        name = self.name.encode()
        short = (AdvertisingData.SHORTENED_LOCAL_NAME, name[:8]) if len(name) > 8 else None
        advertising = ad_structures(
            (AdvertisingData.FLAGS, bytes([0x06])),
            (
                AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                core.UUID(GARMENT_SERVICE_UUID).uuid_128_bytes,
            ),
            short or (AdvertisingData.COMPLETE_LOCAL_NAME, name),
        )
        return advertising, ad_structures((AdvertisingData.COMPLETE_LOCAL_NAME, name))

    def _status(self) -> bytes:
        flags = StatusFlags.CONTACT_SUPPORTED | StatusFlags.SKIN_CONTACT
        if self.battery_percent <= _BATTERY_LOW_PERCENT:
            flags |= StatusFlags.BATTERY_LOW
        running = self.running_streams
        streaming = tuple(s.stream for s in self._streams_state.values() if s.name in running)
        return encode_status(GarmentStatus(self.clock.now_ns() // 1000, flags, streaming))

    def _status_changed(self) -> None:
        link = self._link
        if link is not None and self.attributes.is_subscribed(link.connection, self._status_char):
            value = self._status()
            self.spawn(
                self.device.notify_subscriber(link.connection, self._status_char, value),
                "status",
                link=link,
            )

    def _battery_changed(self) -> None:
        if self.battery_percent == _BATTERY_LOW_PERCENT:
            self._status_changed()

    def _corrupt(self, stream: str, data: bytes, index: int) -> bytes:
        kind = (index - 1) % 4
        if kind == 0:
            return truncate(data, 1)  # length no longer matches the sample count
        if kind == 1:
            return replace_byte(data, 0, 0xFE)  # unknown protocol version
        if kind == 2:
            return replace_byte(data, 4, data[4] | 0x80)  # reserved flag bit
        return replace_byte(data, 1, 0x00)  # reserved stream id

    # --- control point --------------------------------------------------------------

    def _handle_control(self, connection: Connection, data: bytes) -> bytes:
        try:
            request = decode_control_request(data)
            validate_request(request, self.features)
            response = self._apply(request, connection)
        except ControlRequestError as exc:
            response = ControlResponse(exc.opcode, exc.result, exc.stream_id)
        return encode_control_response(response)

    def _apply(self, request: ControlRequest, connection: Connection) -> ControlResponse:
        op = request.opcode
        ok = ControlResponse(op, ResultCode.SUCCESS)
        match request:
            case StartRequest(rates_hz=rates):
                self._start(rates, connection)
            case StopRequest(streams=streams):
                for stream in streams or tuple(self._streams_state):
                    self.stop_stream(self._streams_state[stream].name)
                self._status_changed()
            case SetConfigRequest(settings=settings):
                running = self.running_streams
                for stream, _ in settings:
                    if self._streams_state[stream].name in running:
                        raise ControlRequestError("running", ResultCode.INVALID_STATE, op, stream)
                for stream, item in settings:
                    self._streams_state[stream].settings = item
            case GetConfigRequest():
                return ControlResponse(op, ResultCode.SUCCESS, config=self._config())
            case GetTimeRequest():
                now_us = self.clock.now_ns() // 1000
                return ControlResponse(
                    op, ResultCode.SUCCESS, device_time_us=now_us, boot_id=self.boot_id
                )
        return ok

    def _config(self) -> tuple[StreamConfig, ...]:
        running = self.running_streams
        return tuple(
            StreamConfig(
                s.stream, s.name in running, s.rate.hz, s.settings.encoding, s.settings.full_scale
            )
            for s in self._streams_state.values()
        )

    def _start(
        self, rates: tuple[tuple[GarmentStream, float], ...], connection: Connection
    ) -> None:
        payload = min(MAX_PAYLOAD_BYTES, connection.att_mtu - 3)
        plans: list[tuple[_Stream, RateCode, int]] = []
        for stream, fs_hz in rates:
            state = self._streams_state[stream]
            try:
                n = samples_per_frame(
                    stream, fs_hz, encoding=state.settings.encoding, max_payload=payload
                )
            except FrameEncodeError as exc:
                raise ControlRequestError(
                    "mtu", ResultCode.MTU_TOO_SMALL, StartRequest.opcode, stream
                ) from exc
            code = rate_code(fs_hz)
            assert code is not None  # decode_control_request only yields protocol rates
            plans.append((state, code, n))
        running = self.running_streams
        for state, code, n in plans:
            if state.name in running and state.rate is code and state.samples_per_frame == n:
                continue  # START on a running stream at the same rate changes nothing
            state.rate, state.samples_per_frame = code, n
            self.start_stream(state.name, self._run(state, connection, payload))
        self._status_changed()

    # --- streaming --------------------------------------------------------------------

    async def _run(self, state: _Stream, connection: Connection, payload: int) -> None:
        code, n, encoding = state.rate, state.samples_per_frame, state.settings.encoding
        grid = _grid(code)
        factor = state.cursor.factor(grid)
        assert factor is not None  # the features only offer rates the source serves
        first = grid.first_at_or_after(self.clock.now_ns())
        await state.cursor.seek(first * factor)
        full_scale = state.settings.full_scale or _DEFAULT_FULL_SCALE.get(state.stream, 0)

        async def produce(start: int) -> None:
            samples, flags = _condition(
                state.stream, state.cursor.read(n, factor), encoding, full_scale
            )
            frame = GarmentFrame(
                state.stream,
                state.sequence & MAX_SEQUENCE,
                start * code.period_us,
                code.hz,
                samples,
                flags,
                encoding,
            )
            state.sequence += 1
            await self.emit(
                connection,
                self._data_char,
                encode_data_frame(frame, max_payload=payload),
                stream=state.name,
                samples=frame.samples,
                fs_hz=frame.fs_hz,
                device_time_ns=frame.device_time_ns,
                sequence=frame.sequence,
            )

        await self.paced(grid, first, n, produce)


def _condition(
    stream: GarmentStream, raw: FloatArray, encoding: SampleEncoding, full_scale: int
) -> tuple[FloatArray, FrameFlags]:
    """Clip to the sensor's range, quantise to the wire's counts, and set the flags."""
    spec = STREAM_SPECS[stream]
    flags = _CONTACT if stream in _CONTACT_STREAMS else FrameFlags.NONE
    saturated = False
    if full_scale:
        limit = full_scale * _FULL_SCALE_TO_UNITS[stream]
        saturated = bool(np.any(np.abs(raw) >= limit))
        raw = np.clip(raw, -limit, limit)
    samples = quantize(stream, raw, encoding=encoding)
    counts = np.rint(samples / spec.lsb)
    if saturated or np.any(counts <= encoding.min_count) or np.any(counts >= encoding.max_count):
        flags |= FrameFlags.SATURATED
    return samples, flags
