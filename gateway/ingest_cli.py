"""``biogw ingest`` and ``biogw retention``: the broker into the databases, and the
retention job.

Role: the command-line entries of ``gateway.ingest.service``: parse options into
``Settings``, find the databases (``care_db.databases``: configured DSNs or the embedded
server), run until Ctrl-C or SIGTERM (both stop cleanly; nothing un-committed was
acknowledged) and print where things are. ``--duration`` stops by itself (tests).

Must not: print DSNs, topics, subject ids or payloads.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from gateway.care_db import databases, run_until_stopped
from gateway.care_db import run as run_command
from gateway.config import Invocation
from gateway.ingest.service import IngestHandle, run_ingest, run_retention_once
from gateway.store.partitions import SignalSchema

__all__ = ["ingest_command", "register", "retention_command"]


def _ready(handle: IngestHandle) -> None:
    where = handle.metrics_address
    metrics = f"http://{where[0]}:{where[1]}/metrics" if where else "off"
    paths = ", ".join(i.path.value for i in handle.ingesters)
    click.echo(f"biogw ingest: paths {paths}, metrics {metrics}", err=True)


@click.command("ingest")
@click.option("--duration", "duration_s", type=float, default=None, help="Stop after seconds.")
@click.option(
    "--retention/--no-retention",
    default=False,
    help="Also run the retention job every retention.interval_s (needs the tables' owner).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=9465,
    show_default=True,
    help="Port of this process's /metrics (0: any free port).",
)
@click.pass_obj
def ingest_command(
    invocation: Invocation, duration_s: float | None, retention: bool, metrics_port: int
) -> None:
    """Store what the gateways publish: MQTT into the care and research databases."""
    settings = invocation.settings()

    async def main() -> None:
        async with databases(settings) as dbs:
            await run_ingest(
                settings,
                care_dsn=dbs.care,
                research_dsn=dbs.research,
                retention=retention,
                ready=_ready,
                metrics_port=metrics_port,
            )

    run_until_stopped(main, duration_s=duration_s)


@click.command("retention")
@click.pass_obj
def retention_command(invocation: Invocation) -> None:
    """Apply the retention periods once to both databases; print what went."""
    settings = invocation.settings()

    async def go() -> None:
        async with databases(settings) as dbs:
            targets: list[tuple[SignalSchema, str]] = [("clinical", dbs.care)]
            if dbs.research is not None:
                targets.append(("pseudo", dbs.research))
            done = await run_retention_once(settings, targets, now=datetime.now(UTC))
        for schema, (dropped, deleted) in done.items():
            click.echo(f"{schema}: {dropped} partition(s) dropped, {deleted} row(s) deleted")

    run_command(go())


def register(group: click.Group) -> None:
    group.add_command(ingest_command)
    group.add_command(retention_command)
