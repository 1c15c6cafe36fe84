"""Consent grants for tests: one call per (subject, scope) with sensible provenance."""

from __future__ import annotations

from uuid import UUID, uuid4

from gateway.consent import CollectionMethod, ConsentRecord, Grant, Period, Scope


def grant(subject: UUID, scope: Scope, start_ns: int, recorded_ns: int | None = None) -> Grant:
    """An open-ended grant of ``scope`` from ``start_ns`` (recorded then, by default)."""
    record = ConsentRecord(
        record_id=uuid4(),
        subject_id=subject,
        scope=scope,
        period=Period(start_ns, None),
        actor=None,
        purpose="TREAT",
        policy_version="2026-01",
        policy_text_sha256="cd" * 32,
        collection_method=CollectionMethod.APP,
        recorded_at_ns=start_ns if recorded_ns is None else recorded_ns,
    )
    return Grant(uuid4(), record)
