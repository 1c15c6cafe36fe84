"""Signal reads on real PostgreSQL: frames reassembled into one series, trimmed to the
range, stored and unrecorded gaps, irregular and multichannel streams, several sources,
latest vitals; the same core on the research database; reads through the partitioned
parents by the clinician role."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest

from devices.frame import StreamKind
from gateway.store import StorePermissionError, translate_error
from gateway.store.migrate import load_migrations, migrate
from gateway.store.partitions import ensure_partitions, ts_of_ns
from gateway.store.signals import (
    UNREADABLE,
    UNRECORDED,
    SignalGap,
    SignalReadError,
    latest_pseudo_vitals,
    latest_vitals,
    read_pseudo_signal,
    read_signal,
)

Conn = psycopg.AsyncConnection[Any]
DAY = timedelta(days=1)
T0 = datetime(2026, 11, 20, tzinfo=UTC)
T0_NS = int(T0.timestamp()) * 1_000_000_000 + 12 * 3600 * 1_000_000_000  # noon
FRAME_NS = 400_000_000  # 100 samples at 250 Hz
SUBJECT = uuid.UUID(int=0x51)
DEVICE = uuid.UUID(int=0xD1)


async def _frame(
    conn: Conn,
    time_ns: int,
    samples: np.ndarray[Any, Any],
    *,
    stream: str = "ecg",
    fs_hz: float | None = 250.0,
    offsets_ns: list[int] | None = None,
    sequence: int | None = None,
    channels: tuple[str, ...] = (),
    unit: str = "uV",
    subject: uuid.UUID = SUBJECT,
    device: uuid.UUID = DEVICE,
    data: bytes | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO clinical.frames (subject_id, device_key, stream, time_ns, ts, fs_hz,"
        " offsets_ns, sequence, n_samples, channels, unit, samples)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            subject,
            device,
            stream,
            time_ns,
            ts_of_ns(time_ns),
            fs_hz,
            offsets_ns,
            sequence,
            len(samples),
            list(channels),
            unit,
            data if data is not None else np.asarray(samples, dtype="<f8").tobytes(),
        ),
    )


async def _gap(conn: Conn, start_ns: int, end_ns: int, missing: int, cause: str) -> None:
    await conn.execute(
        "INSERT INTO clinical.gaps (subject_id, device_key, stream, start_ns, end_ns, ts,"
        " samples_missing, cause) VALUES (%s, %s, 'ecg', %s, %s, %s, %s, %s)",
        (SUBJECT, DEVICE, start_ns, end_ns, ts_of_ns(start_ns), missing, cause),
    )


@pytest.fixture
async def db(admin: Conn) -> Conn:
    await ensure_partitions(admin, "clinical", ("frames", "gaps", "vitals"), T0, T0 + DAY)
    return admin


def _ecg(seed: int, n: int = 100) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.random.default_rng(seed).normal(0.0, 500.0, n)


def _grid(first_ns: int, n: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    return first_ns + np.rint(np.arange(n) * 4e6).astype(np.int64)


async def test_frames_reassemble_exactly_in_time_order(db: Conn) -> None:
    blocks = [_ecg(i) for i in range(3)]
    for i in (2, 0, 1):  # stored out of order
        await _frame(db, T0_NS + i * FRAME_NS, blocks[i], sequence=10 + i)
    series = await read_signal(db, SUBJECT, StreamKind.ECG, T0_NS, T0_NS + 3 * FRAME_NS)
    assert series.samples.tobytes() == np.concatenate(blocks).tobytes()
    np.testing.assert_array_equal(series.times_ns, _grid(T0_NS, 300))
    assert (series.stream, series.unit, series.channels, series.fs_hz) == (
        StreamKind.ECG,
        "uV",
        (),
        250.0,
    )
    assert series.gaps == ()
    assert series.overlap_samples == 0


async def test_range_is_trimmed_and_a_frame_straddling_the_start_counts(db: Conn) -> None:
    blocks = [_ecg(i) for i in range(4)]
    for i, block in enumerate(blocks):
        await _frame(db, T0_NS + i * FRAME_NS, block, sequence=i)
    start = T0_NS + 200_000_000  # inside the first frame: its samples 50..99 are in range
    end = T0_NS + 1_000_000_000  # sample 250 excluded (end is exclusive)
    series = await read_signal(db, SUBJECT, StreamKind.ECG, start, end)
    np.testing.assert_array_equal(series.samples, np.concatenate(blocks)[50:250])
    assert series.times_ns[0] == start
    assert series.times_ns[-1] == end - 4_000_000
    # A range inside one frame, and one wholly before the frames.
    inner = await read_signal(db, SUBJECT, StreamKind.ECG, T0_NS + 4_000_000, T0_NS + 12_000_000)
    np.testing.assert_array_equal(inner.samples, blocks[0][1:3])


async def test_empty_range_and_no_frames(db: Conn) -> None:
    await _frame(db, T0_NS, _ecg(1), sequence=1)
    for start, end in ((T0_NS, T0_NS), (T0_NS - 10**9, T0_NS), (T0_NS + 10**9, T0_NS + 2 * 10**9)):
        series = await read_signal(db, SUBJECT, StreamKind.ECG, start, end)
        assert series.samples.shape == (0,)
        assert series.times_ns.shape == (0,)
        assert series.gaps == ()
        assert series.to_grid()[1].shape == (0,)
    other = await read_signal(db, uuid.UUID(int=7), StreamKind.ECG, T0_NS, T0_NS + 10**9)
    assert other.samples.size == 0
    with pytest.raises(SignalReadError) as info:
        await read_signal(db, SUBJECT, StreamKind.ECG, T0_NS, T0_NS - 1)
    assert info.value.reason == "bad_range"


async def test_stored_gap_is_reported_with_its_cause(db: Conn) -> None:
    await _frame(db, T0_NS, _ecg(0), sequence=1)
    await _frame(db, T0_NS + 2 * FRAME_NS, _ecg(2), sequence=3)
    hole = (T0_NS + FRAME_NS, T0_NS + 2 * FRAME_NS - 4_000_000)
    await _gap(db, *hole, 100, "link_loss")
    series = await read_signal(db, SUBJECT, StreamKind.ECG, T0_NS, T0_NS + 3 * FRAME_NS)
    assert series.gaps == (SignalGap(*hole, 100, "link_loss"),)
    assert series.samples.shape == (200,)
    first, grid = series.to_grid()
    assert first == T0_NS
    assert grid.shape == (300,)
    assert np.isnan(grid[100:200]).all()
    np.testing.assert_array_equal(grid[200:], _ecg(2))


async def test_unrecorded_discontinuity_is_detected(db: Conn) -> None:
    await _frame(db, T0_NS, _ecg(0), sequence=1)
    await _frame(db, T0_NS + FRAME_NS, _ecg(1), sequence=2)
    await _frame(db, T0_NS + 3 * FRAME_NS, _ecg(3), sequence=4)
    series = await read_signal(db, SUBJECT, StreamKind.ECG, T0_NS, T0_NS + 4 * FRAME_NS)
    hole = SignalGap(T0_NS + 2 * FRAME_NS, T0_NS + 3 * FRAME_NS - 4_000_000, 100, UNRECORDED)
    assert series.gaps == (hole,)
    # A stored gap elsewhere does not explain it; one overlapping it does.
    await _gap(db, T0_NS + 10 * FRAME_NS, T0_NS + 11 * FRAME_NS, 100, "device_skip")
    again = await read_signal(db, SUBJECT, StreamKind.ECG, T0_NS, T0_NS + 4 * FRAME_NS)
    assert again.gaps == (hole,)


async def test_a_hole_at_the_start_of_the_range_is_found(db: Conn) -> None:
    await _frame(db, T0_NS, _ecg(0), sequence=1)
    await _frame(db, T0_NS + 3 * FRAME_NS, _ecg(3), sequence=4)
    start = T0_NS + FRAME_NS + 100_000_000  # inside the hole
    series = await read_signal(db, SUBJECT, StreamKind.ECG, start, T0_NS + 4 * FRAME_NS)
    np.testing.assert_array_equal(series.samples, _ecg(3))
    hole = SignalGap(T0_NS + FRAME_NS, T0_NS + 3 * FRAME_NS - 4_000_000, 200, UNRECORDED)
    assert series.gaps == (hole,)


async def test_many_frames_before_the_range_read_only_the_latest(db: Conn) -> None:
    for i in range(20):  # 8 s of frames before the range, all inside the lookback
        await _frame(db, T0_NS + i * FRAME_NS, _ecg(i), sequence=i)
    start = T0_NS + 20 * FRAME_NS - 200_000_000  # inside frame 19
    series = await read_signal(db, SUBJECT, StreamKind.ECG, start, start + 100_000_000)
    np.testing.assert_array_equal(series.samples, _ecg(19)[50:75])
    assert series.gaps == ()


async def test_a_rate_change_just_before_the_range_is_not_refused(db: Conn) -> None:
    await _frame(db, T0_NS, _ecg(0, 52), fs_hz=130.0, sequence=1)
    await _frame(db, T0_NS + FRAME_NS, _ecg(1), sequence=2)
    series = await read_signal(db, SUBJECT, StreamKind.ECG, T0_NS + FRAME_NS, T0_NS + 2 * FRAME_NS)
    assert series.fs_hz == 250.0
    np.testing.assert_array_equal(series.samples, _ecg(1))


async def test_irregular_stream_uses_offsets_and_sequence_jumps(db: Conn) -> None:
    offsets = [[0, 810_000_000, 1_630_000_000], [0, 790_000_000]]
    rr = [np.array([810.0, 820.0, 805.0]), np.array([790.0, 800.0])]
    await _frame(db, T0_NS, rr[0], stream="rr", fs_hz=None, offsets_ns=offsets[0], sequence=5,
                 unit="ms")  # fmt: skip
    later = T0_NS + 5_000_000_000
    await _frame(db, later, rr[1], stream="rr", fs_hz=None, offsets_ns=offsets[1], sequence=7,
                 unit="ms")  # fmt: skip
    series = await read_signal(db, SUBJECT, StreamKind.RR, T0_NS, T0_NS + 10**10)
    assert series.fs_hz is None
    assert series.unit == "ms"
    np.testing.assert_array_equal(series.samples, np.concatenate(rr))
    np.testing.assert_array_equal(
        series.times_ns,
        [T0_NS, T0_NS + 810_000_000, T0_NS + 1_630_000_000, later, later + 790_000_000],
    )
    assert series.gaps == (SignalGap(T0_NS + 1_630_000_000, later, 3, UNRECORDED),)
    with pytest.raises(SignalReadError) as info:
        series.to_grid()
    assert info.value.reason == "irregular"


async def test_multichannel_accelerometer(db: Conn) -> None:
    xyz = [np.random.default_rng(i).normal(0, 1000, (20, 3)) for i in range(2)]
    for i, block in enumerate(xyz):
        await _frame(db, T0_NS + i * FRAME_NS, block, stream="accel", fs_hz=50.0, sequence=i,
                     channels=("x", "y", "z"), unit="mG")  # fmt: skip
    series = await read_signal(db, SUBJECT, StreamKind.ACCEL, T0_NS, T0_NS + 2 * FRAME_NS)
    assert series.channels == ("x", "y", "z")
    assert series.samples.shape == (40, 3)
    np.testing.assert_array_equal(series.samples, np.concatenate(xyz))
    assert series.gaps == ()
    _, grid = series.to_grid()
    assert grid.shape == (40, 3)


async def test_two_devices_overlapping_keep_the_primary_source(db: Conn) -> None:
    other = uuid.UUID(int=0xD0)  # sorts before DEVICE, yet has fewer samples
    for i in range(3):
        await _frame(db, T0_NS + i * FRAME_NS, _ecg(i), sequence=i)
    await _frame(db, T0_NS + FRAME_NS + 8_000_000, _ecg(99), sequence=1, device=other)
    # The other device alone covers a stretch after the primary's last frame.
    await _frame(db, T0_NS + 4 * FRAME_NS, _ecg(98), sequence=3, device=other)
    series = await read_signal(db, SUBJECT, StreamKind.ECG, T0_NS, T0_NS + 5 * FRAME_NS)
    expected = np.concatenate([_ecg(0), _ecg(1), _ecg(2), _ecg(98)])
    np.testing.assert_array_equal(series.samples, expected)
    assert [g.cause for g in series.gaps] == [UNRECORDED]
    assert series.gaps[0].samples_missing == 100
    # Two copies of one frame from two devices: one copy, the other counted as overlap.
    await _frame(db, T0_NS + 6 * FRAME_NS, _ecg(6), sequence=6)
    await _frame(db, T0_NS + 6 * FRAME_NS, _ecg(6), sequence=6, device=other)
    later = await read_signal(
        db, SUBJECT, StreamKind.ECG, T0_NS + 6 * FRAME_NS, T0_NS + 7 * FRAME_NS
    )
    np.testing.assert_array_equal(later.samples, _ecg(6))


async def test_mixed_rate_is_refused(db: Conn) -> None:
    await _frame(db, T0_NS, _ecg(0), sequence=1)
    await _frame(db, T0_NS + FRAME_NS, _ecg(1, 52), fs_hz=130.0, sequence=2)
    with pytest.raises(SignalReadError) as info:
        await read_signal(db, SUBJECT, StreamKind.ECG, T0_NS, T0_NS + 2 * FRAME_NS)
    assert info.value.reason == "mixed_rate"
    assert info.value.at_ns == T0_NS + FRAME_NS
    first = await read_signal(db, SUBJECT, StreamKind.ECG, T0_NS, T0_NS + FRAME_NS)
    assert first.samples.shape == (100,)


async def test_unreadable_frame_becomes_a_gap(db: Conn) -> None:
    await _frame(db, T0_NS, _ecg(0), sequence=1)
    await _frame(db, T0_NS + FRAME_NS, _ecg(1), sequence=2, data=bytes(8 * 99))
    await _frame(db, T0_NS + 2 * FRAME_NS, _ecg(2), sequence=3)
    series = await read_signal(db, SUBJECT, StreamKind.ECG, T0_NS, T0_NS + 3 * FRAME_NS)
    assert series.unreadable_frames == 1
    assert series.samples.shape == (200,)
    assert [(g.cause, g.samples_missing) for g in series.gaps] == [(UNREADABLE, 100)]


async def _vital(conn: Conn, schema: str, key: Any, at: datetime, kind: str, value: float) -> None:
    column = "subject_id" if schema == "clinical" else "pseudonym"
    await conn.execute(
        f"INSERT INTO {schema}.vitals ({column}, ts, kind, value, window_s)"
        " VALUES (%s, %s, %s, %s, 10)".encode(),
        (key, at, kind, value),
    )


async def test_latest_vitals_picks_the_newest_in_the_window(db: Conn) -> None:
    await ensure_partitions(db, "clinical", ("vitals",), T0 - DAY, T0)
    a, b, c = uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)
    noon = T0 + timedelta(hours=12)
    for minutes, value in ((1, 60.0), (5, 72.0), (3, 65.0)):
        await _vital(db, "clinical", a, noon + timedelta(minutes=minutes), "hr", value)
    await _vital(db, "clinical", a, noon, "resp_rate", 14.0)
    await _vital(db, "clinical", b, noon - timedelta(hours=20), "hr", 80.0)  # day before
    await _vital(db, "clinical", b, noon + timedelta(minutes=2), "temp", 36.6)
    await _vital(db, "clinical", c, noon - timedelta(hours=30), "hr", 99.0)  # out of window
    now = noon + timedelta(hours=1)
    found = await latest_vitals(db, now=now)
    assert set(found) == {a, b}
    assert {k: v.value for k, v in found[a].items()} == {"hr": 72.0, "resp_rate": 14.0}
    assert found[a]["hr"].ts == noon + timedelta(minutes=5)
    assert {k: v.value for k, v in found[b].items()} == {"hr": 80.0, "temp": 36.6}
    only = await latest_vitals(db, [b, c], now=now, window=timedelta(hours=2))
    assert {k: set(v) for k, v in only.items()} == {b: {"temp"}}
    assert await latest_vitals(db, [], now=now) == {}
    assert set(await latest_vitals(db, [c], now=now, window=timedelta(hours=31))) == {c}


async def test_clinician_reads_through_the_parent_after_new_partitions(db: Conn) -> None:
    later = T0 + 3 * DAY
    created = await ensure_partitions(
        db, "clinical", ("frames", "gaps", "vitals"), later, later + DAY
    )
    assert len(created) == 3
    at_ns = T0_NS + 3 * 86_400 * 1_000_000_000
    await _frame(db, at_ns, _ecg(5), sequence=1)
    await _vital(db, "clinical", SUBJECT, later + timedelta(hours=12), "hr", 61.0)
    for role in ("biogw_clinician_api_login", "biogw_owner_api_login"):
        await db.execute(f"SET ROLE {role}".encode())
        series = await read_signal(db, SUBJECT, StreamKind.ECG, at_ns, at_ns + FRAME_NS)
        np.testing.assert_array_equal(series.samples, _ecg(5))
        found = await latest_vitals(db, [SUBJECT], now=later + DAY)
        assert found[SUBJECT]["hr"].value == 61.0
        cur = await db.execute(b"SELECT count(*) FROM clinical.vitals_1m")
        assert await cur.fetchone() == (1,)
        with pytest.raises(psycopg.Error) as info:  # the partition itself stays closed
            await db.execute(f"SELECT 1 FROM clinical.{created[0]}".encode())
        assert isinstance(translate_error(info.value, "t"), StorePermissionError)
        await db.execute(b"RESET ROLE")
    for role in ("biogw_gateway_login", "biogw_privacy_officer_login", "clinical_ingest_login"):
        await db.execute(f"SET ROLE {role}".encode())
        with pytest.raises(StorePermissionError):
            await read_signal(db, SUBJECT, StreamKind.ECG, at_ns, at_ns + FRAME_NS)
        await db.execute(b"RESET ROLE")


async def test_research_database_reads_by_pseudonym(
    new_database: Callable[[], Awaitable[str]],
) -> None:
    dsn = await new_database()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await migrate(conn, load_migrations("research"))
        await ensure_partitions(conn, "pseudo", ("frames", "gaps", "vitals"), T0, T0 + DAY)
        for i in (0, 2):
            await conn.execute(
                "INSERT INTO pseudo.frames (pseudonym, stream, time_ns, ts, fs_hz, sequence,"
                " n_samples, unit, samples) VALUES ('p-1', 'ecg', %s, %s, 250, %s, 100, 'uV', %s)",
                (T0_NS + i * FRAME_NS, ts_of_ns(T0_NS + i * FRAME_NS), i, _ecg(i).tobytes()),
            )
        series = await read_pseudo_signal(conn, "p-1", StreamKind.ECG, T0_NS, T0_NS + 3 * FRAME_NS)
        np.testing.assert_array_equal(series.samples, np.concatenate([_ecg(0), _ecg(2)]))
        assert [g.cause for g in series.gaps] == [UNRECORDED]
        noon = T0 + timedelta(hours=12)
        await _vital(conn, "pseudo", "p-1", noon, "hr", 70.0)
        await _vital(conn, "pseudo", "p-1", noon + timedelta(seconds=10), "hr", 71.0)
        found = await latest_pseudo_vitals(conn, now=noon + timedelta(hours=1))
        assert found["p-1"]["hr"].value == 71.0
        assert await latest_pseudo_vitals(conn, ["p-2"], now=noon) == {}
