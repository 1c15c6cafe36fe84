"""Realistic MQTT messages for the ingest tests, and what the databases must then hold.

``Fleet`` routes synthetic ECG frames of several wearers through the real consent router
(every scope granted, real pseudonyms and date shifts) and encodes both outputs as the
gateway's outbox does (wire format, topic layout). ``Stored`` reads back what the two
databases hold, keyed like the messages, for exact comparison.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from devices.frame import Frame, StreamKind, Timebase, Unit
from gateway.consent import Scope
from gateway.privacy import FileKeyStore
from gateway.router import Router
from gateway.transport.topics import TopicLayout
from gateway.transport.wire import encode_clinical, encode_research
from tests.gateway.test_router import Consents, Directory, Ids, grants, make_router

FS_HZ = 250.0
PER_FRAME = 50
FRAME_NS = int(PER_FRAME / FS_HZ * 1e9)

Message = tuple[str, bytes]
ClinicalKey = tuple[str, int]
"""(device key, sequence) of a clinical ECG frame."""


@dataclass
class Fleet:
    """``wearers`` devices, each streaming ECG frames of ``PER_FRAME`` samples from
    ``start_ns``; ``messages(n)`` gives the next ``n`` frames per wearer, interleaved."""

    keys_dir: Path
    wearers: int
    prefix: str = field(default_factory=lambda: f"biogwtest/{secrets.token_hex(4)}/v1")
    start_ns: int = 1_790_000_000 * 10**9
    layout: TopicLayout = field(init=False)
    router: Router = field(init=False)
    devices: dict[str, uuid.UUID] = field(init=False)
    clinical: dict[ClinicalKey, bytes] = field(default_factory=dict)
    """Samples bytes of every clinical frame made, by (device key, sequence)."""
    research: dict[tuple[str, int], bytes] = field(default_factory=dict)
    """Samples bytes of every research frame made, by (pseudonym, sequence)."""
    _next: int = 0

    def __post_init__(self) -> None:
        self.layout = TopicLayout(self.prefix)
        ids = Ids()
        self.devices = {str(uuid.uuid4()): uuid.uuid4() for _ in range(self.wearers)}
        scopes = ((Scope.CORE_SERVICE, None), (Scope.CLINICAL_CARE, None))
        scopes += ((Scope.RESEARCH_INTERNAL, None),)
        self.router = make_router(
            FileKeyStore(self.keys_dir, bytes(range(32))),
            Directory(dict(self.devices)),
            Consents({s: grants(ids, s, *scopes) for s in self.devices.values()}),
        )

    def messages(self, frames_per_wearer: int, *, research: bool = True) -> list[Message]:
        out: list[Message] = []
        rng = np.random.default_rng(self._next)
        for _ in range(frames_per_wearer):
            seq = self._next
            self._next += 1
            for key in self.devices:
                samples = rng.normal(0, 300, PER_FRAME).round(1)
                frame = Frame(
                    device_key=key,
                    stream=StreamKind.ECG,
                    time_ns=self.start_ns + seq * FRAME_NS,
                    timebase=Timebase.UTC,
                    samples=samples,
                    unit=Unit.MICROVOLT,
                    fs_hz=FS_HZ,
                    sequence=seq,
                )
                routed = self.router.route(frame)
                assert routed.clinical is not None
                assert routed.research is not None
                c = routed.clinical
                out.append((self.layout.clinical(c.subject_id, frame.stream), encode_clinical(c)))
                self.clinical[(key, seq)] = samples.astype("<f8").tobytes()
                if research:
                    r = routed.research
                    out.append((self.layout.research(r.stream), encode_research(r)))
                    self.research[(r.pseudonym, seq)] = samples.astype("<f8").tobytes()
        return out


async def stored_clinical(dsn: str) -> dict[ClinicalKey, bytes]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT device_key, sequence, samples FROM clinical.frames")
        return {(str(k), int(s)): bytes(b) for k, s, b in await cur.fetchall()}


async def stored_research(dsn: str) -> dict[tuple[str, int], bytes]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT pseudonym, sequence, samples FROM pseudo.frames")
        return {(str(p), int(s)): bytes(b) for p, s, b in await cur.fetchall()}


async def count(dsn: str, table: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {table}")
        row: Any = await cur.fetchone()
        return int(row[0])
