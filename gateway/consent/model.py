"""Consent records and events: the wearer's permissions as frozen values (no I/O).

A ``ConsentRecord`` is one provision shaped like a FHIR Consent provision: one scope, a
period, an actor (who may use the data), a purpose, the policy it was granted under and how
it was collected. Records are never edited: a ``Grant`` event introduces a record and a
``Withdrawal`` event ends it. Both are appended to the subject's event history, which
``gateway.consent.decision`` folds into fast lookup tables.

Time is UTC nanoseconds since the epoch. Periods are half-open ``[start_ns, end_ns)``: a
frame timed exactly at ``start_ns`` is covered, one timed exactly at ``end_ns`` (or at the
withdrawal's ``effective_ns``) is not.

This module must not do I/O, read clocks or generate random ids: callers pass every time
and id in, so the same events always give the same history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final
from uuid import UUID

from devices.errors import BiogwError

__all__ = [
    "DEFAULT_PURPOSE",
    "CollectionMethod",
    "ConsentError",
    "ConsentEvent",
    "ConsentRecord",
    "ConsentStatus",
    "Grant",
    "Period",
    "Scope",
    "Withdrawal",
]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")


class ConsentError(BiogwError):
    """A consent record, event or history is invalid. ``reason`` is a stable code
    (e.g. ``"bad_period"``, ``"unknown_record"``); ``detail`` is for humans and never
    contains subject ids or names."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"invalid consent ({reason}): {detail}")


class Scope(StrEnum):
    """What a consent provision permits (ARCHITECTURE.md, Consent)."""

    CORE_SERVICE = "core.service"
    """Device operation and ingestion; required for anything to leave the gateway."""
    CLINICAL_CARE = "clinical.care"
    """Identified streams to the named care team."""
    RESEARCH_INTERNAL = "research.internal"
    """The pseudonymized stream and internal statistics."""
    STATS_RELEASE = "stats.release"
    """Inclusion in aggregates that leave the organisation."""
    PRODUCT_IMPROVEMENT = "product.improvement"
    LOCATION = "location"
    XBORDER = "xborder"
    """Processing abroad."""


class ConsentStatus(StrEnum):
    """FHIR R4 ``Consent.status`` codes. A grant is always written ``active``; a record
    withdrawn or past its end reads back as ``inactive`` (FHIR has no "withdrawn" code).
    The other codes exist so stored FHIR resources round-trip; they never permit."""

    DRAFT = "draft"
    PROPOSED = "proposed"
    ACTIVE = "active"
    REJECTED = "rejected"
    INACTIVE = "inactive"
    ENTERED_IN_ERROR = "entered-in-error"


class CollectionMethod(StrEnum):
    """How the wearer's decision was captured (the receipt's ``collectionMethod``)."""

    APP = "app"
    WEB = "web"
    PAPER = "paper"
    VERBAL_WITNESSED = "verbal-witnessed"


DEFAULT_PURPOSE: Final = MappingProxyType(
    {
        # HL7 v3 PurposeOfUse codes (FHIR Consent.provision.purpose): suggestions for the
        # CLI; a record may name any purpose code. The decision does not look at purposes.
        Scope.CORE_SERVICE: "HOPERAT",
        Scope.CLINICAL_CARE: "TREAT",
        Scope.RESEARCH_INTERNAL: "HRESCH",
        Scope.STATS_RELEASE: "HRESCH",
        Scope.PRODUCT_IMPROVEMENT: "SYSDEV",
        Scope.LOCATION: "TREAT",
        Scope.XBORDER: "HOPERAT",
    }
)


@dataclass(frozen=True, slots=True)
class Period:
    """Half-open validity ``[start_ns, end_ns)`` in UTC ns; ``end_ns=None`` is open-ended."""

    start_ns: int
    end_ns: int | None = None

    def __post_init__(self) -> None:
        if self.end_ns is not None and self.end_ns <= self.start_ns:
            raise ConsentError("bad_period", "period end must be after its start")

    def contains(self, at_ns: int) -> bool:
        return self.start_ns <= at_ns and (self.end_ns is None or at_ns < self.end_ns)


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One provision as granted.

    ``actor`` names the care team or organisation that may use the data (an opaque
    reference such as ``"org:clinic-a/team:cardiology"``). ``None`` means *any actor
    acting for this scope's purpose within the controller*: the grant is not limited to a
    named recipient. A request from a named actor is covered by a record for exactly that
    actor or by a record with ``actor=None``.
    """

    record_id: UUID
    subject_id: UUID
    scope: Scope
    period: Period
    actor: str | None
    purpose: str
    policy_version: str
    policy_text_sha256: str
    collection_method: CollectionMethod
    recorded_at_ns: int
    status: ConsentStatus = ConsentStatus.ACTIVE

    def __post_init__(self) -> None:
        if self.actor is not None and not _CODE.fullmatch(self.actor):
            raise ConsentError("bad_actor", "actor must be an opaque reference code")
        if not _CODE.fullmatch(self.purpose):
            raise ConsentError("bad_purpose", "purpose must be a code")
        if not self.policy_version or len(self.policy_version) > 64:
            raise ConsentError("bad_policy", "policy version must be 1-64 characters")
        if not _SHA256_HEX.fullmatch(self.policy_text_sha256):
            raise ConsentError("bad_policy", "policy text hash must be 64 lowercase hex digits")


@dataclass(frozen=True, slots=True)
class Grant:
    """Event: the wearer granted ``record`` (its status must be ``active``)."""

    event_id: UUID
    record: ConsentRecord

    def __post_init__(self) -> None:
        if self.record.status is not ConsentStatus.ACTIVE:
            raise ConsentError("bad_status", "a grant must carry an active record")

    @property
    def subject_id(self) -> UUID:
        return self.record.subject_id

    @property
    def recorded_at_ns(self) -> int:
        return self.record.recorded_at_ns


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """Event: the wearer withdrew ``record`` from ``effective_ns`` on.

    Data timed at or after ``effective_ns`` is no longer covered by the record; data timed
    before it stays permitted for the scope and purpose it was collected under (withdrawal
    is not retroactive: erasure is a separate request). ``record`` is the record as
    granted; the history checks it matches the grant with the same id.
    """

    event_id: UUID
    record: ConsentRecord
    effective_ns: int
    recorded_at_ns: int
    collection_method: CollectionMethod

    @property
    def subject_id(self) -> UUID:
        return self.record.subject_id


ConsentEvent = Grant | Withdrawal
