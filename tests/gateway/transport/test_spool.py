"""Tests of the durable spool (gateway.transport.spool), on real SQLite files.

Order, idempotence and group commit; crash safety with a child process that SIGKILLs
itself with uncommitted appends and acks in flight; the size policy (oldest research
evicted first, clinical never, refusals raised and counted, the CONTROL reserve); a
hypothesis state machine comparing the spool with a plain-Python model across appends,
acks, commits and reopens; corrupt, foreign and locked files; a real SQLITE_FULL.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from devices.errors import BiogwError
from gateway.transport.spool import (
    FILENAME,
    MIN_RESERVE_BYTES,
    Spool,
    SpoolClass,
    SpoolClosedError,
    SpoolCorruptError,
    SpoolCounters,
    SpoolFullError,
    SpoolLockedError,
    SpoolRecord,
    SpoolStorageError,
)

CLINICAL, RESEARCH, CONTROL = SpoolClass.CLINICAL, SpoolClass.RESEARCH, SpoolClass.CONTROL
REPO = Path(__file__).resolve().parents[3]


def _payload(i: int, size: int = 1024) -> bytes:
    return (i.to_bytes(4, "little") * (size // 4 + 1))[:size]


def _all(spool: Spool) -> list[SpoolRecord]:
    return spool.pending(0, 1_000_000)


# -- order, commit, ack ----------------------------------------------------------------


@pytest.mark.parametrize("sync", ["normal", "full"])
def test_append_commit_pending_ack_in_order_and_idempotent(
    tmp_path: Path, sync: Literal["normal", "full"]
) -> None:
    with Spool(tmp_path, max_bytes=1 << 20, sync=sync) as spool:
        seqs = [spool.append(f"t/{i}", _payload(i, 10), CLINICAL) for i in range(5)]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 5
        spool.commit()
        records = _all(spool)
        assert [r.seq for r in records] == seqs
        assert records[2] == SpoolRecord(seqs[2], CLINICAL, "t/2", _payload(2, 10))
        spool.ack(seqs[1])
        spool.ack(seqs[1])  # idempotent
        spool.ack(10_000)  # unknown: ignored
        spool.ack(-3)
        assert [r.seq for r in _all(spool)] == [seqs[0], *seqs[2:]]
        spool.commit()
        c = spool.counters
        assert (c.appended, c.acked, c.records, c.commits) == (5, 1, 4, 2)
        assert c.bytes == 4 * (3 + 10)


def test_pending_excludes_uncommitted_appends_and_pages(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        first = [spool.append("a", b"x", RESEARCH) for _ in range(6)]
        spool.commit()
        later = spool.append("b", b"y", CLINICAL)
        assert later > first[-1]
        assert [r.seq for r in _all(spool)] == first
        spool.ack(later)  # not committed, so never published: ignored
        assert [r.seq for r in spool.pending(first[1], 2)] == first[2:4]
        assert spool.pending(first[-1], 10) == []
        assert spool.pending(0, 0) == []
        spool.commit()
        assert [r.seq for r in _all(spool)] == [*first, later]


def test_ack_many_deletes_committed_runs_and_ignores_the_rest(tmp_path: Path) -> None:
    """Batch acks (the publisher's path): any order, duplicates, gaps, unknown and
    uncommitted seqs; only committed, held records are deleted and counted, durably."""
    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        seqs = [spool.append(f"t/{i}", _payload(i, 10), RESEARCH if i % 2 else CLINICAL)
                for i in range(10)]  # fmt: skip
        spool.commit()
        late = spool.append("t/late", b"z", CLINICAL)  # not committed: never published
        acked = [seqs[5], seqs[1], seqs[2], seqs[2], seqs[3], seqs[8], late, 10_000, -1]
        assert spool.ack_many(acked) == 5
        assert spool.ack_many([seqs[1], seqs[8]]) == 0  # already acked
        assert spool.ack_many([]) == 0
        left = [seqs[0], seqs[4], seqs[6], seqs[7], seqs[9]]
        assert [r.seq for r in _all(spool)] == left
        c = spool.counters
        assert (c.acked, c.records, c.clinical_records, c.research_records) == (5, 6, 4, 2)
        assert c.bytes == 5 * (3 + 10) + (6 + 1)
    with Spool(tmp_path, max_bytes=1 << 20) as spool:  # the acks were committed on close
        assert [r.seq for r in _all(spool)] == [*left, late]


def test_commit_without_changes_is_not_counted(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        spool.commit()
        spool.append("a", b"x", CONTROL)
        spool.commit()
        spool.ack(99)  # nothing deleted
        spool.commit()
        spool.commit()
        assert spool.counters.commits == 1


def test_acked_records_stay_gone_and_counters_recovered_after_reopen(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        a = spool.append("clin/é", b"12345", CLINICAL)  # topic bytes are UTF-8 bytes
        b = spool.append("res", b"123", RESEARCH)
        c = spool.append("ctl", b"1", CONTROL)
        spool.commit()
        spool.ack(b)
        spool.commit()
    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        assert [(r.seq, r.klass) for r in _all(spool)] == [(a, CLINICAL), (c, CONTROL)]
        got = spool.counters
        assert got.recovered_records == got.records == 2
        assert (got.clinical_bytes, got.research_bytes, got.control_bytes) == (12, 0, 4)
        assert got.bytes == 16
        assert (got.appended, got.acked, got.commits) == (0, 0, 0)


def test_close_commits_and_seq_is_never_reused(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        seqs = [spool.append("t", b"p", CLINICAL) for _ in range(3)]
        spool.commit()
        for seq in seqs:
            spool.ack(seq)
    with Spool(tmp_path, max_bytes=1 << 20) as spool:
        assert spool.counters.records == 0
        assert spool.append("t", b"p", CLINICAL) == seqs[-1] + 1
    with Spool(tmp_path, max_bytes=1 << 20) as spool:  # closing committed the append
        assert [r.seq for r in _all(spool)] == [seqs[-1] + 1]
        spool.close()
        spool.close()  # idempotent
        with pytest.raises(SpoolClosedError):
            spool.append("t", b"p", CLINICAL)


def test_file_is_private_and_second_opener_is_locked_out(tmp_path: Path) -> None:
    with Spool(tmp_path / "new", max_bytes=1 << 20) as spool:
        assert (spool.path.stat().st_mode & 0o777) == 0o600
        assert spool.path == tmp_path / "new" / FILENAME
        with pytest.raises(SpoolLockedError) as info:
            Spool(tmp_path / "new", max_bytes=1 << 20)
        assert isinstance(info.value, BiogwError)
        assert info.value.path == spool.path
        spool.append("t", b"p", CLINICAL)
    with Spool(tmp_path / "new", max_bytes=1 << 20) as again:
        assert again.counters.records == 1


# -- crash safety ----------------------------------------------------------------------

_CHILD = """
import os, signal, sys
from pathlib import Path
from gateway.transport.spool import Spool, SpoolClass

directory, committed, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def payload(i):
    return (i.to_bytes(4, "little") * 256)
spool = Spool(directory, max_bytes=1 << 30, sync="full")
klass = lambda i: SpoolClass.CLINICAL if i % 2 else SpoolClass.RESEARCH
seqs = [spool.append(f"t/{i}", payload(i), klass(i)) for i in range(committed)]
spool.commit()
if mode == "acks":
    for seq in seqs[: committed // 2]:
        spool.ack(seq)
    spool.commit()
    for seq in seqs[committed // 2 :]:
        spool.ack(seq)  # never committed
# More than SQLite's page cache (2 MiB), inserted into the open transaction (appends are
# buffered until a commit or an eviction writes them; write them now), so uncommitted
# pages spill into the WAL before the kill.
for i in range(committed, committed + 5000):
    spool.append(f"t/{i}", payload(i), klass(i))
spool._write_rows()
os.kill(os.getpid(), signal.SIGKILL)
"""


def _run_child(directory: Path, committed: int, mode: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", _CHILD, str(directory), str(committed), mode]
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, timeout=100, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert (directory / (FILENAME + "-wal")).stat().st_size > 2 << 20  # the spill happened


def test_kill_9_recovers_exactly_the_committed_records(tmp_path: Path) -> None:
    _run_child(tmp_path, 200, "plain")
    with Spool(tmp_path, max_bytes=1 << 30) as spool:
        records = _all(spool)
        assert [r.topic for r in records] == [f"t/{i}" for i in range(200)]
        assert [r.payload for r in records] == [_payload(i) for i in range(200)]
        assert [r.klass for r in records] == [CLINICAL if i % 2 else RESEARCH for i in range(200)]
        assert [r.seq for r in records] == sorted({r.seq for r in records})
        c = spool.counters
        assert (c.records, c.clinical_records, c.research_records) == (200, 100, 100)
        assert c.bytes == sum(len(f"t/{i}") + 1024 for i in range(200))
        assert spool.append("after", b"x", CLINICAL) > records[-1].seq


def test_kill_9_undoes_uncommitted_acks(tmp_path: Path) -> None:
    _run_child(tmp_path, 100, "acks")
    with Spool(tmp_path, max_bytes=1 << 30) as spool:
        assert [r.topic for r in _all(spool)] == [f"t/{i}" for i in range(50, 100)]
        assert spool.counters.records == 50


# -- size policy -----------------------------------------------------------------------


def test_research_is_evicted_oldest_first_and_counted(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1000, reserve_bytes=0) as spool:
        r1 = spool.append("r", bytes(199), RESEARCH)  # 200 bytes each
        c1 = spool.append("c", bytes(199), CLINICAL)
        r2 = spool.append("r", bytes(199), RESEARCH)
        spool.commit()
        r3 = spool.append("r", bytes(199), RESEARCH)  # uncommitted research is held too
        r4 = spool.append("r", bytes(199), RESEARCH)  # exactly at the bound: no eviction
        assert spool.counters.evicted_research == 0
        c2 = spool.append("c", bytes(299), CLINICAL)  # 300 bytes: evicts r1 and r2
        spool.commit()
        assert [r.seq for r in _all(spool)] == [c1, r3, r4, c2]
        assert {r1, r2}.isdisjoint(r.seq for r in _all(spool))
        c = spool.counters
        assert (c.evicted_research, c.evicted_research_bytes) == (2, 400)
        assert c.bytes == 900
        c3 = spool.append("c", bytes(299), CLINICAL)  # needs exactly 200: evicts r3 only
        assert [r.seq for r in _all(spool)] == [c1, r4, c2]  # c3 is not committed yet
        assert spool.counters.evicted_research == 3
        assert spool.counters.bytes == 1000
        assert c3 > c2
        assert c.refused_clinical == c.refused_research == 0
        spool.ack(r1)  # an evicted record's late PUBACK is ignored
        assert spool.counters.acked == 0


def test_clinical_is_never_evicted_and_refusal_is_raised_and_counted(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1000, reserve_bytes=0) as spool:
        clinical = [spool.append("c", bytes(299), CLINICAL) for _ in range(3)]  # 900 bytes
        research = spool.append("r", bytes(49), RESEARCH)  # 50 bytes
        spool.commit()
        with pytest.raises(SpoolFullError) as info:
            spool.append("c", bytes(199), CLINICAL)  # even evicting research won't do
        err = info.value
        assert (err.klass, err.record_bytes, err.held_bytes, err.limit_bytes) == (
            CLINICAL,
            200,
            900,
            1000,
        )
        with pytest.raises(SpoolFullError):
            spool.append("r", bytes(199), RESEARCH)
        c = spool.counters
        assert (c.refused_clinical, c.refused_research, c.evicted_research) == (1, 1, 0)
        assert [r.seq for r in _all(spool)] == [*clinical, research]  # nothing evicted
        assert c.appended == 4
        last = spool.append("c", bytes(99), CLINICAL)  # fits exactly once research is gone
        spool.commit()
        assert [r.seq for r in _all(spool)] == [*clinical, last]
        assert spool.counters.bytes == 1000


def test_control_uses_the_reserve_and_is_refused_only_beyond_it(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1000, reserve_bytes=100) as spool:
        for _ in range(5):
            spool.append("c", bytes(199), CLINICAL)
        with pytest.raises(SpoolFullError):
            spool.append("c", b"", CLINICAL)
        gaps = [spool.append("g", bytes(19), CONTROL) for _ in range(5)]  # the whole reserve
        assert spool.counters.bytes == 1100
        with pytest.raises(SpoolFullError) as info:
            spool.append("g", b"", CONTROL)
        assert info.value.limit_bytes == 1100
        spool.commit()
        c = spool.counters
        assert (c.refused_clinical, c.refused_control, c.control_records) == (1, 1, 5)
        assert [r.seq for r in _all(spool)][-5:] == gaps


def test_control_evicts_research_when_the_reserve_is_used(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1000, reserve_bytes=100) as spool:
        old = spool.append("r", bytes(499), RESEARCH)
        new = spool.append("r", bytes(499), RESEARCH)
        gap = spool.append("g", bytes(99), CONTROL)  # fills the reserve
        gap2 = spool.append("g", bytes(9), CONTROL)  # must evict the oldest research
        spool.commit()
        assert [r.seq for r in _all(spool)] == [new, gap, gap2]
        assert spool.counters.evicted_research == 1
        assert old not in {r.seq for r in _all(spool)}


def test_record_larger_than_the_bound_is_refused_without_evicting(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1000, reserve_bytes=0) as spool:
        kept = spool.append("r", bytes(99), RESEARCH)
        for klass in (RESEARCH, CLINICAL):
            with pytest.raises(SpoolFullError):
                spool.append("x", bytes(1000), klass)
        spool.commit()
        assert [r.seq for r in _all(spool)] == [kept]
        assert spool.counters.evicted_research == 0


def test_default_reserve_is_one_percent_but_at_least_64_kib(tmp_path: Path) -> None:
    with Spool(tmp_path / "a", max_bytes=1 << 20) as small:
        assert small.reserve_bytes == MIN_RESERVE_BYTES
    with Spool(tmp_path / "b", max_bytes=100 << 20) as big:
        assert big.reserve_bytes == 1 << 20


# -- the model -------------------------------------------------------------------------

MAX_BYTES, RESERVE = 1500, 200


class SpoolModel(RuleBasedStateMachine):
    """The spool against a list-and-dict oracle of the documented policy."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="spool-model-"))
        self.spool = Spool(self.dir, max_bytes=MAX_BYTES, reserve_bytes=RESERVE, sync="normal")
        self.held: dict[int, SpoolRecord] = {}  # insertion order == seq order
        self.committed_max = 0
        self.next_seq = 1
        self.dirty = False
        self.events = dict.fromkeys(_EVENTS, 0)

    def teardown(self) -> None:
        self.spool.close()
        shutil.rmtree(self.dir)

    @staticmethod
    def size(r: SpoolRecord) -> int:
        return len(r.topic.encode()) + len(r.payload)

    def bytes_of(self, klass: SpoolClass | None = None) -> int:
        return sum(self.size(r) for r in self.held.values() if klass in (None, r.klass))

    @rule(
        klass=st.sampled_from(SpoolClass),
        size=st.sampled_from([0, 46, 96, 196, 296, 396]) | st.integers(0, 420),  # exact fits
        tag=st.integers(10, 99),
    )
    def append(self, klass: SpoolClass, size: int, tag: int) -> None:
        topic = f"s/{tag}"  # 4 bytes
        record = SpoolRecord(self.next_seq, klass, topic, bytes([tag]) * size)
        limit = MAX_BYTES + (RESERVE if klass is CONTROL else 0)
        total, need = self.bytes_of(), self.size(record)
        if total - self.bytes_of(RESEARCH) + need > limit:
            self.events[f"refused_{klass.name.lower()}"] += 1
            event(f"refused {klass.name}")
            with pytest.raises(SpoolFullError):
                self.spool.append(topic, record.payload, klass)
            return
        for old in [r for r in self.held.values() if r.klass is RESEARCH]:
            if total + need <= limit:
                break
            del self.held[old.seq]
            total -= self.size(old)
            self.events["evicted_research"] += 1
            event(f"evicted for {klass.name}")
            self.events["evicted_research_bytes"] += self.size(old)
        assert self.spool.append(topic, record.payload, klass) == record.seq
        self.held[record.seq] = record
        self.next_seq += 1
        self.events["appended"] += 1
        self.dirty = True

    @rule()
    def commit(self) -> None:
        self.spool.commit()
        self.committed_max = self.next_seq - 1
        self.events["commits"] += self.dirty
        self.dirty = False

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        known = st.sampled_from(sorted(self.held)) if self.held else st.nothing()
        seq = data.draw(known | st.integers(-2, 80))
        self.spool.ack(seq)
        if seq <= self.committed_max and seq in self.held:
            del self.held[seq]
            self.events["acked"] += 1
            self.dirty = True

    @rule(data=st.data())
    def ack_many(self, data: st.DataObject) -> None:
        known = st.sampled_from(sorted(self.held)) if self.held else st.nothing()
        seqs = data.draw(st.lists(known | st.integers(-2, 80), max_size=12))
        gone = {s for s in seqs if s <= self.committed_max and s in self.held}
        assert self.spool.ack_many(seqs) == len(gone)
        for seq in gone:
            del self.held[seq]
        self.events["acked"] += len(gone)
        self.dirty = self.dirty or bool(gone)

    @rule(after=st.integers(0, 80), limit=st.integers(0, 5))
    def page(self, after: int, limit: int) -> None:
        want = [r for r in self.committed() if r.seq > after][:limit]
        assert self.spool.pending(after, limit) == want

    @rule()
    def reopen(self) -> None:
        self.commit()  # what close() does first
        self.spool.close()
        self.spool = Spool(self.dir, max_bytes=MAX_BYTES, reserve_bytes=RESERVE, sync="normal")
        self.events = dict.fromkeys(_EVENTS, 0)
        self.events["recovered_records"] = len(self.held)

    def committed(self) -> list[SpoolRecord]:
        return [r for r in self.held.values() if r.seq <= self.committed_max]

    @invariant()
    def matches_model(self) -> None:
        assert _all(self.spool) == self.committed()
        by_class = {k: [r for r in self.held.values() if r.klass is k] for k in SpoolClass}
        assert self.spool.counters == SpoolCounters(
            **self.events,
            records=len(self.held),
            bytes=self.bytes_of(),
            clinical_records=len(by_class[CLINICAL]),
            clinical_bytes=self.bytes_of(CLINICAL),
            research_records=len(by_class[RESEARCH]),
            research_bytes=self.bytes_of(RESEARCH),
            control_records=len(by_class[CONTROL]),
            control_bytes=self.bytes_of(CONTROL),
        )
        assert self.bytes_of() - self.bytes_of(CONTROL) <= MAX_BYTES
        assert self.bytes_of() <= MAX_BYTES + RESERVE


_EVENTS = (
    "appended",
    "acked",
    "commits",
    "evicted_research",
    "evicted_research_bytes",
    "refused_clinical",
    "refused_research",
    "refused_control",
    "storage_errors",
    "recovered_records",
)

TestSpoolModel = SpoolModel.TestCase
TestSpoolModel.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)


# -- damaged, foreign and failing files ------------------------------------------------


def _make_spool(directory: Path, records: int = 0) -> Path:
    with Spool(directory, max_bytes=1 << 30) as spool:
        for i in range(records):
            spool.append(f"t/{i}", _payload(i), CLINICAL)
    return directory / FILENAME


def _assert_corrupt(directory: Path, reason: str | set[str]) -> None:
    path = directory / FILENAME
    before = path.read_bytes()
    with pytest.raises(SpoolCorruptError) as info:
        Spool(directory, max_bytes=1 << 20)
    assert info.value.reason in ({reason} if isinstance(reason, str) else reason)
    assert info.value.path == path
    assert str(path) in str(info.value)
    assert isinstance(info.value, BiogwError)
    assert path.read_bytes() == before  # never reset, never rewritten


def test_random_bytes_are_not_a_database(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(os.urandom(8192))
    _assert_corrupt(tmp_path, "not_a_database")


def test_empty_file_is_not_taken_for_a_new_spool(tmp_path: Path) -> None:
    (tmp_path / FILENAME).touch()
    _assert_corrupt(tmp_path, "empty_file")


def test_foreign_sqlite_database(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / FILENAME)
    conn.execute("CREATE TABLE spool (seq INTEGER PRIMARY KEY, klass, topic, payload)")
    conn.close()
    _assert_corrupt(tmp_path, "foreign_database")


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("PRAGMA user_version = 99", "schema_version"),
        ("ALTER TABLE spool ADD COLUMN extra", "schema_mismatch"),
    ],
)
def test_wrong_schema(tmp_path: Path, statement: str, reason: str) -> None:
    path = _make_spool(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute(statement)
    conn.commit()
    conn.close()
    _assert_corrupt(tmp_path, reason)


def test_damaged_pages_are_detected_at_open(tmp_path: Path) -> None:
    path = _make_spool(tmp_path, records=300)
    data = bytearray(path.read_bytes())
    page = 4096
    data[page * 20 : page * 40] = os.urandom(page * 20)  # table b-tree pages
    path.write_bytes(bytes(data))
    _assert_corrupt(tmp_path, {"integrity", "corrupt"})


def test_wal_without_its_database(tmp_path: Path) -> None:
    (tmp_path / (FILENAME + "-wal")).write_bytes(b"\0" * 64)
    with pytest.raises(SpoolCorruptError) as info:
        Spool(tmp_path, max_bytes=1 << 20)
    assert info.value.reason == "wal_without_database"
    assert not (tmp_path / FILENAME).exists()


def _append_and_commit(spool: Spool, n: int) -> None:
    for i in range(n):
        spool.append("t", _payload(i), CLINICAL)
    spool.commit()


def test_disk_full_rolls_back_to_the_last_commit(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1 << 30) as spool:
        kept = [spool.append("t", _payload(i), CLINICAL) for i in range(3)]
        spool.commit()
        # A real SQLITE_FULL: cap the file at its current size (no fake involved).
        (pages,) = spool._conn.execute("PRAGMA page_count").fetchone()
        spool._conn.execute(f"PRAGMA max_page_count = {pages}")
        spool.ack(kept[0])
        with pytest.raises(SpoolStorageError) as info:
            _append_and_commit(spool, 100)
        assert info.value.code == "SQLITE_FULL"
        assert info.value.rolled_back >= 1
        c = spool.counters
        assert (c.records, c.storage_errors) == (3, 1)
        assert [r.seq for r in _all(spool)] == kept  # the uncommitted ack is undone too
        spool._conn.execute("PRAGMA max_page_count = 1073741823")
        assert spool.append("t", b"x", CLINICAL) > kept[-1] + info.value.rolled_back
