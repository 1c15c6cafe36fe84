"""The ``biogw`` command line: parses arguments and configuration once, then runs.

Configuration is read here and nowhere else (``load_settings``); commands receive the
frozen ``Settings``. Rendering uses rich. Commands: ``scan``, ``stream``, ``sim``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from devices.frame import Frame
from devices.sim.truth import export_fleet_truth
from gateway.ble.link import open_link
from gateway.ble.scan import Sighting, scan
from gateway.config import Settings, load_settings
from gateway.consent_cli import register as register_consent_commands
from gateway.db_cli import register as register_db_commands
from gateway.demo_cli import register as register_demo_commands
from gateway.errors import BiogwError, ConfigError
from gateway.gateway_cli import register as register_gateway_commands
from gateway.ingest_cli import register as register_ingest_commands
from gateway.keys_cli import register as register_keys_commands
from gateway.logs import configure_logging
from gateway.pairing_cli import register as register_pairing_commands
from gateway.watch import DeviceTally, watch


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run a command's coroutine; biogw's own errors end it with a message, not a trace."""
    try:
        asyncio.run(coro)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    except BiogwError as exc:
        click.echo(f"biogw: {exc}", err=True)
        sys.exit(1)


@dataclass(frozen=True, slots=True)
class _Invocation:
    """What the group options said; each command parses the settings from it once."""

    config_file: Path | None
    log_level: str | None

    def settings(self, **sections: dict[str, object]) -> Settings:
        """Parse the configuration with the command's own options on top (command-line
        options win over the environment and the file); exit 2 on invalid input."""
        overrides: dict[str, object] = {k: v for k, v in sections.items() if v}
        if self.log_level:
            overrides["log_level"] = self.log_level
        try:
            settings = load_settings(self.config_file, overrides=overrides)
        except ConfigError as exc:
            click.echo(f"biogw: {exc}", err=True)
            sys.exit(2)
        configure_logging(settings.log_level)
        return settings


def _given(**options: object) -> dict[str, object]:
    return {k: v for k, v in options.items() if v is not None}


@click.group()
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="BIOGW_CONFIG",
    help="TOML configuration file (also BIOGW_CONFIG). BIOGW_* variables override it.",
)
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@click.pass_context
def main(ctx: click.Context, config_file: Path | None, log_level: str | None) -> None:
    """biogw: a privacy-first gateway for wearable biometric sensors."""
    ctx.obj = _Invocation(config_file, log_level)


register_consent_commands(main)
register_pairing_commands(main)
register_db_commands(main)
register_keys_commands(main)
register_gateway_commands(main)
register_ingest_commands(main)
register_demo_commands(main)


def _sightings_table(sightings: list[Sighting]) -> Table:
    table = Table(title="Nearby devices")
    for column in ("name", "address", "model", "RSSI (dBm)"):
        table.add_column(column)
    for s in sightings:
        table.add_row(s.name or "?", s.address, s.model, str(s.rssi_dbm))
    return table


@main.command("scan")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Seconds to scan.")
@click.pass_obj
def scan_command(invocation: _Invocation, timeout_s: float | None) -> None:
    """List nearby garments and straps: name, address, model, RSSI."""
    settings = invocation.settings(ble=_given(scan_timeout_s=timeout_s))

    async def run() -> None:
        async with open_link(settings.ble, settings.sim) as link:
            sightings = await scan(link, timeout_s=settings.ble.scan_timeout_s)
        Console().print(_sightings_table(sightings))

    _run(run())


def _describe(frame: Frame) -> str:
    head = frame.samples[0] if frame.samples.ndim == 2 else frame.samples[:3]
    first = np.array2string(head, precision=1, separator=",", suppress_small=True)
    seq = "" if frame.sequence is None else f" seq={frame.sequence}"
    return (
        f"{frame.stream.value:<7} t={frame.time_ns / 1e9:,.3f}s ({frame.timebase.value}) "
        f"n={frame.n_samples:<3} {frame.unit.value:<4}{seq} {first}"
    )


@main.command("stream")
@click.argument("address")
@click.option("--duration", "duration_s", type=float, default=None, help="Stop after seconds.")
@click.pass_obj
def stream_command(invocation: _Invocation, address: str, duration_s: float | None) -> None:
    """Print decoded frames of one device live."""
    settings = invocation.settings()
    console = Console()

    async def run() -> None:
        async with open_link(settings.ble, settings.sim) as link:
            sightings = await scan(link, timeout_s=settings.ble.scan_timeout_s)
            match = [s for s in sightings if s.address.upper() == address.upper()]
            if not match or match[0].profile is None:
                known = ", ".join(s.address for s in sightings if s.profile) or "none"
                raise click.ClickException(f"no supported device {address} in range ({known})")
            tallies: list[DeviceTally] = []
            await watch(
                link,
                match,
                duration_s=duration_s,
                tallies=tallies,
                sink=lambda f: console.print(_describe(f), highlight=False),
            )

    _run(run())


def _tally_table(tallies: list[DeviceTally]) -> Table:
    table = Table(title="Simulated garments on the virtual link")
    for column in ("device", "model", "state", "frames", "samples/s", "errors", "dropped"):
        table.add_column(column)
    now = time.monotonic()
    for t in tallies:
        rate = t.counters.samples / max(now - t.started_s, 1e-9)
        table.add_row(
            t.name,
            t.model,
            t.state,
            str(t.counters.frames),
            f"{rate:,.0f}",
            str(t.counters.decode_errors),
            str(t.counters.dropped_notifications),
        )
    return table


@main.command("sim")
@click.option("--polar", type=int, default=None, help="Simulated Polar H10 straps.")
@click.option("--garment", type=int, default=None, help="Simulated biogw garments.")
@click.option("--duration", "duration_s", type=float, default=None, help="Stop after seconds.")
@click.option("--speed", type=float, default=None, help="Signal seconds per second (default 1).")
@click.option(
    "--replay-ecg",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="WFDB record (path without suffix, e.g. ../shared/data/mitdb/100) to replay as ECG.",
)
@click.option("--truth-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.pass_obj
def sim_command(
    invocation: _Invocation,
    polar: int | None,
    garment: int | None,
    duration_s: float | None,
    speed: float | None,
    replay_ecg: Path | None,
    truth_dir: Path | None,
) -> None:
    """Run simulated garments on a virtual link, stream them all and show live figures."""
    settings = invocation.settings(
        ble={"link": "virtual"},
        sim=_given(polar=polar, garment=garment, speed=speed, replay_ecg=replay_ecg),
    )
    ble, sim = settings.ble, settings.sim
    console = Console()

    async def run() -> None:
        async with open_link(ble, sim) as link:
            sightings = await scan(link, timeout_s=ble.scan_timeout_s)
            tallies: list[DeviceTally] = []
            with Live(_tally_table(tallies), console=console, refresh_per_second=2) as live:

                async def refresh() -> None:
                    while True:
                        live.update(_tally_table(tallies))
                        await asyncio.sleep(0.5)

                async with asyncio.TaskGroup() as group:
                    ticker = group.create_task(refresh(), name="cli.refresh")
                    await watch(link, sightings, duration_s=duration_s, tallies=tallies)
                    ticker.cancel()
                live.update(_tally_table(tallies))
            if truth_dir is not None and link.fleet is not None:
                written = export_fleet_truth(link.fleet, truth_dir)
                console.print(f"ground truth written to {truth_dir} ({len(written)} files)")

    _run(run())
