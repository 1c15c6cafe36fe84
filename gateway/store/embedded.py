"""An embedded PostgreSQL server (the ``pgserver`` package) for a machine without one.

Owns: starting a private server (Unix socket only, no TCP port, trust auth for the local
superuser) and handing out its DSN, in one of two modes:

* scratch (no ``data_dir``): a fresh temporary directory, stopped and deleted afterwards
  (demos, tests);
* persistent (``data_dir`` given): the cluster lives in that directory and is kept. pgserver
  counts the processes holding a handle on the directory (``.handle_pids.json``); ``stop()``
  (or this process's exit) stops the server only when no other process still uses it, so a
  later process finds the data and starts the server again (a second or so), and
  concurrent processes share one running server. If a process is killed (no exit handlers)
  the server keeps running; the next user of the directory reuses it.

``embedded_postgres`` is the async context manager the application uses when no DSN is
configured; ``EmbeddedServer`` is the same thing for synchronous callers (a session-wide
test fixture).

Must not: be used when a DSN is configured, delete a persistent directory, or block the
event loop (pgserver's calls run in a worker thread).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from gateway.store import StoreUnavailableError

__all__ = ["EmbeddedServer", "embedded_postgres"]

_log = logging.getLogger(__name__)


def _import_pgserver() -> Any:
    # pgserver computes platformdirs' runtime path at import, which warns when
    # XDG_RUNTIME_DIR is unset (containers, CI); the fallback it picks is fine.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver

    return pgserver


class EmbeddedServer:
    """An embedded PostgreSQL server; ``start()`` returns its DSN, ``stop()`` stops it.

    Without ``data_dir`` it is a scratch server in a temporary directory (under
    ``parent_dir``) that ``stop()`` deletes; with ``data_dir`` the data stays there.
    """

    def __init__(self, parent_dir: Path | None = None, *, data_dir: Path | None = None) -> None:
        self._parent_dir = parent_dir
        self._data_dir = data_dir
        self._tmp: Path | None = None
        self._server: Any = None
        self.dsn: str | None = None
        self.start_seconds: float | None = None

    def start(self) -> str:
        """Create the data directory and start the server (blocking); return the DSN."""
        if self.dsn is not None:
            return self.dsn
        pgserver = _import_pgserver()
        began = time.perf_counter()
        try:
            if self._data_dir is None:
                self._tmp = Path(tempfile.mkdtemp(prefix="biogw-pg-", dir=self._parent_dir))
                self._server = pgserver.get_server(self._tmp / "pgdata", cleanup_mode="delete")
            else:
                data_dir = self._data_dir.expanduser().resolve()
                data_dir.parent.mkdir(parents=True, exist_ok=True)
                self._server = pgserver.get_server(data_dir, cleanup_mode="stop")
            dsn = str(self._server.get_uri())
        except (OSError, subprocess.SubprocessError) as exc:
            self.stop()
            raise StoreUnavailableError("embedded.start", None, type(exc).__name__) from exc
        self.start_seconds = time.perf_counter() - began
        self.dsn = dsn
        _log.info("embedded PostgreSQL started in %.2f s", self.start_seconds)
        return dsn

    def stop(self) -> None:
        """Stop the server (unless another process still uses a persistent directory) and
        delete a scratch data directory (idempotent)."""
        server, self._server = self._server, None
        self.dsn = None
        if server is not None:
            server.cleanup()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@asynccontextmanager
async def embedded_postgres(
    parent_dir: Path | None = None, *, data_dir: Path | None = None
) -> AsyncIterator[str]:
    """Start an embedded server for the duration of the block; yield its superuser DSN.

    ``data_dir``: keep the cluster in that directory (see the module docstring)."""
    _import_pgserver()  # here, not in the worker thread: warning filters are process-wide
    server = EmbeddedServer(parent_dir, data_dir=data_dir)
    dsn = await asyncio.to_thread(server.start)
    try:
        yield dsn
    finally:
        await asyncio.shield(asyncio.to_thread(server.stop))
