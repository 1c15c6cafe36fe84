"""``biogw demo``: run the whole system on embedded defaults and show it live.

Role: the command-line face of ``gateway.demo.Demo``: prints where things are (databases,
broker, metrics), then redraws a rich table every second: per demo wearer the device's
link state, its streams, samples per second arriving at the gateway, gaps, and the latest
stored vitals; per ingest path the messages, frames stored, duplicates, dead letters and
the rows in its database. Ctrl-C (or SIGTERM, or ``--duration``) stops everything
cleanly.

Must not: print subject ids or payloads (wearers are shown by their demo label), or a
configured DSN (it may hold a password).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final
from uuid import UUID

import click
import psycopg
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from gateway.care_db import run_until_stopped
from gateway.config import Invocation
from gateway.demo import Demo, DemoParts
from gateway.ingest.validate import IngestPath
from gateway.logs import configure_logging
from gateway.store import StoreError
from gateway.store.signals import Vital, latest_vitals
from processing.findings import VitalKind
from processing.motion import Posture

__all__ = ["demo_command", "register"]

REFRESH_S = 1.0
VITALS_WINDOW = timedelta(minutes=10)


@dataclass(slots=True)
class _Rates:
    """Samples seen per device at the previous refresh, for samples/s."""

    last: dict[str, tuple[float, int]] = field(default_factory=dict)

    def rate(self, key: str, samples: int, now: float) -> float:
        before = self.last.get(key)
        self.last[key] = (now, samples)
        if before is None or now <= before[0]:
            return 0.0
        return max(samples - before[1], 0) / (now - before[0])


async def _count(dsn: str, table: str) -> int | None:
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            cur = await conn.execute(f"SELECT count(*) FROM {table}")  # fixed table names
            row = await cur.fetchone()
    except psycopg.Error:
        return None
    return None if row is None else int(row[0])


async def _latest_vitals(dsn: str) -> dict[UUID, str]:
    """Latest stored value per wearer and vital kind in the last 10 minutes, as text."""
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            found = await latest_vitals(conn, window=VITALS_WINDOW)
    except (psycopg.Error, StoreError):
        return {}
    return {subject: _vitals_text(kinds) for subject, kinds in found.items()}


_SHOWN: Final = (
    (VitalKind.HR, "HR {:.0f}"),
    (VitalKind.RESP_RATE, "RR {:.0f}"),
    (VitalKind.RESP_RATE_EDR, "RR~{:.0f}"),
    (VitalKind.TEMP, "{:.1f}°C"),
    (VitalKind.ACTIVITY, "ENMO {:.0f} mG"),
)


def _vitals_text(kinds: Mapping[str, Vital]) -> str:
    """The latest heart and respiration rates, temperature, activity and posture."""
    parts = [fmt.format(kinds[k].value) for k, fmt in _SHOWN if k in kinds]
    if VitalKind.POSTURE in kinds:
        with contextlib.suppress(ValueError):
            parts.append(Posture(round(kinds[VitalKind.POSTURE].value)).name.lower())
    return ", ".join(parts) or "-"


def _devices_table(parts: DemoParts, rates: _Rates, vitals: dict[UUID, str]) -> Table:
    table = Table(title="Demo wearers")
    for column in ("wearer", "device", "link", "streams", "samples/s", "gaps", "last vitals"):
        right = column in ("samples/s", "gaps")
        table.add_column(
            column, justify="right" if right else "left", no_wrap=column != "last vitals"
        )
    gateway, now = parts.gateway, time.monotonic()
    sessions = {s.device_key: s for s in gateway.sessions} if gateway else {}
    for wearer in parts.wearers:
        key = str(wearer.device_key)
        session = sessions.get(key)
        tracker = gateway.edge.gap_tracker(key) if gateway else None
        samples = session.counters.stream.samples if session else 0
        streams = " ".join(sorted(s.value for s in tracker.streams)) if tracker else ""
        gaps = sum(tracker.counters.gaps.values()) if tracker else 0
        table.add_row(
            wearer.label.removeprefix("Demo "),
            key[:8],
            session.state.value if session else "starting",
            streams,
            f"{rates.rate(key, samples, now):,.0f}",
            str(gaps),
            vitals.get(wearer.subject_id, "-"),
        )
    return table


def _ingest_table(parts: DemoParts, rows: dict[IngestPath, int | None]) -> Table:
    table = Table(title="Ingest")
    for column in ("path", "messages", "frames stored", "duplicates", "dead letters", "db rows"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for path in IngestPath:
        counters = parts.ingest.counters(path) if parts.ingest else None
        if counters is None:
            continue
        stored = rows.get(path)
        table.add_row(
            path.value,
            f"{counters.messages:,}",
            f"{counters.frames:,}",
            f"{counters.frame_duplicates + counters.gap_duplicates:,}",
            f"{counters.dead_letters:,}",
            "?" if stored is None else f"{stored:,}",
        )
    return table


def _where(parts: DemoParts, *, databases_configured: bool) -> str:
    gateway = parts.gateway.metrics_address if parts.gateway else None
    ingest = parts.ingest.metrics_address if parts.ingest else None

    def url(address: tuple[str, int] | None) -> str:
        return f"http://{address[0]}:{address[1]}/metrics" if address else "off"

    care = "configured" if databases_configured else parts.care_dsn
    research = "configured" if databases_configured else parts.research_dsn
    return "\n".join(
        (
            f"biogw demo: {len(parts.wearers)} simulated garment(s) on the virtual link",
            f"  care database:     {care}",
            f"  research database: {research}",
            f"  MQTT broker:       {parts.broker}",
            f"  metrics:           gateway {url(gateway)}, ingest {url(ingest)}",
            "  Ctrl-C stops everything.",
        )
    )


async def _display(demo: Demo, console: Console, *, databases_configured: bool) -> None:
    parts = demo.parts
    assert parts is not None  # set by Demo.__aenter__
    await parts.ready.wait()
    console.print(_where(parts, databases_configured=databases_configured), soft_wrap=True)
    rates = _Rates()
    tables = {IngestPath.CLINICAL: "clinical.frames", IngestPath.RESEARCH: "pseudo.frames"}
    dsns = {IngestPath.CLINICAL: parts.care_dsn, IngestPath.RESEARCH: parts.research_dsn}
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        while True:
            rows = {path: await _count(dsns[path], tables[path]) for path in IngestPath}
            vitals = await _latest_vitals(parts.care_dsn)
            live.update(Group(_devices_table(parts, rates, vitals), _ingest_table(parts, rows)))
            await asyncio.sleep(REFRESH_S)


@click.command("demo")
@click.option(
    "--garments",
    type=click.IntRange(1, 64),
    default=3,
    show_default=True,
    help="Simulated garments.",
)
@click.option("--duration", "duration_s", type=float, default=None, help="Stop after seconds.")
@click.pass_obj
def demo_command(invocation: Invocation, garments: int, duration_s: float | None) -> None:
    """Everything in one process: embedded PostgreSQL (both databases), a Mosquitto broker,
    simulated garments with enrolled demo wearers, the gateway and the ingester."""
    settings = invocation.settings()
    if "log_level" not in settings.model_fields_set:
        configure_logging("WARNING")  # the live table is the output; --log-level overrides
    broker_configured = "mqtt" in settings.model_fields_set
    databases_configured = settings.database.care_dsn is not None
    console = Console()

    async def main() -> None:
        async with (
            Demo(
                settings,
                garments=garments,
                broker_configured=broker_configured,
                database_configured=databases_configured,
            ) as demo,
            asyncio.TaskGroup() as group,
        ):
            group.create_task(demo.run(), name="demo")
            group.create_task(
                _display(demo, console, databases_configured=databases_configured),
                name="demo.display",
            )

    run_until_stopped(main, duration_s=duration_s)
    console.print("biogw demo: stopped")


def register(group: click.Group) -> None:
    group.add_command(demo_command)
