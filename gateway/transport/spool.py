"""The durable on-disk spool of outgoing MQTT messages (docs/spool.md).

Role: every message the gateway publishes is appended here first; the transport
``commit()``s (group commit: one transaction for many appends and acks), publishes only
committed records taken from ``pending()``, and ``ack()``s each one on the broker's PUBACK.
Un-acked records survive a broker outage and a restart (or ``kill -9``) of the gateway
and are replayed in ``seq`` order. One SQLite file, ``spool.sqlite3``, in WAL mode, held
with an exclusive lock so two gateways cannot share (and double-publish) one spool.

Durability: ``sync="full"`` fsyncs every commit (a commit survives power loss);
``sync="normal"`` does not fsync commits (a commit survives a crash or ``kill -9`` of the
process, and the file stays consistent, but the last commits may be lost on power loss).

Size policy: ``max_bytes`` bounds the topic (UTF-8) + payload bytes held, counting the
open transaction. An append that would exceed it first evicts the OLDEST RESEARCH
records until it fits. If evicting every research record would still not make room, the
append is refused with ``SpoolFullError`` and counted (``refused_clinical`` /
``refused_research``) and nothing is evicted; clinical records are never evicted, and a
refusal is never silent (the caller turns it into a ``spool_full`` gap, appended as
CONTROL). CONTROL records may also use ``reserve_bytes`` of headroom beyond the bound.

Calls are synchronous and short (they run on the asyncio loop thread; no threads).
Errors from sqlite3 are translated in one place, ``spool_types.translate_sqlite_error``.
This module must not do network I/O, decode payloads, or log payloads or topics (topics
may contain subject ids) at any level above DEBUG.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self

from gateway.transport.spool_types import (
    SpoolClass,
    SpoolClosedError,
    SpoolCorruptError,
    SpoolCounters,
    SpoolError,
    SpoolFullError,
    SpoolLockedError,
    SpoolRecord,
    SpoolStorageError,
    translate_sqlite_error,
)

__all__ = [
    "APPLICATION_ID",
    "FILENAME",
    "SCHEMA_VERSION",
    "Spool",
    "SpoolClass",
    "SpoolClosedError",
    "SpoolCorruptError",
    "SpoolCounters",
    "SpoolError",
    "SpoolFullError",
    "SpoolLockedError",
    "SpoolRecord",
    "SpoolStorageError",
]

_log = logging.getLogger(__name__)

FILENAME: Final = "spool.sqlite3"
SCHEMA_VERSION: Final = 1
APPLICATION_ID: Final = 0x42475753  # "BGWS"
MIN_RESERVE_BYTES: Final = 64 * 1024
_COLUMNS: Final = ("seq", "klass", "topic", "payload")
_SCHEMA: Final = f"""
CREATE TABLE spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    klass INTEGER NOT NULL CHECK (klass IN (1, 2, 3)),
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX spool_research ON spool (seq) WHERE klass = 2;
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
"""
_SIZE: Final = "length(CAST(topic AS BLOB)) + length(payload)"
_INSERT: Final = "INSERT INTO spool (seq, klass, topic, payload) VALUES (?, ?, ?, ?)"
_DELETE: Final = f"DELETE FROM spool WHERE seq = ? RETURNING klass, {_SIZE}"
_HELD_IN: Final = (
    f"SELECT klass, count(*), sum({_SIZE}) FROM spool WHERE seq BETWEEN ? AND ? GROUP BY klass"
)
_DELETE_RANGE: Final = "DELETE FROM spool WHERE seq BETWEEN ? AND ?"
_PENDING: Final = (
    "SELECT seq, klass, topic, payload FROM spool WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
)
_RECOUNT: Final = (  # one pass, no GROUP BY: a sorter would copy every payload
    "SELECT "
    + ", ".join(
        f"count(CASE klass WHEN {k} THEN 1 END), "
        f"coalesce(sum(CASE klass WHEN {k} THEN {_SIZE} END), 0)"
        for k in (1, 2, 3)
    )
    + ", coalesce(max(seq), 0) FROM spool"
)
_OLDEST_RESEARCH: Final = f"SELECT seq, {_SIZE} FROM spool WHERE klass = 2 ORDER BY seq"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(path: Path) -> None:
    """Create an empty spool atomically: schema in ``<name>.new``, then rename, so an
    existing ``spool.sqlite3`` always has a schema (a damaged one is never taken as new)."""
    tmp = path.with_name(path.name + ".new")
    for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
        leftover.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        os.chmod(tmp, 0o600)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(f"BEGIN;{_SCHEMA}COMMIT;")
    finally:
        conn.close()  # checkpoints and removes the WAL
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(path.parent)


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    if app_id != APPLICATION_ID:
        raise SpoolCorruptError(path, "foreign_database", f"application_id {app_id:#x}")
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version != SCHEMA_VERSION:
        raise SpoolCorruptError(path, "schema_version", f"found {version}, want {SCHEMA_VERSION}")
    columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(spool)"))
    if columns != _COLUMNS:
        raise SpoolCorruptError(path, "schema_mismatch", f"columns {columns}")
    problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise SpoolCorruptError(path, "integrity", "; ".join(problems[:3]))


def _open(path: Path, sync: Literal["normal", "full"]) -> sqlite3.Connection:
    """Connect, take the exclusive lock, check the schema, then set the durability."""
    if path.stat().st_size == 0:
        raise SpoolCorruptError(path, "empty_file")
    conn = sqlite3.connect(path, isolation_level=None, timeout=0.0)
    try:
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")  # before the first WAL access
        _check_schema(conn, path)  # the first read takes and keeps the lock
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {sync.upper()}")
        conn.execute("PRAGMA journal_size_limit = 67108864")
    except BaseException:
        conn.close()
        raise
    return conn


def _open_or_create(path: Path, sync: Literal["normal", "full"]) -> sqlite3.Connection:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        if not path.exists():
            if path.with_name(path.name + "-wal").exists():
                raise SpoolCorruptError(path, "wal_without_database")
            _create(path)
        return _open(path, sync)
    except sqlite3.Error as exc:
        raise translate_sqlite_error(exc, path) from exc


class Spool:
    """The spool: a synchronous context manager (``with Spool(...) as spool:``) that
    opens or creates ``<directory>/spool.sqlite3`` and closes it (committing) on exit."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        sync: Literal["normal", "full"] = "full",
        reserve_bytes: int | None = None,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if sync not in ("normal", "full"):
            raise ValueError(f"sync must be 'normal' or 'full', not {sync!r}")
        if reserve_bytes is None:
            reserve_bytes = max(max_bytes // 100, MIN_RESERVE_BYTES)
        if reserve_bytes < 0:
            raise ValueError("reserve_bytes must not be negative")
        self._path = Path(directory) / FILENAME
        self._max_bytes = max_bytes
        self._reserve_bytes = reserve_bytes
        self._closed = False
        self._warned_full = False
        self._txn_appends = 0
        self._rows: list[tuple[int, int, str, bytes]] = []
        """Appends not yet inserted (``_write_rows``: at commit or before an eviction)."""
        self._dirty = False  # the open transaction changed something
        self._counts = dict.fromkeys(_EVENT_COUNTERS, 0)
        self._held_records = [0, 0, 0, 0]  # by SpoolClass value (index 0 unused)
        self._held_bytes = [0, 0, 0, 0]
        self._next_seq = 1
        self._committed_max = 0
        self._conn = _open_or_create(self._path, sync)
        try:
            self._recount()
        except BaseException:
            self._conn.close()
            raise
        self._counts["recovered_records"] = sum(self._held_records)
        _log.info(
            "spool %s opened (sync=%s): %d records, %d bytes recovered",
            self._path,
            sync,
            sum(self._held_records),
            sum(self._held_bytes),
        )

    # -- context manager -------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Commit what is pending and close the file (idempotent)."""
        if self._closed:
            return
        try:
            self.commit()
        finally:
            self._closed = True
            self._conn.close()

    # -- properties ------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def reserve_bytes(self) -> int:
        return self._reserve_bytes

    @property
    def counters(self) -> SpoolCounters:
        held_r, held_b = self._held_records, self._held_bytes
        return SpoolCounters(
            **self._counts,
            records=sum(held_r),
            bytes=sum(held_b),
            clinical_records=held_r[SpoolClass.CLINICAL],
            clinical_bytes=held_b[SpoolClass.CLINICAL],
            research_records=held_r[SpoolClass.RESEARCH],
            research_bytes=held_b[SpoolClass.RESEARCH],
            control_records=held_r[SpoolClass.CONTROL],
            control_bytes=held_b[SpoolClass.CONTROL],
        )

    # -- the API ---------------------------------------------------------------------

    def append(self, topic: str, payload: bytes, klass: SpoolClass) -> int:
        """Add one message to the open transaction (buffered; inserted at the next commit
        or eviction) and return its ``seq``. Raises ``SpoolFullError`` when the size
        policy refuses it (see the module docstring)."""
        self._check_open()
        klass = SpoolClass(klass)
        size = len(topic.encode()) + len(payload)
        limit = self._max_bytes + (self._reserve_bytes if klass is SpoolClass.CONTROL else 0)
        if sum(self._held_bytes) + size > limit:
            self._make_room(klass, size, limit)
        elif klass is not SpoolClass.CONTROL:
            self._warned_full = False
        seq = self._next_seq
        self._rows.append((seq, int(klass), topic, payload))  # written by _write_rows
        self._next_seq = seq + 1
        self._txn_appends += 1
        self._dirty = True
        self._counts["appended"] += 1
        self._held_records[klass] += 1
        self._held_bytes[klass] += size
        return seq

    def commit(self) -> None:
        """Make every append and ack so far durable, in one transaction. A no-op when
        nothing is pending."""
        self._check_open()
        self._write_rows()
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        self._committed_max = self._next_seq - 1
        self._txn_appends = 0
        if self._dirty:
            self._counts["commits"] += 1
            self._dirty = False

    def pending(self, after_seq: int, limit: int) -> list[SpoolRecord]:
        """Committed, un-acked records with ``seq > after_seq``, in ``seq`` order, at most
        ``limit`` of them. Acks take effect here at once (before their commit)."""
        self._check_open()
        if limit <= 0:
            return []
        try:
            rows = self._conn.execute(_PENDING, (after_seq, self._committed_max, limit))
            return [SpoolRecord(s, SpoolClass(k), t, p) for s, k, t, p in rows]
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc

    def ack(self, seq: int) -> None:
        """The broker acknowledged ``seq``: delete it in the open transaction (durable at
        the next commit). Unknown, evicted, already acked or uncommitted seqs are ignored."""
        self._check_open()
        if seq > self._committed_max:
            return
        for klass, size in self._execute(_DELETE, (seq,)).fetchall():
            self._counts["acked"] += 1
            self._dirty = True
            self._held_records[klass] -= 1
            self._held_bytes[klass] -= size

    def ack_many(self, seqs: Iterable[int]) -> int:
        """``ack`` for many seqs at once (the publisher's batch of PUBACKs); returns how
        many records were deleted. Consecutive seqs are deleted as one range (a range
        statement, not one DELETE per seq: acks arrive in seq order, so a batch is
        usually one range)."""
        self._check_open()
        deleted = 0
        for lo, hi in _runs(seqs, self._committed_max):
            held = self._execute(_HELD_IN, (lo, hi)).fetchall()
            if not held:
                continue
            self._execute(_DELETE_RANGE, (lo, hi))
            for klass, count, size in held:
                self._held_records[klass] -= count
                self._held_bytes[klass] -= size
                deleted += count
        if deleted:
            self._counts["acked"] += deleted
            self._dirty = True
        return deleted

    # -- internals -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolClosedError(self._path)

    def _execute(self, sql: str, params: tuple[object, ...]) -> sqlite3.Cursor:
        try:
            if not self._conn.in_transaction:
                self._conn.execute("BEGIN")
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc

    def _write_rows(self) -> None:
        """Insert the appends buffered since the last call, in one ``executemany`` (a
        third of the cost of one INSERT per append); they join the open transaction."""
        rows = self._rows
        if not rows:
            return
        self._rows = []
        try:
            if not self._conn.in_transaction:
                self._conn.execute("BEGIN")
            self._conn.executemany(_INSERT, rows)
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc

    def _make_room(self, klass: SpoolClass, size: int, limit: int) -> None:
        """Evict the oldest research records so that ``size`` more bytes fit in ``limit``,
        or refuse (count, raise) without evicting anything if even that cannot suffice."""
        held = sum(self._held_bytes)
        fixed = held - self._held_bytes[SpoolClass.RESEARCH]
        if fixed + size > limit:
            self._counts[f"refused_{klass.name.lower()}"] += 1
            if not self._warned_full:
                _log.warning(
                    "spool full: refusing %s records (%d bytes held, limit %d)",
                    klass.name,
                    held,
                    limit,
                )
                self._warned_full = True
            raise SpoolFullError(self._path, klass, size, fixed, limit)
        need = held + size - limit
        self._write_rows()  # buffered research appends may be the oldest to go
        freed = count = last = 0
        try:
            rows = self._conn.execute(_OLDEST_RESEARCH)
            while freed < need:
                batch = rows.fetchmany(256)
                if not batch:  # unreachable while the held counts match the file
                    break
                for seq, nbytes in batch:
                    freed, count, last = freed + nbytes, count + 1, seq
                    if freed >= need:
                        break
            rows.close()
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        self._execute("DELETE FROM spool WHERE klass = 2 AND seq <= ?", (last,))
        self._dirty = True
        self._held_records[SpoolClass.RESEARCH] -= count
        self._held_bytes[SpoolClass.RESEARCH] -= freed
        self._counts["evicted_research"] += count
        self._counts["evicted_research_bytes"] += freed
        if not self._warned_full:
            _log.warning("spool full: evicting the oldest research records")
            self._warned_full = True

    def _recount(self) -> None:
        """Held counts and the seq high-water mark from what the file holds (committed)."""
        try:
            *held, max_seq = self._conn.execute(_RECOUNT).fetchone()
            row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'spool'")
            high = max([max_seq, *(r[0] for r in row)])
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, self._path) from exc
        self._held_records = [0, *held[0::2]]
        self._held_bytes = [0, *held[1::2]]
        self._committed_max = high
        # Within one process a seq is never handed out twice, even after a rollback.
        self._next_seq = max(high + 1, self._next_seq)

    def _fail(self, exc: sqlite3.Error) -> SpoolError:
        """Back to the last committed state after an SQLite error; the error to raise."""
        lost, self._txn_appends, self._dirty = self._txn_appends, 0, False
        self._rows = []
        self._counts["storage_errors"] += 1
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the error above is the one reported
                self._conn.execute("ROLLBACK")
        error = translate_sqlite_error(exc, self._path, lost)
        with contextlib.suppress(SpoolError):  # if even this fails, report the first error
            self._recount()
        _log.error("spool %s: %s", self._path, error)
        return error


def _runs(seqs: Iterable[int], limit: int) -> Iterator[tuple[int, int]]:
    """Maximal ranges ``(lo, hi)`` of consecutive integers among ``seqs`` (deduplicated,
    any order) that are ``<= limit``."""
    ordered = sorted({s for s in seqs if s <= limit})
    if not ordered:
        return
    lo = hi = ordered[0]
    for seq in ordered[1:]:
        if seq != hi + 1:
            yield lo, hi
            lo = seq
        hi = seq
    yield lo, hi


_EVENT_COUNTERS: Final = (
    "appended",
    "acked",
    "commits",
    "evicted_research",
    "evicted_research_bytes",
    "refused_clinical",
    "refused_research",
    "refused_control",
    "storage_errors",
    "recovered_records",
)
