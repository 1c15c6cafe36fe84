"""The simulated radio: bumble virtual controllers on one shared in-process link.

Role: build bumble hosts (a virtual ``Controller``, a ``Host`` and a powered-on
``Device``) attached to one link, and let tests and the simulator impair that link the
way a real radio would be impaired: drop every connection of a host (a supervision
timeout, both ends see HCI reason 0x08), move a host out of range and back (its
advertisements and connection attempts stop reaching anyone), and set the RSSI the
other hosts measure for it. Simulated garments (peripherals) and the gateway's bumble
adapter (central) both get their ``Device`` from :meth:`VirtualRadio.add_host`.

It must not: know GATT profiles, decode or generate sensor data, start tasks of its
own, or sleep to synchronise; its only timers are bumble's advertising timers.

Three faults of bumble's virtual controller are corrected here (see
``_VirtualController``): *LE Create Connection Cancel* did not end the pending
connection (so a connection attempt with a timeout to an absent peer hung forever and
wedged the controller), advertising reports always carried RSSI -50 dBm, and a legacy
scan response repeated the advertising data instead of carrying the scan response.

Out of process: ``LocalLink`` runs every controller in this event loop. A later issue
can run the simulator in another process by serving its controllers over HCI
transports (as ``bumble-controllers tcp-server:_:9001 ...`` does: controllers on a
``LocalLink``, each reachable through ``bumble.transport.open_transport``) and building
the gateway's ``Device`` with ``Device.with_hci(name, address, source, sink)`` from a
``tcp-client:`` spec. The ``add_host``/``remove_host`` pair is the seam
(``gateway.ble.bumble_backend.adapter.HostSource``); range and RSSI control would then
live in the simulator process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from bumble import hci, ll
from bumble.controller import Controller
from bumble.core import PhysicalTransport
from bumble.device import Connection, Device
from bumble.host import Host
from bumble.keys import KeyStore
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

__all__ = ["DEFAULT_RSSI_DBM", "LINK_LOSS_REASON", "VirtualRadio"]

logger = logging.getLogger(__name__)

DEFAULT_RSSI_DBM = -50
"""RSSI other hosts measure for a host unless :meth:`VirtualRadio.set_rssi` says
otherwise (bumble's own fixed value)."""

LINK_LOSS_REASON = hci.HCI_CONNECTION_TIMEOUT_ERROR
"""HCI reason both ends report when the radio loses a link (0x08, connection timeout)."""

# A controller with LE Data Length Extension reports 251-octet LE ACL buffers; bumble's
# default of 27 makes every 244-byte notification ten HCI fragments for no benefit.
_LE_ACL_DATA_PACKET_LENGTH = 251

_AdvertisingReportEvent = (
    hci.HCI_LE_Advertising_Report_Event | hci.HCI_LE_Extended_Advertising_Report_Event
)


class _VirtualController(Controller):
    """bumble's virtual controller with the fixes listed in the module docstring."""

    le_acl_data_packet_length = _LE_ACL_DATA_PACKET_LENGTH

    def __init__(
        self, name: str, *, link: LocalLink, rssi_for: Callable[[hci.Address], int]
    ) -> None:
        super().__init__(name, link=link)
        self._rssi_for = rssi_for

    def on_hci_le_create_connection_cancel_command(
        self, _command: hci.HCI_LE_Create_Connection_Cancel_Command
    ) -> hci.HCI_StatusReturnParameters:
        # Vol 4, Part E, 7.8.13: after the Command Complete, the pending connection ends
        # with an LE Connection Complete event carrying Unknown Connection Identifier.
        pending = self.pending_le_connection
        if pending is not None:
            self.pending_le_connection = None
            failure = hci.HCI_LE_Connection_Complete_Event(
                status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
                connection_handle=0,
                role=hci.Role.CENTRAL,
                peer_address_type=pending.peer_address.address_type,
                peer_address=pending.peer_address,
                connection_interval=0,
                peripheral_latency=0,
                supervision_timeout=0,
                central_clock_accuracy=0,
            )
            # call_soon: the base class queues the Command Complete after we return.
            asyncio.get_running_loop().call_soon(self.send_hci_packet, failure)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if isinstance(packet, _AdvertisingReportEvent):
            reports = []
            for report in packet.reports:
                report.rssi = self._rssi_for(report.address)
                if _is_scan_response(report):
                    # bumble repeats the advertising data here; a real scan response
                    # carries the advertiser's scan response data, or is not sent at all.
                    report.data = self._scan_response_of(report.address)
                    if not report.data:
                        continue
                reports.append(report)
            if not reports:
                return
            packet.reports = reports  # type: ignore[assignment]  # same report kind, filtered
        super().send_hci_packet(packet)

    def _scan_response_of(self, address: hci.Address) -> bytes:
        advertiser = self.link.find_le_controller(address)
        if advertiser is None:
            return b""
        for adv_set in advertiser.advertising_sets.values():
            if adv_set.enabled and adv_set.address == address:
                return bytes(adv_set.scan_response_data)
        legacy = advertiser.le_legacy_advertiser
        return bytes(legacy.scan_response_data) if legacy.enabled else b""


def _is_scan_response(
    report: hci.HCI_LE_Advertising_Report_Event.Report
    | hci.HCI_LE_Extended_Advertising_Report_Event.Report,
) -> bool:
    if isinstance(report, hci.HCI_LE_Extended_Advertising_Report_Event.Report):
        flag = hci.HCI_LE_Extended_Advertising_Report_Event.EventType.SCAN_RESPONSE
        return bool(report.event_type & flag)
    return bool(report.event_type == hci.HCI_LE_Advertising_Report_Event.EventType.SCAN_RSP)


class _RangedLink(LocalLink):
    """A ``LocalLink`` whose hosts can be out of range: nothing sent by or to a
    controller out of range is delivered. Advertisements reach only controllers that
    are scanning or initiating a connection (periodic-advertising sync, which bumble's
    controller also handles, is not used by biogw)."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # LocalLink.__init__ is unannotated
        self.out_of_range: set[Controller] = set()

    def send_advertising_pdu(
        self, sender_controller: Controller, packet: ll.AdvertisingPdu
    ) -> None:
        if sender_controller in self.out_of_range:
            return
        loop = asyncio.get_running_loop()
        connect_ind = isinstance(packet, ll.ConnectInd)
        for controller in self.controllers:
            if controller is sender_controller or controller in self.out_of_range:
                continue
            # A controller that is neither scanning nor initiating ignores advertisements;
            # not delivering them keeps an idle fleet's cost linear, not quadratic, in size.
            if connect_ind or controller.le_scan_enable or controller.pending_le_connection:
                loop.call_soon(controller.on_ll_advertising_pdu, packet)

    def send_acl_data(
        self,
        sender_controller: Controller,
        destination_address: hci.Address,
        transport: PhysicalTransport,
        data: bytes,
    ) -> None:
        if self.out_of_range and (
            sender_controller in self.out_of_range
            or self.find_le_controller(destination_address) in self.out_of_range
        ):
            return
        super().send_acl_data(sender_controller, destination_address, transport, data)


@dataclass(frozen=True, slots=True)
class _Host:
    device: Device
    controller: _VirtualController


class VirtualRadio:
    """One simulated radio band shared by every host created on it.

    Use as an async context manager (or call :meth:`aclose`): on exit every host is
    powered off and detached. Hosts are addressed by static random addresses.
    """

    def __init__(self) -> None:
        self._link = _RangedLink()
        self._hosts: dict[hci.Address, _Host] = {}
        self._rssi_dbm: dict[hci.Address, int] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def devices(self) -> tuple[Device, ...]:
        """Every host's ``Device``, in creation order."""
        return tuple(host.device for host in self._hosts.values())

    async def add_host(
        self,
        *,
        address: str,
        name: str | None = None,
        keystore: KeyStore | None = None,
        rssi_dbm: int = DEFAULT_RSSI_DBM,
        irk: bytes | None = None,
    ) -> Device:
        """Create a controller on this radio and a powered-on ``Device`` over it.

        ``address`` must be a static random address (``"C0:..."`` to ``"FF:..."``:
        the two top bits set). ``keystore`` holds the host's bonds (bumble's
        ``MemoryKeyStore`` when ``None``). ``irk`` is the identity resolving key the
        host distributes when bonding; by default one derived from the address, so a
        host keeps its identity across restarts (simulation only: not secret).
        The caller configures GATT services, advertising and pairing on the result.
        """
        bd_addr = _static_random_address(address)
        _check_rssi(rssi_dbm)
        if bd_addr in self._hosts:
            raise ValueError(f"a host with address {address} is already on this radio")
        controller = _VirtualController(f"sim[{bd_addr}]", link=self._link, rssi_for=self._rssi_of)
        device = Device(
            name=name or str(bd_addr),
            address=bd_addr,
            host=Host(controller, AsyncPipeSink(controller)),
        )
        device.irk = irk if irk is not None else _derived_irk(bd_addr)
        if keystore is not None:
            device.keystore = keystore
        self._hosts[bd_addr] = _Host(device, controller)
        self._rssi_dbm[bd_addr] = rssi_dbm
        try:
            await device.power_on()
        except BaseException:
            self._detach(bd_addr)
            raise
        logger.debug("radio: host %s on", bd_addr)
        return device

    async def remove_host(self, device: Device) -> None:
        """Power ``device`` off and take its controller off the radio (its links drop
        with :data:`LINK_LOSS_REASON`). Removing a host twice is a no-op."""
        address = device.static_address
        if address not in self._hosts:
            return
        await self.drop_link(device)
        host = self._hosts[address]
        host.controller.le_legacy_advertiser.stop()
        for advertising_set in host.controller.advertising_sets.values():
            advertising_set.stop()
        await device.power_off()
        self._detach(address)
        logger.debug("radio: host %s off", address)

    async def aclose(self) -> None:
        """Remove every host."""
        for device in reversed(self.devices):
            await self.remove_host(device)

    async def drop_link(self, device: Device, *, reason: int = LINK_LOSS_REASON) -> int:
        """Lose every connection of ``device`` at the radio, as a supervision timeout
        would: both ends' controllers report a disconnection with ``reason`` without
        either host asking. Returns once ``device``'s own host has seen each loss;
        returns the number of links dropped."""
        host = self._host(device)
        links = list(host.controller.le_connections.values())
        lost: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for link in links:
            connection = device.lookup_connection(link.handle)
            if connection is not None:
                future: asyncio.Future[None] = loop.create_future()
                connection.once(Connection.EVENT_DISCONNECTION, _resolver(future))
                lost.append(future)
            link.send_ll_control_pdu(ll.TerminateInd(reason))
            host.controller.on_le_disconnected(link, reason)
        if lost:
            await asyncio.gather(*lost)
        if links:
            logger.debug("radio: dropped %d link(s) of %s", len(links), device.static_address)
        return len(links)

    async def set_in_range(self, device: Device, in_range: bool) -> None:
        """Move ``device`` out of range (its links drop as in :meth:`drop_link`; its
        advertisements and connection requests reach no one; it hears no one) or back
        into range. Idempotent."""
        controller = self._host(device).controller
        if in_range:
            self._link.out_of_range.discard(controller)
            return
        if controller in self._link.out_of_range:
            return
        await self.drop_link(device)
        self._link.out_of_range.add(controller)

    def is_in_range(self, device: Device) -> bool:
        return self._host(device).controller not in self._link.out_of_range

    def set_rssi(self, device: Device, rssi_dbm: int) -> None:
        """Set the RSSI (dBm, -127..20) every other host measures for ``device``'s
        advertisements from now on."""
        _check_rssi(rssi_dbm)
        self._host(device)
        self._rssi_dbm[device.static_address] = rssi_dbm

    def _rssi_of(self, address: hci.Address) -> int:
        return self._rssi_dbm.get(address, DEFAULT_RSSI_DBM)

    def _host(self, device: Device) -> _Host:
        host = self._hosts.get(device.static_address)
        if host is None or host.device is not device:
            raise ValueError(f"{device.static_address} is not a host on this radio")
        return host

    def _detach(self, address: hci.Address) -> None:
        host = self._hosts.pop(address)
        self._rssi_dbm.pop(address, None)
        self._link.out_of_range.discard(host.controller)
        with contextlib.suppress(KeyError):
            self._link.remove_controller(host.controller)


def _resolver(future: asyncio.Future[None]) -> Callable[[int], None]:
    def resolve(_reason: int) -> None:
        if not future.done():
            future.set_result(None)

    return resolve


def _static_random_address(address: str) -> hci.Address:
    try:
        bd_addr = hci.Address(address, hci.Address.RANDOM_DEVICE_ADDRESS)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a Bluetooth address: {address!r}") from exc
    if not bd_addr.is_static:
        raise ValueError(
            f"{address} is not a static random address (the top two bits must be set, "
            "e.g. C0:00:00:00:00:01)"
        )
    return bd_addr


def _check_rssi(rssi_dbm: int) -> None:
    if not -127 <= rssi_dbm <= 20:  # HCI LE Advertising Report RSSI range
        raise ValueError(f"rssi_dbm {rssi_dbm} outside -127..20")


def _derived_irk(address: hci.Address) -> bytes:
    return hashlib.sha256(b"biogw-sim-irk:" + bytes(address)).digest()[:16]
