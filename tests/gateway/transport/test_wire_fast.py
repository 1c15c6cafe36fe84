"""The fast wire decoder (gateway.transport.wire_decode) against the original decoder.

``reference_decode`` below is the decoder as it was before the fast path (one
bounds-checked cursor over a copy of the body, ``Frame(...)`` with its checks): the
behaviour to keep. For valid messages of every kind, ``decode`` must return the same
values (samples bit for bit, same dtypes, shapes, read-only arrays); for mutated,
truncated or extended messages it must raise ``WireFormatError`` with the same reason and
detail, or accept exactly what the reference accepts. The trusted ``Frame`` constructor
must build frames that ``Frame``'s own checks accept unchanged, and the fast path must
take every valid frame message (so a valid message never silently falls back).
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib
from collections.abc import Callable
from typing import Any
from uuid import UUID

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.frame import Frame, Quality
from gateway.router import ClinicalFrame, ClinicalGap, ResearchFrame, ResearchGap
from gateway.transport import wire_decode
from gateway.transport.codes import CAUSES, STREAMS, TIMEBASES, UNITS
from gateway.transport.wire import (
    HEADER_SIZE,
    Gap,
    WireFormatError,
    WireMessage,
    decode,
)
from tests.gateway.transport.test_wire import (
    SETTINGS,
    _resealed,
    clinical_frames,
    doc_examples,
    encode,
    messages,
    research_frames,
)

# ---------------------------------------------------------------- the reference decoder


class _RefReader:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise WireFormatError("short", f"body ends inside {what}")
        chunk, self._pos = self._data[self._pos : end], end
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def text(self, what: str) -> str:
        raw = self.take(self.take(1, what)[0], what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WireFormatError("bad_utf8", what) from exc

    def array(self, count: int, dtype: str, what: str) -> npt.NDArray[Any]:
        arr = np.frombuffer(self.take(count * 8, what), dtype=dtype).astype(dtype[1:])
        arr.flags.writeable = False
        return arr

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise WireFormatError("trailing", f"{len(self._data) - self._pos} bytes after body")


def _ref_code(table: dict[int, Any], code: int, what: str) -> Any:
    if code not in table:
        raise WireFormatError(f"unknown_{what}", f"code {code}")
    return table[code]


def _ref_frame_part(r: _RefReader, flags: int) -> dict[str, Any]:
    stream_c, unit_c, quality, columns, n_ch, time_ns, n = r.unpack("<BBBBBqI", "frame")
    stream = _ref_code(STREAMS, stream_c, "stream")
    unit = _ref_code(UNITS, unit_c, "unit")
    if quality & ~31:
        raise WireFormatError("bad_quality", f"bits {quality:#x}")
    sequence = int(r.unpack("<Q", "sequence")[0]) if flags & 2 else None
    fs_hz = None
    if not flags & 1:
        fs_hz = float(r.unpack("<d", "fs_hz")[0])
        if not (math.isfinite(fs_hz) and fs_hz > 0):
            raise WireFormatError("bad_rate", "fs_hz must be finite and positive")
    channels = tuple(r.text("channel name") for _ in range(n_ch))
    samples = r.array(n * max(columns, 1), "<f8", "samples")
    if columns:
        samples = samples.reshape(n, columns)
    offsets = r.array(n, "<i8", "offsets") if flags & 1 else None
    r.finish()
    return {
        "stream": stream, "time_ns": time_ns, "samples": samples, "unit": unit,
        "fs_hz": fs_hz, "offsets_ns": offsets, "sequence": sequence,
        "quality": Quality(quality), "channels": channels,
    }  # fmt: skip


def _ref_gap_part(r: _RefReader) -> Gap:
    stream_c, cause_c, start_ns, end_ns, missing = r.unpack("<BBqqQ", "gap")
    r.finish()
    if start_ns > end_ns:
        raise WireFormatError("bad_gap", "start_ns after end_ns")
    stream = _ref_code(STREAMS, stream_c, "stream")
    return Gap(stream, start_ns, end_ns, missing, _ref_code(CAUSES, cause_c, "cause"))


def _ref_body(r: _RefReader, kind: int, flags: int) -> WireMessage:
    if kind in (1, 3):
        subject_id = UUID(bytes=r.take(16, "subject id"))
        record_id = UUID(bytes=r.take(16, "consent record id"))
        if kind == 3:
            device_key = r.text("device key")
            return ClinicalGap(subject_id, device_key, _ref_gap_part(r), record_id)
        timebase = _ref_code(TIMEBASES, r.take(1, "timebase")[0], "timebase")
        device_key = r.text("device key")
        fields = _ref_frame_part(r, flags)
        try:
            frame = Frame(device_key=device_key, timebase=timebase, **fields)
        except ValueError as exc:
            raise WireFormatError("bad_frame", str(exc)) from exc
        return ClinicalFrame(subject_id=subject_id, frame=frame, consent_record_id=record_id)
    pseudonym = r.text("pseudonym")
    if kind == 4:
        return ResearchGap(pseudonym, _ref_gap_part(r))
    return ResearchFrame(pseudonym=pseudonym, **_ref_frame_part(r, flags))


def reference_decode(data: bytes) -> WireMessage:
    """The decoder before the fast path, check for check."""
    if len(data) < 16:
        raise WireFormatError("short", f"{len(data)} bytes, need at least 16")
    magic, version, kind, flags, body_len = struct.unpack_from("<4sBBHI", data)
    if magic != b"BGWM":
        raise WireFormatError("bad_magic")
    if version != 1:
        raise WireFormatError("bad_version", f"version {version}")
    if body_len != len(data) - 16:
        raise WireFormatError("bad_length", f"header says {body_len}, got {len(data)} total")
    end = 12 + body_len
    if zlib.crc32(data[:end]) != struct.unpack_from("<I", data, end)[0]:
        raise WireFormatError("crc")
    if kind in (3, 4):
        if flags:
            raise WireFormatError("bad_flags", f"{flags:#x} on a gap")
    elif flags & ~3:
        raise WireFormatError("bad_flags", f"{flags:#x}")
    elif kind not in (1, 2):
        raise WireFormatError("unknown_kind", f"kind {kind}")
    return _ref_body(_RefReader(bytes(data[12:end])), kind, flags)


# ---------------------------------------------------------------- comparison


def _same_array(got: npt.NDArray[Any] | None, want: npt.NDArray[Any] | None) -> None:
    if want is None:
        assert got is None
        return
    assert got is not None
    assert (got.dtype, got.shape) == (want.dtype, want.shape)
    assert got.dtype.isnative
    assert got.tobytes() == want.tobytes()
    assert not got.flags.writeable
    assert got.flags.c_contiguous
    assert got.flags.aligned


def assert_identical(got: WireMessage, want: WireMessage) -> None:
    """Same type, every field equal; arrays bit for bit with the same dtype, shape and
    read-only flag; ``Quality`` the same member object."""
    assert type(got) is type(want)
    if isinstance(want, ClinicalGap | ResearchGap):
        assert got == want
        return
    if isinstance(want, ClinicalFrame):
        assert isinstance(got, ClinicalFrame)
        assert type(got.frame) is Frame
        assert (got.subject_id, got.consent_record_id) == (want.subject_id, want.consent_record_id)
        assert (got.frame.device_key, got.frame.timebase) == (
            want.frame.device_key,
            want.frame.timebase,
        )
        g: Frame | ResearchFrame = got.frame
        w: Frame | ResearchFrame = want.frame
    else:
        assert isinstance(got, ResearchFrame)
        assert isinstance(want, ResearchFrame)
        g, w = got, want
        assert got.pseudonym == want.pseudonym
    for name in ("stream", "time_ns", "unit", "fs_hz", "sequence", "quality", "channels"):
        assert getattr(g, name) == getattr(w, name), name
        assert type(getattr(g, name)) is type(getattr(w, name)), name
    assert g.quality is w.quality
    _same_array(g.samples, w.samples)
    _same_array(g.offsets_ns, w.offsets_ns)


def _outcome(decoder: Callable[[bytes], WireMessage], data: bytes) -> WireMessage | str:
    """The decoded value, or ``"reason: detail"`` of the ``WireFormatError``."""
    try:
        return decoder(data)
    except WireFormatError as err:
        return f"{err.reason}: {err.detail}"


def assert_same_outcome(data: bytes) -> None:
    """``decode`` and ``reference_decode`` agree: the same value or the same error."""
    got, want = _outcome(decode, data), _outcome(reference_decode, data)
    if isinstance(want, str) or isinstance(got, str):
        assert got == want
    else:
        assert_identical(got, want)


# ---------------------------------------------------------------- valid messages


@SETTINGS
@given(messages)
def test_valid_messages_decode_as_before(value: WireMessage) -> None:
    data = encode(value)
    assert_identical(decode(data), reference_decode(data))
    assert encode(decode(data)) == data


@pytest.mark.parametrize("name", sorted(doc_examples()))
def test_golden_examples_decode_as_before(name: str) -> None:
    assert_identical(decode(doc_examples()[name]), reference_decode(doc_examples()[name]))


@SETTINGS
@given(clinical_frames | research_frames)
def test_fast_path_takes_every_valid_frame_message(value: WireMessage) -> None:
    data = encode(value)
    end = len(data) - 4
    flags = data[6]
    if isinstance(value, ClinicalFrame):
        fast: WireMessage | None = wire_decode._fast_clinical(data, end, flags)
    else:
        fast = wire_decode._fast_research(data, end, flags)
    assert fast is not None
    assert_identical(fast, reference_decode(data))


@SETTINGS
@given(clinical_frames)
def test_trusted_frame_is_what_frame_checks_accept_unchanged(value: ClinicalFrame) -> None:
    """``dataclasses.replace`` runs ``Frame.__post_init__`` on the decoded fields: it
    accepts them and keeps the very same (already read-only) arrays."""
    got = decode(encode(value))
    assert isinstance(got, ClinicalFrame)
    checked = dataclasses.replace(got.frame)
    assert checked.samples is got.frame.samples
    assert checked.offsets_ns is got.frame.offsets_ns
    for field in dataclasses.fields(Frame):
        assert getattr(checked, field.name) is getattr(got.frame, field.name)


def test_trusted_constructors_cover_every_field() -> None:
    """If ``Frame`` or ``ResearchFrame`` gains a field, the trusted constructors must be
    revisited (and ``Frame.__post_init__``'s checks with them)."""
    assert tuple(f.name for f in dataclasses.fields(Frame)) == wire_decode._FRAME_FIELDS
    research = tuple(f.name for f in dataclasses.fields(ResearchFrame))
    assert research == wire_decode._RESEARCH_FIELDS
    clinical = tuple(f.name for f in dataclasses.fields(ClinicalFrame))
    assert clinical == wire_decode._CLINICAL_FIELDS


@SETTINGS
@given(messages)
def test_bytearray_and_memoryview_payloads_decode_the_same(value: WireMessage) -> None:
    data = encode(value)
    buf = bytearray(data)
    got = decode(buf)  # type: ignore[arg-type]
    assert_identical(decode(memoryview(data)), reference_decode(data))  # type: ignore[arg-type]
    assert_identical(got, reference_decode(data))
    buf[HEADER_SIZE:-4] = bytes(len(buf) - HEADER_SIZE - 4)  # the caller reuses its buffer
    assert_identical(got, reference_decode(data))


def test_repeated_ids_decode_to_equal_uuids() -> None:
    data = doc_examples()["clinical-ecg"]
    first, second = decode(data), decode(data)
    assert isinstance(first, ClinicalFrame)
    assert isinstance(second, ClinicalFrame)
    assert first.subject_id == second.subject_id == UUID(bytes=data[12:28])
    assert first.consent_record_id == UUID(bytes=data[28:44])


# ---------------------------------------------------------------- malformed messages


@SETTINGS
@given(messages, st.data())
def test_mutated_bodies_give_the_same_reason(value: WireMessage, data: st.DataObject) -> None:
    msg = encode(value)
    body = bytearray(msg[HEADER_SIZE:-4])
    for _ in range(data.draw(st.integers(1, 4))):
        if body:
            body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    extra = data.draw(st.binary(max_size=9))
    assert_same_outcome(_resealed(msg, bytes(body[:cut]) + extra))


@SETTINGS
@given(messages, st.data())
def test_mutated_headers_give_the_same_reason(value: WireMessage, data: st.DataObject) -> None:
    msg = bytearray(encode(value))
    at = data.draw(st.integers(4, 7))  # version, kind, flags
    msg[at] = data.draw(st.integers(0, 255))
    head = bytes(msg[:-4])
    assert_same_outcome(head + zlib.crc32(head).to_bytes(4, "little"))
    cut = data.draw(st.integers(0, len(msg) - 1))
    assert_same_outcome(bytes(msg[:cut]))
    assert_same_outcome(bytes(msg))


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_the_same_reason(data: bytes) -> None:
    assert_same_outcome(data)
    assert_same_outcome(b"BGWM\x01" + data)


@pytest.mark.parametrize(
    ("name", "body_offset", "value"),
    [
        ("clinical-ecg", 32, 7),  # unknown timebase
        ("clinical-ecg", 33, 0xFF),  # device key runs past the body
        ("clinical-ecg", 34, 0xFF),  # bad UTF-8
        ("clinical-ecg", 36, 0),  # unknown stream
        ("clinical-ecg", 37, 99),  # unknown unit
        ("clinical-ecg", 38, 0x20),  # bad quality
        ("clinical-ecg", 40, 1),  # one channel name, ends inside it
        ("clinical-ecg", 49, 200),  # more samples than the body holds
        ("research-rr", 0, 0xFF),  # pseudonym runs past the body
        ("research-rr", 1, 0xC3),  # bad UTF-8
        ("research-accel", 6, 4),  # columns 4: samples run past the body
        ("research-accel", 6, 1),  # columns 1: trailing bytes
        ("research-accel", 36, 0xFF),  # channel name runs past the body
        ("research-accel", 37, 0xFF),  # bad UTF-8 in a channel name
    ],
)
def test_body_fields_give_the_same_reason(name: str, body_offset: int, value: int) -> None:
    msg = doc_examples()[name]
    body = bytearray(msg[HEADER_SIZE:-4])
    body[body_offset] = value
    with pytest.raises(WireFormatError):
        decode(_resealed(msg, bytes(body)))
    assert_same_outcome(_resealed(msg, bytes(body)))


@pytest.mark.parametrize("fs_hz", [0.0, -1.0, math.inf, -math.inf, math.nan, -0.0])
def test_bad_rates_give_the_same_reason(fs_hz: float) -> None:
    msg = doc_examples()["clinical-ecg"]
    body = bytearray(msg[HEADER_SIZE:-4])
    at = len(body) - 24 - 8
    body[at : at + 8] = struct.pack("<d", fs_hz)
    with pytest.raises(WireFormatError, match="bad_rate"):
        decode(_resealed(msg, bytes(body)))
    assert_same_outcome(_resealed(msg, bytes(body)))


@SETTINGS
@given(messages, st.binary(min_size=4, max_size=4))
def test_any_wrong_trailer_is_a_crc_error(value: WireMessage, trailer: bytes) -> None:
    """``decode`` compares the CRC of the whole message with the CRC-32 residue: it must
    reject exactly the trailers the reference rejects."""
    msg = encode(value)
    forged = msg[:-4] + trailer
    assert_same_outcome(forged)
    if trailer != msg[-4:]:
        with pytest.raises(WireFormatError, match="crc"):
            decode(forged)
    for bit in range(32):
        flipped = int.from_bytes(msg[-4:], "little") ^ (1 << bit)
        with pytest.raises(WireFormatError, match="crc"):
            decode(msg[:-4] + flipped.to_bytes(4, "little"))
