"""``BumbleScanner``: bleak's scanner backend over a :class:`BumbleAdapter`.

Role: turn the adapter's sightings into bleak's ``BLEDevice``/``AdvertisementData``
(through ``create_or_update_device`` and ``call_detection_callbacks``, as bleak's
platform backends do), filtered by the scanner's service UUIDs. Use it through bleak::

    BleakScanner(backend=BumbleScanner, bumble_adapter=adapter)

It must not: scan on its own (the adapter shares one scan among scanners), block, or
log advertisement contents above DEBUG.
"""

from __future__ import annotations

from typing import Any, Literal

from bleak.backends.scanner import (
    AdvertisementData,
    AdvertisementDataCallback,
    BaseBleakScanner,
)

from gateway.ble.bumble_backend.adapter import BumbleAdapter, Sighting

__all__ = ["BumbleScanner"]


class BumbleScanner(BaseBleakScanner):
    """Scanner backend. ``bumble_adapter`` is required; bleak's ``bluez``/``cb``
    platform arguments are accepted and ignored. ``BLEDevice.details`` is the peer's
    bumble ``hci.Address``; ``AdvertisementData.platform_data`` holds the bumble
    ``Advertisement``."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        bumble_adapter: BumbleAdapter,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        if scanning_mode not in ("active", "passive"):
            raise ValueError(f"scanning_mode must be 'active' or 'passive', not {scanning_mode!r}")
        self._adapter = bumble_adapter
        self._active = scanning_mode == "active"

    async def start(self) -> None:
        self.seen_devices = {}
        await self._adapter.start_scan(self._on_sighting, active=self._active)

    async def stop(self) -> None:
        await self._adapter.stop_scan(self._on_sighting)

    def _on_sighting(self, sighting: Sighting) -> None:
        fields = sighting.fields
        service_uuids = list(fields.service_uuids)
        if not self.is_allowed_uuid(service_uuids):
            return
        advertisement_data = AdvertisementData(
            local_name=fields.local_name,
            manufacturer_data=dict(fields.manufacturer_data),
            service_data=dict(fields.service_data),
            service_uuids=service_uuids,
            tx_power=fields.tx_power_dbm,
            rssi=sighting.rssi_dbm,
            platform_data=(sighting.advertisement,),
        )
        device = self.create_or_update_device(
            sighting.address,
            sighting.address,
            self._adapter.advertised_name(sighting.address),
            sighting.bd_addr,
            advertisement_data,
        )
        self.call_detection_callbacks(device, advertisement_data)
