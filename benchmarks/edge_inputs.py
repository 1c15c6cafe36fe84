"""Inputs of the edge benchmark (``bench_edge``): a router with every scope granted to
every wearer, and real garment notifications in the simulator's stream proportions.

Must not: measure anything or touch the network.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devices.garment.codec import GarmentFrame, encode_data_frame, quantize, samples_per_frame
from devices.garment.spec import DEFAULT_RATES_HZ, GarmentStream
from gateway.consent import ConsentHistory, ConsentRecord, Grant, Period, Scope
from gateway.consent.model import CollectionMethod
from gateway.privacy import DateShifter, FileKeyStore, Pseudonymizer
from gateway.router import Router

S = 1_000_000_000


class _Directory:
    def __init__(self, bindings: dict[str, uuid.UUID]) -> None:
        self.bindings = bindings

    def subject_for(self, device_key: str) -> uuid.UUID | None:
        return self.bindings.get(device_key)


class _Consents:
    """Every subject holds core.service, clinical.care and research.internal from t=0."""

    def __init__(self, subjects: Sequence[uuid.UUID]) -> None:
        self.histories = {s: _all_granted(s) for s in subjects}

    def history_for(self, subject_id: uuid.UUID) -> ConsentHistory | None:
        return self.histories.get(subject_id)


def _all_granted(subject: uuid.UUID) -> ConsentHistory:
    scopes = (Scope.CORE_SERVICE, Scope.CLINICAL_CARE, Scope.RESEARCH_INTERNAL)
    events = tuple(
        Grant(
            uuid.uuid4(),
            ConsentRecord(
                record_id=uuid.uuid4(),
                subject_id=subject,
                scope=scope,
                period=Period(0, None),
                actor=None,
                purpose="TREAT",
                policy_version="2026-01",
                policy_text_sha256="cd" * 32,
                collection_method=CollectionMethod.APP,
                recorded_at_ns=0,
            ),
        )
        for scope in scopes
    )
    return ConsentHistory(subject, events)


def make_router(keys_dir: Path, bindings: dict[str, uuid.UUID]) -> Router:
    keystore = FileKeyStore(keys_dir, bytes(range(32)))
    return Router(
        _Directory(bindings),
        _Consents(list(bindings.values())),
        Pseudonymizer(keystore),
        DateShifter(keystore),
        clinical_actor="org:clinic-a/team:cardio",
        research_actor="org:biogw/research",
    )


@dataclass(frozen=True, slots=True)
class Notification:
    device_key: str
    data: bytes
    received_ns: int


def notifications(n: int, keys: Sequence[str], seed: int = 1) -> list[Notification]:
    """``n`` data notifications, time-ordered, as 20 garments at default rates send them."""
    rng = np.random.default_rng(seed)
    plan = []  # (stream, rate, samples per frame, frame period in µs)
    for stream, fs_hz in DEFAULT_RATES_HZ.items():
        per = samples_per_frame(stream, fs_hz)
        plan.append((stream, fs_hz, per, round(per * 1e6 / fs_hz)))
    boots = {key: int(rng.integers(1, 10**6)) * 1000 for key in keys}
    utc0 = time.time_ns() - 3600 * S
    events: list[tuple[int, str, GarmentStream, float, int, int]] = []
    t_us, k = 0, 0
    while len(events) < n:  # one 400 ms tick of every device per round
        for key in keys:
            for stream, fs_hz, per, period_us in plan:
                if t_us % period_us < 400_000:
                    events.append((t_us, key, stream, fs_hz, per, t_us // period_us))
        t_us += 400_000
        k += 1
    out = []
    for t_us, key, stream, fs_hz, per, seq in events[:n]:
        shape = (per, 3) if stream is GarmentStream.ACCEL else (per,)
        raw = rng.normal(0.0, 0.2 if stream is not GarmentStream.TEMP else 0.1, shape)
        if stream is GarmentStream.TEMP:
            raw += 36.5
        samples = quantize(stream, raw)
        frame = GarmentFrame(stream, seq, boots[key] + t_us, fs_hz, samples)
        jitter = int(rng.integers(5, 30)) * 1_000_000
        received = utc0 + (t_us + per * round(1e6 / fs_hz)) * 1000 + jitter
        out.append(Notification(key, encode_data_frame(frame), received))
    return out
