"""Invariant 3 (issue 3, acceptance 6): no key material in any database dump.

Subjects are enrolled and consented in a care database, the privacy layer derives their
pseudonyms (research and a second domain, two epochs) and date shifts from a file key
store with known test keys, the audit log records the work, and then ``pg_dump`` of the
whole database is searched for every key in every encoding a careless program might
store it in: raw bytes, hex (both cases), base64 (standard and url-safe), base32.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import uuid
from pathlib import Path

import psycopg
import pytest

from gateway.privacy.keystore import FileKeyStore, KeyId
from gateway.privacy.pseudonyms import PSEUDONYM_PURPOSE, DateShifter, Pseudonymizer
from gateway.store import audit

MASTER_KEY = bytes(range(32))  # a known test key: if it leaks, the test finds it


def _pg_dump() -> str:
    """The pg_dump that matches the server: the machine's, or the embedded one's."""
    if os.environ.get("BIOGW_TEST_DSN"):
        found = shutil.which("pg_dump")
    else:
        import pgserver  # the embedded server's own binaries

        found = str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump")
    if found is None:
        pytest.skip("pg_dump not installed")
    return found


def _encodings(secret: bytes) -> list[bytes]:
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret),
        base64.b64encode(secret).rstrip(b"="),
        base64.b32encode(secret),
        base64.b32encode(secret).lower(),
    ]


@pytest.mark.timeout(60)
async def test_database_dump_contains_no_key_material(care_db: str, tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path / "keys", MASTER_KEY)
    pseudonymizer = Pseudonymizer(store)
    shifter = DateShifter(store)
    subjects = [uuid.uuid4() for _ in range(5)]
    async with await psycopg.AsyncConnection.connect(care_db) as conn:
        for n, subject in enumerate(subjects):
            await conn.execute(
                "INSERT INTO identity.subjects (id, name, email) VALUES (%s, %s, %s)",
                (subject, f"Canary Person {n}", f"canary{n}@example.org"),
            )
            shifter.shift_ns(subject)  # creates the subject's date-shift secret in the store
            research = pseudonymizer.pseudonym(subject, "research")
            partner = pseudonymizer.pseudonym(subject, "partner")
            await audit.append(
                conn,
                actor_role="biogw_gateway",
                action="pseudonymize",
                object_ref=f"subject:{subject}",
                details={"pseudonyms": [research, partner]},
            )
        pseudonymizer.rotate("research")
        for subject in subjects:
            await audit.append(
                conn,
                actor_role="biogw_gateway",
                action="pseudonymize",
                object_ref=f"subject:{subject}",
                details={"pseudonym": pseudonymizer.pseudonym(subject, "research")},
            )
        await conn.commit()

    process = await asyncio.create_subprocess_exec(
        _pg_dump(),
        "--dbname",
        care_db,
        "--no-owner",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    dump, errors = await process.communicate()
    assert process.returncode == 0, errors.decode(errors="replace")
    assert b"Canary Person 0" in dump  # the dump is real and has the identified data

    secrets_to_find = {"master": MASTER_KEY}
    for domain in ("research", "partner"):
        for epoch in store.versions(PSEUDONYM_PURPOSE, domain):
            key = store.get(KeyId(PSEUDONYM_PURPOSE, domain, epoch))
            assert len(key) >= 16
            secrets_to_find[f"{domain}.e{epoch}"] = key
    assert len(secrets_to_find) == 4  # master + research e1, e2 + partner e1
    for name, secret in secrets_to_find.items():
        for encoded in _encodings(secret):
            assert encoded not in dump, f"key {name} found in the dump"
    # The key files themselves are not in the dump either (nor their ciphertext).
    for path in (tmp_path / "keys").iterdir():
        content = path.read_bytes()
        if len(content) >= 16:
            assert content not in dump
