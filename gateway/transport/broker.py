"""A Mosquitto broker this process owns (``biogw demo`` when no broker is configured, and
the tests).

Role: run the ``mosquitto`` binary as a child process on a free loopback port with a
config of our own: persistence in the work directory (queued QoS 1 messages for
persistent sessions survive ``stop()``/``start()``), no limit on queued or in-flight
messages (docs/transport.md), anonymous access on loopback only unless the caller adds
authentication lines. ``stop()`` is SIGTERM (Mosquitto saves its state), then SIGKILL
after a grace period.

Why a child process and not an in-process Python broker: amqtt, the maintained Python
broker, was evaluated and rejected (no QoS 1 queueing for offline persistent sessions,
retained messages leaking across topics; docs/transport.md, Test brokers).

Must not: listen on anything but 127.0.0.1, touch the machine's own broker, or block for
longer than its start-up and stop bounds.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from devices.errors import BiogwError

__all__ = ["MOSQUITTO", "LocalBroker", "LocalBrokerError", "free_port"]

MOSQUITTO: Final = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
)
"""The mosquitto binary (Debian installs it in /usr/sbin, often not on PATH)."""
READY_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 10.0


class LocalBrokerError(BiogwError):
    """The broker cannot run: no binary, or it exited or did not listen in time."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, alive: Callable[[], bool]) -> None:
    """Poll until something accepts on ``port`` (a readiness probe)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not alive():
            raise LocalBrokerError("mosquitto exited during start-up")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise LocalBrokerError(f"mosquitto did not listen on {port} within {READY_TIMEOUT_S} s")


class LocalBroker:
    """``start()``, ``stop()`` (state saved), ``start()`` again on the same port with the
    same persistence directory. ``max_inflight_messages`` bounds un-acknowledged QoS 1
    messages to an MQTT 3.1.1 client (0: none; MQTT 5 clients set their own Receive
    Maximum). ``extra_config`` lines are appended to the config (TLS,
    password and ACL files); without an ``allow_anonymous`` line anonymous access is on."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        max_inflight_messages: int | None = 0,
        extra_config: Sequence[str] = (),
    ) -> None:
        if MOSQUITTO is None:
            raise LocalBrokerError(
                "no mosquitto binary: install it (apt-get install mosquitto) or configure a"
                " broker (mqtt.host, mqtt.port)"
            )
        self._binary = MOSQUITTO
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = free_port() if port is None else port
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"persistence_location {workdir}/",
            "persistence true",
            "max_queued_messages 0",
            "set_tcp_nodelay true",
            f"log_dest file {workdir}/mosquitto.log",
            f"user {getpass.getuser()}",
        ]
        if max_inflight_messages is not None:  # None: Mosquitto's default (20)
            lines.append(f"max_inflight_messages {max_inflight_messages}")
        lines += extra_config
        if not any(line.startswith("allow_anonymous") for line in extra_config):
            lines.append("allow_anonymous true")
        self.config_file = workdir / "mosquitto.conf"
        self.config_file.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (if not running) and wait until it listens. Raises ``LocalBrokerError``."""
        if self.running:
            return
        with (self.workdir / "stdout.log").open("ab") as out:
            self._proc = subprocess.Popen(
                [self._binary, "-c", str(self.config_file)], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            _wait_listening(self.port, lambda: self.running)
        except LocalBrokerError as exc:
            self.stop()
            raise LocalBrokerError(f"{exc}: {self.log()[-2000:]}") from None

    def stop(self) -> None:
        """SIGTERM (Mosquitto saves its state), SIGKILL if it does not exit in time."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)

    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""
