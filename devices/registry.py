"""Device profiles and the explicit registry of them.

A profile says which advertisements it matches, which characteristics the gateway
subscribes to (in order), what it writes to start and stop streaming (commands as data),
and how to turn notifications into frames. Profiles are listed in one literal tuple,
``PROFILES`` in ``devices.profiles``; there is no import-time registration.
Pure: this module never touches a Bluetooth stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from devices.frame import Frame


@dataclass(frozen=True, slots=True)
class Advertisement:
    """What a scan reports about a peripheral, stripped of any Bluetooth-stack type."""

    name: str | None
    service_uuids: tuple[str, ...] = ()
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)
    service_data: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GattWrite:
    """One write the gateway performs, e.g. a start-measurement request."""

    characteristic: str
    data: bytes
    with_response: bool = True


@dataclass(frozen=True, slots=True)
class Subscription:
    """A characteristic to enable notifications or indications on."""

    characteristic: str
    streams: tuple[str, ...] = ()
    """Stream kinds it carries (documentation and routing; empty for control points)."""


class StreamDecoder(Protocol):
    """Per-connection decoder: holds the little state a profile needs between frames
    (previous device timestamp, negotiated sample rates) and nothing else."""

    def decode(self, characteristic: str, data: bytes, received_ns: int) -> tuple[Frame, ...]:
        """Decode one notification into zero or more frames.

        Raises ``FrameDecodeError`` for malformed data. Notifications that carry no
        samples (control-point responses) return ``()``.
        """
        ...

    def reset(self) -> None:
        """Forget per-connection state (called after a reconnect)."""
        ...


class Profile(Protocol):
    """A device family the gateway knows how to drive."""

    @property
    def name(self) -> str: ...

    @property
    def subscriptions(self) -> tuple[Subscription, ...]: ...

    @property
    def start_commands(self) -> tuple[GattWrite, ...]: ...

    @property
    def stop_commands(self) -> tuple[GattWrite, ...]: ...

    def matches(self, advertisement: Advertisement) -> bool: ...

    def new_decoder(self, device_key: str) -> StreamDecoder: ...


def uuid16(short: int) -> str:
    """The full 128-bit UUID string of a Bluetooth SIG 16-bit UUID."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"
