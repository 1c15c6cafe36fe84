"""``biogw subject add`` and ``biogw consent grant|withdraw|show``: enrolment and consent
from the command line, against the care database (``[database] care_dsn``, or the embedded
one when unset; see ``gateway.care_db``).

Grant and withdraw take the same shape (``SUBJECT SCOPE... --method ...``), write one
record version and one event per scope in one transaction (which notifies running
gateways), append an audit record, and print the consent receipt as JSON on stdout.
Receipts and ``show`` name the wearer only by the opaque subject reference.

Must not: read configuration other than through the invocation's ``settings()``, or print
or log names and contacts (``subject add`` prints only the new id).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import Any, get_args

import click
import psycopg

from gateway.care_db import care_database, connect, run
from gateway.config import Invocation
from gateway.consent import (
    DEFAULT_PURPOSE,
    CollectionMethod,
    ConsentError,
    ConsentEvent,
    ConsentHistory,
    ConsentRecord,
    Grant,
    Period,
    Scope,
    Withdrawal,
    receipt_for,
    to_json,
)
from gateway.store import audit
from gateway.store.consents import append_events, load_history
from gateway.store.identity import Sex, add_subject, get_subject, receipt_reference

__all__ = ["consent_group", "register", "subject_group"]

_ACTOR_ROLE = "biogw-cli"
_SCOPES = click.Choice([s.value for s in Scope])
_METHODS = click.Choice([m.value for m in CollectionMethod])


def _now_ns() -> int:
    """Wall-clock UTC ns, whole microseconds (what the database keeps)."""
    return time.time_ns() // 1000 * 1000


@click.group("subject")
def subject_group() -> None:
    """Enrol the people biogw serves."""


@subject_group.command("add")
@click.option("--name", required=True)
@click.option("--birth-date", type=click.DateTime(formats=["%Y-%m-%d"]), required=True)
@click.option("--email", required=True)
@click.option("--phone")
@click.option("--country", help="ISO 3166-1 alpha-2 code, e.g. JP.")
@click.option("--height-cm", type=float)
@click.option("--weight-kg", type=float)
@click.option("--sex", type=click.Choice(list(get_args(Sex))))
@click.pass_obj
def subject_add(
    invocation: Invocation,
    name: str,
    birth_date: datetime,
    email: str,
    phone: str | None,
    country: str | None,
    height_cm: float | None,
    weight_kg: float | None,
    sex: Sex | None,
) -> None:
    """Enrol a subject; print its new id."""
    settings = invocation.settings()

    async def go() -> None:
        async with (
            care_database(settings) as dsn,
            await connect(dsn) as conn,
            conn.transaction(),
        ):
            subject_id = await add_subject(
                conn,
                name=name,
                birth_date=birth_date.date(),
                email=email,
                phone=phone,
                country=country.upper() if country else None,
                height_cm=height_cm,
                weight_kg=weight_kg,
                sex=sex,
            )
            await audit.append(
                conn,
                actor_role=_ACTOR_ROLE,
                action="subject.add",
                object_ref=f"subject:{subject_id}",
            )
        click.echo(str(subject_id))

    run(go())


@click.group("consent")
def consent_group() -> None:
    """Grant, withdraw and show a subject's consent; grant and withdraw print receipts."""


async def _subject_history(conn: psycopg.AsyncConnection[Any], subject: str) -> ConsentHistory:
    try:
        subject_id = uuid.UUID(subject)
    except ValueError:
        raise click.BadParameter("not a subject id", param_hint="SUBJECT") from None
    if await get_subject(conn, subject_id) is None:
        raise ConsentError("unknown_subject", "no such subject")
    return await load_history(conn, subject_id)


def _grants(
    history: ConsentHistory, scopes: Sequence[str], *, opts: dict[str, Any], now_ns: int
) -> list[ConsentEvent]:
    policy = opts["policy"].read_bytes()
    return [
        Grant(
            uuid.uuid4(),
            ConsentRecord(
                record_id=uuid.uuid4(),
                subject_id=history.subject_id,
                scope=Scope(scope),
                period=Period(now_ns, None),
                actor=opts["actor"],
                purpose=opts["purpose"] or DEFAULT_PURPOSE[Scope(scope)],
                policy_version=opts["policy_version"],
                policy_text_sha256=hashlib.sha256(policy).hexdigest(),
                collection_method=CollectionMethod(opts["method"]),
                recorded_at_ns=now_ns,
            ),
        )
        for scope in dict.fromkeys(scopes)
    ]


def _withdrawals(
    history: ConsentHistory, scopes: Sequence[str], *, method: str, now_ns: int
) -> list[ConsentEvent]:
    events: list[ConsentEvent] = []
    for scope in dict.fromkeys(scopes):
        records = history.open_records(Scope(scope), at_ns=now_ns)
        if not records:
            raise ConsentError("not_granted", f"scope {scope} is not granted; nothing withdrawn")
        events.extend(
            Withdrawal(uuid.uuid4(), r, now_ns, now_ns, CollectionMethod(method)) for r in records
        )
    return events


def _receipts(events: list[ConsentEvent], subject_id: uuid.UUID, now_ns: int) -> list[str]:
    """One receipt per policy version (a withdrawal may end records of several)."""

    def policy(e: ConsentEvent) -> tuple[str, str]:
        return (e.record.policy_version, e.record.policy_text_sha256)

    return [
        to_json(
            receipt_for(
                list(group),
                receipt_reference(subject_id),
                receipt_id=uuid.uuid4(),
                issued_at_ns=now_ns,
            )
        )
        for _, group in groupby(sorted(events, key=policy), key=policy)
    ]


def _change(invocation: Invocation, subject: str, scopes: Sequence[str], **opts: Any) -> None:
    settings = invocation.settings()

    async def go() -> None:
        async with care_database(settings) as dsn, await connect(dsn) as conn:
            history = await _subject_history(conn, subject)
            now_ns = _now_ns()
            if opts["action"] == "grant":
                events = _grants(history, scopes, opts=opts, now_ns=now_ns)
            else:
                events = _withdrawals(history, scopes, method=opts["method"], now_ns=now_ns)
            async with conn.transaction():
                await append_events(conn, events, actor_role=_ACTOR_ROLE)
                await audit.append(
                    conn,
                    actor_role=_ACTOR_ROLE,
                    action=f"consent.{opts['action']}",
                    object_ref=f"subject:{history.subject_id}",
                    details={"scopes": sorted(set(scopes))},
                )
        for receipt in _receipts(events, history.subject_id, _now_ns()):
            click.echo(receipt)

    run(go())


_method_option = click.option(
    "--method", type=_METHODS, required=True, help="How the wearer's decision was collected."
)


@consent_group.command("grant")
@click.argument("subject")
@click.argument("scopes", nargs=-1, required=True, type=_SCOPES)
@_method_option
@click.option(
    "--policy",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="Policy text the wearer agreed to.",
)
@click.option("--policy-version", required=True)
@click.option("--actor", help="Care team or organisation the grant is limited to.")
@click.option("--purpose", help="Purpose code (default: the scope's usual one).")
@click.pass_obj
def consent_grant(
    invocation: Invocation,
    subject: str,
    scopes: tuple[str, ...],
    method: str,
    policy: Path,
    policy_version: str,
    actor: str | None,
    purpose: str | None,
) -> None:
    """Grant SCOPE... to SUBJECT from now on; print the receipt."""
    opts = {"policy": policy, "policy_version": policy_version, "actor": actor, "purpose": purpose}
    _change(invocation, subject, scopes, action="grant", method=method, **opts)


@consent_group.command("withdraw")
@click.argument("subject")
@click.argument("scopes", nargs=-1, required=True, type=_SCOPES)
@_method_option
@click.pass_obj
def consent_withdraw(
    invocation: Invocation, subject: str, scopes: tuple[str, ...], method: str
) -> None:
    """Withdraw SCOPE... of SUBJECT from now on; print the receipt. A scope that is not
    granted is an error and nothing is written."""
    _change(invocation, subject, scopes, action="withdraw", method=method)


def _record_json(history: ConsentHistory, record: ConsentRecord, now_ns: int) -> dict[str, Any]:
    return {
        "scope": record.scope.value,
        "recordId": str(record.record_id),
        "status": history.status_of(record.record_id, at_ns=now_ns).value,
        "actor": record.actor,
        "purpose": record.purpose,
        "periodStartNs": record.period.start_ns,
        "periodEndNs": record.period.end_ns,
        "policyVersion": record.policy_version,
        "recordedAtNs": record.recorded_at_ns,
    }


@consent_group.command("show")
@click.argument("subject")
@click.argument("scopes", nargs=-1, type=_SCOPES)
@click.pass_obj
def consent_show(invocation: Invocation, subject: str, scopes: tuple[str, ...]) -> None:
    """Show SUBJECT's consent records (only SCOPE... if given) as JSON."""
    settings = invocation.settings()

    async def go() -> None:
        async with care_database(settings) as dsn, await connect(dsn) as conn:
            history = await _subject_history(conn, subject)
        now_ns = _now_ns()
        wanted = {Scope(s) for s in scopes} or set(Scope)
        records = [_record_json(history, r, now_ns) for r in history.records if r.scope in wanted]
        active = sorted(
            {
                r["scope"]
                for r in records
                if r["status"] == "active" and r["periodStartNs"] <= now_ns
            }
        )
        shown = {
            "subject": receipt_reference(history.subject_id),
            "atNs": now_ns,
            "activeScopes": active,
            "records": records,
        }
        click.echo(json.dumps(shown, sort_keys=True))

    run(go())


def register(main: click.Group) -> None:
    """Add ``subject`` and ``consent`` to the ``biogw`` command group."""
    main.add_command(subject_group)
    main.add_command(consent_group)
