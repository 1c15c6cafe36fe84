"""The gateway side of the simulator tests: a bleak client on the virtual link and a
minimal garment central (notifications into lists, control-point responses into a
queue). Shared by the garment and fault tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bleak import BleakClient

from devices.errors import FrameDecodeError
from devices.garment.codec import GarmentFrame, decode_data_frame
from devices.garment.spec import (
    CONTROL_POINT_UUID,
    DATA_CHARACTERISTIC_UUID,
    STATUS_UUID,
    GarmentStream,
)
from gateway.ble.bumble_backend import BumbleAdapter, BumbleClient


def client_for(address: str, adapter: BumbleAdapter, *, timeout: float = 10.0) -> BleakClient:
    return BleakClient(address, backend=BumbleClient, bumble_adapter=adapter, timeout=timeout)


@dataclass
class GarmentCentral:
    """A gateway-side garment session: notifications land in lists, responses in a queue."""

    client: BleakClient
    responses: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    data: list[bytes] = field(default_factory=list)
    statuses: list[bytes] = field(default_factory=list)

    async def subscribe(self) -> None:
        await self.client.start_notify(
            CONTROL_POINT_UUID, lambda _c, d: self.responses.put_nowait(bytes(d))
        )
        await self.client.start_notify(STATUS_UUID, lambda _c, d: self.statuses.append(bytes(d)))
        await self.client.start_notify(
            DATA_CHARACTERISTIC_UUID, lambda _c, d: self.data.append(bytes(d))
        )

    async def start(self, request: bytes) -> bytes:
        """Subscribe, then write ``request`` (a START); return its response."""
        await self.subscribe()
        return await self.request(request)

    async def request(self, payload: bytes) -> bytes:
        await self.client.write_gatt_char(CONTROL_POINT_UUID, payload, response=True)
        return await self.responses.get()

    def frames(self) -> list[GarmentFrame]:
        return [decode_data_frame(d) for d in self.data]

    def sequences(self, stream: GarmentStream) -> list[int]:
        """Sequence numbers of ``stream`` among the frames that decode (corrupt ones skip)."""
        frames = []
        for data in self.data:
            try:
                frames.append(decode_data_frame(data))
            except FrameDecodeError:
                continue
        return [f.sequence for f in frames if f.stream is stream]
