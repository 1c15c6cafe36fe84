"""The spool's values and errors (``gateway.transport.spool`` re-exports them).

Role: the record classes, the record and counter values, the error tree of the spool and
the one translation of ``sqlite3`` errors into it (by SQLite's error code, never by
message text). Must not: open files or databases.
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from devices.errors import BiogwError

__all__ = [
    "SpoolClass",
    "SpoolClosedError",
    "SpoolCorruptError",
    "SpoolCounters",
    "SpoolError",
    "SpoolFullError",
    "SpoolLockedError",
    "SpoolRecord",
    "SpoolStorageError",
    "translate_sqlite_error",
]


class SpoolClass(enum.IntEnum):
    """What a record carries; decides what the size policy may do with it."""

    CLINICAL = 1
    RESEARCH = 2
    CONTROL = 3  # gap and status records: small, may use the reserve


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One committed, not yet acknowledged message."""

    seq: int
    klass: SpoolClass
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SpoolCounters:
    """A snapshot. Event counts (``appended`` ... ``storage_errors``) are since this open
    (``commits`` counts transactions that changed something); held counts (``records``,
    ``bytes`` and per class) include the open transaction; ``recovered_records`` is what
    the file held when it was opened."""

    appended: int
    acked: int
    commits: int
    evicted_research: int
    evicted_research_bytes: int
    refused_clinical: int
    refused_research: int
    refused_control: int
    storage_errors: int
    recovered_records: int
    records: int
    bytes: int
    clinical_records: int
    clinical_bytes: int
    research_records: int
    research_bytes: int
    control_records: int
    control_bytes: int


class SpoolError(BiogwError):
    """Base of the spool's errors; ``path`` is the spool file."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class SpoolFullError(SpoolError):
    """An append was refused by the size policy (nothing was written or evicted).
    ``held_bytes`` excludes research bytes that eviction could have freed."""

    def __init__(
        self, path: Path, klass: SpoolClass, record_bytes: int, held_bytes: int, limit_bytes: int
    ) -> None:
        self.klass = klass
        self.record_bytes = record_bytes
        self.held_bytes = held_bytes
        self.limit_bytes = limit_bytes
        super().__init__(
            path,
            f"spool full: {klass.name} record of {record_bytes} bytes refused "
            f"({held_bytes} non-evictable bytes held, limit {limit_bytes})",
        )


class SpoolCorruptError(SpoolError):
    """The spool file exists but is not a usable biogw spool. ``reason`` is a tag:
    ``not_a_database``, ``empty_file``, ``foreign_database``, ``schema_version``,
    ``schema_mismatch``, ``integrity``, ``wal_without_database``, ``corrupt``."""

    def __init__(self, path: Path, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(path, f"corrupt spool ({reason}){': ' + detail if detail else ''}")


class SpoolLockedError(SpoolError):
    """Another connection (another gateway process) holds the spool."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "spool is locked by another process")


class SpoolClosedError(SpoolError):
    """The spool was used after ``close()``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "spool is closed")


class SpoolStorageError(SpoolError):
    """SQLite failed (disk full, I/O error, ...). The spool is back at its last committed
    state: ``rolled_back`` records appended since the last commit are lost (acks since
    then are undone, so those records will be replayed). ``code`` is SQLite's error name."""

    def __init__(self, path: Path, code: str, rolled_back: int) -> None:
        self.code = code
        self.rolled_back = rolled_back
        super().__init__(path, f"storage error {code}; {rolled_back} uncommitted records lost")


def translate_sqlite_error(exc: sqlite3.Error, path: Path, rolled_back: int = 0) -> SpoolError:
    """The one place sqlite3 errors become biogw errors (classified by SQLite's code)."""
    code = getattr(exc, "sqlite_errorcode", -1) & 0xFF
    name = getattr(exc, "sqlite_errorname", type(exc).__name__)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return SpoolLockedError(path)
    if code == sqlite3.SQLITE_NOTADB:
        return SpoolCorruptError(path, "not_a_database")
    if code == sqlite3.SQLITE_CORRUPT:
        return SpoolCorruptError(path, "corrupt", name)
    return SpoolStorageError(path, name, rolled_back)
