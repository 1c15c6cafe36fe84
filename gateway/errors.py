"""Gateway errors: one subtree of biogw's exception tree (rooted at ``BiogwError``).

Third-party errors (bleak, bumble, pydantic) are translated into these in one place per
adapter with ``raise ... from exc``; callers classify by type and attributes.
"""

from __future__ import annotations

from devices.errors import BiogwError

__all__ = [
    "BiogwError",
    "BleConnectionError",
    "BleError",
    "BleGattError",
    "BlePairingError",
    "ConfigError",
    "DeviceNotFoundError",
]


class ConfigError(BiogwError):
    """Configuration could not be parsed or is inconsistent. ``source`` names the file or
    ``"environment"``; ``problems`` lists one line per invalid field."""

    def __init__(self, source: str, problems: tuple[str, ...]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid configuration in {source}: " + "; ".join(problems))


class BleError(BiogwError):
    """A Bluetooth operation failed. ``address`` is the peer (may be ``None`` for adapter-
    level failures)."""

    def __init__(self, message: str, *, address: str | None = None) -> None:
        self.address = address
        super().__init__(message)


class DeviceNotFoundError(BleError):
    """No peripheral with that address answered a scan or a connection attempt."""


class BleConnectionError(BleError):
    """Connecting failed or the link was lost. ``hci_reason`` is the HCI reason code when
    the stack reported one."""

    def __init__(
        self, message: str, *, address: str | None = None, hci_reason: int | None = None
    ) -> None:
        self.hci_reason = hci_reason
        super().__init__(message, address=address)


class BleGattError(BleError):
    """An ATT/GATT request was rejected. ``att_error`` is the ATT error code (e.g. 0x05
    insufficient authentication, 0x0F insufficient encryption) when there is one."""

    def __init__(
        self, message: str, *, address: str | None = None, att_error: int | None = None
    ) -> None:
        self.att_error = att_error
        super().__init__(message, address=address)


class BlePairingError(BleError):
    """Pairing or bonding failed. ``smp_reason`` is the SMP failure reason when known."""

    def __init__(
        self, message: str, *, address: str | None = None, smp_reason: int | None = None
    ) -> None:
        self.smp_reason = smp_reason
        super().__init__(message, address=address)
