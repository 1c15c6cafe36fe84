"""One database connection for a long-running ingest task, opened when needed.

Role: ``LazyConnection`` holds one autocommit connection to ``dsn``: ``get`` opens it on
first use and again after it closed or broke (the caller retries with its backoff);
``close`` drops it. Connection errors become ``StoreError`` (``translate_error``).
Must not: retry, sleep or log the DSN.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg

from gateway.store import translate_error

__all__ = ["LazyConnection"]


class LazyConnection:
    def __init__(self, dsn: str, *, name: str) -> None:
        self._dsn = dsn
        self._name = name
        self._db: psycopg.AsyncConnection[Any] | None = None

    async def get(self) -> psycopg.AsyncConnection[Any]:
        if self._db is None or self._db.closed or self._db.broken:
            await self.close()
            try:
                self._db = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
            except psycopg.Error as exc:
                raise translate_error(exc, f"{self._name}.connect") from exc
        return self._db

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await db.close()
