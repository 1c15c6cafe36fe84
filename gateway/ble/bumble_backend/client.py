"""``BumbleClient``: bleak's client backend over a :class:`BumbleAdapter`.

Role: one GATT client session on the bumble stack, behaving as bleak's platform
backends do so gateway code is the same on real hardware and on the virtual link::

    BleakClient(address_or_ble_device, backend=BumbleClient, bumble_adapter=adapter)

``connect`` opens the link, exchanges the ATT MTU (asks for 247), encrypts with the
stored keys when the peer is bonded (so encrypted characteristics read without
pairing again; a peer that lost the bond fails ``connect`` with HCI 0x06), pairs
first if bleak's ``pair=True`` asked for it, then discovers services. The
disconnected callback fires on every disconnection, requested or not, as on BlueZ;
``last_disconnect_reason`` keeps the HCI reason. Bumble errors become bleak errors in
``errors.bumble_errors`` only. SMP Security Requests from a peer are not acted on:
the gateway pairs explicitly.

It must not: decode payloads, queue or retry, or do work in notification callbacks
beyond copying the value to a ``bytearray`` for bleak.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from bleak.uuids import normalize_uuid_16
from bumble import att, gatt_client, hci
from bumble.device import Connection

from gateway.ble.bumble_backend.adapter import BumbleAdapter
from gateway.ble.bumble_backend.errors import (
    BumbleGATTError,
    BumbleLinkError,
    Operation,
    bumble_errors,
)
from gateway.ble.bumble_backend.services import discover_services

__all__ = ["REQUESTED_MTU", "BumbleClient"]

logger = logging.getLogger(__name__)

REQUESTED_MTU = 247
"""ATT MTU asked for on connect: 244-byte notifications in one LE data packet (251)."""

_CCCD = normalize_uuid_16(0x2902)
_DEVICE_NAME = normalize_uuid_16(0x2A00)


class BumbleClient(BaseBleakClient):
    """Client backend. ``bumble_adapter`` is required; bleak's ``bluez``/``winrt``
    platform arguments are accepted and ignored."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        services: set[str] | None = None,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        bumble_adapter: BumbleAdapter,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._adapter = bumble_adapter
        self._requested_services = services
        self._peer: hci.Address | None = None
        self._device_name: str | None = None
        if isinstance(address_or_ble_device, BLEDevice):
            details = address_or_ble_device.details
            self._peer = details if isinstance(details, hci.Address) else None
            self._device_name = address_or_ble_device.name
        self._connection: Connection | None = None
        self._gap_name: str | None = None
        self._subscriptions: dict[int, Callable[[bytes], None]] = {}
        self.last_disconnect_reason: int | None = None
        """HCI reason of the last disconnection (0x08 link loss, 0x13 peer closed...)."""

    @property
    def name(self) -> str:
        """GAP Device Name read on connect, else the advertised or scanned name, else
        the address with dashes (bleak's convention)."""
        return (
            self._gap_name
            or self._device_name
            or self._adapter.advertised_name(self.address)
            or self.address.replace(":", "-")
        )

    @property
    def mtu_size(self) -> int:
        connection = self._connection
        return att.ATT_DEFAULT_MTU if connection is None else connection.att_mtu

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self._connection is not None:
            raise BleakError("Client is already connected")
        timeout = float(kwargs.get("timeout", self._timeout))
        peer = self._peer if self._peer is not None else self._adapter.resolve(self.address)
        connection = await self._adapter.connect(peer, timeout_s=timeout)
        listener = functools.partial(self._on_disconnection, connection)
        connection.on(Connection.EVENT_DISCONNECTION, listener)
        async with AsyncExitStack() as rollback:
            rollback.push_async_callback(self._abandon, connection, listener)
            # The timeout bounds the set-up too (MTU, encryption, discovery), as bleak's
            # connect timeout does on the platform backends; a stalled peer can't hang us.
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    await self._set_up(connection, pair=pair)
            except TimeoutError as exc:
                if not deadline.expired():
                    raise
                raise BumbleLinkError(
                    f"connection set-up timed out after {timeout:g} s",
                    address=self.address,
                    operation="connect",
                    hci_reason=None,
                ) from exc
            if connection.handle not in self._adapter.device.connections:
                raise BumbleLinkError(
                    "link lost while connecting",
                    address=self.address,
                    operation="connect",
                    hci_reason=self.last_disconnect_reason,
                )
            self._connection = connection
            rollback.pop_all()
        logger.debug("ble[%s] connected, mtu %d", self.address, connection.att_mtu)

    async def _set_up(self, connection: Connection, *, pair: bool) -> None:
        try:
            with self._errors("mtu"):
                await connection.gatt_client.request_mtu(REQUESTED_MTU)
        except BumbleGATTError as exc:  # a peer may refuse the exchange: stay at 23
            logger.debug("ble[%s] MTU exchange refused: %s", self.address, exc)
        if await self._adapter.bond(connection.peer_address) is not None:
            with self._errors("encrypt"):
                await connection.encrypt()
        elif pair:
            with self._errors("pair"):
                await connection.pair()
        with self._errors("discover"):
            self.services = await discover_services(
                connection.gatt_client,
                requested=self._requested_services,
                max_write_without_response_size=lambda: connection.att_mtu - 3,
            )
        self._gap_name = await self._read_device_name(connection.gatt_client)

    async def _read_device_name(self, client: gatt_client.Client) -> str | None:
        assert self.services is not None
        characteristic = self.services.get_characteristic(_DEVICE_NAME)
        if characteristic is None or "read" not in characteristic.properties:
            return None
        try:
            with self._errors("read", characteristic.handle):
                value = await client.read_value(characteristic.handle)
        except BumbleGATTError as exc:
            logger.debug("ble[%s] device name not readable: %s", self.address, exc)
            return None
        return value.decode("utf-8", errors="replace") or None

    async def _abandon(self, connection: Connection, listener: Callable[[int], None]) -> None:
        connection.remove_listener(Connection.EVENT_DISCONNECTION, listener)
        self.services = None
        if connection.handle in self._adapter.device.connections:
            with contextlib.suppress(BleakError), self._errors("disconnect"):
                await connection.disconnect()

    def _on_disconnection(self, connection: Connection, reason: int) -> None:
        self.last_disconnect_reason = reason
        if self._connection is not connection:
            return  # still connecting: connect() reports the failure itself
        self._connection = None
        self.services = None
        self._subscriptions.clear()
        logger.debug("ble[%s] disconnected, HCI reason 0x%02X", self.address, reason)
        callback = self._disconnected_callback
        if callback is not None:
            try:
                callback()
            except Exception:  # a user callback must not break bumble's event dispatch
                logger.exception("ble: disconnected callback failed")

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        with self._errors("disconnect"):
            await connection.disconnect()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Pair and bond (SMP) with the adapter's pairing policy; a no-op when the link
        is already encrypted with a stored bond."""
        connection = self._require_connection()
        bond = await self._adapter.bond(connection.peer_address)
        if connection.is_encrypted and bond is not None:
            return
        with self._errors("pair"):
            await connection.pair()

    async def unpair(self) -> None:
        """Delete the bond with the peer and disconnect (as BlueZ's RemoveDevice does).
        Unpairing a peer without a bond is not an error."""
        connection = self._connection
        if connection is not None:
            peer = connection.peer_address
        else:
            peer = self._peer if self._peer is not None else self._adapter.resolve(self.address)
        await self._adapter.delete_bond(peer)
        await self.disconnect()

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        return await self._read(characteristic.handle, use_cached=use_cached)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        return await self._read(descriptor.handle, use_cached=use_cached)

    async def _read(self, handle: int, *, use_cached: bool) -> bytearray:
        client = self._require_connection().gatt_client
        if use_cached and (cached := client.cached_values.get(handle)) is not None:
            return bytearray(cached[1])
        with self._errors("read", handle):
            return bytearray(await client.read_value(handle))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        connection = self._require_connection()
        value = bytes(data)
        limit = connection.att_mtu - 3
        if not response and len(value) > limit:
            raise BleakError(
                f"write without response carries at most {limit} bytes, not {len(value)}"
            )
        with self._errors("write", characteristic.handle):
            await connection.gatt_client.write_value(
                characteristic.handle, value, with_response=response
            )

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        client = self._require_connection().gatt_client
        with self._errors("write", descriptor.handle):
            await client.write_value(descriptor.handle, bytes(data), with_response=True)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        """Write the CCCD for notifications (preferred) or indications and deliver
        each value to ``callback`` as a ``bytearray``, in arrival order."""
        client = self._require_connection().gatt_client
        if not {"notify", "indicate"} & set(characteristic.properties):
            raise BleakError(f"characteristic {characteristic.uuid} cannot notify or indicate")
        if characteristic.get_descriptor(_CCCD) is None:
            raise BleakError(f"characteristic {characteristic.uuid} has no CCCD")
        if characteristic.handle in self._subscriptions:
            await self.stop_notify(characteristic)

        def on_value(value: bytes) -> None:
            try:
                callback(bytearray(value))
            except Exception:  # a user callback must not break bumble's ATT dispatch
                logger.exception(
                    "ble: notification callback for handle %d failed", characteristic.handle
                )

        proxy: gatt_client.CharacteristicProxy[bytes] = characteristic.obj
        self._subscriptions[characteristic.handle] = on_value
        try:
            with self._errors("notify", characteristic.handle):
                await client.subscribe(proxy, on_value, prefer_notify=True)
        except BaseException:
            self._subscriptions.pop(characteristic.handle, None)
            _forget_subscriber(client, proxy, on_value)
            raise

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        client = self._require_connection().gatt_client
        subscriber = self._subscriptions.pop(characteristic.handle, None)
        if subscriber is None:
            return
        with self._errors("notify", characteristic.handle):
            await client.unsubscribe(characteristic.obj, subscriber)

    def _require_connection(self) -> Connection:
        if self._connection is None:
            raise BleakError("Not connected")
        return self._connection

    def _errors(
        self, operation: Operation, handle: int | None = None
    ) -> contextlib.AbstractContextManager[None]:
        return bumble_errors(
            address=self.address,
            operation=operation,
            handle=handle,
            link_reason=lambda: self.last_disconnect_reason,
        )


def _forget_subscriber(
    client: gatt_client.Client,
    proxy: gatt_client.CharacteristicProxy[bytes],
    subscriber: Callable[[bytes], None],
) -> None:
    """Undo the local half of a subscribe whose CCCD write failed."""
    for subscribers_by_handle in (client.notification_subscribers, client.indication_subscribers):
        subscribers = subscribers_by_handle.get(proxy.handle)
        if subscribers is None:
            continue
        subscribers.discard(subscriber)
        if subscribers <= {proxy}:
            del subscribers_by_handle[proxy.handle]
