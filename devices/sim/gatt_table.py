"""A simulated device's GATT attributes: their security, CCCDs, subscriptions, control point.

Role: ``GattTable`` builds the characteristics of a device model with the device's
security (reads, writes and CCCD writes need an encrypted, authenticated link when the
characteristic is ``secure`` and the device requires bonding), gives them CCCDs that
carry that security (bumble's own accept any write), tracks which connection subscribed
to what, and builds the control point: a write is refused with ATT 0xFD when
indications are off and, if ``one_at_a_time``, with 0xFE while the previous response
is unconfirmed; accepted writes queue on the ``DeviceLink`` and ``serve_control``
answers each with exactly one response indication, in write order.

It must not: decide what a control request means (the model's ``ControlHandler`` does),
send sensor data, own tasks (the peripheral runs ``serve_control``), or log payloads.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from bumble import att, gatt
from bumble.device import Connection, Device

__all__ = ["ControlHandler", "DeviceLink", "GattTable", "serve_control"]

logger = logging.getLogger(__name__)

_P = gatt.Characteristic.Properties
_PERM = att.Attribute.Permissions
_CCCD = gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR
_ATT_CCCD_IMPROPERLY_CONFIGURED = 0xFD  # Core Spec Supplement Part B, common error codes
_ATT_PROCEDURE_IN_PROGRESS = 0xFE
MAX_QUEUED_REQUESTS = 8
"""Control-point writes a device holds before refusing more (a real one holds fewer)."""

ControlHandler = Callable[[Connection, bytes], bytes]
Control = tuple[gatt.Characteristic[bytes], ControlHandler]


@dataclass(slots=True)
class DeviceLink:
    """Per-connection state: the control point's request queue and pending response."""

    connection: Connection
    requests: asyncio.Queue[bytes] = field(
        default_factory=lambda: asyncio.Queue(MAX_QUEUED_REQUESTS)
    )
    """Control-point writes waiting for their response; bounded: a central that writes
    faster than the device answers gets ATT 0xFE (procedure already in progress)."""
    response_pending: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class GattTable:
    """The characteristics of one device, with its security and CCCD state."""

    def __init__(self, *, require_bonding: bool) -> None:
        self.require_bonding = require_bonding
        self.control: Control | None = None
        self._subscriptions: dict[tuple[int, int], tuple[bool, bool]] = {}
        self._pending_cccds: list[tuple[gatt.Characteristic[bytes], bool]] = []

    def _read_permissions(self, secure: bool) -> att.Attribute.Permissions:
        if secure and self.require_bonding:
            return (
                _PERM.READABLE | _PERM.READ_REQUIRES_ENCRYPTION | _PERM.READ_REQUIRES_AUTHENTICATION
            )
        return _PERM.READABLE

    def _write_permissions(self, secure: bool) -> att.Attribute.Permissions:
        if secure and self.require_bonding:
            return (
                _PERM.WRITEABLE
                | _PERM.WRITE_REQUIRES_ENCRYPTION
                | _PERM.WRITE_REQUIRES_AUTHENTICATION
            )
        return _PERM.WRITEABLE

    def characteristic(
        self,
        uuid: str,
        properties: gatt.Characteristic.Properties,
        *,
        read: Callable[[], bytes] | None = None,
        write: Callable[[Connection, bytes], None] | None = None,
        secure: bool = True,
    ) -> gatt.Characteristic[bytes]:
        """A characteristic whose reads, writes and CCCD writes need an encrypted,
        authenticated link when ``secure`` and the device requires bonding."""
        permissions = self._read_permissions(secure)
        if write is not None:
            permissions |= self._write_permissions(secure)
        reader = read if read is not None else _empty
        value = gatt.CharacteristicValue(read=lambda _connection: reader(), write=write)
        char: gatt.Characteristic[bytes] = gatt.Characteristic(uuid, properties, permissions, value)
        if properties & (_P.NOTIFY | _P.INDICATE):
            char.on(gatt.Characteristic.EVENT_SUBSCRIPTION, functools.partial(self._cccd, char))
            self._pending_cccds.append((char, secure))
        return char

    def attach_cccds(self, device: Device) -> None:
        """Give every notifying characteristic built so far a CCCD with its security."""
        # bumble's own CCCDs accept any write; ours carry the characteristic's security.
        for char, secure in self._pending_cccds:
            permissions = self._read_permissions(False) | self._write_permissions(secure)
            value = device.gatt_server.make_descriptor_value(char)
            char.descriptors = [gatt.Descriptor(_CCCD, permissions, value)]

    def _cccd(
        self, char: gatt.Characteristic[bytes], bearer: att.Bearer, notify: bool, indicate: bool
    ) -> None:
        connection = bearer if isinstance(bearer, Connection) else bearer.connection
        self._subscriptions[connection.handle, char.handle] = (notify, indicate)

    def is_subscribed(
        self, connection: Connection, char: gatt.Characteristic[bytes], *, indicate: bool = False
    ) -> bool:
        notify_on, indicate_on = self._subscriptions.get(
            (connection.handle, char.handle), (False, False)
        )
        return indicate_on if indicate else notify_on

    def forget(self, connection: Connection) -> None:
        """Drop every subscription of ``connection`` (it disconnected)."""
        handle = connection.handle
        for key in [k for k in self._subscriptions if k[0] == handle]:
            del self._subscriptions[key]

    def control_point(
        self,
        uuid: str,
        properties: gatt.Characteristic.Properties,
        handler: ControlHandler,
        *,
        current_link: Callable[[], DeviceLink | None],
        read: Callable[[], bytes] | None = None,
        one_at_a_time: bool = True,
    ) -> gatt.Characteristic[bytes]:
        """The device's control point (see the module docstring); ``current_link``
        returns the link of the connected central, if any."""
        char: gatt.Characteristic[bytes]

        def on_write(connection: Connection, value: bytes) -> None:
            link = current_link()
            if link is None or link.connection is not connection:
                raise att.ATT_Error(att.ATT_UNLIKELY_ERROR_ERROR)
            if not self.is_subscribed(connection, char, indicate=True):
                raise att.ATT_Error(_ATT_CCCD_IMPROPERLY_CONFIGURED)
            if one_at_a_time and (link.response_pending or not link.requests.empty()):
                raise att.ATT_Error(_ATT_PROCEDURE_IN_PROGRESS)
            try:
                link.requests.put_nowait(bytes(value))
            except asyncio.QueueFull:
                raise att.ATT_Error(_ATT_PROCEDURE_IN_PROGRESS) from None

        char = self.characteristic(uuid, properties, read=read, write=on_write)
        self.control = (char, handler)
        return char


async def serve_control(device: Device, link: DeviceLink, control: Control, name: str) -> None:
    """Answer the link's control requests in order, one confirmed indication each."""
    char, handler = control
    while True:
        request = await link.requests.get()
        response = handler(link.connection, request)
        link.response_pending = True
        try:
            await device.indicate_subscriber(link.connection, char, response)
        except TimeoutError:
            # ATT transaction timeout (Vol 3 Part F 3.3.3): no more ATT on this link.
            logger.warning("sim[%s] response not confirmed; disconnecting", name)
            await link.connection.disconnect()
            return
        link.response_pending = False


def _empty() -> bytes:
    return b""
