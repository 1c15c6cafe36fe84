"""``biogw subject add`` and ``biogw consent grant|withdraw|show`` against a real care
database. The commands run their own event loop, so each runs in a worker thread."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from click.testing import CliRunner, Result

from gateway.cli import main
from gateway.consent import Scope, decide
from gateway.store.consents import load_history


def _care_fixtures() -> Any:
    """tests/gateway/store/conftest.py is not visible from here; load it under its own name
    for its database fixtures (its session server is then shared only within this module)."""
    path = Path(__file__).parent / "store" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_care_db_fixtures", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_fixtures = _care_fixtures()
server_dsn = _fixtures.server_dsn
empty_db = _fixtures.empty_db
care_db = _fixtures.care_db

NAME = "Canary Yamada-7f3c"
EMAIL = "canary-7f3c@example.org"


async def biogw(dsn: str | None, args: Sequence[str]) -> Result:
    env = {"BIOGW_DATABASE__CARE_DSN": dsn, "BIOGW_CONFIG": None}
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)


async def rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(query)
        return await cur.fetchall()


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.txt"
    path.write_text("biogw privacy policy, version 2026-01\n")
    return path


async def enrol(care_db: str) -> str:
    result = await biogw(
        care_db,
        [
            "subject",
            "add",
            "--name",
            NAME,
            "--birth-date",
            "1984-05-06",
            "--email",
            EMAIL,
            "--country",
            "jp",
            "--height-cm",
            "172",
            "--sex",
            "male",
        ],
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


async def test_subject_add_prints_only_the_new_id(care_db: str) -> None:
    subject = await enrol(care_db)
    assert await rows(care_db, "SELECT id::text, name, email, country FROM identity.subjects") == [
        (subject, NAME, EMAIL, "JP")
    ]
    assert str(UUID(subject)) == subject


async def test_grant_withdraw_show(care_db: str, policy: Path) -> None:
    subject = await enrol(care_db)
    granted = await biogw(
        care_db,
        [
            "consent",
            "grant",
            subject,
            "core.service",
            "clinical.care",
            "research.internal",
            "--method",
            "app",
            "--policy",
            str(policy),
            "--policy-version",
            "2026-01",
        ],
    )
    assert granted.exit_code == 0, granted.output
    grant_receipt = json.loads(granted.stdout)
    assert grant_receipt["action"] == "grant"
    assert grant_receipt["scopes"] == ["clinical.care", "core.service", "research.internal"]
    assert grant_receipt["piiPrincipalId"] == subject
    assert grant_receipt["policyVersion"] == "2026-01"

    withdrawn = await biogw(
        care_db, ["consent", "withdraw", subject, "research.internal", "--method", "paper"]
    )
    assert withdrawn.exit_code == 0, withdrawn.output
    withdraw_receipt = json.loads(withdrawn.stdout)
    assert withdraw_receipt["action"] == "withdraw"
    assert withdraw_receipt["scopes"] == ["research.internal"]
    assert withdraw_receipt["collectionMethod"] == "paper"

    for output in (granted.output, withdrawn.output):
        assert NAME not in output
        assert EMAIL not in output
        assert "Canary" not in output

    shown = await biogw(care_db, ["consent", "show", subject])
    assert shown.exit_code == 0, shown.output
    view = json.loads(shown.stdout)
    assert view["activeScopes"] == ["clinical.care", "core.service"]
    status = {r["scope"]: r["status"] for r in view["records"]}
    assert status["research.internal"] == "inactive"
    assert NAME not in shown.output
    assert EMAIL not in shown.output

    # The database holds the same answer the router would get.
    async with await psycopg.AsyncConnection.connect(care_db) as conn:
        history = await load_history(conn, UUID(subject))
    now_ns = view["atNs"]
    assert not decide(history, scope=Scope.RESEARCH_INTERNAL, at_ns=now_ns, actor="x").permitted
    assert decide(history, scope=Scope.CLINICAL_CARE, at_ns=now_ns, actor="x").permitted
    assert await rows(
        care_db, "SELECT kind, count(*) FROM consent.events GROUP BY 1 ORDER BY 1"
    ) == [
        ("grant", 3),
        ("withdraw", 1),
    ]
    actions = await rows(care_db, "SELECT action FROM audit.log ORDER BY seq")
    assert actions == [("subject.add",), ("consent.grant",), ("consent.withdraw",)]


async def test_withdraw_of_a_scope_never_granted_writes_nothing(care_db: str) -> None:
    subject = await enrol(care_db)
    result = await biogw(
        care_db, ["consent", "withdraw", subject, "research.internal", "--method", "app"]
    )
    assert result.exit_code != 0
    assert "research.internal is not granted" in result.stderr
    assert result.stdout == ""
    assert await rows(care_db, "SELECT count(*) FROM consent.records") == [(0,)]
    assert await rows(care_db, "SELECT count(*) FROM consent.events") == [(0,)]
    assert await rows(care_db, "SELECT action FROM audit.log") == [("subject.add",)]


async def test_unknown_subject_is_an_error(care_db: str) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    result = await biogw(care_db, ["consent", "show", missing])
    assert result.exit_code == 1
    assert "unknown_subject" in result.stderr


async def test_without_a_dsn_commands_use_the_embedded_database(tmp_path: Path) -> None:
    env = {
        "BIOGW_DATABASE__CARE_DSN": None,
        "BIOGW_DATABASE__EMBEDDED_DIR": str(tmp_path / "pgdata"),
        "BIOGW_CONFIG": None,
    }
    args = ["consent", "show", "00000000-0000-4000-8000-000000000000"]
    result = await asyncio.to_thread(CliRunner().invoke, main, args, env=env)
    # The embedded database was created and migrated; the subject is simply unknown there.
    assert result.exit_code == 1, result.output
    assert "unknown_subject" in result.stderr
    assert (tmp_path / "pgdata" / "PG_VERSION").exists()
