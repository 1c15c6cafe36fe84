"""Scanning: who is in range, and which biogw profile each one speaks.

Turns bleak's advertisement data into the pure ``devices.registry.Advertisement`` and asks
the profile registry. Knows nothing about sessions or pairing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from devices.profiles import match_profile
from devices.registry import Advertisement, Profile
from gateway.ble.link import BleLink


@dataclass(frozen=True, slots=True)
class Sighting:
    """One peripheral seen in a scan."""

    device: BLEDevice
    name: str | None
    rssi_dbm: int
    profile: Profile | None

    @property
    def address(self) -> str:
        return self.device.address

    @property
    def model(self) -> str:
        return self.profile.name if self.profile is not None else "unknown"


def to_advertisement(data: AdvertisementData) -> Advertisement:
    """bleak's advertisement data as the device layer's stack-free value."""
    return Advertisement(
        name=data.local_name,
        service_uuids=tuple(u.lower() for u in data.service_uuids),
        manufacturer_data=dict(data.manufacturer_data),
        service_data={k.lower(): v for k, v in data.service_data.items()},
    )


async def scan(link: BleLink, *, timeout_s: float) -> list[Sighting]:
    """Peripherals in range, strongest signal first. Scans for ``timeout_s``, or until
    every device the link knows to be in range (a simulated fleet) has been heard."""
    found = await link.discover(timeout_s=timeout_s, expect=link.expected_addresses)
    sightings = [
        Sighting(
            device=device,
            name=data.local_name or device.name,
            rssi_dbm=data.rssi,
            profile=match_profile(to_advertisement(data)),
        )
        for device, data in found
    ]
    return sorted(sightings, key=lambda s: s.rssi_dbm, reverse=True)


def provisional_device_key(address: str, *, salt: bytes) -> str:
    """An opaque key for a device that is not paired yet (``biogw stream`` on an unpaired
    device): a keyed hash of the address under a per-run random ``salt``, so the same
    device keeps its key for the run, logs never carry the address, and the key cannot be
    recomputed from the address afterwards. Paired devices get a random key at pairing."""
    digest = hashlib.blake2b(address.upper().encode(), digest_size=6, key=salt)
    return "dev-" + digest.hexdigest()
