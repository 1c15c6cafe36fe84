"""Tests for gateway.consent.receipt: Kantara-style consent receipts.

Field names checked against the Kantara Consent Receipt Specification v1.1.0 (2018-02-20)
JSON example: version "KI-CR-v1.1.0", jurisdiction, consentTimestamp (epoch seconds),
collectionMethod, consentReceiptID, language, piiPrincipalId, services[].purposes[].
"""

from __future__ import annotations

import json
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.consent import (
    CollectionMethod,
    ConsentError,
    ConsentEvent,
    ConsentRecord,
    Grant,
    Period,
    Scope,
    Withdrawal,
    receipt_for,
    to_json,
)

SUBJECT = UUID("5f0c6a8e-1d2b-4c3a-9e8f-7a6b5c4d3e2f")
CANARY_NAME = "Zebulon Canaryfield"
CANARY_EMAIL = "zebulon.canary@example.org"
REFERENCE = "subj-ref:7Q2K9X4M"
POLICY_SHA = "0123456789abcdef" * 4


def record(
    n: int, scope: Scope, *, actor: str | None = None, recorded_at_ns: int = 0
) -> ConsentRecord:
    return ConsentRecord(
        record_id=UUID(int=n),
        subject_id=SUBJECT,
        scope=scope,
        period=Period(1_700_000_000_000_000_000, None),
        actor=actor,
        purpose="HRESCH" if scope is Scope.RESEARCH_INTERNAL else "TREAT",
        policy_version="2026-01",
        policy_text_sha256=POLICY_SHA,
        collection_method=CollectionMethod.PAPER,
        recorded_at_ns=recorded_at_ns or 1_700_000_000_123_456_789,
    )


def test_grant_receipt_fields() -> None:
    rec = record(1, Scope.CLINICAL_CARE, actor="org:clinic-a/team:cardio")
    r = receipt_for(Grant(UUID(int=9), rec), REFERENCE, receipt_id=UUID(int=42), issued_at_ns=5)
    assert r["version"] == "KI-CR-v1.1.0"
    assert r["consentReceiptID"] == str(UUID(int=42))
    assert r["consentTimestamp"] == 1_700_000_000
    assert r["consentTimestampNs"] == 1_700_000_000_123_456_789
    assert r["piiPrincipalId"] == REFERENCE
    assert r["action"] == "grant"
    assert r["collectionMethod"] == "paper"
    assert r["scopes"] == ["clinical.care"]
    assert r["purposes"] == ["TREAT"]
    assert (r["policyVersion"], r["policyTextSha256"]) == ("2026-01", POLICY_SHA)
    services = r["services"]
    assert isinstance(services, list)
    assert services[0] == {
        "service": "clinical.care",
        "recordId": str(UUID(int=1)),
        "eventId": str(UUID(int=9)),
        "actor": "org:clinic-a/team:cardio",
        "periodStartNs": 1_700_000_000_000_000_000,
        "periodEndNs": None,
        "purposes": [
            {
                "purpose": "TREAT",
                "consentType": "EXPLICIT",
                "primaryPurpose": True,
                "termination": "withdrawal or period end",
                "thirdPartyDisclosure": True,
            }
        ],
    }


def test_withdrawal_receipt_covers_several_scopes() -> None:
    recs = [record(1, Scope.RESEARCH_INTERNAL), record(2, Scope.CLINICAL_CARE)]
    events = [
        Withdrawal(
            UUID(int=10 + i),
            rec,
            1_800_000_000_000_000_000,
            1_800_000_000_000_000_000,
            CollectionMethod.APP,
        )
        for i, rec in enumerate(recs)
    ]
    r = receipt_for(events, REFERENCE, receipt_id=UUID(int=43), issued_at_ns=6)
    assert r["action"] == "withdraw"
    assert r["collectionMethod"] == "app"
    assert r["scopes"] == ["clinical.care", "research.internal"]
    assert r["purposes"] == ["HRESCH", "TREAT"]
    services = r["services"]
    assert isinstance(services, list)
    assert [s["effectiveNs"] for s in services if isinstance(s, dict)] == [
        1_800_000_000_000_000_000
    ] * 2


def test_receipt_json_has_no_subject_id_name_or_email() -> None:
    rec = record(1, Scope.CORE_SERVICE)
    text = to_json(
        receipt_for(Grant(UUID(int=9), rec), REFERENCE, receipt_id=UUID(int=1), issued_at_ns=0)
    )
    for secret in (str(SUBJECT), SUBJECT.hex, CANARY_NAME, CANARY_EMAIL, "@"):
        assert secret not in text


@pytest.mark.parametrize("reference", [CANARY_EMAIL, CANARY_NAME, "short", "", "ref/with/slash"])
def test_subject_reference_must_be_opaque(reference: str) -> None:
    with pytest.raises(ConsentError) as info:
        receipt_for(
            Grant(UUID(int=9), record(1, Scope.CORE_SERVICE)),
            reference,
            receipt_id=UUID(int=1),
            issued_at_ns=0,
        )
    assert info.value.reason == "bad_subject_reference"


def test_one_receipt_is_one_transaction() -> None:
    rec = record(1, Scope.CORE_SERVICE)
    grant = Grant(UUID(int=9), rec)
    withdrawal = Withdrawal(UUID(int=10), rec, 5, rec.recorded_at_ns, CollectionMethod.PAPER)
    other_time = Grant(UUID(int=11), record(2, Scope.LOCATION, recorded_at_ns=7))
    pairs: list[list[ConsentEvent]] = [[grant, withdrawal], [grant, other_time]]
    for events in pairs:
        with pytest.raises(ConsentError) as info:
            receipt_for(events, REFERENCE, receipt_id=UUID(int=1), issued_at_ns=0)
        assert info.value.reason == "mixed_receipt"
    with pytest.raises(ConsentError) as info:
        receipt_for([], REFERENCE, receipt_id=UUID(int=1), issued_at_ns=0)
    assert info.value.reason == "empty_receipt"


@given(
    scopes=st.lists(st.sampled_from(list(Scope)), min_size=1, max_size=7, unique=True),
    receipt_int=st.integers(0, 2**128 - 1),
    issued=st.integers(0, 2**63 - 1),
)
def test_to_json_is_canonical(scopes: list[Scope], receipt_int: int, issued: int) -> None:
    events = [Grant(UUID(int=100 + i), record(i + 1, s)) for i, s in enumerate(scopes)]
    r = receipt_for(events, REFERENCE, receipt_id=UUID(int=receipt_int), issued_at_ns=issued)
    text = to_json(r)
    assert json.loads(text) == r
    assert to_json(json.loads(text)) == text
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    assert text.isascii()
