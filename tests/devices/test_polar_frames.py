"""Tests for devices.polar.frames: PMD data frames, sample timestamps, the encoder.

Golden vectors are copied from the Polar BLE SDK's own unit tests (github.com/
polarofficial/polar-ble-sdk, sources/Android/android-communications/library/src/test/java/
com/polar/androidcommunications/api/ble/model/gatt/client/pmd/, the file is named at each
test), with the values those tests assert.
"""

from __future__ import annotations

import contextlib
import math
import struct
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.polar import (
    H10_ACC_SAMPLES_PER_FRAME,
    H10_ECG_SAMPLES_PER_FRAME,
    PmdMeasurementType,
    PpiFields,
    encode_pmd_frame,
    parse_pmd_frame,
    read_pmd_header,
    sample_timestamps_ns,
)

TS_2E9 = bytes.fromhex("0094357700000000")  # 2_000_000_000 ns, used throughout the SDK tests
H10_TIME_NS = 694_512_749_912_654_440  # an H10 timestamp quoted in TimeSystemExplained.md


def header(measurement: int, frame_type: int, ts: bytes = TS_2E9) -> bytes:
    return bytes((measurement,)) + ts + bytes((frame_type,))


def f32(bits: int) -> float:
    return float(struct.unpack("<f", (bits & 0xFFFFFFFF).to_bytes(4, "little"))[0])


# --- golden vectors from the SDK's own unit tests --------------------------------------


def test_sdk_ecg_raw_type0() -> None:
    # EcgDataTest.kt "process raw ecg data type 0"
    frame = parse_pmd_frame(
        header(0x00, 0x00) + bytes.fromhex("0280FF028000"),
        sample_rate_hz=0,
        previous_timestamp_ns=100,
    )
    assert frame.measurement == "ecg"
    assert (frame.frame_type, frame.compressed, frame.timestamp_ns) == (0, False, 2_000_000_000)
    assert frame.samples.tolist() == [-32766.0, 32770.0]
    assert frame.unit == "uV"
    # (2e9 - 100) / 2 spread from the previous timestamp; last sample is the frame's.
    assert frame.sample_timestamps_ns.tolist() == [1_000_000_050, 2_000_000_000]


# AccDataTest.kt "process acc raw data frame type 1": 36 samples at 52 Hz, mG.
ACC_RAW_TYPE1 = bytes.fromhex(
    "F7FFFFFFE703F8FFFEFFE503F9FFFFFFE503FAFFFFFFE603FAFFFEFFE603F9FFFFFFE503F8FFFFFFE603"
    "F8FFFEFFE603FAFFFFFFE503FAFFFFFFE703FAFFFFFFE503F8FFFFFFE603F7FFFFFFE603F8FFFEFFE603"
    "F9FFFEFFE703F9FF0000E603F9FFFFFFE603F7FFFEFFE503F9FFFFFFE503F9FFFFFFE503FAFF0000E603"
    "F9FFFEFFE603F8FFFFFFE603F8FFFFFFE503F9FFFFFFE603F9FFFFFFE503FAFFFFFFE603F9FFFFFFE503"
    "F9FFFFFFE503F8FFFEFFE603F9FFFFFFE603F9FFFFFFE603F9FF0000E503F9FFFEFFE603F8FFFEFFE603"
    "F7FFFEFFE603"
)


def test_sdk_acc_raw_type1() -> None:
    frame = parse_pmd_frame(header(0x02, 0x01) + ACC_RAW_TYPE1, sample_rate_hz=52)
    assert frame.samples.shape == (36, 3)
    assert frame.samples[0].tolist() == [-9, -1, 999]
    assert frame.samples[1].tolist() == [-8, -2, 997]
    assert frame.sample_timestamps_ns[-1] == 2_000_000_000
    assert frame.unit == "mG"
    # First frame: back from the frame timestamp at 1/52 s (PmdTimeStampUtils).
    step = (1.0 / 52) * 1e9
    assert frame.sample_timestamps_ns[0] == round(2e9 - step * 35)


# AccDataTest.kt "process acc compressed data type 0": reference + one 10-bit block of 56.
ACC_COMPRESSED_TYPE0 = bytes.fromhex(
    "71 07 F0 6A 9E 8D 0A 38 BE 5C BE BA 2F 96 B3 EE 4B E5 AD FB 42 B9 EB BE 4C FE BA 2F 92 BF"
    " EE 4B E4 B1 FB 12 B9 EC BD 3C 3E BB 2F 8F D3 DE 4B E3 B5 F7 D2 B8 ED BD 30 7E 7B 2F 8B E3"
    " CE 8B E2 BA F7 A2 B8 EE BC 20 BE 7B 2F 88 F3 CE CB E1 BD EF 52 F8 EF BC 18 FE 3B 2F 84 03"
    " BF CB E0 C2 EF 32 B8 F0 BB 04 4E BC 2E 81 13 AF 0B E0 C6 EF F2 F7 F1 B9 FC 7D BC 2E 7D 27"
    " 9F 4B DF CA EB C2 F7 F2 B8 EC CD 7C 2E 7B 37 8F 4B DE CE E3 92 F7 F3 B8 E0 0D FD 2D 77 4B"
    " 7F CB DD D2 DF 62 37 F5 B7 D4 4D BD 2D 74 5B 6F CB DC D7 D7 32 37 F6 B5 C8 8D 7D 2D 71 6B"
    " 4F 4B DC DC D3 F2 36 F7 B4 BC DD FD 2C 6F 7B 3F 4B DB E0 CF D2 36 F8 B2 B0 2D BE 2C 6C 8F"
    " 1F CB DA E3 C7 A2 76 F9"
)


def test_sdk_acc_compressed_type0_with_factor() -> None:
    factor = float(np.float32(2.44e-4))  # the test's 2.44E-4f
    frame = parse_pmd_frame(
        header(0x02, 0x80) + ACC_COMPRESSED_TYPE0,
        sample_rate_hz=0,
        factor=factor,
        previous_timestamp_ns=100,
    )
    assert frame.compressed
    assert frame.frame_type == 0
    assert frame.samples.shape == (57, 3)
    raw = [[1905, 27376, -29282], [1905 + 190, 27376 - 105, -29282 - 85]]
    # The SDK computes (factor * sample * 1000f).toInt() in float32; we keep float64.
    sdk = [[int(np.float32(factor) * np.float32(v) * np.float32(1000)) for v in row] for row in raw]
    assert np.trunc(frame.samples[:2]).astype(int).tolist() == sdk
    assert np.all(np.abs(frame.samples) <= 8 * 1000)  # the test's range-8 check
    delta = (2_000_000_000 - 100) / 57
    assert frame.sample_timestamps_ns[0] == round(100 + delta)
    assert frame.sample_timestamps_ns[-1] == 2_000_000_000


def test_sdk_acc_compressed_type1() -> None:
    # AccDataTest.kt "process acc compressed data type 1": 6-bit deltas (-5, -3, 0).
    data = header(0x02, 0x81, bytes.fromhex("6500000000000000")) + bytes.fromhex(
        "F1FF 1400 F003 06 01 7B 0F 08"
    )
    frame = parse_pmd_frame(data, sample_rate_hz=0, previous_timestamp_ns=100)
    assert frame.samples.tolist() == [[-15, 20, 1008], [-20, 17, 1008]]
    # delta 0.5 ns: round(100.5) is 100 (half to even, Kotlin's round), then the frame's 101.
    assert frame.sample_timestamps_ns.tolist() == [100, 101]


GYRO_TYPE1 = bytes.fromhex(
    "00 00 80 3F 00 00 20 41 00 00 A0 41 1C 01 00 00 A0 01 00 00 08 CD CC EC 0D"
)


def test_sdk_gyro_compressed_type0_at_max_timestamp() -> None:
    # GyrDataTest.kt "process gyro compressed data type 0": 3-bit deltas (-1, 3, 3).
    data = header(0x05, 0x80, bytes.fromhex("FFFFFFFFFFFFFF7F")) + bytes.fromhex(
        "EAFF08000D000301DF00"
    )
    frame = parse_pmd_frame(data, sample_rate_hz=0, previous_timestamp_ns=100)
    assert frame.samples.tolist() == [[-22, 8, 13], [-23, 11, 16]]
    assert frame.timestamp_ns == 2**63 - 1 == frame.sample_timestamps_ns[-1]
    assert frame.unit == "dps"


@pytest.mark.parametrize("factor", [1.0, 0.5])
def test_sdk_gyro_compressed_type1_float_bits(factor: float) -> None:
    # GyrDataTest.kt "process gyro compressed data type 1" (and "... with factor"):
    # 28-bit deltas added to the float32 bit patterns, 32-bit wrap-around.
    frame = parse_pmd_frame(
        header(0x05, 0x81) + GYRO_TYPE1, sample_rate_hz=0, factor=factor, previous_timestamp_ns=100
    )
    expected = [
        [f32(0x3F800000), f32(0x41200000), f32(0x41A00000)],
        [f32(0x3F800000 + 0x1A00000), f32(0x41200000 + 0x0800000), f32(0x41A00000 + 0xFDECCCCD)],
    ]
    assert frame.samples.tolist() == (np.array(expected) * factor).tolist()
    assert frame.sample_timestamps_ns[-1] == 2_000_000_000


def test_sdk_temperature_compressed_and_raw() -> None:
    # TemperatureDataTest.kt: compressed type 0 (3-bit zero deltas, two samples) and raw 0.
    compressed = parse_pmd_frame(
        header(0x0C, 0x80) + bytes.fromhex("EC51DC41030200"),
        sample_rate_hz=0,
        previous_timestamp_ns=100,
    )
    assert compressed.samples.tolist() == [f32(0x41DC51EC)] * 3
    assert compressed.sample_timestamps_ns[-1] == 2_000_000_000
    raw = parse_pmd_frame(
        header(0x0C, 0x00) + bytes.fromhex("F628C041"), sample_rate_hz=0, previous_timestamp_ns=100
    )
    assert raw.samples.tolist() == [f32(0x41C028F6)]
    assert raw.sample_timestamps_ns.tolist() == [2_000_000_000]
    assert raw.samples.shape == (1,)
    assert raw.unit == "degC"


def test_sdk_ppi_type0() -> None:
    # PpiDataTest.kt "process ppi raw data type 0" (timestamp 0: no device time).
    data = header(0x03, 0x00, bytes(8)) + bytes.fromhex("80 80 80 80 80 FF 00 01 00 01 00 00")
    frame = parse_pmd_frame(data, sample_rate_hz=0, previous_timestamp_ns=100)
    assert frame.measurement == "ppi"
    assert frame.ppi is not None
    assert frame.samples.tolist() == [32896, 1]
    assert frame.ppi.hr_bpm.tolist() == [128, 0]
    assert frame.ppi.error_estimate_ms.tolist() == [32896, 1]
    assert frame.ppi.blocker.tolist() == [True, False]
    assert frame.ppi.skin_contact.tolist() == [True, False]
    assert frame.ppi.skin_contact_supported.tolist() == [True, False]
    assert frame.sample_timestamps_ns.tolist() == [0, 0]


def test_ppi_timed_back_from_frame_timestamp() -> None:
    ppi = PpiFields(
        hr_bpm=np.array([60, 61, 62]),
        error_estimate_ms=np.array([5, 6, 7]),
        blocker=np.array([False, True, False]),
        skin_contact=np.array([True, True, False]),
        skin_contact_supported=np.array([True, True, True]),
    )
    data = encode_pmd_frame(
        "ppi",
        frame_type=0,
        compressed=False,
        timestamp_ns=10**12,
        samples=[1000, 990, 980],
        ppi=ppi,
    )
    frame = parse_pmd_frame(data, sample_rate_hz=0)
    # PpiData.kt: the last interval ends at the frame time, earlier ones step back.
    assert frame.sample_timestamps_ns.tolist() == [
        10**12 - 1_970_000_000,
        10**12 - 980_000_000,
        10**12,
    ]
    assert frame.ppi is not None
    assert frame.ppi.blocker.tolist() == [False, True, False]


def test_sdk_unsupported_frame_types() -> None:
    # BlePmdClientTest.kt "process not supported frame type": PPG raw 0x7F.
    ppg = bytes.fromhex("01386C3172A4D3230D7F")
    with pytest.raises(FrameDecodeError) as info:
        parse_pmd_frame(ppg, sample_rate_hz=135)
    assert (info.value.kind, info.value.reason) == ("pmd.data", "unsupported_frame_type")
    # BlePmdClientTest.kt "process ecg data": ECG raw type 3 (status bits we do not model).
    ecg3 = bytes.fromhex("00386C3172A4D3230D0300120311100400")
    assert read_pmd_header(ecg3).timestamp_ns == 946_833_049_921_875_000
    with pytest.raises(FrameDecodeError, match="unsupported_frame_type"):
        parse_pmd_frame(ecg3, sample_rate_hz=130)


# --- PmdTimeStampUtilsTest.kt -----------------------------------------------------------


def test_sdk_timestamps_from_sample_rate() -> None:
    times = sample_timestamps_ns(0, 10_000_000_000, 10, 1)
    assert times.tolist() == [i * 1_000_000_000 for i in range(1, 11)]
    assert sample_timestamps_ns(0, 1_000_000_000, 1, 1).tolist() == [1_000_000_000]


def test_sdk_timestamps_from_previous() -> None:
    times = sample_timestamps_ns(1_000_000_000, 11_000_000_000, 10, 1)
    assert times.tolist() == [i * 1_000_000_000 for i in range(2, 12)]
    assert sample_timestamps_ns(100, 2_000_000_000, 3, 1).tolist() == [
        round(666666733.33),
        round(1333333366.66),
        2_000_000_000,
    ]
    assert sample_timestamps_ns(1_000_000_000, 2_000_000_000, 1, 1).tolist() == [2_000_000_000]


@pytest.mark.parametrize(
    ("previous", "timestamp", "n", "rate", "reason"),
    [
        (0, 100_000, 100, 0, "no_sample_rate"),  # both zero
        (0, 100_000, 100, 52, "negative_timestamp"),  # 100 samples at 52 Hz before 100 us
        (500, 500, 3, 52, "non_monotonic_timestamp"),
        (600, 500, 3, 52, "non_monotonic_timestamp"),
        (0, 2**63, 1, 52, "timestamp_overflow"),
        (0, 10**9, 0, 52, "empty"),
    ],
)
def test_timestamp_errors(previous: int, timestamp: int, n: int, rate: int, reason: str) -> None:
    with pytest.raises(FrameDecodeError) as info:
        sample_timestamps_ns(previous, timestamp, n, rate)
    assert info.value.reason == reason


@given(
    previous=st.integers(1, 2**62),
    gap=st.integers(1, 10**10),
    n=st.integers(1, 300),
)
def test_timestamps_spread_between_frames(previous: int, gap: int, n: int) -> None:
    times = sample_timestamps_ns(previous, previous + gap, n, 0)
    assert times[-1] == previous + gap
    assert np.all(np.diff(times) >= 0)
    assert times[0] >= previous
    step = Fraction(gap, n)
    # Kotlin's round(): half to even on the absolute time, like Python's round().
    assert times.tolist() == [round(previous + step * (i + 1)) for i in range(n)]


@given(timestamp=st.integers(10**15, 2**63 - 1), n=st.integers(1, 300), rate=st.integers(1, 10**4))
def test_timestamps_back_from_the_frame(timestamp: int, n: int, rate: int) -> None:
    times = sample_timestamps_ns(0, timestamp, n, rate)
    period = Fraction(10**9, rate)
    assert times.tolist() == [round(timestamp - period * (n - 1 - i)) for i in range(n)]


# --- H10 shapes ---------------------------------------------------------------------------


def test_h10_frame_sizes_fit_mtu_232() -> None:
    ecg = encode_pmd_frame(
        "ecg",
        frame_type=0,
        compressed=False,
        timestamp_ns=H10_TIME_NS,
        samples=np.arange(H10_ECG_SAMPLES_PER_FRAME) - 36,
    )
    acc = encode_pmd_frame(
        "acc",
        frame_type=1,
        compressed=False,
        timestamp_ns=H10_TIME_NS,
        samples=np.zeros((H10_ACC_SAMPLES_PER_FRAME, 3)),
    )
    assert (len(ecg), len(acc)) == (229, 226)
    assert len(ecg) <= 232 - 3
    assert len(acc) + 6 > 232 - 3


def test_decoded_arrays_are_read_only() -> None:
    frame = parse_pmd_frame(header(0x00, 0x00) + bytes(6), sample_rate_hz=130)
    with pytest.raises(ValueError, match="read-only"):
        frame.samples[0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        frame.sample_timestamps_ns[0] = 1


# --- malformed input --------------------------------------------------------------------


INF_BY_DELTA = bytes.fromhex("20 01 00000000 00000000 0000807F")  # z: 0 + 0x7F800000 = +inf


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "short"),
        (header(0x00, 0x00)[:9], "short"),
        (header(0x04, 0x00) + bytes(3), "unknown_measurement"),
        (header(0x0A, 0x00) + bytes(3), "unsupported_frame_type"),  # location: not modelled
        (header(0x00, 0x00), "empty"),
        (header(0x00, 0x00) + bytes(4), "truncated"),
        (header(0x02, 0x01) + bytes(7), "truncated"),
        (header(0x03, 0x00) + bytes(5), "truncated"),
        (header(0x02, 0x81), "empty"),
        (header(0x02, 0x81) + bytes(5), "truncated"),  # reference sample cut short
        (header(0x02, 0x81) + bytes(6) + b"\x06", "truncated"),  # block header cut short
        (header(0x02, 0x81) + bytes(6) + b"\x06\x02\x00", "delta_overrun"),
        (header(0x02, 0x81) + bytes(6) + b"\x00\x02", "bad_delta_width"),
        (header(0x02, 0x81) + bytes(6) + b"\x21\x01" + bytes(13), "bad_delta_width"),
        (header(0x0C, 0x80, bytes(7) + b"\x80") + bytes(4), "timestamp_overflow"),
        (header(0x0C, 0x00) + bytes.fromhex("0000C07F"), "not_finite"),  # NaN
        (header(0x0C, 0x80) + bytes.fromhex("0000807F"), "not_finite"),  # +inf reference
        (header(0x05, 0x81) + bytes(12) + INF_BY_DELTA, "not_finite"),
    ],
)
def test_malformed_frames(data: bytes, reason: str) -> None:
    with pytest.raises(FrameDecodeError) as info:
        parse_pmd_frame(data, sample_rate_hz=52, previous_timestamp_ns=100)
    assert (info.value.kind, info.value.reason) == ("pmd.data", reason)


def test_non_finite_factor_is_refused() -> None:
    with pytest.raises(FrameDecodeError, match="bad_factor"):
        parse_pmd_frame(header(0x02, 0x81) + bytes(6), sample_rate_hz=52, factor=math.nan)


def test_empty_delta_blocks_are_skipped_like_the_sdk() -> None:
    # A block with zero samples adds nothing (its width is then irrelevant).
    data = header(0x02, 0x81) + bytes.fromhex("0100020003000000")
    assert parse_pmd_frame(data, sample_rate_hz=52).samples.tolist() == [[1, 2, 3]]


SUPPORTED_HEADERS = [
    (0x00, 0x00),
    (0x01, 0x00),
    (0x01, 0x80),
    (0x02, 0x00),
    (0x02, 0x01),
    (0x02, 0x02),
    (0x02, 0x80),
    (0x02, 0x81),
    (0x03, 0x00),
    (0x05, 0x80),
    (0x05, 0x81),
    (0x06, 0x80),
    (0x07, 0x00),
    (0x07, 0x80),
    (0x0B, 0x00),
    (0x0B, 0x80),
    (0x0C, 0x00),
    (0x0C, 0x80),
]


@settings(max_examples=400)
@given(data=st.binary(max_size=300), rate=st.integers(), previous=st.integers(0, 2**64))
def test_fuzz_arbitrary_bytes(data: bytes, rate: int, previous: int) -> None:
    with contextlib.suppress(FrameDecodeError):
        parse_pmd_frame(data, sample_rate_hz=rate, previous_timestamp_ns=previous)


@settings(max_examples=600)
@given(
    head=st.sampled_from(SUPPORTED_HEADERS),
    ts=st.integers(0, 2**64 - 1),
    body=st.binary(max_size=260),
    rate=st.integers(-5, 10**6),
    previous=st.integers(0, 2**64),
    factor=st.floats(allow_nan=False, allow_infinity=False, width=32),
)
def test_fuzz_supported_layouts(
    head: tuple[int, int], ts: int, body: bytes, rate: int, previous: int, factor: float
) -> None:
    data = header(head[0], head[1], ts.to_bytes(8, "little")) + body
    try:
        frame = parse_pmd_frame(
            data, sample_rate_hz=rate, factor=factor, previous_timestamp_ns=previous
        )
    except FrameDecodeError:
        return
    assert frame.sample_timestamps_ns.shape[0] == frame.samples.shape[0]
    assert frame.sample_timestamps_ns.dtype == np.int64


# --- encoder round trips ------------------------------------------------------------------

timestamps = st.integers(10**15, 2**62)


def ints(shape: tuple[int, int] | int, bits: int) -> st.SearchStrategy[np.ndarray]:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return hnp.arrays(np.int64, shape, elements=st.integers(lo, hi))


@given(ts=timestamps, samples=st.integers(1, 73).flatmap(lambda n: ints(n, 24)))
def test_roundtrip_ecg_raw(ts: int, samples: np.ndarray) -> None:
    data = encode_pmd_frame("ecg", frame_type=0, compressed=False, timestamp_ns=ts, samples=samples)
    frame = parse_pmd_frame(data, sample_rate_hz=130)
    assert frame.samples.tolist() == samples.tolist()
    assert frame.timestamp_ns == ts
    assert frame.sample_timestamps_ns[-1] == ts


@pytest.mark.parametrize(("frame_type", "bits"), [(0, 8), (1, 16), (2, 24)])
@given(data=st.data(), ts=timestamps)
def test_roundtrip_acc_raw(frame_type: int, bits: int, data: st.DataObject, ts: int) -> None:
    samples = data.draw(st.integers(1, 36).flatmap(lambda n: ints((n, 3), bits)))
    encoded = encode_pmd_frame(
        PmdMeasurementType.ACC,
        frame_type=frame_type,
        compressed=False,
        timestamp_ns=ts,
        samples=samples,
    )
    assert parse_pmd_frame(encoded, sample_rate_hz=200).samples.tolist() == samples.tolist()


@pytest.mark.parametrize(
    ("measurement", "frame_type", "channels", "bits", "scale"),
    [
        ("acc", 1, 3, 16, 1.0),
        ("acc", 0, 3, 16, 1000.0),  # type 0 arrives in G: always x factor x 1000
        ("gyro", 0, 3, 16, 1.0),
        ("mag", 0, 3, 16, 1.0),
        ("ppg", 0, 4, 24, 1.0),
    ],
)
@given(data=st.data(), ts=timestamps, block=st.integers(1, 255))
def test_roundtrip_compressed_ints(
    measurement: str,
    frame_type: int,
    channels: int,
    bits: int,
    scale: float,
    data: st.DataObject,
    ts: int,
    block: int,
) -> None:
    samples = data.draw(st.integers(1, 120).flatmap(lambda n: ints((n, channels), bits)))
    encoded = encode_pmd_frame(
        measurement,
        frame_type=frame_type,
        compressed=True,
        timestamp_ns=ts,
        samples=samples,
        block_samples=block,
    )
    frame = parse_pmd_frame(encoded, sample_rate_hz=52)
    assert frame.compressed
    assert frame.frame_type == frame_type
    assert frame.samples.tolist() == (samples * scale).tolist()


float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize(
    ("measurement", "compressed"),
    [
        ("temperature", False),
        ("temperature", True),
        ("skin_temp", True),
        ("pressure", False),
    ],
)
@given(ts=timestamps, values=st.lists(float32s, min_size=1, max_size=50))
def test_roundtrip_float_frames(
    measurement: str, compressed: bool, ts: int, values: list[float]
) -> None:
    encoded = encode_pmd_frame(
        measurement, frame_type=0, compressed=compressed, timestamp_ns=ts, samples=values
    )
    frame = parse_pmd_frame(encoded, sample_rate_hz=1)
    assert frame.samples.shape == (len(values),)
    # Bit-exact, so -0.0 stays -0.0.
    assert frame.samples.astype(np.float32).tobytes() == np.array(values, np.float32).tobytes()


@given(
    ts=timestamps, values=st.lists(st.tuples(float32s, float32s, float32s), min_size=1, max_size=40)
)
def test_roundtrip_gyro_float_compressed(ts: int, values: list[tuple[float, float, float]]) -> None:
    encoded = encode_pmd_frame(
        "gyro", frame_type=1, compressed=True, timestamp_ns=ts, samples=values
    )
    frame = parse_pmd_frame(encoded, sample_rate_hz=52)
    assert frame.samples.astype(np.float32).tobytes() == np.array(values, np.float32).tobytes()


@given(
    ts=timestamps,
    rows=st.lists(
        st.tuples(
            st.integers(0, 255),
            st.integers(0, 0xFFFF),
            st.integers(0, 0xFFFF),
            st.booleans(),
            st.booleans(),
            st.booleans(),
        ),
        max_size=30,
    ),
)
def test_roundtrip_ppi(ts: int, rows: list[tuple[int, int, int, bool, bool, bool]]) -> None:
    cols = list(zip(*rows, strict=True)) if rows else [()] * 6
    ppi = PpiFields(
        hr_bpm=np.array(cols[0], dtype=np.int64),
        error_estimate_ms=np.array(cols[2], dtype=np.int64),
        blocker=np.array(cols[3], dtype=bool),
        skin_contact=np.array(cols[4], dtype=bool),
        skin_contact_supported=np.array(cols[5], dtype=bool),
    )
    ppi_ms = np.array(cols[1], dtype=np.float64)
    encoded = encode_pmd_frame(
        "ppi", frame_type=0, compressed=False, timestamp_ns=0, samples=ppi_ms, ppi=ppi
    )
    frame = parse_pmd_frame(encoded, sample_rate_hz=0)
    assert frame.samples.tolist() == ppi_ms.tolist()
    assert frame.ppi is not None
    for name in (
        "hr_bpm",
        "error_estimate_ms",
        "blocker",
        "skin_contact",
        "skin_contact_supported",
    ):
        assert getattr(frame.ppi, name).tolist() == getattr(ppi, name).tolist()


def _block_widths(data: bytes, channels: int, ref_bytes: int) -> list[int]:
    offset, widths = 10 + channels * ref_bytes, []
    while offset < len(data):
        width, count = data[offset], data[offset + 1]
        widths.append(width)
        offset += 2 + math.ceil(width * count * channels / 8)
    return widths


def test_compressed_encoder_picks_minimal_widths_per_block() -> None:
    base = np.zeros((1, 3), dtype=np.int64)
    steps = np.array([[0, 0, 0]] * 4 + [[3, -4, 0]] * 4 + [[-200, 0, 0]] * 2)
    samples = np.concatenate([base, np.cumsum(steps, axis=0)])
    data = encode_pmd_frame(
        "acc", frame_type=1, compressed=True, timestamp_ns=10**15, samples=samples, block_samples=4
    )
    # zeros need 1 bit; [-4, 3] needs 3; -200 needs 9 (two's complement).
    assert _block_widths(data, 3, 2) == [1, 3, 9]
    assert parse_pmd_frame(data, sample_rate_hz=52).samples.tolist() == samples.tolist()


def test_single_sample_compressed_frame_is_the_reference_only() -> None:
    data = encode_pmd_frame(
        "acc", frame_type=1, compressed=True, timestamp_ns=10**15, samples=[[1, 2, 3]]
    )
    assert len(data) == 10 + 6


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"measurement": "ecg", "samples": [0.5]}, "not_integral"),
        ({"measurement": "ecg", "samples": [1 << 23]}, "out_of_24_bit_range"),
        ({"measurement": "ecg", "samples": [float("nan")]}, "not_finite"),
        ({"measurement": "ecg", "samples": []}, "bad_shape"),
        ({"measurement": "acc", "samples": [1, 2, 3]}, "bad_shape"),
        ({"measurement": "ecg", "samples": [1], "frame_type": 3}, "unsupported_frame_type"),
        ({"measurement": "ecg", "samples": [1], "frame_type": 0x80}, "bad_frame_type"),
        ({"measurement": "ecg", "samples": [1], "timestamp_ns": -1}, "timestamp_out_of_range"),
        ({"measurement": "temperature", "samples": [1e39]}, "float32_overflow"),
        ({"measurement": "ppi", "samples": [800.0]}, "ppi_fields_required"),
    ],
)
def test_encoder_rejects(kwargs: dict[str, object], reason: str) -> None:
    args: dict[str, object] = {"frame_type": 0, "compressed": False, "timestamp_ns": 10**15}
    args.update(kwargs)
    with pytest.raises(FrameEncodeError) as info:
        encode_pmd_frame(**args)  # type: ignore[arg-type]
    assert info.value.reason == reason
