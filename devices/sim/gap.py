"""What a simulated device shows before a connection, and how it pairs.

Role: ``ad_structures`` builds legacy advertising data (or a scan response) and refuses
more than the 31 bytes a legacy PDU carries; ``pairing_config`` is the SMP setup every
device model uses: LE Secure Connections with bonding, Just Works without a passkey,
or a fixed passkey the device "displays" (MITM protection) with one.

It must not: start advertising or accept connections (``SimPeripheral`` does), or know
a device model's services.
"""

from __future__ import annotations

from bumble.core import AdvertisingData
from bumble.pairing import PairingConfig, PairingDelegate

__all__ = ["ad_structures", "pairing_config"]

_MAX_AD_BYTES = 31  # legacy advertising data / scan response


def ad_structures(*structures: tuple[int, bytes]) -> bytes:
    """Legacy advertising data (or scan response) from AD structures; at most 31 bytes."""
    data = bytes(AdvertisingData(list(structures)))
    if len(data) > _MAX_AD_BYTES:
        raise ValueError(f"{len(data)} bytes of advertising data; legacy PDUs carry 31")
    return data


def pairing_config(passkey: int | None) -> PairingConfig:
    """Secure Connections and bonding; MITM (a displayed passkey) when ``passkey`` is set."""
    return PairingConfig(
        sc=True, mitm=passkey is not None, bonding=True, delegate=_Delegate(passkey)
    )


class _Delegate(PairingDelegate):
    """Just Works without a passkey; with one, the device displays that fixed passkey."""

    def __init__(self, passkey: int | None) -> None:
        io = (
            PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT
            if passkey is None
            else PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY
        )
        super().__init__(io_capability=io)
        self._passkey = passkey

    async def generate_passkey(self) -> int:
        return await super().generate_passkey() if self._passkey is None else self._passkey
