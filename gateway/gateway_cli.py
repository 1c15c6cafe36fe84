"""``biogw gateway``: run the edge (device sessions, consent router, spool, MQTT).

Role: the command-line entry of ``gateway.app.run_gateway``: parse options into
``Settings``, open the key store and the care database, run until Ctrl-C or SIGTERM
(both stop cleanly: the publisher says goodbye, the spool commits), and print where
things are. With ``--duration`` it stops by itself (tests, demos).

Must not: print subject ids, addresses or payloads.
"""

from __future__ import annotations

import click

from gateway.app import GatewayHandle, run_gateway
from gateway.care_db import care_database, run_until_stopped
from gateway.config import Invocation
from gateway.keys_cli import open_keystore

__all__ = ["gateway_command", "register"]


def _ready(handle: GatewayHandle) -> None:
    where = handle.metrics_address
    metrics = f"http://{where[0]}:{where[1]}/metrics" if where else "off"
    click.echo(
        f"biogw gateway: {len(handle.sessions)} device session(s), {handle.link.kind} link,"
        f" spool {handle.spool.path}, metrics {metrics}",
        err=True,
    )


@click.command("gateway")
@click.option("--duration", "duration_s", type=float, default=None, help="Stop after seconds.")
@click.pass_obj
def gateway_command(invocation: Invocation, duration_s: float | None) -> None:
    """Run the edge: sessions for every paired device, consent router, spool, MQTT."""
    settings = invocation.settings()
    keystore = open_keystore(settings)

    async def main() -> None:
        async with care_database(settings) as dsn:
            await run_gateway(settings, keystore, care_dsn=dsn, ready=_ready)

    run_until_stopped(main, duration_s=duration_s)


def register(group: click.Group) -> None:
    group.add_command(gateway_command)
