"""``biogw keys``: the privacy officer's handle on the key store.

Owns: opening the file key store from the configured directory and master key, showing
pseudonymization epochs per domain, rotating a domain to a new epoch and destroying an
old epoch (its pseudonyms can no longer be computed or re-derived), and making a new
master key. The master key comes from ``privacy.master_key`` (environment) or
``privacy.master_key_file``, read here, once, at the edge.

Must not: print key material other than a newly generated master key on request, nor
subject ids; store anything in a database.
"""

from __future__ import annotations

import sys

import click

from gateway.config import Invocation, Settings
from gateway.errors import BiogwError
from gateway.privacy import FileKeyStore, Pseudonymizer
from gateway.privacy.master_key import (
    generate_master_key,
    master_key_from_env,
    master_key_from_file,
)
from gateway.privacy.pseudonyms import PSEUDONYM_PURPOSE

__all__ = ["keys_group", "open_keystore", "register"]


def open_keystore(settings: Settings) -> FileKeyStore:
    """The configured key store; exit 2 when no master key is configured, 1 when the
    store refuses it (wrong key, unsafe directory)."""
    privacy = settings.privacy
    try:
        if privacy.master_key is not None:
            master = master_key_from_env(privacy.master_key.get_secret_value())
        elif privacy.master_key_file is not None:
            master = master_key_from_file(privacy.master_key_file)
        else:
            click.echo(
                "biogw: no master key: set BIOGW_PRIVACY__MASTER_KEY or"
                " [privacy] master_key_file (make one with `biogw keys new-master`)",
                err=True,
            )
            sys.exit(2)
        return FileKeyStore(privacy.keystore_dir, master)
    except BiogwError as exc:
        click.echo(f"biogw: {exc}", err=True)
        sys.exit(1)


@click.group("keys")
def keys_group() -> None:
    """Pseudonymization keys: epochs, rotation, destruction."""


@keys_group.command("status")
@click.argument("domains", nargs=-1)
@click.pass_obj
def keys_status(invocation: Invocation, domains: tuple[str, ...]) -> None:
    """Epochs of each pseudonymization DOMAIN (default: research)."""
    store = open_keystore(invocation.settings())
    pseudonymizer = Pseudonymizer(store)
    for domain in domains or ("research",):
        live = pseudonymizer.epochs(domain)
        destroyed = store.destroyed_versions(PSEUDONYM_PURPOSE, domain)
        current = live[-1] if live else None
        click.echo(
            f"{domain}: current epoch {current if current is not None else 'none'};"
            f" live {list(live)}; destroyed {list(destroyed)}"
        )


@keys_group.command("rotate")
@click.argument("domain")
@click.pass_obj
def keys_rotate(invocation: Invocation, domain: str) -> None:
    """Start a new epoch for DOMAIN: new pseudonyms from now on."""
    pseudonymizer = Pseudonymizer(open_keystore(invocation.settings()))
    try:
        epoch = pseudonymizer.rotate(domain)
    except BiogwError as exc:
        click.echo(f"biogw: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{domain}: epoch {epoch}")


@keys_group.command("destroy")
@click.argument("domain")
@click.argument("epoch", type=click.IntRange(min=1))
@click.option("--yes", is_flag=True, help="Confirm: the epoch's pseudonyms become unlinkable.")
@click.pass_obj
def keys_destroy(invocation: Invocation, domain: str, epoch: int, yes: bool) -> None:
    """Destroy an old EPOCH of DOMAIN, unrecoverably."""
    if not yes:
        click.echo("biogw: destroying a key cannot be undone; add --yes", err=True)
        sys.exit(2)
    pseudonymizer = Pseudonymizer(open_keystore(invocation.settings()))
    try:
        pseudonymizer.destroy_epoch(domain, epoch)
    except BiogwError as exc:
        click.echo(f"biogw: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{domain}: epoch {epoch} destroyed")


@keys_group.command("new-master")
def keys_new_master() -> None:
    """Print a new random master key (hex). Keep it outside every database."""
    click.echo(generate_master_key())


def register(group: click.Group) -> None:
    group.add_command(keys_group)
