"""Consent receipts in the spirit of the Kantara Consent Receipt Specification v1.1.0.

``receipt_for`` turns one or more grant or withdrawal events (one action, one subject, one
policy, one collection method: what a single ``biogw consent grant|withdraw`` produces)
into a JSON-serialisable dict; ``to_json`` renders it canonically (sorted keys, compact
separators, ASCII), so the same events give byte-identical receipts.

Field names follow Kantara v1.1 where one fits (``version``, ``jurisdiction``,
``consentTimestamp`` in whole seconds, ``collectionMethod``, ``consentReceiptID``,
``language``, ``piiPrincipalId``, ``services[].purposes[]``, ``sensitive``, ``spiCat``);
biogw adds ``action``, the policy version and text hash, the record ids, actors and
nanosecond times. The subject appears only as the caller's opaque reference
(``piiPrincipalId``): never a name, email or the subject id from the events.

This module must not do I/O, read clocks, generate ids or log: the caller passes the
receipt id and issue time, and stores or prints the result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Final, TypeAlias
from uuid import UUID

from gateway.consent.model import ConsentError, ConsentEvent, Grant, Withdrawal

__all__ = ["RECEIPT_VERSION", "JsonValue", "Receipt", "receipt_for", "to_json"]

JsonValue: TypeAlias = str | int | bool | list["JsonValue"] | dict[str, "JsonValue"] | None
Receipt: TypeAlias = dict[str, JsonValue]

RECEIPT_VERSION: Final = "KI-CR-v1.1.0"
_SUBJECT_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")
_NS_PER_S: Final = 1_000_000_000


def _action(event: ConsentEvent) -> str:
    return "grant" if isinstance(event, Grant) else "withdraw"


def _service(event: ConsentEvent) -> JsonValue:
    record = event.record
    purpose: dict[str, JsonValue] = {
        "purpose": record.purpose,
        "consentType": "EXPLICIT",
        "primaryPurpose": True,
        "termination": "withdrawal or period end",
        "thirdPartyDisclosure": record.actor is not None,
    }
    service: dict[str, JsonValue] = {
        "service": record.scope.value,
        "recordId": str(record.record_id),
        "eventId": str(event.event_id),
        "actor": record.actor,
        "periodStartNs": record.period.start_ns,
        "periodEndNs": record.period.end_ns,
        "purposes": [purpose],
    }
    if isinstance(event, Withdrawal):
        service["effectiveNs"] = event.effective_ns
    return service


def _check_uniform(events: Sequence[ConsentEvent]) -> None:
    first = events[0]
    for event in events[1:]:
        if _action(event) != _action(first):
            raise ConsentError("mixed_receipt", "one receipt covers grants or withdrawals")
        if event.subject_id != first.subject_id:
            raise ConsentError("mixed_receipt", "one receipt covers one subject")
        if (event.record.policy_version, event.record.policy_text_sha256) != (
            first.record.policy_version,
            first.record.policy_text_sha256,
        ):
            raise ConsentError("mixed_receipt", "one receipt covers one policy version")
        if _method(event) != _method(first) or event.recorded_at_ns != first.recorded_at_ns:
            raise ConsentError("mixed_receipt", "one receipt covers one transaction")


def _method(event: ConsentEvent) -> str:
    if isinstance(event, Withdrawal):
        return event.collection_method.value
    return event.record.collection_method.value


def receipt_for(
    event: ConsentEvent | Sequence[ConsentEvent],
    subject_reference: str,
    *,
    receipt_id: UUID,
    issued_at_ns: int,
    jurisdiction: str = "JP",
    language: str = "en",
) -> Receipt:
    """A receipt for one consent transaction (one event, or several recorded together).

    ``subject_reference`` is an opaque reference the wearer can quote (8-128 characters of
    ``A-Z a-z 0-9 . _ : -``; no ``@``, so never an email address). Raises ``ConsentError``
    for an invalid reference, no events, or events that are not one transaction.
    """
    events = [event] if isinstance(event, Grant | Withdrawal) else list(event)
    if not events:
        raise ConsentError("empty_receipt", "a receipt needs at least one event")
    if not _SUBJECT_REFERENCE.fullmatch(subject_reference):
        raise ConsentError("bad_subject_reference", "subject reference must be an opaque code")
    _check_uniform(events)
    first = events[0]
    scopes: list[JsonValue] = [*sorted({e.record.scope.value for e in events})]
    purposes: list[JsonValue] = [*sorted({e.record.purpose for e in events})]
    services: list[JsonValue] = [_service(e) for e in events]
    return {
        "version": RECEIPT_VERSION,
        "jurisdiction": jurisdiction,
        "consentTimestamp": first.recorded_at_ns // _NS_PER_S,
        "consentTimestampNs": first.recorded_at_ns,
        "issuedAtNs": issued_at_ns,
        "collectionMethod": _method(first),
        "consentReceiptID": str(receipt_id),
        "language": language,
        "piiPrincipalId": subject_reference,
        "action": _action(first),
        "policyVersion": first.record.policy_version,
        "policyTextSha256": first.record.policy_text_sha256,
        "scopes": scopes,
        "purposes": purposes,
        "services": services,
        "sensitive": True,
        "spiCat": ["health"],
    }


def to_json(receipt: Receipt) -> str:
    """Canonical JSON: sorted keys, no insignificant whitespace, ASCII only, no NaN."""
    return json.dumps(
        receipt, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
