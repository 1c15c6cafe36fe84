"""The care database: migrations, roles, audit chain and the store's error subtree.

This module owns the ``StoreError`` subtree and the one place where psycopg errors are
translated into it (by SQLSTATE, never by message text). It does no I/O and opens no
connection; the submodules (``migrate``, ``audit``, ``embedded``) do. Error messages never
carry row values (names, subject ids, payloads), only SQLSTATEs, operations and versions.
"""

from __future__ import annotations

import psycopg

from gateway.errors import BiogwError

__all__ = [
    "APPEND_ONLY_SQLSTATE",
    "AppendOnlyError",
    "MigrationError",
    "StoreError",
    "StoreIntegrityError",
    "StorePermissionError",
    "StoreRetryableError",
    "StoreUnavailableError",
    "translate_error",
]

#: Raised by the triggers that keep ``audit.log`` and ``consent.events`` append-only.
APPEND_ONLY_SQLSTATE = "BGAUD"


class StoreError(BiogwError):
    """A database operation failed. ``operation`` names what was attempted
    (``"audit.append"``, ``"migrate.apply"``); ``sqlstate`` is PostgreSQL's code when the
    server sent one."""

    def __init__(self, operation: str, sqlstate: str | None, detail: str = "") -> None:
        self.operation = operation
        self.sqlstate = sqlstate
        self.detail = detail
        text = f"{operation} failed"
        if sqlstate is not None:
            text += f" (SQLSTATE {sqlstate})"
        super().__init__(f"{text}: {detail}" if detail else text)


class StoreUnavailableError(StoreError):
    """The server could not be reached or went away (class 08, 57P0x, no SQLSTATE)."""


class StorePermissionError(StoreError):
    """The role lacks a privilege (42501)."""


class StoreIntegrityError(StoreError):
    """A constraint rejected the change (class 23)."""


class StoreRetryableError(StoreError):
    """Serialization failure or deadlock (40001, 40P01): the transaction may be retried."""


class AppendOnlyError(StoreError):
    """Someone tried to update, delete or truncate an append-only table."""


class MigrationError(StoreError):
    """The migration set or the database's migration history is inconsistent.

    ``reason`` is a tag: ``"bad_name"``, ``"duplicate_version"``, ``"checksum_mismatch"``,
    ``"unknown_applied"`` or ``"failed"``; ``version`` is the migration concerned, if any.
    """

    def __init__(
        self,
        reason: str,
        version: int | None,
        detail: str = "",
        *,
        sqlstate: str | None = None,
    ) -> None:
        self.reason = reason
        self.version = version
        where = "migrate" if version is None else f"migrate[{version:04d}]"
        super().__init__(f"{where}.{reason}", sqlstate, detail)


_BY_SQLSTATE: dict[str, type[StoreError]] = {
    "42501": StorePermissionError,
    "40001": StoreRetryableError,
    "40P01": StoreRetryableError,
    "57P01": StoreUnavailableError,
    "57P02": StoreUnavailableError,
    "57P03": StoreUnavailableError,
    APPEND_ONLY_SQLSTATE: AppendOnlyError,
}
_BY_CLASS: dict[str, type[StoreError]] = {
    "08": StoreUnavailableError,
    "23": StoreIntegrityError,
}


def translate_error(exc: psycopg.Error, operation: str) -> StoreError:
    """Map a psycopg error to the store's error tree (the caller does ``raise ... from exc``).

    Classification uses the SQLSTATE only. An error without one (the connection could not
    be opened or broke) is ``StoreUnavailableError``.
    """
    sqlstate = exc.sqlstate
    if sqlstate is None:
        return StoreUnavailableError(operation, None, type(exc).__name__)
    cls = _BY_SQLSTATE.get(sqlstate) or _BY_CLASS.get(sqlstate[:2], StoreError)
    return cls(operation, sqlstate, type(exc).__name__)
