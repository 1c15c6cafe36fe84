"""A bleak backend on the bumble Bluetooth stack: the gateway's path to simulated
garments on the virtual link (``devices.sim.radio``), so gateway code written against
``BleakScanner``/``BleakClient`` runs unchanged against them.

Usage::

    async with VirtualRadio() as radio, BumbleAdapter(radio, address=CENTRAL) as adapter:
        device = await BleakScanner.find_device_by_name(
            "garment", backend=BumbleScanner, bumble_adapter=adapter
        )
        async with BleakClient(device, backend=BumbleClient, bumble_adapter=adapter) as client:
            ...

The keyword is ``bumble_adapter``, not ``adapter``: bleak 3 treats ``adapter=`` as the
deprecated BlueZ adapter name (it warns and rewrites it). Real hardware keeps bleak's
platform backend (no ``backend=`` argument). This package must not be imported by
``devices``; it is the only gateway code that touches bumble.
"""

from gateway.ble.bumble_backend.adapter import (
    BumbleAdapter,
    HostSource,
    IoCapability,
    PairingPolicy,
    PasskeyProvider,
)
from gateway.ble.bumble_backend.client import REQUESTED_MTU, BumbleClient
from gateway.ble.bumble_backend.errors import BumbleGATTError, BumbleLinkError, BumblePairingError
from gateway.ble.bumble_backend.scanner import BumbleScanner

__all__ = [
    "REQUESTED_MTU",
    "BumbleAdapter",
    "BumbleClient",
    "BumbleGATTError",
    "BumbleLinkError",
    "BumblePairingError",
    "BumbleScanner",
    "HostSource",
    "IoCapability",
    "PairingPolicy",
    "PasskeyProvider",
]
