"""Errors of the bumble bleak backend and the one place bumble errors are translated.

Role: the backend raises bleak's exception types (``BleakError`` and its subclasses), as
bleak's platform backends do, so gateway code written against bleak classifies errors
the same way on real hardware and on the virtual link. Every bumble exception crosses
into bleak through :func:`bumble_errors` (``raise ... from exc``); the subclasses below
keep the protocol codes as attributes (never parse the message).

It must not: catch anything that is not a bumble error or a bumble-internal
cancellation, or swallow errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Literal

from bleak.exc import (
    CONTROLLER_ERROR_CODES,
    PROTOCOL_ERROR_CODES,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
)
from bumble import att, core, hci

__all__ = [
    "BumbleGATTError",
    "BumbleLinkError",
    "BumblePairingError",
    "Operation",
    "bumble_errors",
]

Operation = Literal[
    "scan", "connect", "disconnect", "mtu", "discover", "read", "write", "notify", "pair", "encrypt"
]

_SMP_REASONS = {
    0x01: "Passkey Entry Failed",
    0x02: "OOB Not Available",
    0x03: "Authentication Requirements",
    0x04: "Confirm Value Failed",
    0x05: "Pairing Not Supported",
    0x06: "Encryption Key Size",
    0x07: "Command Not Supported",
    0x08: "Unspecified Reason",
    0x09: "Repeated Attempts",
    0x0A: "Invalid Parameters",
    0x0B: "DHKey Check Failed",
    0x0C: "Numeric Comparison Failed",
}
"""SMP Pairing Failed reasons, Core spec v5.4 Vol 3, Part H, 3.5.5 Table 3.7."""


class BumbleGATTError(BleakGATTProtocolError):
    """The peer answered an ATT request with an Error Response.

    ``att_error`` (also bleak's ``code``) is the ATT error code, e.g. 0x05 Insufficient
    Authentication, 0x0F Insufficient Encryption; ``handle`` the attribute handle the
    request was for (``None`` for discovery).
    """

    def __init__(
        self, att_error: int, *, address: str, operation: Operation, handle: int | None
    ) -> None:
        super().__init__(att_error)
        self.att_error = att_error
        self.address = address
        self.operation = operation
        self.handle = handle

    def __str__(self) -> str:
        name = PROTOCOL_ERROR_CODES.get(self.att_error, "Unknown code")
        where = "" if self.handle is None else f" of handle 0x{self.handle:04X}"
        return (
            f"{self.operation}{where} on {self.address} failed: "
            f"ATT error 0x{self.att_error:02X} ({name})"
        )


class BumbleLinkError(BleakError):
    """The link failed under an operation: lost, refused, timed out, or a controller
    command failed. ``hci_reason`` is the HCI error/disconnect reason when known."""

    def __init__(
        self, message: str, *, address: str, operation: Operation, hci_reason: int | None
    ) -> None:
        self.address = address
        self.operation = operation
        self.hci_reason = hci_reason
        if hci_reason is not None:
            name = CONTROLLER_ERROR_CODES.get(hci_reason, "Unknown code")
            message = f"{message} (HCI 0x{hci_reason:02X}: {name})"
        super().__init__(f"{operation} on {address}: {message}")


class BumblePairingError(BleakError):
    """Pairing or bonding failed. ``smp_reason`` is the SMP Pairing Failed reason
    (e.g. 0x04 Confirm Value Failed for a wrong passkey) when the peer or the local
    security manager gave one."""

    def __init__(self, message: str, *, address: str, smp_reason: int | None) -> None:
        self.address = address
        self.smp_reason = smp_reason
        if smp_reason is not None:
            message = (
                f"{message} (SMP 0x{smp_reason:02X}: "
                f"{_SMP_REASONS.get(smp_reason, 'Unknown reason')})"
            )
        super().__init__(f"pairing with {address} failed: {message}")


@contextlib.contextmanager
def bumble_errors(
    *,
    address: str,
    operation: Operation,
    handle: int | None = None,
    link_reason: Callable[[], int | None] = lambda: None,
) -> Iterator[None]:
    """Translate bumble errors raised in the ``with`` body into bleak errors.

    bumble cancels the futures of in-flight requests when the link drops; that
    ``CancelledError`` (the task itself was not cancelled) becomes a
    :class:`BumbleLinkError` carrying ``link_reason()``, the HCI disconnect reason.
    """
    try:
        yield
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        raise BumbleLinkError(
            "link lost", address=address, operation=operation, hci_reason=link_reason()
        ) from exc
    except core.BaseBumbleError as exc:
        raise _translate(exc, address=address, operation=operation, handle=handle) from exc


def _translate(
    exc: core.BaseBumbleError, *, address: str, operation: Operation, handle: int | None
) -> BleakError:
    if isinstance(exc, att.ATT_Error):
        return BumbleGATTError(exc.error_code, address=address, operation=operation, handle=handle)
    if isinstance(exc, core.TimeoutError) and operation == "connect":
        return BleakDeviceNotFoundError(
            address, f"no answer from {address} to a connection request"
        )
    if isinstance(exc, core.ProtocolError) and exc.error_namespace == "smp":
        return BumblePairingError("rejected", address=address, smp_reason=exc.error_code)
    if isinstance(exc, hci.HCI_Error | core.ConnectionError):
        return BumbleLinkError(
            "controller refused", address=address, operation=operation, hci_reason=exc.error_code
        )
    if isinstance(exc, core.TimeoutError | core.CommandTimeoutError):
        return BumbleLinkError("timed out", address=address, operation=operation, hci_reason=None)
    return BleakError(f"{operation} on {address} failed: {type(exc).__name__}: {exc}")
