"""Issue 5 acceptance 2: end to end, 5 simulated garments streaming for 5 minutes of signal.

Path: 5 simulated garments -> bumble virtual link -> the real gateway (``run_gateway``:
sessions, edge, consent router, spool, publisher; the wearers enrolled, paired and
consenting in a care database) -> a Mosquitto this test owns -> the real ingester
(``run_ingest``, connected as the INSERT-only ingest roles) -> the care and research
databases. Half-way, one garment goes out of range for 5 s (so there are gaps to store).

Checks, per garment and stream, up to the last frame each had sent at the cut:
* the stored clinical frames are exactly the frames the simulator sent (same sequence
  numbers, samples equal bit for bit), and nothing else is stored;
* the stored research frames equal the clinical ones except for the pseudonym and a
  per-wearer whole-week time shift (never zero);
* the gaps stored (clinical and research) equal the gaps the gateway produced.

``BIOGW_E2E_S`` shortens the run for local work; CI runs the full 300 s.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import psycopg
import pytest

from devices.sim.sentlog import Outcome, SentLog, SentLogSink
from gateway.app import GatewayHandle, run_gateway
from gateway.config import load_settings
from gateway.demo import DemoWearer, enroll_demo_wearers
from gateway.ingest.service import IngestHandle, run_ingest
from gateway.privacy import FileKeyStore, Pseudonymizer
from gateway.store.migrate import load_migrations, migrate
from tests.brokers import MOSQUITTO, MosquittoBroker

SIGNAL_S = float(os.environ.get("BIOGW_E2E_S", "300"))
GARMENTS = 5
WEEK_NS = 7 * 86_400 * 10**9
Conn = psycopg.AsyncConnection[Any]


async def _rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(query)
        return list(await cur.fetchall())


async def _poll(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while True:  # polling databases: there is no event to wait on
                if await check():
                    return
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.mark.skipif(MOSQUITTO is None, reason="needs the mosquitto binary (an owned broker)")
@pytest.mark.timeout(SIGNAL_S + 240)
async def test_five_garments_five_minutes_stored_exactly_in_both_databases(
    tmp_path: Path, care_db: str, new_database: Callable[[], Awaitable[str]]
) -> None:
    research_db = await new_database()
    async with await psycopg.AsyncConnection.connect(research_db, autocommit=True) as conn:
        await migrate(conn, load_migrations("research"))
    async with await psycopg.AsyncConnection.connect(care_db, autocommit=True) as conn:
        wearers = await enroll_demo_wearers(conn, GARMENTS, now_ns=time.time_ns())
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    tag = secrets.token_hex(3)
    settings = load_settings(
        overrides={
            "sim": {"garment": GARMENTS, "polar": 0, "seed": 55},
            "ble": {"link": "virtual"},
            "spool": {"dir": str(tmp_path / "spool")},
            "metrics": {"enabled": False},
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "topic_prefix": f"biogwtest/{tag}/v1",
            },
            "gateway": {"id": f"e2e{tag}"},
            "ingest": {"id": f"e2e{tag}"},
        }
    )
    logs: dict[str, SentLog] = {}

    def log_for(address: str) -> SentLogSink:
        logs[address] = SentLog(max_frames=None)
        return logs[address]

    handles: dict[str, Any] = {}
    care_ingest = psycopg.conninfo.make_conninfo(care_db, user="clinical_ingest_login")
    research_ingest = psycopg.conninfo.make_conninfo(research_db, user="research_ingest_login")
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(
                    run_ingest(
                        settings,
                        care_dsn=care_ingest,
                        research_dsn=research_ingest,
                        ready=lambda h: handles.__setitem__("ingest", h),
                    )
                ),
                group.create_task(
                    run_gateway(
                        settings,
                        FileKeyStore(tmp_path / "keys", bytes(range(32))),
                        care_dsn=care_db,
                        ready=lambda h: handles.__setitem__("gateway", h),
                        sent_log=log_for,
                    )
                ),
            ]
            await _poll(_all_streaming(logs, handles), 60, "every garment streaming")
            start = time.monotonic()
            await asyncio.sleep(SIGNAL_S / 2)
            gateway: GatewayHandle = handles["gateway"]
            assert gateway.link.fleet is not None
            await gateway.link.fleet.devices[0].device.faults.drop_link(out_of_range_s=5.0)
            await asyncio.sleep(max(0.0, SIGNAL_S - (time.monotonic() - start)))
            cut = _cut(logs)
            pseudonyms = _pseudonyms(tmp_path / "keys", wearers)
            await _poll(
                _stored_up_to(care_db, research_db, wearers, pseudonyms, cut),
                120,
                "every frame up to the cut, in both databases",
            )
            await _poll(_gaps_settled(care_db, gateway, wearers), 60, "the gaps stored")
            for task in tasks:
                task.cancel()
    finally:
        broker.stop()

    clinical = await _check_clinical(care_db, wearers, logs, cut)
    await _check_research(research_db, wearers, pseudonyms, clinical, cut)
    gaps = await _check_research_gaps(care_db, research_db)
    print(f"e2e: {len(clinical)} clinical frames stored, {gaps} gaps, {SIGNAL_S:.0f} s of signal")
    ingest: IngestHandle = handles["ingest"]
    assert all(i.counters.dead_letters == 0 for i in ingest.ingesters)


def _all_streaming(logs: dict[str, SentLog], handles: dict[str, Any]) -> Callable[[], Any]:
    async def check() -> bool:
        ingest = handles.get("ingest")
        return (
            len(logs) == GARMENTS
            and all(log.count("ecg", outcome=Outcome.SENT) > 0 for log in logs.values())
            and ingest is not None
            and all(i.counters.subscribed for i in ingest.ingesters)
        )

    return check


Cut = dict[tuple[str, str], int]
"""(address, stream) -> the last sequence number sent at the cut."""


def _cut(logs: dict[str, SentLog]) -> Cut:
    cut: Cut = {}
    for address, log in logs.items():
        for frame in log.frames(outcome=Outcome.SENT):
            if frame.sequence is not None:
                key = (address, frame.stream)
                cut[key] = max(cut.get(key, -1), frame.sequence)
    return cut


def _pseudonyms(keys_dir: Path, wearers: list[DemoWearer]) -> dict[str, str]:
    """address -> the wearer's research pseudonym (keys made by the gateway, read here)."""
    pseudonymizer = Pseudonymizer(FileKeyStore(keys_dir, bytes(range(32))))
    return {w.address: pseudonymizer.pseudonym(w.subject_id, "research") for w in wearers}


def _stored_up_to(
    care: str, research: str, wearers: list[DemoWearer], pseudonyms: dict[str, str], cut: Cut
) -> Callable[[], Any]:
    keys = {w.address: str(w.device_key) for w in wearers}

    async def check() -> bool:
        rows = await _rows(
            care, "SELECT device_key, stream, max(sequence) FROM clinical.frames GROUP BY 1, 2"
        )
        got = {(str(k), s): int(m) for k, s, m in rows}
        rows = await _rows(
            research, "SELECT pseudonym, stream, max(sequence) FROM pseudo.frames GROUP BY 1, 2"
        )
        got |= {(str(p), s): int(m) for p, s, m in rows}
        return all(
            got.get((keys[a], s), -1) >= seq and got.get((pseudonyms[a], s), -1) >= seq
            for (a, s), seq in cut.items()
        )

    return check


def _gaps_settled(dsn: str, gateway: GatewayHandle, wearers: list[DemoWearer]) -> Callable[[], Any]:
    async def check() -> bool:
        return await _stored_gaps(dsn) == _produced_gaps(gateway, wearers)

    return check


async def _stored_gaps(dsn: str) -> dict[tuple[str, str, str], tuple[int, int]]:
    rows = await _rows(
        dsn,
        "SELECT device_key, stream, cause, count(*), sum(samples_missing)"
        " FROM clinical.gaps GROUP BY 1, 2, 3",
    )
    return {(str(k), s, c): (int(n), int(m)) for k, s, c, n, m in rows}


def _produced_gaps(
    gateway: GatewayHandle, wearers: list[DemoWearer]
) -> dict[tuple[str, str, str], tuple[int, int]]:
    produced = {}
    for wearer in wearers:
        tracker = gateway.edge.gap_tracker(str(wearer.device_key))
        if tracker is None:
            continue
        for (stream, cause), n in tracker.counters.gaps.items():
            missing = tracker.counters.samples_missing[(stream, cause)]
            produced[(str(wearer.device_key), stream.value, cause.value)] = (n, missing)
    return produced


async def _check_clinical(
    dsn: str, wearers: list[DemoWearer], logs: dict[str, SentLog], cut: Cut
) -> dict[tuple[UUID, str, int], tuple[int, bytes]]:
    rows = await _rows(
        dsn,
        "SELECT subject_id, device_key, stream, sequence, time_ns, samples FROM clinical.frames",
    )
    stored: dict[tuple[str, str], dict[int, bytes]] = defaultdict(dict)
    clinical = {}
    for subject, key, stream, seq, time_ns, samples in rows:
        stored[(str(key), stream)][int(seq)] = bytes(samples)
        clinical[(subject, stream, int(seq))] = (int(time_ns), bytes(samples))
    compared = 0
    for wearer in wearers:
        log, key = logs[wearer.address], str(wearer.device_key)
        sent_by_stream: dict[str, dict[int, Any]] = defaultdict(dict)
        for frame in log.frames(outcome=Outcome.SENT):
            assert frame.sequence is not None
            sent_by_stream[frame.stream][frame.sequence] = frame.samples
        for stream, sent in sent_by_stream.items():
            got = stored[(key, stream)]
            assert set(got) <= set(sent), f"{stream}: stored frames the device never sent"
            upto = cut[(wearer.address, stream)]
            expected = sorted(s for s in sent if s <= upto)
            assert sorted(s for s in got if s <= upto) == expected, stream
            for seq in expected:
                values = np.frombuffer(got[seq], "<f8").reshape(np.shape(sent[seq]))
                assert np.array_equal(values, sent[seq]), (stream, seq)
                compared += 1
    assert compared >= GARMENTS * SIGNAL_S, "too few frames to mean anything"
    return clinical


async def _check_research(
    dsn: str,
    wearers: list[DemoWearer],
    pseudonyms: dict[str, str],
    clinical: dict[tuple[UUID, str, int], tuple[int, bytes]],
    cut: Cut,
) -> None:
    rows = await _rows(
        dsn, "SELECT pseudonym, stream, sequence, time_ns, samples FROM pseudo.frames"
    )
    research = {(p, s, int(q)): (int(t), bytes(b)) for p, s, q, t, b in rows}
    assert {p for p, _, _ in research} == set(pseudonyms.values())
    for wearer in wearers:
        pseudonym = pseudonyms[wearer.address]
        mine = {
            (stream, seq): value
            for (subject, stream, seq), value in clinical.items()
            if subject == wearer.subject_id and seq <= cut[(wearer.address, stream)]
        }
        theirs = {
            (stream, seq): value
            for (p, stream, seq), value in research.items()
            if p == pseudonym and seq <= cut[(wearer.address, stream)]
        }
        assert set(theirs) == set(mine), wearer.label
        shifts = {theirs[k][0] - mine[k][0] for k in mine}
        assert len(shifts) == 1, "one time shift per wearer"
        shift = shifts.pop()
        assert shift != 0, "research never carries the true calendar time"
        assert shift % WEEK_NS == 0, "a whole number of weeks"
        assert abs(shift) <= 26 * WEEK_NS
        assert all(theirs[k][1] == mine[k][1] for k in mine), wearer.label


async def _check_research_gaps(care: str, research: str) -> int:
    clinical = await _rows(care, "SELECT stream, cause, samples_missing FROM clinical.gaps")
    pseudo = await _rows(research, "SELECT stream, cause, samples_missing FROM pseudo.gaps")
    assert sorted(clinical) == sorted(pseudo)
    assert clinical, "the out-of-range garment produced gaps"
    return len(clinical)
