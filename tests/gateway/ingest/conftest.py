"""Fixtures and builders for the ingest tests.

Databases: the store tests' fixtures (a fresh migrated care database per test on the
configured or an embedded server) plus a fresh research database; ``ingest_db`` is either,
by path, with the DSN of its INSERT-only ingest login role. Builders make frames and gaps
with the project's own types and encode them with ``wire.encode_*``, topic included.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from devices.frame import FloatArray, Frame, Int64Array, Quality, StreamKind, Timebase, Unit
from gateway.ingest import IngestPath
from gateway.router import ClinicalFrame, ClinicalGap, ResearchFrame, ResearchGap
from gateway.store.migrate import load_migrations, migrate
from gateway.transport import wire
from gateway.transport.topics import TopicLayout
from gateway.transport.wire import Gap, GapCause
from tests.gateway.store.conftest import admin, care_db, empty_db, new_database, server_dsn

__all__ = [
    "LAYOUT",
    "NOW_NS",
    "IngestDb",
    "admin",
    "care_db",
    "clinical_frame",
    "clinical_gap",
    "empty_db",
    "new_database",
    "pseudonym",
    "research_frame",
    "research_gap",
    "server_dsn",
]

LAYOUT = TopicLayout("biogwtest/v1")
NOW_NS = 1_795_000_000_000_000_000
"""2026-11-18T...Z: the tests' fixed "now"."""
DAY_NS = 86_400 * 10**9
SUBJECT = UUID("12345678-9abc-4def-8123-456789abcdef")
DEVICE = "0d4f6c1e-8a53-4a53-9d6b-6b8f2c1e9a10"
RECORD = UUID("00000000-0000-4000-8000-000000000001")
Message = tuple[str, bytes]


def pseudonym(i: int = 0) -> str:
    """A well-formed research pseudonym (``ps1.<domain>.e<epoch>.<32 base32 chars>``)."""
    return f"ps1.research.e1.{'abcdefghijklmnopqrstuvwxyz234567'[i % 32] * 32}"


def _ecg(n: int, seed: int) -> FloatArray:
    return np.random.default_rng(seed).normal(0.0, 250.0, size=n)


def clinical_frame(
    *,
    subject: UUID = SUBJECT,
    device: str = DEVICE,
    time_ns: int = NOW_NS - DAY_NS,
    sequence: int | None = 1,
    n: int = 100,
    stream: StreamKind = StreamKind.ECG,
    timebase: Timebase = Timebase.UTC,
    channels: tuple[str, ...] = (),
    samples: FloatArray | None = None,
    offsets_ns: Int64Array | None = None,
    unit: Unit = Unit.MICROVOLT,
    quality: Quality = Quality.CONTACT_SUPPORTED,
) -> tuple[ClinicalFrame, Message]:
    values = _ecg(n, sequence or 0) if samples is None else samples
    frame = Frame(
        device,
        stream,
        time_ns,
        timebase,
        values,
        unit,
        fs_hz=None if offsets_ns is not None else 250.0,
        offsets_ns=offsets_ns,
        sequence=sequence,
        quality=quality,
        channels=channels,
    )
    value = ClinicalFrame(subject, frame, RECORD)
    return value, (LAYOUT.clinical(subject, stream), wire.encode_clinical(value))


def research_frame(
    *,
    name: str | None = None,
    time_ns: int = NOW_NS - DAY_NS,
    sequence: int | None = 1,
    n: int = 100,
    stream: StreamKind = StreamKind.ECG,
    channels: tuple[str, ...] = (),
    samples: FloatArray | None = None,
    offsets_ns: Int64Array | None = None,
    unit: Unit = Unit.MICROVOLT,
    quality: Quality = Quality.CONTACT_SUPPORTED,
) -> tuple[ResearchFrame, Message]:
    value = ResearchFrame(
        pseudonym() if name is None else name,
        stream,
        time_ns,
        _ecg(n, sequence or 0) if samples is None else samples,
        unit,
        None if offsets_ns is not None else 250.0,
        offsets_ns,
        sequence,
        quality,
        channels,
    )
    return value, (LAYOUT.research(stream), wire.encode_research(value))


def clinical_gap(
    *,
    subject: UUID = SUBJECT,
    device: str = DEVICE,
    start_ns: int = NOW_NS - DAY_NS,
    length_ns: int = 4_000_000_000,
    missing: int = 1000,
    stream: StreamKind = StreamKind.ECG,
) -> tuple[ClinicalGap, Message]:
    gap = Gap(stream, start_ns, start_ns + length_ns, missing, GapCause.LINK_LOSS)
    value = ClinicalGap(subject, device, gap, RECORD)
    return value, (LAYOUT.clinical(subject, stream, gap=True), wire.encode_clinical_gap(value))


def research_gap(
    *,
    name: str | None = None,
    start_ns: int = NOW_NS - DAY_NS,
    length_ns: int = 4_000_000_000,
    missing: int = 1000,
    stream: StreamKind = StreamKind.ECG,
) -> tuple[ResearchGap, Message]:
    gap = Gap(stream, start_ns, start_ns + length_ns, missing, GapCause.DEVICE_SKIP)
    value = ResearchGap(pseudonym() if name is None else name, gap)
    return value, (LAYOUT.research(stream, gap=True), wire.encode_research_gap(value))


def new_subject(i: int) -> tuple[UUID, str]:
    """A subject id and a device key (canonical UUID strings) for subject number ``i``."""
    return uuid.UUID(int=(i + 1) << 70, version=4), str(uuid.UUID(int=(i + 1) << 40, version=4))


@dataclass(frozen=True, slots=True)
class IngestDb:
    """One migrated database for ``path``: superuser DSN and the ingest login's DSN."""

    path: IngestPath
    admin_dsn: str
    ingest_dsn: str

    @property
    def schema(self) -> str:
        return self.path.schema


@pytest.fixture(params=[IngestPath.CLINICAL, IngestPath.RESEARCH], ids=lambda p: str(p))
async def ingest_db(
    request: pytest.FixtureRequest, new_database: Callable[[], Awaitable[str]]
) -> IngestDb:
    """A fresh care (clinical) or research database, migrated, for each path."""
    path: IngestPath = request.param
    dsn = await new_database()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        which = "care" if path is IngestPath.CLINICAL else "research"
        await migrate(conn, load_migrations(which))
    role = "clinical_ingest_login" if path is IngestPath.CLINICAL else "research_ingest_login"
    return IngestDb(path, dsn, make_conninfo(dsn, user=role))
