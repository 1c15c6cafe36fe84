"""The central side of the bumble backend: one bumble ``Device`` acting as a gateway's
Bluetooth adapter.

Role: own the central host (created through a :class:`HostSource`: today the
simulator's ``VirtualRadio``, later a bumble HCI transport), its bond store and pairing
policy; serialise connection attempts (a controller initiates one at a time) and
enforce the adapter's connection budget; share one scan among every
``BumbleScanner`` on the adapter. ``BumbleClient`` and ``BumbleScanner`` take an
adapter as their ``bumble_adapter`` keyword argument.

It must not: know GATT profiles, keep per-peer session state (clients own their
connections), retry or back off (the gateway's session policy does), or log keys,
passkeys or advertisement payloads above DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, Self

from bleak.exc import BleakError
from bumble import hci
from bumble.core import BaseBumbleError
from bumble.device import Advertisement, Connection, Device
from bumble.keys import JsonKeyStore, KeyStore, MemoryKeyStore, PairingKeys
from bumble.pairing import PairingConfig, PairingDelegate

from gateway.ble.bumble_backend.advertising import AdvertisedFields, parse_ad_structures
from gateway.ble.bumble_backend.errors import BumbleLinkError, bumble_errors

__all__ = [
    "BumbleAdapter",
    "HostSource",
    "IoCapability",
    "PairingPolicy",
    "PasskeyProvider",
    "ScanListener",
    "Sighting",
]

logger = logging.getLogger(__name__)

IoCapability = Literal["no_input_no_output", "keyboard_only"]
"""What a headless gateway can do during pairing: nothing (Just Works) or enter a
passkey obtained from :attr:`PairingPolicy.passkey_provider`."""

PasskeyProvider = Callable[[str], Awaitable[int]]
"""Given the peer's address, return the 6-digit passkey the peer displays (0..999999)."""

_IO_CAPABILITIES = {
    "no_input_no_output": PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT,
    "keyboard_only": PairingDelegate.IoCapability.KEYBOARD_INPUT_ONLY,
}
_MAX_REMEMBERED_PEERS = 1024


@dataclass(frozen=True, slots=True)
class PairingPolicy:
    """How the adapter pairs: SMP bonding, LE Secure Connections, MITM protection
    and the IO capability it declares. ``keyboard_only`` needs a passkey provider."""

    bonding: bool = True
    secure_connections: bool = True
    mitm: bool = True
    io_capability: IoCapability = "no_input_no_output"
    passkey_provider: PasskeyProvider | None = None

    def __post_init__(self) -> None:
        if self.io_capability == "keyboard_only" and self.passkey_provider is None:
            raise ValueError("io_capability 'keyboard_only' needs a passkey_provider")


class HostSource(Protocol):
    """Where the adapter's bumble ``Device`` comes from (``VirtualRadio`` provides
    this; a transport-backed source would open an HCI transport instead)."""

    async def add_host(
        self, *, address: str, name: str | None = None, keystore: KeyStore | None = None
    ) -> Device: ...

    async def remove_host(self, device: Device) -> None: ...


@dataclass(frozen=True, slots=True)
class Sighting:
    """One advertising event heard by the adapter, parsed once for every scanner."""

    address: str
    bd_addr: hci.Address
    fields: AdvertisedFields
    rssi_dbm: int
    connectable: bool
    advertisement: Advertisement


ScanListener = Callable[[Sighting], None]


class _Delegate(PairingDelegate):
    """Answers SMP's questions for one pairing from the adapter's policy."""

    def __init__(self, policy: PairingPolicy, peer: str) -> None:
        super().__init__(io_capability=_IO_CAPABILITIES[policy.io_capability])
        self._provider = policy.passkey_provider
        self._peer = peer

    async def get_number(self) -> int | None:
        # None is a negative reply: pairing fails with SMP Passkey Entry Failed.
        if self._provider is None:
            return None
        try:
            passkey = await self._provider(self._peer)
        except Exception:  # bumble's SMP task would never answer the peer otherwise
            logger.exception("ble: passkey provider failed")
            return None
        if not 0 <= passkey <= 999_999:
            logger.warning("ble: passkey provider returned a value outside 0..999999")
            return None
        return passkey

    async def compare_numbers(self, number: int, digits: int) -> bool:
        # Not reachable with the IO capabilities above; refuse rather than guess.
        logger.warning("ble: numeric comparison requested during pairing; refused")
        return False


class BumbleAdapter:
    """A gateway adapter on a bumble stack; use ``async with``.

    ``key_dir`` keeps bonds in a bumble ``JsonKeyStore`` file there (so they survive
    restarts); without it bonds live in memory for the adapter's lifetime.
    ``max_connections`` is the adapter's connection budget (a controller holds about
    5-10); a connection beyond it fails with HCI reason 0x09.
    """

    def __init__(
        self,
        source: HostSource,
        *,
        address: str,
        name: str = "biogw-gateway",
        key_dir: Path | None = None,
        pairing: PairingPolicy | None = None,
        max_connections: int = 10,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._source = source
        self._address = address.upper()
        self._name = name
        self._key_dir = key_dir
        self._pairing = pairing if pairing is not None else PairingPolicy()
        self._max_connections = max_connections
        self._device: Device | None = None
        self._stack = AsyncExitStack()
        self._connect_lock = asyncio.Lock()
        self._scan_lock = asyncio.Lock()
        self._scan_listeners: dict[ScanListener, bool] = {}
        self._scan_active: bool | None = None
        self._peers: dict[str, tuple[hci.Address, str | None]] = {}

    async def __aenter__(self) -> Self:
        if self._device is not None:
            raise BleakError(f"adapter {self._address} is already open")
        async with AsyncExitStack() as stack:
            device = await self._source.add_host(
                address=self._address, name=self._name, keystore=self._new_keystore()
            )
            stack.push_async_callback(self._source.remove_host, device)
            stack.push_async_callback(self._disconnect_all, device)
            device.pairing_config_factory = self._pairing_config
            device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
            stack.callback(
                device.remove_listener, Device.EVENT_ADVERTISEMENT, self._on_advertisement
            )
            self._device = device
            stack.callback(setattr, self, "_device", None)
            self._stack = stack.pop_all()
        logger.debug("ble adapter %s open", self._address)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Disconnect every peer, stop scanning and release the host. Idempotent."""
        self._scan_listeners.clear()
        await self._stack.aclose()

    @property
    def address(self) -> str:
        return self._address

    @property
    def device(self) -> Device:
        """The bumble ``Device`` (for the backend's clients and scanners)."""
        if self._device is None:
            raise BleakError(f"adapter {self._address} is not open")
        return self._device

    @property
    def pairing(self) -> PairingPolicy:
        return self._pairing

    def resolve(self, address: str) -> hci.Address:
        """The bumble address for a bleak address string: the type heard in its last
        advertisement, else a random (static) address."""
        known = self._peers.get(address.upper())
        if known is not None:
            return known[0]
        try:
            return hci.Address(address, hci.Address.RANDOM_DEVICE_ADDRESS)
        except ValueError as exc:
            raise ValueError(f"not a Bluetooth address: {address!r}") from exc

    def advertised_name(self, address: str) -> str | None:
        """The local name ``address`` last advertised, if the adapter heard one."""
        known = self._peers.get(address.upper())
        return None if known is None else known[1]

    async def connect(self, peer: hci.Address, *, timeout_s: float) -> Connection:
        """Open an LE connection to ``peer`` (one attempt at a time per adapter).

        Raises ``BleakDeviceNotFoundError`` when nothing answers within ``timeout_s``
        and :class:`BumbleLinkError` (HCI 0x09 / 0x0B) when the adapter is full or
        already connected to ``peer``.
        """
        address = peer.to_string(False)
        async with self._connect_lock:
            device = self.device
            if any(c.peer_address == peer for c in device.connections.values()):
                raise BumbleLinkError(
                    "already connected",
                    address=address,
                    operation="connect",
                    hci_reason=hci.HCI_CONNECTION_ALREADY_EXISTS_ERROR,
                )
            if len(device.connections) >= self._max_connections:
                raise BumbleLinkError(
                    f"adapter {self._address} holds {self._max_connections} connections",
                    address=address,
                    operation="connect",
                    hci_reason=hci.HCI_CONNECTION_LIMIT_EXCEEDED_ERROR,
                )
            with bumble_errors(address=address, operation="connect"):
                try:
                    return await device.connect_le(peer, timeout=timeout_s)
                except asyncio.CancelledError:
                    await self._abandon_connect(device, peer)
                    raise

    async def bond(self, peer: hci.Address) -> PairingKeys | None:
        """The stored bond (pairing keys) for ``peer``, if any."""
        keystore = self.device.keystore
        return None if keystore is None else await keystore.get(str(peer))

    async def delete_bond(self, peer: hci.Address) -> bool:
        """Forget the bond with ``peer``; ``False`` if there was none."""
        keystore = self.device.keystore
        if keystore is None or await keystore.get(str(peer)) is None:
            return False
        await keystore.delete(str(peer))
        logger.debug("ble[%s] bond deleted", peer.to_string(False))
        return True

    async def start_scan(self, listener: ScanListener, *, active: bool) -> None:
        """Deliver every advertisement heard to ``listener`` until :meth:`stop_scan`.
        The scan is active if any listener asked for active scanning."""
        async with self._scan_lock:
            self._scan_listeners[listener] = active
            await self._apply_scan_state()

    async def stop_scan(self, listener: ScanListener) -> None:
        async with self._scan_lock:
            self._scan_listeners.pop(listener, None)
            await self._apply_scan_state()

    async def _apply_scan_state(self) -> None:
        want = any(self._scan_listeners.values()) if self._scan_listeners else None
        if want == self._scan_active:
            return
        device = self.device
        with bumble_errors(address=self._address, operation="scan"):
            if self._scan_active is not None:
                await device.stop_scanning()
                self._scan_active = None
            if want is not None:
                await device.start_scanning(active=want, filter_duplicates=False)
                self._scan_active = want

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        fields = parse_ad_structures(advertisement.data.ad_structures)
        address = advertisement.address.to_string(False)
        self._remember(address, advertisement.address, fields.local_name)
        sighting = Sighting(
            address=address,
            bd_addr=advertisement.address,
            fields=fields,
            rssi_dbm=advertisement.rssi,
            connectable=advertisement.is_connectable,
            advertisement=advertisement,
        )
        for listener in tuple(self._scan_listeners):
            try:
                listener(sighting)
            except Exception:  # a scanner's callback must not break bumble's event loop
                logger.exception("ble adapter: scan listener failed")

    def _remember(self, address: str, bd_addr: hci.Address, name: str | None) -> None:
        previous = self._peers.pop(address, None)
        if name is None and previous is not None:
            name = previous[1]
        self._peers[address] = (bd_addr, name)
        if len(self._peers) > _MAX_REMEMBERED_PEERS:
            del self._peers[next(iter(self._peers))]

    def _pairing_config(self, connection: Connection) -> PairingConfig:
        policy = self._pairing
        return PairingConfig(
            sc=policy.secure_connections,
            mitm=policy.mitm,
            bonding=policy.bonding,
            delegate=_Delegate(policy, connection.peer_address.to_string(False)),
        )

    def _new_keystore(self) -> KeyStore:
        if self._key_dir is None:
            return MemoryKeyStore()
        return JsonKeyStore(namespace=self._address, filename=str(self._key_dir / "bonds.json"))

    async def _abandon_connect(self, device: Device, peer: hci.Address) -> None:
        # Cancelled from outside: withdraw the request so the controller is not left
        # initiating, and drop a connection that completed in the meantime.
        with contextlib.suppress(BaseBumbleError):
            await device.send_sync_command(hci.HCI_LE_Create_Connection_Cancel_Command())
        for connection in list(device.connections.values()):
            if connection.peer_address == peer:
                with contextlib.suppress(BaseBumbleError):
                    await connection.disconnect()

    async def _disconnect_all(self, device: Device) -> None:
        for connection in list(device.connections.values()):
            try:
                await connection.disconnect()
            except BaseBumbleError as exc:
                logger.warning("ble adapter: a disconnect on close failed: %s", type(exc).__name__)
        if self._scan_active is not None:
            with contextlib.suppress(BaseBumbleError):
                await device.stop_scanning()
            self._scan_active = None


if TYPE_CHECKING:
    from devices.sim.radio import VirtualRadio

    def _radio_is_a_host_source(radio: VirtualRadio) -> HostSource:
        return radio
