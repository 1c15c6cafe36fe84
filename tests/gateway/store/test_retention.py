"""Retention on the native layout: partitions past the longest period are dropped, shorter
per-stream periods delete rows, and nothing younger than its period goes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from gateway.store.migrate import load_migrations, migrate
from gateway.store.partitions import SignalSchema, ensure_partitions, partition_name
from gateway.store.retention import apply_retention, cutoffs

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DAYS_BACK = 10
Conn = psycopg.AsyncConnection[Any]


def _ns(at: datetime) -> int:
    return int(at.timestamp()) * 10**9


async def _fill(conn: Conn, schema: SignalSchema) -> None:
    """One ecg, one temp frame and one ecg gap per day for the last DAYS_BACK days, and a
    vital (and, in the care database, an alert) per day."""
    await ensure_partitions(
        conn, schema, ("frames", "gaps", "vitals"), NOW - timedelta(days=DAYS_BACK), NOW
    )
    key = ("subject_id, device_key", "%s, %s") if schema == "clinical" else ("pseudonym", "%s")
    ident: tuple[object, ...] = (uuid4(), uuid4()) if schema == "clinical" else ("p" * 32,)
    vital_key = ident[:1]
    for back in range(DAYS_BACK):
        at = NOW - timedelta(days=back, hours=1)
        t = _ns(at)
        for stream in ("ecg", "temp"):
            await conn.execute(
                f"INSERT INTO {schema}.frames ({key[0]}, stream, time_ns, ts, fs_hz, sequence,"
                f" n_samples, unit, samples) VALUES ({key[1]}, %s, %s, %s, 250, %s, 1, 'mV', %s)",
                (*ident, stream, t, at, back, b"\0" * 8),
            )
        await conn.execute(
            f"INSERT INTO {schema}.gaps ({key[0]}, stream, start_ns, end_ns, ts, samples_missing,"
            f" cause) VALUES ({key[1]}, 'ecg', %s, %s, %s, 1, 'link_loss')",
            (*ident, t, t, at),
        )
        vital_col = "subject_id" if schema == "clinical" else "pseudonym"
        await conn.execute(
            f"INSERT INTO {schema}.vitals ({vital_col}, ts, kind, value, window_s)"
            " VALUES (%s, %s, 'hr', 60, 10)",
            (*vital_key, at),
        )
        if schema == "clinical":
            await conn.execute(
                "INSERT INTO clinical.alerts (subject_id, ts, kind, severity)"
                " VALUES (%s, %s, 'apnoea', 'critical')",
                (*vital_key, at),
            )


async def _ages(conn: Conn, schema: SignalSchema, table: str, stream: str | None) -> list[int]:
    where = "" if stream is None else f" WHERE stream = '{stream}'"
    cur = await conn.execute(f"SELECT ts FROM {schema}.{table}{where} ORDER BY ts DESC")
    return [(NOW - row[0]).days for row in await cur.fetchall()]


@pytest.mark.parametrize("schema", ["clinical", "pseudo"])
async def test_retention_drops_old_partitions_and_trims_short_lived_streams(
    schema: SignalSchema, new_database: Callable[[], Awaitable[str]]
) -> None:
    dsn = await new_database()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await migrate(conn, load_migrations("care" if schema == "clinical" else "research"))
        await _fill(conn, schema)
        periods = {"default": 6.0, "ecg": 3.0, "vitals": 2.0}
        report = await apply_retention(conn, schema, periods, now=NOW)

        # Day partitions ending on or before now - 6 days are gone, whole.
        oldest_kept = (NOW - timedelta(days=6)).date()
        for name in report.dropped:
            assert name < partition_name("frames", oldest_kept) or not name.startswith("frames")
        assert partition_name("frames", (NOW - timedelta(days=8)).date()) in report.dropped
        assert partition_name("frames", oldest_kept) not in report.dropped
        # temp follows the default: nothing younger than 6 days went, nothing older stays
        # beyond the partition holding the cutoff.
        temp = await _ages(conn, schema, "frames", "temp")
        assert temp[:6] == [0, 1, 2, 3, 4, 5]
        assert max(temp) <= 6
        # ecg has its own 3 days: rows older than that are deleted from kept partitions.
        assert await _ages(conn, schema, "frames", "ecg") == [0, 1, 2]
        assert await _ages(conn, schema, "gaps", "ecg") == [0, 1, 2]
        assert report.deleted["frames/ecg"] >= 3
        # vitals: 2 days (partition granularity: the cutoff's own day stays).
        vitals = await _ages(conn, schema, "vitals", None)
        assert vitals[:2] == [0, 1]
        assert max(vitals) <= 2
        if schema == "clinical":  # alerts follow the vitals' period, row by row
            assert await _ages(conn, schema, "alerts", None) == [0, 1]
            assert report.deleted["alerts"] == DAYS_BACK - 2

        again = await apply_retention(conn, schema, periods, now=NOW)
        assert again.dropped == ()
        assert not any(again.deleted.values())


def test_cutoffs_follow_the_longest_period() -> None:
    cut = cutoffs({"default": 30.0, "ecg": 7.0, "temp": 90.0}, NOW)
    assert cut.partitions == NOW - timedelta(days=90)
    assert cut.streams == {"ecg": NOW - timedelta(days=7)}
    assert cut.others == NOW - timedelta(days=30)
    assert cut.vitals == NOW - timedelta(days=30)
    with pytest.raises(ValueError, match="default"):
        cutoffs({"ecg": 7.0}, NOW)
    with pytest.raises(ValueError, match="timezone"):
        cutoffs({"default": 7.0}, NOW.replace(tzinfo=None))


async def test_a_shift_slack_moves_every_cutoff_back(
    new_database: Callable[[], Awaitable[str]],
) -> None:
    """Research times are shifted by up to the slack either way: nothing within the
    period plus the slack goes."""
    dsn = await new_database()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await migrate(conn, load_migrations("research"))
        await _fill(conn, "pseudo")
        periods = {"default": 3.0, "ecg": 2.0, "vitals": 2.0}
        report = await apply_retention(
            conn, "pseudo", periods, now=NOW, shift_slack=timedelta(days=4)
        )
        temp = await _ages(conn, "pseudo", "frames", "temp")  # 3 days + 4 of slack
        assert temp[:7] == list(range(7))
        assert max(temp) <= 7
        ecg = await _ages(conn, "pseudo", "frames", "ecg")  # 2 days + 4 of slack
        assert ecg == list(range(6))
        assert partition_name("frames", (NOW - timedelta(days=9)).date()) in report.dropped
        with pytest.raises(ValueError, match="negative"):
            await apply_retention(conn, "pseudo", periods, now=NOW, shift_slack=-timedelta(1))
