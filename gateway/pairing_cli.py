"""``biogw pair``, ``biogw devices`` and ``biogw unpair``: the pairing commands, against
the care database (``[database] care_dsn``, or the embedded one when unset; see
``gateway.care_db``) and the configured Bluetooth link.

Role: parse arguments, open the link and a database connection, call
``gateway.pairing`` / ``gateway.store.devices``, render the result. ``register`` adds the
commands to the ``biogw`` group. Output shows device keys, models and bond states; the
MAC appears only in ``pair``'s list of nearby devices to choose from (the operator must
see what they pick), never in ``devices``.

Must not: read configuration other than through the group's invocation object, or log
MAC addresses, subject ids or device keys above DEBUG.
"""

from __future__ import annotations

import asyncio
import uuid

import click
from rich.console import Console
from rich.table import Table

from gateway.ble.bumble_backend import PairingPolicy
from gateway.ble.link import open_link
from gateway.ble.scan import Sighting, scan
from gateway.care_db import care_database, connect, run
from gateway.config import Invocation
from gateway.pairing import pair_device, unpair_device
from gateway.store.devices import PairedDevice, list_devices

__all__ = ["register"]


def _choose(sightings: list[Sighting]) -> str:
    """Show the nearby devices that speak a known profile; return the chosen address."""
    known = [s for s in sightings if s.profile is not None]
    if not known:
        raise click.ClickException("no known device in range")
    table = Table(title="Nearby devices")
    for column in ("#", "name", "address", "model", "RSSI (dBm)"):
        table.add_column(column)
    for number, s in enumerate(known, start=1):
        table.add_row(str(number), s.name or "?", s.address, s.model, str(s.rssi_dbm))
    Console(stderr=True).print(table)
    choice: int = click.prompt("Pair with #", type=click.IntRange(1, len(known)), err=True)
    return known[choice - 1].address


async def _ask_passkey(_address: str) -> int:
    """Ask the person pairing for the passkey the device shows (never logged)."""
    value: int = await asyncio.to_thread(
        click.prompt, "Passkey shown on the device", type=click.IntRange(0, 999_999), err=True
    )
    return value


def _devices_table(devices: list[PairedDevice]) -> Table:
    table = Table(title="Paired devices")
    table.add_column("device key", no_wrap=True, min_width=36)
    for column in ("profile", "model", "state", "paired at", "unpaired at"):
        table.add_column(column)
    for d in devices:
        table.add_row(
            str(d.device_key),
            d.profile,
            d.model or "?",
            d.bond_state,
            "" if d.paired_at is None else d.paired_at.isoformat(timespec="seconds"),
            "" if d.unpaired_at is None else d.unpaired_at.isoformat(timespec="seconds"),
        )
    return table


@click.command("pair")
@click.argument("address", required=False)
@click.option("--subject", "subject_id", type=click.UUID, required=True, help="Wearer's id.")
@click.option(
    "--passkey-entry",
    is_flag=True,
    help="The device shows a passkey: ask for it (on stdin) while pairing.",
)
@click.pass_obj
def pair_command(
    invocation: Invocation, address: str | None, subject_id: uuid.UUID, passkey_entry: bool
) -> None:
    """Bond with a device (ADDRESS, or chosen from a scan) and bind it to a subject.
    Prints the new device key."""
    settings = invocation.settings()
    policy = PairingPolicy(io_capability="keyboard_only", passkey_provider=_ask_passkey)

    async def go() -> None:
        async with (
            open_link(
                settings.ble, settings.sim, pairing=policy if passkey_entry else None
            ) as link,
            care_database(settings) as dsn,
            await connect(dsn) as conn,
        ):
            target = address
            if target is None:
                target = _choose(await scan(link, timeout_s=settings.ble.scan_timeout_s))
            device = await pair_device(
                link,
                conn,
                address=target,
                subject_id=subject_id,
                scan_timeout_s=settings.ble.scan_timeout_s,
                timeout_s=settings.ble.connect_timeout_s,
            )
        click.echo(str(device.device_key))

    run(go())


@click.command("devices")
@click.pass_obj
def devices_command(invocation: Invocation) -> None:
    """List recorded devices: key, profile, model, bond state (no addresses)."""
    settings = invocation.settings()

    async def go() -> None:
        async with care_database(settings) as dsn, await connect(dsn) as conn:
            devices = await list_devices(conn)
        Console().print(_devices_table(devices))

    run(go())


@click.command("unpair")
@click.argument("device_key", type=click.UUID)
@click.pass_obj
def unpair_command(invocation: Invocation, device_key: uuid.UUID) -> None:
    """Remove the bond with a device and its binding to the wearer."""
    settings = invocation.settings()

    async def go() -> None:
        async with (
            open_link(settings.ble, settings.sim) as link,
            care_database(settings) as dsn,
            await connect(dsn) as conn,
        ):
            await unpair_device(link, conn, device_key=device_key)
        click.echo(f"unpaired {device_key}")

    run(go())


def register(group: click.Group) -> None:
    """Add ``pair``, ``devices`` and ``unpair`` to the ``biogw`` group."""
    for command in (pair_command, devices_command, unpair_command):
        group.add_command(command)
