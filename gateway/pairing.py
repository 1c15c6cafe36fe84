"""Pairing: bond with a garment over BLE, bind it to a subject, and record it; unpair.

Role: ``pair_device`` finds the device by scanning, matches its profile, connects,
bonds (``BleakClient.pair``: the link's adapter pairing policy answers passkey entry or
Just Works, as the device requires), reads model and serial from Device Information
(absent or malformed values are recorded as unknown) and records the device bound to
the subject (``gateway.store.devices``), returning the device with its opaque random
key. ``unpair_device`` removes the bond and marks the device removed, so the subject
lookup no longer resolves its key. A bond is never left behind for a device that was
not recorded: a failure after bonding deletes the bond again.

Must not: log MAC addresses, serials, subject ids or device keys above DEBUG, open
database connections (the caller passes one), or hand the MAC or serial to anything but
``gateway.store.devices``.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any, Literal
from uuid import UUID

import psycopg
from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from devices.errors import BiogwError, FrameDecodeError
from devices.info import MODEL_NUMBER_UUID, SERIAL_NUMBER_UUID, decode_utf8_string
from devices.profiles import match_profile
from devices.registry import Profile
from gateway.ble.link import BleLink
from gateway.ble.scan import to_advertisement
from gateway.store import devices, translate_error

__all__ = ["PairingError", "PairingFailure", "find_device", "pair_device", "unpair_device"]

logger = logging.getLogger(__name__)

PairingFailure = Literal[
    "not_found", "unknown_profile", "unknown_subject", "link", "bond", "timeout"
]
_MAX_SERIAL_CHARS = 128


class PairingError(BiogwError):
    """Pairing or unpairing failed; ``reason`` says at which step. Nothing was recorded."""

    def __init__(self, reason: PairingFailure, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"pairing failed ({reason})" + (f": {detail}" if detail else ""))


async def find_device(
    link: BleLink, *, address: str, timeout_s: float
) -> tuple[BLEDevice, Profile]:
    """Scan until ``address`` is heard (advertisement and scan response) or ``timeout_s``
    passes; return its bleak device and matched profile."""
    wanted = address.upper()
    found = await link.discover(timeout_s=timeout_s, expect=frozenset({wanted}))
    for device, data in found:
        if device.address.upper() == wanted:
            profile = match_profile(to_advertisement(data))
            if profile is None:
                raise PairingError("unknown_profile")
            return device, profile
    raise PairingError("not_found")


async def pair_device(
    link: BleLink,
    conn: psycopg.AsyncConnection[Any],
    *,
    address: str,
    subject_id: UUID,
    scan_timeout_s: float = 10.0,
    timeout_s: float = 30.0,
) -> devices.PairedDevice:
    """Bond with the device at ``address`` and bind it to ``subject_id``.

    Raises ``PairingError`` (nothing recorded, no bond kept) when the device is not in
    range, speaks no known profile, the subject does not exist, the link or the bond
    fails (a wrong passkey), or connecting, bonding and reading take over ``timeout_s``.
    """
    if not await _subject_exists(conn, subject_id):
        raise PairingError("unknown_subject")
    device, profile = await find_device(link, address=address, timeout_s=scan_timeout_s)
    try:
        async with asyncio.timeout(timeout_s), AsyncExitStack() as stack:
            client = await stack.enter_async_context(link.client(device, timeout=timeout_s))
            try:
                await client.pair()
            except BleakError as exc:
                raise PairingError("bond", type(exc).__name__) from exc
            stack.push_async_callback(_forget_bond, client)  # until recorded
            model, serial = await _device_information(client)
            paired_key = await devices.record_paired_device(
                conn,
                mac=device.address,
                serial=serial,
                model=model,
                profile=profile.name,
                owner_subject_id=subject_id,
            )
            stack.pop_all()
            await client.disconnect()
    except TimeoutError as exc:
        raise PairingError("timeout") from exc
    except BleakError as exc:
        raise PairingError("link", type(exc).__name__) from exc
    logger.debug("paired device %s (%s)", paired_key, profile.name)
    record = await devices.device_for_key(conn, paired_key)
    assert record is not None  # recorded above in the caller's transaction
    return record


async def unpair_device(
    link: BleLink, conn: psycopg.AsyncConnection[Any], *, device_key: UUID
) -> None:
    """Delete the bond with the device and mark it removed; its key no longer resolves
    to a subject. ``PairingError("not_found")`` when no such paired device exists."""
    address = await devices.bond_address(conn, device_key)
    if address is None:
        raise PairingError("not_found")
    if link.adapter is not None:
        await link.adapter.delete_bond(link.adapter.resolve(address))
    else:
        try:
            # bleak's platform backends remove the bond without a connection.
            await link.client(address).unpair()
        except BleakError as exc:
            raise PairingError("link", type(exc).__name__) from exc
    await devices.mark_unpaired(conn, device_key)
    logger.debug("unpaired device %s", device_key)


async def _subject_exists(conn: psycopg.AsyncConnection[Any], subject_id: UUID) -> bool:
    try:
        cur = await conn.execute("SELECT 1 FROM identity.subjects WHERE id = %s", (subject_id,))
        return await cur.fetchone() is not None
    except psycopg.Error as exc:
        raise translate_error(exc, "pairing.subject") from exc


async def _forget_bond(client: BleakClient) -> None:
    try:
        await client.unpair()
    except BleakError:
        logger.warning("pairing: could not remove the bond of an unrecorded device")


async def _device_information(client: BleakClient) -> tuple[str | None, str | None]:
    """(model number, serial number) from Device Information; None where absent."""
    model = await _read_string(client, MODEL_NUMBER_UUID, "dis.model_number")
    serial = await _read_string(client, SERIAL_NUMBER_UUID, "dis.serial_number")
    if serial is not None and not 1 <= len(serial) <= _MAX_SERIAL_CHARS:
        serial = None
    return model, serial


async def _read_string(client: BleakClient, uuid: str, kind: str) -> str | None:
    characteristic = client.services.get_characteristic(uuid)
    if characteristic is None:
        return None
    try:
        return decode_utf8_string(bytes(await client.read_gatt_char(characteristic)), kind)
    except FrameDecodeError as exc:
        logger.debug("pairing: %s unreadable (%s)", kind, exc.reason)
        return None
