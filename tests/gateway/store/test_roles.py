"""Role matrix: every role can do exactly what deploy/roles/expected_privileges.csv says.

Also checks that the privileges behave as declared when used: application roles cannot
change audit rows, append only through audit.append(), and PUBLIC holds nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.store import StorePermissionError, translate_error
from gateway.store.audit import append, verify_chain
from gateway.store.migrate import load_migrations, migrate

Conn = psycopg.AsyncConnection[Any]
MATRIX = Path(__file__).resolve().parents[3] / "deploy" / "roles" / "expected_privileges.csv"
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
SCHEMAS = ("identity", "consent", "audit", "biogw_meta", "clinical", "public")
# Roles that append audit records; the ingest role writes signal data only.
AUDITING_GROUPS = (
    "biogw_gateway",
    "biogw_owner_api",
    "biogw_clinician_api",
    "biogw_privacy_officer",
)
APP_GROUPS = (*AUDITING_GROUPS, "clinical_ingest")
APP_ROLES = APP_GROUPS + tuple(f"{g}_login" for g in APP_GROUPS)
AUDITING_ROLES = AUDITING_GROUPS + tuple(f"{g}_login" for g in AUDITING_GROUPS)


def _expected() -> dict[tuple[str, str, str], bool]:
    lines = [ln for ln in MATRIX.read_text().splitlines() if ln and not ln.startswith("#")]
    matrix: dict[tuple[str, str, str], bool] = {}
    for row in csv.DictReader(lines):
        for privilege in PRIVILEGES:
            key = (row["role"], row["table"], privilege)
            assert key not in matrix, f"duplicate row in matrix: {key}"
            assert row[privilege] in ("Y", "N"), f"bad cell {key}: {row[privilege]!r}"
            matrix[key] = row[privilege] == "Y"
    return matrix


async def _tables(conn: Conn) -> set[str]:
    cur = await conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = ANY(%s)",
        (list(SCHEMAS),),
    )
    return {str(r[0]) for r in await cur.fetchall()}


async def test_matrix_covers_every_role_and_table(admin: Conn) -> None:
    matrix = _expected()
    assert {role for role, _, _ in matrix} == set(APP_ROLES)
    assert {table for _, table, _ in matrix} == await _tables(admin)
    assert len(matrix) == len(APP_ROLES) * len(await _tables(admin)) * len(PRIVILEGES)


async def test_has_table_privilege_matches_matrix_exactly(admin: Conn) -> None:
    mismatches = []
    for (role, table, privilege), want in sorted(_expected().items()):
        cur = await admin.execute(
            "SELECT has_table_privilege(%s, %s, %s)", (role, table, privilege)
        )
        row = await cur.fetchone()
        assert row is not None
        if bool(row[0]) != want:
            mismatches.append(f"{role} {privilege} {table}: expected {want}, has {row[0]}")
    assert mismatches == []


async def test_public_holds_no_table_privilege(admin: Conn) -> None:
    cur = await admin.execute(
        "SELECT n.nspname || '.' || c.relname, a.privilege_type"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,"
        " LATERAL aclexplode(c.relacl) a"
        " WHERE n.nspname = ANY(%s) AND a.grantee = 0",
        (list(SCHEMAS),),
    )
    assert await cur.fetchall() == []


async def test_audit_append_is_the_only_write_path(admin: Conn) -> None:
    for role in AUDITING_ROLES:
        cur = await admin.execute(
            "SELECT has_function_privilege(%s, 'audit.append(text, text, text, jsonb)', 'EXECUTE')",
            (role,),
        )
        assert await cur.fetchone() == (True,), role
    cur = await admin.execute(
        "SELECT count(*) FROM pg_proc p, LATERAL aclexplode(p.proacl) a"
        " WHERE p.oid = 'audit.append(text, text, text, jsonb)'::regprocedure"
        " AND a.grantee = 0"
    )
    assert await cur.fetchone() == (0,)  # PUBLIC cannot execute it


async def _as_role(admin: Conn, role: str) -> None:
    await admin.execute(f"SET ROLE {role}".encode())


@pytest.mark.parametrize("role", [f"{g}_login" for g in AUDITING_GROUPS])
async def test_app_roles_append_but_cannot_alter_audit(admin: Conn, role: str) -> None:
    await append(admin, actor_role="setup", action="seed", object_ref="none")
    await _as_role(admin, role)
    entry = await append(admin, actor_role=role, action="read", object_ref="subject:test")
    assert entry.seq == 2
    for statement in (
        "UPDATE audit.log SET action = 'x' WHERE seq = 1",
        "DELETE FROM audit.log WHERE seq = 1",
        "TRUNCATE audit.log",
        "UPDATE audit.chain_head SET last_seq = 0",
        "INSERT INTO audit.log (seq, at, actor_role, action, object, prev_hash, hash)"
        " VALUES (9, now(), 'x', 'x', 'x', '\\x00', '\\x00')",
    ):
        with pytest.raises(psycopg.Error) as info:
            await admin.execute(statement.encode())
        assert isinstance(translate_error(info.value, "test"), StorePermissionError), statement
    await admin.execute(b"RESET ROLE")
    assert await verify_chain(admin) is None


async def test_privacy_officer_verifies_and_others_cannot_read_audit(admin: Conn) -> None:
    await append(admin, actor_role="setup", action="seed", object_ref="none")
    await _as_role(admin, "biogw_privacy_officer_login")
    assert await verify_chain(admin) is None
    await admin.execute(b"RESET ROLE")
    await _as_role(admin, "biogw_clinician_api_login")
    with pytest.raises(StorePermissionError):
        await verify_chain(admin)


async def test_clinical_ingest_cannot_append_audit_records(admin: Conn) -> None:
    for role in ("clinical_ingest", "clinical_ingest_login"):
        cur = await admin.execute(
            "SELECT has_function_privilege(%s, 'audit.append(text, text, text, jsonb)', 'EXECUTE')",
            (role,),
        )
        assert await cur.fetchone() == (False,), role


async def test_only_clinical_ingest_may_create_partitions(admin: Conn) -> None:
    function = "clinical.ensure_partitions(timestamptz, timestamptz, text[])"
    for role in APP_ROLES:
        cur = await admin.execute(
            "SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, function)
        )
        assert await cur.fetchone() == (role.startswith("clinical_ingest"),), role
    cur = await admin.execute(
        "SELECT count(*) FROM pg_proc p, LATERAL aclexplode(p.proacl) a"
        " WHERE p.oid = %s::regprocedure AND a.grantee = 0",
        (function,),
    )
    assert await cur.fetchone() == (0,)  # PUBLIC cannot execute it


RESEARCH_API_ROLES = ("research_api", "research_api_login")


async def test_research_api_reads_release_only(
    care_db: str, new_database: Callable[[], Awaitable[str]]
) -> None:
    dsn = await new_database()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await migrate(conn, load_migrations("research"))
        # A table released after the migration is readable through the default privileges.
        await conn.execute(b"CREATE TABLE release.hr_by_age (age_band text, n bigint)")
        cur = await conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            " AND n.nspname IN ('pseudo', 'release', 'biogw_meta')"
        )
        tables = [str(r[0]) for r in await cur.fetchall()]
        assert "pseudo.vitals_1m" in tables
        for role in RESEARCH_API_ROLES:
            for table in tables:
                for privilege in PRIVILEGES:
                    cur = await conn.execute(
                        "SELECT has_table_privilege(%s, %s, %s)", (role, table, privilege)
                    )
                    want = table == "release.hr_by_age" and privilege == "SELECT"
                    assert await cur.fetchone() == (want,), (role, table, privilege)
            cur = await conn.execute(
                "SELECT has_database_privilege(%s, current_database(), 'CONNECT'),"
                " has_schema_privilege(%s, 'release', 'USAGE'),"
                " has_schema_privilege(%s, 'pseudo', 'USAGE')",
                (role, role, role),
            )
            assert await cur.fetchone() == (True, True, False), role
        await conn.execute(b"SET ROLE research_api_login")
        await conn.execute(b"SELECT * FROM release.hr_by_age")
        with pytest.raises(psycopg.Error) as info:
            await conn.execute(b"SELECT * FROM pseudo.frames")
        assert isinstance(translate_error(info.value, "t"), StorePermissionError)
    async with await psycopg.AsyncConnection.connect(care_db, autocommit=True) as care:
        for role in RESEARCH_API_ROLES:
            for table in await _tables(care):
                for privilege in PRIVILEGES:
                    cur = await care.execute(
                        "SELECT has_table_privilege(%s, %s, %s)", (role, table, privilege)
                    )
                    assert await cur.fetchone() == (False,), (role, table, privilege)
