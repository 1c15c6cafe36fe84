"""Tests of the garment control point, features and status values (devices.garment.control).

Golden vectors are the worked examples of docs/garment-profile.md sections 5-7 (our own
open spec is the public source); each hex literal is also parsed out of the doc.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.errors import FrameDecodeError, FrameEncodeError
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
    decode_control_response,
    decode_features,
    decode_status,
    encode_control_request,
    encode_control_response,
    encode_features,
    encode_get_config_request,
    encode_get_time_request,
    encode_set_config_request,
    encode_start_request,
    encode_status,
    encode_stop_request,
    validate_request,
)
from devices.garment.spec import (
    DEFAULT_RATES_HZ,
    MAX_DEVICE_TIME_US,
    STREAM_SPECS,
    Capabilities,
    ControlOpcode,
    GarmentStream,
    ResultCode,
    SampleEncoding,
    StatusFlags,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "garment-profile.md"
SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)
S, E, R, Op = GarmentStream, SampleEncoding, ResultCode, ControlOpcode


def doc_examples() -> dict[str, bytes]:
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"<!-- example: (\S+) -->\n```hex\n(.*?)\n```", text, re.S)
    return {name: bytes.fromhex(body) for name, body in found}


FEATURES = GarmentFeatures(
    protocol_version=1,
    capabilities=Capabilities.CONTACT_DETECTION
    | Capabilities.LEAD_OFF_DETECTION
    | Capabilities.CHARGING_STATUS,
    boot_id=0x1234ABCD,
    streams=(
        StreamFeatures(S.ECG, (E.INT16, E.INT24), (125.0, 250.0, 500.0), 250.0),
        StreamFeatures(S.RESP, (E.INT16, E.INT24), (25.0, 50.0), 25.0),
        StreamFeatures(S.TEMP, (E.INT16,), (1.0,), 1.0),
        StreamFeatures(S.ACCEL, (E.INT16,), (12.5, 25.0, 50.0, 100.0, 200.0), 50.0, (2, 4, 8, 16)),
    ),
)

REQUESTS: dict[str, tuple[str, ControlRequest]] = {
    "start-default": (
        "01 01 09 02 04 03 02 04 05",
        StartRequest(((S.ECG, 250.0), (S.RESP, 25.0), (S.TEMP, 1.0), (S.ACCEL, 50.0))),
    ),
    "start-ecg-gyro": ("01 01 0a 05 06", StartRequest(((S.ECG, 500.0), (S.GYRO, 100.0)))),
    "stop-all": ("02", StopRequest()),
    "stop-resp-temp": ("02 02 03", StopRequest((S.RESP, S.TEMP))),
    "set-config": (
        "03 01 02 00 00 04 01 08 00",
        SetConfigRequest(
            ((S.ECG, StreamSettings(E.INT24, 0)), (S.ACCEL, StreamSettings(E.INT16, 8)))
        ),
    ),
}  # fmt: skip

RESPONSES: dict[str, tuple[str, ControlResponse]] = {
    "rsp-start-ok": ("80 01 01", ControlResponse(Op.START, R.SUCCESS)),
    "rsp-start-unsupported": ("80 01 04 05", ControlResponse(Op.START, R.UNSUPPORTED_STREAM, 5)),
    "rsp-get-config": (
        "80 04 01 01 01 09 01 00 00 04 00 05 01 08 00",
        ControlResponse(Op.GET_CONFIG, R.SUCCESS, config=(
            StreamConfig(S.ECG, True, 250.0, E.INT16, 0),
            StreamConfig(S.ACCEL, False, 50.0, E.INT16, 8),
        )),
    ),
    "rsp-get-time": (
        "80 05 01 d2 02 96 49 00 00 00 00 ef be ad de",
        ControlResponse(Op.GET_TIME, R.SUCCESS, device_time_us=1_234_567_890, boot_id=0xDEADBEEF),
    ),
    "rsp-unknown-opcode": ("80 7f 02 00", ControlResponse(0x7F, R.OPCODE_NOT_SUPPORTED)),
}  # fmt: skip

STATUSES: dict[str, tuple[str, GarmentStatus]] = {
    "status-charging": (
        "01 1b 00 1e 00 00 87 93 03 00 00 00 00",
        GarmentStatus(
            60_000_000,
            StatusFlags.CONTACT_SUPPORTED | StatusFlags.SKIN_CONTACT
            | StatusFlags.CHARGING | StatusFlags.EXTERNAL_POWER,
            (S.ECG, S.RESP, S.TEMP, S.ACCEL),
        ),
    ),
    "status-fault": (
        "01 25 00 12 10 40 c9 a2 03 00 00 00 00",
        GarmentStatus(
            61_000_000,
            StatusFlags.CONTACT_SUPPORTED | StatusFlags.LEAD_OFF | StatusFlags.BATTERY_LOW,
            (S.ECG, S.ACCEL),
            (S.ACCEL,),
        ),
    ),
}  # fmt: skip

FEATURES_HEX = (
    "01 07 cd ab 34 12 04 01 06 80 06 09 00 02 06 30 00 04 00 03 02 04 00 02 00 04 02 78 01"
    " 05 04 02 00 04 00 08 00 10 00"
)


def test_every_doc_example_is_tested() -> None:
    data_frames = {"ecg-int16", "ecg-int24", "resp-int24", "temp", "accel", "gyro"}
    here = {*REQUESTS, *RESPONSES, *STATUSES, "features"}
    assert set(doc_examples()) == data_frames | here


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_golden_requests(name: str) -> None:
    hex_text, request = REQUESTS[name]
    data = bytes.fromhex(hex_text)
    assert doc_examples()[name] == data
    assert decode_control_request(data) == request
    assert encode_control_request(request) == data


def test_golden_request_helpers() -> None:
    assert encode_start_request(DEFAULT_RATES_HZ) == doc_examples()["start-default"]
    assert encode_start_request({S.GYRO: 100.0, S.ECG: 500.0}).hex(" ") == "01 01 0a 05 06"
    assert encode_stop_request() == b"\x02"
    assert encode_stop_request([S.TEMP, S.RESP]).hex(" ") == "02 02 03"
    assert encode_get_config_request() == b"\x04"
    assert encode_get_time_request() == b"\x05"
    assert decode_control_request(b"\x04") == GetConfigRequest()
    assert decode_control_request(b"\x05") == GetTimeRequest()
    settings_map = {S.ACCEL: StreamSettings(E.INT16, 8), S.ECG: StreamSettings(E.INT24)}
    assert encode_set_config_request(settings_map) == doc_examples()["set-config"]


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_golden_responses(name: str) -> None:
    hex_text, response = RESPONSES[name]
    data = bytes.fromhex(hex_text)
    assert doc_examples()[name] == data
    assert decode_control_response(data) == response
    assert encode_control_response(response) == data


def test_golden_features() -> None:
    data = bytes.fromhex(FEATURES_HEX)
    assert doc_examples()["features"] == data
    assert decode_features(data) == FEATURES
    assert encode_features(FEATURES) == data
    assert FEATURES.for_stream(S.GYRO) is None


@pytest.mark.parametrize("name", sorted(STATUSES))
def test_golden_status(name: str) -> None:
    hex_text, status = STATUSES[name]
    data = bytes.fromhex(hex_text)
    assert doc_examples()[name] == data
    assert decode_status(data) == status
    assert encode_status(status) == data


# --- request errors carry the device's answer ----------------------------------------


@pytest.mark.parametrize(
    ("hex_text", "result", "opcode", "stream_id"),
    [
        ("", R.INVALID_LENGTH, 0, 0),
        ("00", R.OPCODE_NOT_SUPPORTED, 0x00, 0),
        ("7f 01", R.OPCODE_NOT_SUPPORTED, 0x7F, 0),
        ("80 01 01", R.OPCODE_NOT_SUPPORTED, 0x80, 0),
        ("01", R.INVALID_LENGTH, 0x01, 0),
        ("01 01", R.INVALID_LENGTH, 0x01, 0),
        ("01 09 09", R.UNSUPPORTED_STREAM, 0x01, 9),
        ("01 00 09", R.UNSUPPORTED_STREAM, 0x01, 0),
        ("01 01 09 01 0a", R.INVALID_PARAMETER, 0x01, 1),
        ("01 01 04", R.INVALID_RATE, 0x01, 1),
        ("01 01 0c", R.INVALID_RATE, 0x01, 1),
        ("01 01 09 03 03", R.INVALID_RATE, 0x01, 3),
        ("02 01 01", R.INVALID_PARAMETER, 0x02, 1),
        ("02 06", R.UNSUPPORTED_STREAM, 0x02, 6),
        ("03", R.INVALID_LENGTH, 0x03, 0),
        ("03 01 02 00", R.INVALID_LENGTH, 0x03, 0),
        ("03 03 02 00 00", R.UNSUPPORTED_ENCODING, 0x03, 3),
        ("03 01 03 00 00", R.UNSUPPORTED_ENCODING, 0x03, 1),
        ("03 04 01 21 00", R.INVALID_RANGE, 0x03, 4),
        ("03 01 01 08 00", R.INVALID_RANGE, 0x03, 1),
        ("03 05 01 cd 0c", R.INVALID_RANGE, 0x03, 5),
        ("04 00", R.INVALID_LENGTH, 0x04, 0),
        ("05 05", R.INVALID_LENGTH, 0x05, 0),
    ],
)
def test_request_errors(hex_text: str, result: ResultCode, opcode: int, stream_id: int) -> None:
    with pytest.raises(ControlRequestError) as info:
        decode_control_request(bytes.fromhex(hex_text))
    error = info.value
    assert (error.result, error.opcode, error.stream_id) == (result, opcode, stream_id)
    assert isinstance(error, FrameDecodeError)
    assert error.kind == "garment.control_request"
    answer = ControlResponse(error.opcode, error.result, error.stream_id)
    assert decode_control_response(encode_control_response(answer)) == answer


def test_largest_full_scales_are_accepted() -> None:
    request = decode_control_request(bytes.fromhex("03 04 01 20 00 05 01 cc 0c"))
    assert request == SetConfigRequest(
        ((S.ACCEL, StreamSettings(E.INT16, 32)), (S.GYRO, StreamSettings(E.INT16, 3276)))
    )


@pytest.mark.parametrize(
    ("request_", "result", "stream_id"),
    [
        (StartRequest(((S.ECG, 250.0), (S.GYRO, 100.0))), R.UNSUPPORTED_STREAM, 5),
        (StartRequest(((S.ECG, 1000.0),)), R.INVALID_RATE, 1),
        (StopRequest((S.GYRO,)), R.UNSUPPORTED_STREAM, 5),
        (SetConfigRequest(((S.ACCEL, StreamSettings(E.INT16, 32)),)), R.INVALID_RANGE, 4),
        (SetConfigRequest(((S.TEMP, StreamSettings(E.INT24)),)), R.UNSUPPORTED_ENCODING, 3),
    ],
)
def test_validate_request_against_features(
    request_: ControlRequest, result: ResultCode, stream_id: int
) -> None:
    with pytest.raises(ControlRequestError) as info:
        validate_request(request_, FEATURES)
    assert (info.value.result, info.value.stream_id) == (result, stream_id)
    assert info.value.opcode == request_.opcode


@pytest.mark.parametrize("name", sorted(n for n in REQUESTS if "gyro" not in n))
def test_validate_request_accepts_supported(name: str) -> None:
    validate_request(REQUESTS[name][1], FEATURES)
    validate_request(GetTimeRequest(), FEATURES)


# --- encoder refusals ------------------------------------------------------------------


def one_stream(item: StreamFeatures) -> GarmentFeatures:
    return GarmentFeatures(1, Capabilities.NONE, 0, (item,))


@pytest.mark.parametrize(
    "make",
    [
        lambda: encode_start_request({}),
        lambda: encode_start_request({S.ECG: 25.0}),
        lambda: encode_start_request({S.ECG: 249.9}),
        lambda: encode_stop_request([S.ECG, S.ECG]),
        lambda: encode_set_config_request({}),
        lambda: encode_set_config_request({S.TEMP: StreamSettings(E.INT24)}),
        lambda: encode_set_config_request({S.ECG: StreamSettings(E.INT16, 8)}),
        lambda: encode_set_config_request({S.ACCEL: StreamSettings(E.INT16, 33)}),
        lambda: encode_control_request(StartRequest(((S.ECG, 250.0), (S.ECG, 500.0)))),
        lambda: encode_control_response(ControlResponse(Op.START, R.SUCCESS, 1)),
        lambda: encode_control_response(ControlResponse(0x100, R.SUCCESS)),
        lambda: encode_control_response(ControlResponse(0x7F, R.SUCCESS)),
        lambda: encode_control_response(ControlResponse(Op.GET_CONFIG, R.SUCCESS)),
        lambda: encode_control_response(ControlResponse(Op.GET_TIME, R.SUCCESS)),
        lambda: encode_control_response(
            ControlResponse(Op.GET_TIME, R.SUCCESS, device_time_us=-1, boot_id=1)
        ),
        lambda: encode_control_response(
            ControlResponse(Op.GET_TIME, R.SUCCESS, device_time_us=1, boot_id=1 << 32)
        ),
        lambda: encode_control_response(
            ControlResponse(Op.START, R.SUCCESS, device_time_us=1, boot_id=1)
        ),
        lambda: encode_control_response(
            ControlResponse(Op.START, R.INVALID_STATE, device_time_us=1, boot_id=1)
        ),
        lambda: encode_features(GarmentFeatures(2, Capabilities.NONE, 0, FEATURES.streams)),
        lambda: encode_features(GarmentFeatures(1, Capabilities.NONE, 0, ())),
        lambda: encode_features(GarmentFeatures(1, Capabilities(8), 0, FEATURES.streams)),
        lambda: encode_features(GarmentFeatures(1, Capabilities.NONE, -1, FEATURES.streams)),
        lambda: encode_features(
            GarmentFeatures(1, Capabilities.NONE, 0, FEATURES.streams[::-1])
        ),
        lambda: encode_features(one_stream(StreamFeatures(S.ECG, (), (250.0,), 250.0))),
        lambda: encode_features(one_stream(StreamFeatures(S.ECG, (E.INT16,), (250.0,), 500.0))),
        lambda: encode_features(
            one_stream(StreamFeatures(S.ECG, (E.INT16,), (500.0, 250.0), 250.0))
        ),
        lambda: encode_features(
            one_stream(StreamFeatures(S.ECG, (E.INT24, E.INT16), (250.0,), 250.0))
        ),
        lambda: encode_features(
            one_stream(StreamFeatures(S.ECG, (E.INT16,), (250.0,), 250.0, (2,)))
        ),
        lambda: encode_features(
            one_stream(StreamFeatures(S.ACCEL, (E.INT16,), (50.0,), 50.0, (8, 4)))
        ),
        lambda: encode_status(GarmentStatus(0, StatusFlags.SKIN_CONTACT)),
        lambda: encode_status(GarmentStatus(0, StatusFlags.CHARGING)),
        lambda: encode_status(GarmentStatus(0, StatusFlags(0x40))),
        lambda: encode_status(GarmentStatus(-1)),
        lambda: encode_status(GarmentStatus(MAX_DEVICE_TIME_US + 1)),
        lambda: encode_status(GarmentStatus(0, streaming=(S.ECG, S.ECG))),
    ],
)  # fmt: skip
def test_encoders_refuse(make: Callable[[], object]) -> None:
    with pytest.raises(FrameEncodeError):
        make()


# --- decoder rejections of responses, features, status ----------------------------------


@pytest.mark.parametrize(
    "hex_text",
    [
        "", "80 01", "81 01 01", "80 01 00", "80 01 0c", "80 01 01 00", "80 01 04",
        "80 01 04 05 05", "80 7f 01", "80 05 01 00", "80 04 01",
        "80 05 01 00 00 00 00 00 00 20 00 00 00 00 00",
        "80 04 01 01 01 09 01 00", "80 04 01 09 01 09 01 00 00", "80 04 01 01 02 09 01 00 00",
        "80 04 01 01 01 05 01 00 00", "80 04 01 03 01 02 02 00 00", "80 04 01 04 01 05 01 21 00",
        "80 04 01 01 01 09 01 00 00 01 01 09 01 00 00",
        "80 04 01 04 00 05 01 08 00 01 01 09 01 00 00",
    ],
)  # fmt: skip
def test_response_decoder_rejects(hex_text: str) -> None:
    with pytest.raises(FrameDecodeError):
        decode_control_response(bytes.fromhex(hex_text))


def _features_with(offset: int, value: int) -> bytes:
    raw = bytearray.fromhex(FEATURES_HEX)
    raw[offset] = value
    return bytes(raw)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes.fromhex(FEATURES_HEX)[:6],
        bytes.fromhex(FEATURES_HEX)[:-1],
        bytes.fromhex(FEATURES_HEX) + b"\x00",
        _features_with(0, 2),
        _features_with(1, 0x08),
        _features_with(6, 0),
        _features_with(6, 5),
        _features_with(7, 7),  # unknown stream id in the first entry
        _features_with(8, 0x07),  # encoding bit 0 is reserved
        _features_with(8, 0x00),  # no encoding
        _features_with(9, 0x81),  # rate bit 0 is reserved
        _features_with(10, 0x00),  # ECG rates 0x0080 (125 Hz): default 250 Hz not among them
        _features_with(11, 0x0B),  # default rate 1000 Hz not supported
        _features_with(13, 0x01),  # second entry ECG again
        _features_with(20, 0x04),  # temperature claims int24
        _features_with(24, 0x01),  # temperature claims a full-scale range
        _features_with(30, 0x05),  # five accelerometer ranges announced, four present
        _features_with(31, 0x00),  # accelerometer range 0 g
        _features_with(31, 0x21),  # accelerometer range 33 g
        _features_with(33, 0x02),  # ranges 2, 2: not strictly ascending
    ],
)
def test_features_decoder_rejects(data: bytes) -> None:
    with pytest.raises(FrameDecodeError):
        decode_features(data)


@pytest.mark.parametrize(
    "hex_text",
    [
        "", "01 1b 00 1e 00 00 87 93 03 00 00 00", "01 1b 00 1e 00 00 87 93 03 00 00 00 00 00",
        "02 1b 00 1e 00 00 87 93 03 00 00 00 00", "01 40 00 1e 00 00 87 93 03 00 00 00 00",
        "01 00 01 1e 00 00 87 93 03 00 00 00 00", "01 02 00 1e 00 00 87 93 03 00 00 00 00",
        "01 08 00 1e 00 00 87 93 03 00 00 00 00", "01 1b 00 1f 00 00 87 93 03 00 00 00 00",
        "01 1b 00 1e 40 00 87 93 03 00 00 00 00", "01 1b 00 1e 80 00 87 93 03 00 00 00 00",
        "01 1b 00 1e 00 00 00 00 00 00 00 20 00",
    ],
)  # fmt: skip
def test_status_decoder_rejects(hex_text: str) -> None:
    with pytest.raises(FrameDecodeError):
        decode_status(bytes.fromhex(hex_text))


# --- round trips --------------------------------------------------------------------------

streams_st = st.sampled_from(list(GarmentStream))


def _rate(stream: GarmentStream) -> st.SearchStrategy[float]:
    return st.sampled_from([code.hz for code in STREAM_SPECS[stream].rates])


def _settings(stream: GarmentStream) -> st.SearchStrategy[StreamSettings]:
    spec = STREAM_SPECS[stream]
    return st.builds(
        StreamSettings,
        st.sampled_from(spec.encodings),
        st.integers(0, spec.max_full_scale),
    )


@st.composite
def requests(draw: st.DrawFn) -> ControlRequest:
    chosen = sorted(draw(st.sets(streams_st, min_size=1)))
    kind = draw(st.sampled_from(["start", "stop", "stop-all", "set", "get", "time"]))
    if kind == "start":
        return StartRequest(tuple((s, draw(_rate(s))) for s in chosen))
    if kind == "stop":
        return StopRequest(tuple(chosen))
    if kind == "set":
        return SetConfigRequest(tuple((s, draw(_settings(s))) for s in chosen))
    if kind == "stop-all":
        return StopRequest()
    return GetConfigRequest() if kind == "get" else GetTimeRequest()


@SETTINGS
@given(requests())
def test_request_round_trip(request_: ControlRequest) -> None:
    data = encode_control_request(request_)
    assert data[0] == request_.opcode
    assert decode_control_request(data) == request_


@st.composite
def stream_configs(draw: st.DrawFn) -> tuple[StreamConfig, ...]:
    chosen = sorted(draw(st.sets(streams_st, min_size=1)))
    configs = []
    for stream in chosen:
        item = draw(_settings(stream))
        running = draw(st.booleans())
        rate = draw(_rate(stream))
        configs.append(StreamConfig(stream, running, rate, item.encoding, item.full_scale))
    return tuple(configs)


@st.composite
def responses(draw: st.DrawFn) -> ControlResponse:
    op = draw(st.sampled_from([o for o in ControlOpcode if o is not Op.RESPONSE]))
    result = draw(st.sampled_from(list(ResultCode)))
    if result is not R.SUCCESS:
        return ControlResponse(draw(st.integers(0, 255)), result, draw(st.integers(0, 255)))
    if op is Op.GET_CONFIG:
        return ControlResponse(op, result, config=draw(stream_configs()))
    if op is Op.GET_TIME:
        time_us = draw(st.integers(0, MAX_DEVICE_TIME_US))
        return ControlResponse(
            op, result, device_time_us=time_us, boot_id=draw(st.integers(0, 2**32 - 1))
        )
    return ControlResponse(op, result)  # fmt: skip


@SETTINGS
@given(responses())
def test_response_round_trip(response: ControlResponse) -> None:
    decoded = decode_control_response(encode_control_response(response))
    assert decoded == response
    assert decoded.ok is (response.result is R.SUCCESS)


@st.composite
def stream_features(draw: st.DrawFn, stream: GarmentStream) -> StreamFeatures:
    spec = STREAM_SPECS[stream]
    encodings = sorted(draw(st.sets(st.sampled_from(spec.encodings), min_size=1)))
    rates = sorted(draw(st.sets(st.sampled_from([c.hz for c in spec.rates]), min_size=1)))
    default = draw(st.sampled_from(rates))
    scales: list[int] = []
    if spec.max_full_scale:
        scales = sorted(draw(st.sets(st.integers(1, spec.max_full_scale), max_size=8)))
    return StreamFeatures(stream, tuple(encodings), tuple(rates), default, tuple(scales))


@st.composite
def features(draw: st.DrawFn) -> GarmentFeatures:
    chosen = sorted(draw(st.sets(streams_st, min_size=1)))
    return GarmentFeatures(
        protocol_version=1,
        capabilities=Capabilities(draw(st.integers(0, 7))),
        boot_id=draw(st.integers(0, 2**32 - 1)),
        streams=tuple(draw(stream_features(s)) for s in chosen),
    )


@SETTINGS
@given(features())
def test_features_round_trip(value: GarmentFeatures) -> None:
    assert decode_features(encode_features(value)) == value


@st.composite
def statuses(draw: st.DrawFn) -> GarmentStatus:
    flags = StatusFlags(draw(st.integers(0, 0x3F)))
    if not flags & StatusFlags.CONTACT_SUPPORTED:
        flags &= ~StatusFlags.SKIN_CONTACT
    if not flags & StatusFlags.EXTERNAL_POWER:
        flags &= ~StatusFlags.CHARGING
    return GarmentStatus(
        device_time_us=draw(st.integers(0, MAX_DEVICE_TIME_US)),
        flags=flags,
        streaming=tuple(sorted(draw(st.sets(streams_st)))),
        faults=tuple(sorted(draw(st.sets(streams_st)))),
    )


@SETTINGS
@given(statuses())
def test_status_round_trip(value: GarmentStatus) -> None:
    assert decode_status(encode_status(value)) == value


CANONICAL: list[tuple[Callable[[bytes], Any], Callable[[Any], bytes]]] = [
    (decode_control_response, encode_control_response),
    (decode_features, encode_features),
    (decode_status, encode_status),
]


# --- fuzzing --------------------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=300))
def test_fuzz_every_decoder(data: bytes) -> None:
    with contextlib.suppress(FrameDecodeError):
        decode_control_request(data)
    for decode, encode in CANONICAL:
        try:
            value = decode(data)
        except FrameDecodeError:
            continue
        assert encode(value) == data  # a value that decodes is in canonical form


@SETTINGS
@given(st.sampled_from(["request", "response", "features", "status"]), st.data())
def test_fuzz_mutated_values(which: str, data: st.DataObject) -> None:
    encoded = {
        "request": lambda: encode_control_request(data.draw(requests())),
        "response": lambda: encode_control_response(data.draw(responses())),
        "features": lambda: encode_features(data.draw(features())),
        "status": lambda: encode_status(data.draw(statuses())),
    }[which]()
    decode = {
        "request": decode_control_request,
        "response": decode_control_response,
        "features": decode_features,
        "status": decode_status,
    }[which]
    raw = bytearray(encoded)
    raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut]), bytes(raw) + b"\x01"):
        with contextlib.suppress(FrameDecodeError):
            decode(candidate)
