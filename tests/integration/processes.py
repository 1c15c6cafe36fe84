"""``biogw`` subcommands as child processes, for the crash tests (SIGKILL means no
clean-up of any kind, which only a separate process can show)."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

READY = re.compile(r"metrics http://([\d.]+):(\d+)/metrics")
"""What ``biogw gateway`` and ``biogw ingest`` print once started."""


class BiogwProcess:
    """``biogw <args>`` with ``env``, output appended to ``log``; ``start`` again after
    ``kill`` runs a new process with the same arguments."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self._args, self._env, self.log = list(args), env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        code = "import sys; from gateway.cli import main; main(sys.argv[1:])"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, *self._args],
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def metrics_url(self, timeout_s: float = 60) -> str:
        """The metrics endpoint the latest start printed (waits for it)."""
        async with asyncio.timeout(timeout_s):
            while True:  # reading the process's log: there is no event to wait on
                assert self.proc is not None
                assert self.proc.poll() is None, self.log.read_text()
                found = READY.findall(self.log.read_text(errors="replace"))
                if found:
                    host, port = found[-1]
                    return f"http://{host}:{port}/metrics"
                await asyncio.sleep(0.2)

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)
            self.proc.wait(30)
