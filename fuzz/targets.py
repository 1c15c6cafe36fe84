"""The table of byte-taking decoders, shared by the atheris fuzzer and the hypothesis test.

Contract under test: arbitrary bytes into a decoder either decode or raise the project's
decode error (``FrameDecodeError``); a profile decoder may also raise ``ProfileError``
(a frame for a measurement that was never started), and the MQTT wire decoder only
``WireFormatError``, the ingester's MQTT 5 decoder only ``MqttCodecError``, and the
ingester's ``classify`` nothing at all. Anything else is a bug.
"""

from __future__ import annotations

from collections.abc import Callable

from devices.errors import FrameDecodeError, ProfileError
from devices.garment import codec as garment_codec
from devices.garment import control as garment_control
from devices.hrs import decode_heart_rate_measurement
from devices.hrs.profile import decode_body_sensor_location
from devices.hts import decode_temperature_measurement
from devices.hts.measurement import decode_date_time, decode_temperature_type
from devices.info.battery import decode_battery_level
from devices.info.device_information import decode_pnp_id, decode_system_id, decode_utf8_string
from devices.polar import (
    decode_control_point_notification,
    decode_control_request,
    decode_control_response,
    decode_pmd_features,
    parse_pmd_frame,
)
from devices.profiles import PROFILES
from gateway.ingest.validate import IngestPath, classify
from gateway.transport.mqtt5_codec import StreamDecoder5
from gateway.transport.mqtt_codec import MqttCodecError
from gateway.transport.topics import TopicLayout
from gateway.transport.wire import WireFormatError
from gateway.transport.wire import decode as decode_wire

Decoder = Callable[[bytes], object]

ALLOWED: tuple[type[BaseException], ...] = (
    FrameDecodeError,
    ProfileError,
    WireFormatError,
    MqttCodecError,
)


def _profile_target(index: int, characteristic: str) -> Decoder:
    decoder = PROFILES[index].new_decoder("fuzz")

    def decode(data: bytes) -> object:
        return decoder.decode(characteristic, data, 1_000_000_000)

    return decode


def _pmd(rate: int, previous: int) -> Decoder:
    return lambda data: parse_pmd_frame(data, sample_rate_hz=rate, previous_timestamp_ns=previous)


def mqtt5_stream_target(data: bytes) -> object:
    """A CONNACK, then ``data`` fed to the ingester's MQTT 5 decoder in pieces whose size
    the first byte picks (so the splits are fuzzed too)."""
    decoder = StreamDecoder5()
    decoder.feed(b"\x20\x03\x00\x00\x00")
    step = (data[0] % 64 + 1) if data else 1
    return [decoder.feed(data[i : i + step]) for i in range(0, len(data), step)]


_LAYOUT = TopicLayout("biogw/v1")
_TOPICS = (
    "biogw/v1/clinical/0b9f3c1e-5a2d-4e8f-9c7b-1d2e3f4a5b6c/ecg",
    "biogw/v1/clinical/0b9f3c1e-5a2d-4e8f-9c7b-1d2e3f4a5b6c/ecg/gap",
    "biogw/v1/research/ecg",
    "biogw/v1/research/accel/gap",
)


def ingest_target(data: bytes) -> object:
    """The ingester's validation never raises: any payload on any data topic of either
    path becomes a storable item or a dead letter (the first byte picks topic and path)."""
    first = data[0] if data else 0
    path = IngestPath.CLINICAL if first & 4 else IngestPath.RESEARCH
    return classify(path, _LAYOUT, _TOPICS[first % 4], data[1:], now_ns=1_790_000_000 * 10**9)


def targets() -> dict[str, Decoder]:
    """Every decoder, by name. Profile decoders keep state across calls, like in a session."""
    table: dict[str, Decoder] = {
        "hrs.measurement": decode_heart_rate_measurement,
        "hrs.body_sensor_location": decode_body_sensor_location,
        "hts.measurement": decode_temperature_measurement,
        "hts.date_time": decode_date_time,
        "hts.type": decode_temperature_type,
        "bas.level": decode_battery_level,
        "dis.string": lambda d: decode_utf8_string(d, "fuzz"),
        "dis.system_id": decode_system_id,
        "dis.pnp_id": decode_pnp_id,
        "pmd.frame.130": _pmd(130, 0),
        "pmd.frame.200.prev": _pmd(200, 10**15),
        "pmd.frame.1": _pmd(1, 0),
        "pmd.control_response": decode_control_response,
        "pmd.control_request": decode_control_request,
        "pmd.control_notification": decode_control_point_notification,
        "pmd.features": decode_pmd_features,
        "garment.data": garment_codec.decode_data_frame,
        "garment.control_request": garment_control.decode_control_request,
        "garment.control_response": garment_control.decode_control_response,
        "garment.features": garment_control.decode_features,
        "garment.status": garment_control.decode_status,
        "wire.message": decode_wire,
        "mqtt5.stream": mqtt5_stream_target,
        "ingest.classify": ingest_target,
    }
    for index, profile in enumerate(PROFILES):
        for sub in profile.subscriptions:
            table[f"profile.{profile.name}.{sub.characteristic[:8]}"] = _profile_target(
                index, sub.characteristic
            )
    return table
