"""Tests of the garment data-frame codec (devices.garment.codec).

Golden vectors are the worked examples of docs/garment-profile.md section 4 (the
biogw garment profile is our own open spec, so the doc is the public source): each hex
literal below is also parsed out of the doc, so doc and code cannot drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.garment.codec import (
    GarmentFrame,
    decode_data_frame,
    encode_data_frame,
    frame_size,
    max_samples,
    quantize,
    samples_per_frame,
)
from devices.garment.spec import (
    DEFAULT_RATES_HZ,
    HEADER_SIZE,
    MAX_DEVICE_TIME_US,
    MAX_PAYLOAD_BYTES,
    MAX_SEQUENCE,
    STREAM_SPECS,
    FrameFlags,
    GarmentStream,
    SampleEncoding,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "garment-profile.md"
SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)
S, E, F = GarmentStream, SampleEncoding, FrameFlags


def doc_examples() -> dict[str, bytes]:
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"<!-- example: (\S+) -->\n```hex\n(.*?)\n```", text, re.S)
    return {name: bytes.fromhex(body) for name, body in found}


@dataclass(frozen=True)
class Golden:
    hex: str
    stream: GarmentStream
    encoding: SampleEncoding
    fs_hz: float
    flags: FrameFlags
    sequence: int
    device_time_us: int
    counts: list[int] | list[list[int]]


GOLDEN = {
    "ecg-int16": Golden(
        "01 01 01 09 03 04 2a 00 00 00 60 e3 16 00 00 00 00 00 78 00 dd ff 00 04 00 80",
        S.ECG, E.INT16, 250.0, F.CONTACT_SUPPORTED | F.SKIN_CONTACT, 42, 1_500_000,
        [120, -35, 1024, -32768],
    ),
    "ecg-int24": Golden(
        "01 01 02 0a 05 03 04 03 02 01 00 60 d7 1d 14 00 00 00 ff ff ff 70 11 01 00 00 80",
        S.ECG, E.INT24, 500.0, F.CONTACT_SUPPORTED | F.LEAD_OFF, 0x01020304, 86_400_000_000,
        [-1, 70000, -8388608],
    ),
    "resp-int24": Golden(
        "01 02 02 04 00 02 07 00 00 00 80 84 1e 00 00 00 00 00 a0 86 01 06 ff ff",
        S.RESP, E.INT24, 25.0, F.NONE, 7, 2_000_000, [100000, -250],
    ),
    "temp": Golden(
        "01 03 01 02 03 01 10 0e 00 00 00 a4 93 d6 00 00 00 00 44 0e",
        S.TEMP, E.INT16, 1.0, F.CONTACT_SUPPORTED | F.SKIN_CONTACT, 3600, 3_600_000_000, [3652],
    ),
    "accel": Golden(
        "01 04 01 05 08 02 e8 03 00 00 00 2d 31 01 00 00 00 00 0c 00 fb ff e8 03 00 80 00 00 d5 03",
        S.ACCEL, E.INT16, 50.0, F.SATURATED, 1000, 20_000_000,
        [[12, -5, 1000], [-32768, 0, 981]],
    ),
    "gyro": Golden(
        "01 05 01 06 10 01 09 00 00 00 15 cd 5b 07 00 00 00 00 7d 00 ff ff c4 09",
        S.GYRO, E.INT16, 100.0, F.SENSOR_FAULT, 9, 123_456_789, [[125, -1, 2500]],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_frame_is_in_the_doc(name: str) -> None:
    assert doc_examples()[name] == bytes.fromhex(GOLDEN[name].hex)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_frame_decodes(name: str) -> None:
    golden = GOLDEN[name]
    frame = decode_data_frame(bytes.fromhex(golden.hex))
    assert frame.stream is golden.stream
    assert frame.encoding is golden.encoding
    assert frame.fs_hz == golden.fs_hz
    assert frame.flags == golden.flags
    assert frame.sequence == golden.sequence
    assert frame.device_time_us == golden.device_time_us
    assert frame.device_time_ns == golden.device_time_us * 1000
    assert frame.counts().tolist() == golden.counts
    lsb = STREAM_SPECS[golden.stream].lsb
    np.testing.assert_array_equal(frame.samples, np.asarray(golden.counts, np.float64) * lsb)
    assert frame.samples.dtype == np.float64
    assert not frame.samples.flags.writeable


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_frame_encodes(name: str) -> None:
    golden = GOLDEN[name]
    lsb = STREAM_SPECS[golden.stream].lsb
    frame = GarmentFrame(
        stream=golden.stream,
        sequence=golden.sequence,
        device_time_us=golden.device_time_us,
        fs_hz=golden.fs_hz,
        samples=np.asarray(golden.counts, np.float64) * lsb,
        flags=golden.flags,
        encoding=golden.encoding,
    )
    assert encode_data_frame(frame) == bytes.fromhex(golden.hex)


def test_golden_physical_values() -> None:
    temp = decode_data_frame(bytes.fromhex(GOLDEN["temp"].hex))
    assert temp.samples[0] == pytest.approx(36.52)
    assert temp.unit.value == "degC"
    gyro = decode_data_frame(bytes.fromhex(GOLDEN["gyro"].hex))
    np.testing.assert_allclose(gyro.samples, [[12.5, -0.1, 250.0]])
    accel = decode_data_frame(bytes.fromhex(GOLDEN["accel"].hex))
    assert accel.samples.shape == (2, 3)


def test_samples_per_frame_table_in_doc_matches_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    table = text.split("<!-- table: samples-per-frame -->")[1].split("<!-- end table -->")[0]
    rows = [line.strip("| ").split(" | ") for line in table.strip().splitlines()[2:]]
    expected = {
        (stream.name, encoding.name, f"{code.hz:g}")
        for stream, spec in STREAM_SPECS.items()
        for encoding in spec.encodings
        for code in spec.rates
    }
    assert {(r[0], r[1], r[2]) for r in rows} == expected
    for name, enc, hz, n, size, fps, _ in rows:
        stream, encoding = S[name], E[enc]
        assert samples_per_frame(stream, float(hz), encoding=encoding) == int(n)
        assert frame_size(stream, int(n), encoding) == int(size)
        assert float(hz) / int(n) == pytest.approx(float(fps), rel=1e-3)


def test_default_rates_frames_per_second() -> None:
    per_second = {s: fs / samples_per_frame(s, fs) for s, fs in DEFAULT_RATES_HZ.items()}
    assert per_second == {S.ECG: 2.5, S.RESP: 2.5, S.TEMP: 1.0, S.ACCEL: 2.5}


def test_samples_per_frame_limits() -> None:
    assert samples_per_frame(S.ECG, 1000.0) == 113
    assert samples_per_frame(S.ECG, 1000.0, encoding=E.INT24) == 75
    assert samples_per_frame(S.ACCEL, 200.0) == 37
    assert samples_per_frame(S.ECG, 250.0, max_payload=182) == 82
    assert samples_per_frame(S.ACCEL, 50.0, max_payload=24) == 1
    assert max_samples(S.ACCEL, max_payload=23) == 0
    with pytest.raises(FrameEncodeError):
        samples_per_frame(S.ACCEL, 50.0, max_payload=23)
    with pytest.raises(FrameEncodeError):
        samples_per_frame(S.ECG, 256.0)
    with pytest.raises(FrameEncodeError):
        samples_per_frame(S.TEMP, 1.0, encoding=E.INT24)


# --- round trips ---------------------------------------------------------------------


@st.composite
def frames(draw: st.DrawFn) -> GarmentFrame:
    stream = draw(st.sampled_from(list(GarmentStream)))
    spec = STREAM_SPECS[stream]
    encoding = draw(st.sampled_from(spec.encodings))
    code = draw(st.sampled_from(spec.rates))
    n = draw(st.integers(1, max_samples(stream, encoding)))
    shape = (n, 3) if spec.channels else (n,)
    counts = draw(
        hnp.arrays(np.int64, shape, elements=st.integers(encoding.min_count, encoding.max_count))
    )
    flags = FrameFlags(draw(st.integers(0, 0x1F)))
    if not flags & F.CONTACT_SUPPORTED:
        flags &= ~F.SKIN_CONTACT
    return GarmentFrame(
        stream=stream,
        sequence=draw(st.integers(0, MAX_SEQUENCE)),
        device_time_us=draw(st.integers(0, MAX_DEVICE_TIME_US)),
        fs_hz=code.hz,
        samples=counts * spec.lsb,
        flags=flags,
        encoding=encoding,
    )


def assert_same_frame(a: GarmentFrame, b: GarmentFrame) -> None:
    assert (a.stream, a.sequence, a.device_time_us, a.fs_hz, a.flags, a.encoding) == (
        b.stream,
        b.sequence,
        b.device_time_us,
        b.fs_hz,
        b.flags,
        b.encoding,
    )
    assert a.samples.shape == b.samples.shape
    np.testing.assert_array_equal(a.samples, b.samples)


ALL_COMBINATIONS = [
    (stream, encoding, code.hz)
    for stream, spec in STREAM_SPECS.items()
    for encoding in spec.encodings
    for code in spec.rates
]


@pytest.mark.parametrize(("stream", "encoding", "fs_hz"), ALL_COMBINATIONS)
def test_full_frames_round_trip_at_every_rate(
    stream: GarmentStream, encoding: SampleEncoding, fs_hz: float
) -> None:
    spec = STREAM_SPECS[stream]
    n = samples_per_frame(stream, fs_hz, encoding=encoding)
    rng = np.random.default_rng(int(stream) * 100 + int(encoding))
    counts = rng.integers(encoding.min_count, encoding.max_count, size=(n, spec.n_channels))
    samples = quantize(
        stream, (counts if spec.channels else counts[:, 0]) * spec.lsb, encoding=encoding
    )
    frame = GarmentFrame(stream, 7, 1_000_000, fs_hz, samples, encoding=encoding)
    data = encode_data_frame(frame)
    assert len(data) <= MAX_PAYLOAD_BYTES
    assert_same_frame(decode_data_frame(data), frame)


@SETTINGS
@given(frames())
def test_round_trip(frame: GarmentFrame) -> None:
    data = encode_data_frame(frame)
    assert len(data) == frame_size(frame.stream, frame.n_samples, frame.encoding)
    assert len(data) <= MAX_PAYLOAD_BYTES
    decoded = decode_data_frame(data)
    assert_same_frame(decoded, frame)
    assert encode_data_frame(decoded) == data


@SETTINGS
@given(frames())
def test_decode_accepts_bytes_like(frame: GarmentFrame) -> None:
    data = encode_data_frame(frame)
    assert_same_frame(decode_data_frame(bytearray(data)), frame)
    assert_same_frame(decode_data_frame(memoryview(data)), frame)


@SETTINGS
@given(
    st.sampled_from(list(GarmentStream)),
    st.data(),
)
def test_quantize_makes_values_round_trip(stream: GarmentStream, data: st.DataObject) -> None:
    spec = STREAM_SPECS[stream]
    encoding = data.draw(st.sampled_from(spec.encodings))
    code = data.draw(st.sampled_from(spec.rates))
    n = samples_per_frame(stream, code.hz, encoding=encoding)
    shape = (n, 3) if spec.channels else (n,)
    bound = 1.2 * encoding.max_count * spec.lsb
    values = data.draw(
        hnp.arrays(np.float64, shape, elements=st.floats(-bound, bound, allow_nan=False))
    )
    quantized = quantize(stream, values, encoding=encoding)
    np.testing.assert_array_equal(quantize(stream, quantized, encoding=encoding), quantized)
    frame = GarmentFrame(stream, 1, 2, code.hz, quantized, encoding=encoding)
    np.testing.assert_array_equal(decode_data_frame(encode_data_frame(frame)).samples, quantized)


def test_quantize_rounds_and_saturates() -> None:
    np.testing.assert_allclose(quantize(S.TEMP, [36.516, -0.004]), [36.52, -0.0])
    np.testing.assert_array_equal(quantize(S.ECG, [1e6, -1e6]), [32767.0, -32768.0])
    np.testing.assert_array_equal(
        quantize(S.ECG, [1e7], encoding=E.INT24), [float(E.INT24.max_count)]
    )
    with pytest.raises(FrameEncodeError):
        quantize(S.ECG, [np.nan])


# --- fuzzing --------------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    try:
        frame = decode_data_frame(data)
    except FrameDecodeError:
        return
    assert encode_data_frame(frame) == data


@SETTINGS
@given(frames(), st.data())
def test_fuzz_mutated_frames(frame: GarmentFrame, data: st.DataObject) -> None:
    raw = bytearray(encode_data_frame(frame))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut]), bytes(raw) + b"\x00"):
        try:
            decoded = decode_data_frame(candidate)
        except FrameDecodeError:
            continue
        assert encode_data_frame(decoded) == candidate


# --- decoder rejections ---------------------------------------------------------------

ECG = bytes.fromhex(GOLDEN["ecg-int16"].hex)


def patched(data: bytes, offset: int, value: int) -> bytes:
    raw = bytearray(data)
    raw[offset] = value
    return bytes(raw)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "short"),
        (ECG[: HEADER_SIZE - 1], "short"),
        (ECG[:HEADER_SIZE] + bytes(2 * 113 + 2), "oversize"),
        (patched(ECG, 0, 2), "unsupported_version"),
        (patched(ECG, 1, 0), "unknown_stream"),
        (patched(ECG, 1, 6), "unknown_stream"),
        (patched(ECG, 2, 3), "bad_encoding"),
        (patched(bytes.fromhex(GOLDEN["temp"].hex), 2, 2), "bad_encoding"),
        (patched(ECG, 3, 0), "bad_rate"),
        (patched(ECG, 3, 0x04), "bad_rate"),
        (patched(ECG, 3, 0x0C), "bad_rate"),
        (patched(ECG, 4, 0x20), "bad_flags"),
        (patched(ECG, 4, 0x80), "bad_flags"),
        (patched(ECG, 4, 0x02), "bad_flags"),
        (patched(ECG, 5, 0), "empty"),
        (patched(ECG, 5, 5), "length_mismatch"),
        (ECG[:-1], "length_mismatch"),
        (ECG + b"\x00", "length_mismatch"),
        (ECG[:10] + (1 << 53).to_bytes(8, "little") + ECG[18:], "bad_time"),
        (ECG[:10] + b"\xff" * 8 + ECG[18:], "bad_time"),
    ],
)
def test_decoder_rejects(data: bytes, reason: str) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_data_frame(data)
    assert info.value.reason == reason
    assert info.value.kind == "garment.data"


def test_largest_device_time_accepted() -> None:
    data = ECG[:10] + MAX_DEVICE_TIME_US.to_bytes(8, "little") + ECG[18:]
    assert decode_data_frame(data).device_time_us == MAX_DEVICE_TIME_US


def test_int24_sign_extension() -> None:
    values = [0, 1, -1, 0x7FFFFF, -0x800000, 0x123456, -0x123456, 255, 256, -256]
    frame = GarmentFrame(S.ECG, 0, 0, 250.0, np.array(values, np.float64), encoding=E.INT24)
    data = encode_data_frame(frame)
    assert data[HEADER_SIZE : HEADER_SIZE + 12].hex() == "000000010000ffffffffff7f"
    assert decode_data_frame(data).counts().tolist() == values


# --- encoder refusals -----------------------------------------------------------------


def ecg(samples: list[float] | np.ndarray, **changes: object) -> GarmentFrame:
    frame = GarmentFrame(S.ECG, 1, 1, 250.0, np.asarray(samples, np.float64))
    return replace(frame, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "frame",
    [
        ecg([32768.0]),
        ecg([-32769.0]),
        ecg([8388608.0], encoding=E.INT24),
        ecg([np.nan]),
        ecg([np.inf]),
        ecg([]),
        ecg(np.zeros(114)),
        ecg(np.zeros(76), encoding=E.INT24),
        ecg(np.zeros((2, 3))),
        ecg([1.0], fs_hz=251.0),
        ecg([1.0], fs_hz=25.0),
        ecg([1.0], sequence=-1),
        ecg([1.0], sequence=MAX_SEQUENCE + 1),
        ecg([1.0], device_time_us=-1),
        ecg([1.0], device_time_us=MAX_DEVICE_TIME_US + 1),
        ecg([1.0], flags=FrameFlags(0x20)),
        ecg([1.0], flags=F.SKIN_CONTACT),
        GarmentFrame(S.TEMP, 1, 1, 1.0, np.array([36.6]), encoding=E.INT24),
        GarmentFrame(S.ACCEL, 1, 1, 50.0, np.zeros(3)),
        GarmentFrame(S.ACCEL, 1, 1, 50.0, np.zeros((2, 2))),
        GarmentFrame(S.ACCEL, 1, 1, 50.0, np.zeros((38, 3))),
        GarmentFrame(S.GYRO, 1, 1, 50.0, np.full((1, 3), 3276.8)),
    ],
)
def test_encoder_refuses(frame: GarmentFrame) -> None:
    with pytest.raises(FrameEncodeError):
        encode_data_frame(frame)


def test_encoder_respects_smaller_payload() -> None:
    frame = ecg(np.zeros(100))
    assert len(encode_data_frame(frame)) == 218
    with pytest.raises(FrameEncodeError):
        encode_data_frame(frame, max_payload=182)
    assert len(encode_data_frame(ecg(np.zeros(82)), max_payload=182)) == 182


def test_frame_is_immutable() -> None:
    source = np.array([1.0, 2.0])
    frame = GarmentFrame(S.ECG, 1, 1, 250.0, source)
    source[0] = 99.0
    assert frame.samples.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="read-only"):
        frame.samples[0] = 5.0
    with pytest.raises(AttributeError):
        frame.sequence = 2  # type: ignore[misc]
