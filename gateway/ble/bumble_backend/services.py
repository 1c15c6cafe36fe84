"""GATT discovery over a bumble connection into bleak's service collection.

Role: walk the peer's primary services, their characteristics and descriptors with
bumble's GATT client and build ``BleakGATTServiceCollection`` /
``BleakGATTService`` / ``BleakGATTCharacteristic`` / ``BleakGATTDescriptor``. Each
bleak object keeps its bumble proxy in ``obj``. A characteristic's ``handle`` is its
*value* handle (the one ATT reads, writes and notifications use); descriptors carry
their own attribute handles.

It must not: read or write values, subscribe, or translate errors (the client wraps
the call in ``bumble_errors``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES, CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bumble import core, gatt_client

__all__ = ["bleak_uuid", "discover_services"]


def bleak_uuid(value: core.UUID) -> str:
    """A bumble UUID as bleak's normalised lower-case 128-bit string."""
    return str(uuid.UUID(bytes=bytes(reversed(value.uuid_128_bytes))))


def properties_of(flags: int) -> list[CharacteristicPropertyName]:
    """Characteristic property bits (Vol 3, Part G, 3.3.1.1) as bleak's names."""
    return [name for bit, name in CHARACTERISTIC_PROPERTIES.items() if flags & bit]


async def discover_services(
    client: gatt_client.Client,
    *,
    requested: set[str] | None,
    max_write_without_response_size: Callable[[], int],
) -> BleakGATTServiceCollection:
    """Discover the peer's services (only those in ``requested`` when given)."""
    wanted = [core.UUID(u) for u in requested] if requested else []
    collection = BleakGATTServiceCollection()
    for service_proxy in await client.discover_services(wanted):
        service = BleakGATTService(
            service_proxy, service_proxy.handle, bleak_uuid(service_proxy.uuid)
        )
        collection.add_service(service)
        for char_proxy in await client.discover_characteristics((), service_proxy):
            characteristic = BleakGATTCharacteristic(
                char_proxy,
                char_proxy.handle,
                bleak_uuid(char_proxy.uuid),
                properties_of(int(char_proxy.properties)),
                max_write_without_response_size,
                service,
            )
            collection.add_characteristic(characteristic)
            for descriptor_proxy in await client.discover_descriptors(char_proxy):
                collection.add_descriptor(
                    BleakGATTDescriptor(
                        descriptor_proxy,
                        descriptor_proxy.handle,
                        bleak_uuid(descriptor_proxy.type),
                        characteristic,
                    )
                )
            char_proxy.descriptors_discovered = True  # spares subscribe() a rediscovery
    return collection
