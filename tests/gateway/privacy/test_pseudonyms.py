"""Pseudonyms (per domain and epoch, unlinkable, rotatable) and per-subject date shifts."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.privacy.keystore import (
    FileKeyStore,
    KeyDestroyedError,
    KeyId,
    KeyIntegrityError,
    KeyNotFoundError,
    KeyStoreError,
)
from gateway.privacy.pseudonyms import (
    DIGEST_BITS,
    MAX_SHIFT_WEEKS,
    WEEK_NS,
    DateShifter,
    Pseudonymizer,
    parse_pseudonym,
)

MASTER = bytes(range(32))
SUBJECT = uuid.UUID("8d3c2b9e-6f4a-4c1e-9b7d-1234567890ab")
OTHER = uuid.UUID("0b9e1f7a-2c3d-4e5f-8a9b-abcdefabcdef")
FIXTURE_OK = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def store(tmp_path: Path) -> FileKeyStore:
    return FileKeyStore(tmp_path / "keys", MASTER)


@pytest.fixture
def pseudonymizer(store: FileKeyStore) -> Pseudonymizer:
    return Pseudonymizer(store)


def test_format_and_length(pseudonymizer: Pseudonymizer) -> None:
    text = pseudonymizer.pseudonym(SUBJECT, "research")
    prefix, domain, epoch, digest = text.split(".")
    assert (prefix, domain, epoch) == ("ps1", "research", "e1")
    assert len(digest) == 32
    parsed = parse_pseudonym(text)
    assert parsed.domain == "research"
    assert parsed.epoch == 1
    assert len(parsed.digest) * 8 == DIGEST_BITS >= 128
    assert str(parsed) == text


def test_matches_an_independent_hmac(pseudonymizer: Pseudonymizer, store: FileKeyStore) -> None:
    parsed = parse_pseudonym(pseudonymizer.pseudonym(SUBJECT, "research"))
    key = store.get(KeyId("pseudonym", "research", 1))
    message = b"biogw.ps1\x00research\x00" + SUBJECT.bytes
    assert parsed.digest == hmac.new(key, message, hashlib.sha256).digest()[:20]


def test_deterministic_across_instances(store: FileKeyStore, tmp_path: Path) -> None:
    first = Pseudonymizer(store).pseudonym(SUBJECT, "research")
    again = Pseudonymizer(FileKeyStore(tmp_path / "keys", MASTER)).pseudonym(SUBJECT, "research")
    assert first == again


def test_domains_do_not_link(pseudonymizer: Pseudonymizer) -> None:
    research = parse_pseudonym(pseudonymizer.pseudonym(SUBJECT, "research"))
    release = parse_pseudonym(pseudonymizer.pseudonym(SUBJECT, "release"))
    assert research.digest != release.digest
    # Two subjects in two domains: no pairing of digests agrees across the domains.
    other_research = parse_pseudonym(pseudonymizer.pseudonym(OTHER, "research"))
    other_release = parse_pseudonym(pseudonymizer.pseudonym(OTHER, "release"))
    digests = {research.digest, release.digest, other_research.digest, other_release.digest}
    assert len(digests) == 4


def test_other_key_store_gives_other_pseudonyms(tmp_path: Path) -> None:
    ours = Pseudonymizer(FileKeyStore(tmp_path / "a", MASTER)).pseudonym(SUBJECT, "research")
    theirs = Pseudonymizer(FileKeyStore(tmp_path / "b", MASTER)).pseudonym(SUBJECT, "research")
    assert ours != theirs


def test_rotation_creates_a_new_epoch(pseudonymizer: Pseudonymizer) -> None:
    before = pseudonymizer.pseudonym(SUBJECT, "research")
    assert pseudonymizer.rotate("research") == 2
    after = pseudonymizer.pseudonym(SUBJECT, "research")
    assert parse_pseudonym(after).epoch == 2
    assert parse_pseudonym(after).digest != parse_pseudonym(before).digest
    assert pseudonymizer.pseudonym(SUBJECT, "research", epoch=1) == before
    assert pseudonymizer.epochs("research") == (1, 2)
    assert parse_pseudonym(pseudonymizer.pseudonym(SUBJECT, "release")).epoch == 1


def test_rotation_seen_by_another_instance_after_refresh(store: FileKeyStore) -> None:
    gateway, officer = Pseudonymizer(store), Pseudonymizer(store)
    assert gateway.current_epoch("research") == 1
    officer.rotate("research")
    assert gateway.current_epoch("research") == 1
    gateway.refresh()
    assert gateway.current_epoch("research") == 2


def test_destroyed_epoch_cannot_be_recomputed(pseudonymizer: Pseudonymizer) -> None:
    pseudonymizer.pseudonym(SUBJECT, "research")
    pseudonymizer.rotate("research")
    pseudonymizer.destroy_epoch("research", 1)
    with pytest.raises(KeyDestroyedError):
        pseudonymizer.pseudonym(SUBJECT, "research", epoch=1)
    assert pseudonymizer.epochs("research") == (2,)
    assert pseudonymizer.rotate("research") == 3


def test_cached_pseudonyms_go_with_an_epoch_destroyed_elsewhere(store: FileKeyStore) -> None:
    gateway, officer = Pseudonymizer(store), Pseudonymizer(store)
    first = gateway.pseudonym(SUBJECT, "research")
    assert gateway.pseudonym(SUBJECT, "research") == first  # served from the cache
    officer.rotate("research")
    officer.destroy_epoch("research", 1)
    gateway.refresh()
    second = gateway.pseudonym(SUBJECT, "research")
    assert second != first
    assert ".e2." in second
    with pytest.raises(KeyDestroyedError):
        gateway.pseudonym(SUBJECT, "research", epoch=1)


def test_current_epoch_cannot_be_destroyed(pseudonymizer: Pseudonymizer) -> None:
    pseudonymizer.pseudonym(SUBJECT, "research")
    with pytest.raises(KeyStoreError) as info:
        pseudonymizer.destroy_epoch("research", 1)
    assert info.value.reason == "current_epoch"


def test_rotation_never_reuses_a_destroyed_epoch_number(store: FileKeyStore) -> None:
    first = Pseudonymizer(store)
    first.rotate("research")
    first.rotate("research")
    first.destroy_epoch("research", 1)
    store.destroy(KeyId("pseudonym", "research", 2))  # e.g. by an operator tool
    assert Pseudonymizer(store).rotate("research") == 3


def test_unknown_epoch_is_not_created_on_demand(pseudonymizer: Pseudonymizer) -> None:
    with pytest.raises(KeyNotFoundError):
        pseudonymizer.pseudonym(SUBJECT, "research", epoch=5)


@pytest.mark.parametrize("domain", ["", "Research", "re.search", "1abc", "a" * 33])
def test_bad_domains_are_refused(pseudonymizer: Pseudonymizer, domain: str) -> None:
    with pytest.raises(KeyStoreError) as info:
        pseudonymizer.pseudonym(SUBJECT, domain)
    assert info.value.reason == "bad_domain"


@pytest.mark.parametrize(
    "text", ["", "ps1.research.e1.abc", "ps2.research.e1." + "a" * 32, "ps1.r.e0." + "a" * 32]
)
def test_bad_pseudonyms_do_not_parse(text: str) -> None:
    with pytest.raises(KeyStoreError):
        parse_pseudonym(text)


@FIXTURE_OK
@given(a=st.uuids(), b=st.uuids())
def test_pseudonyms_are_injective_and_stable(
    pseudonymizer: Pseudonymizer, a: uuid.UUID, b: uuid.UUID
) -> None:
    pa, pb = pseudonymizer.pseudonym(a, "research"), pseudonymizer.pseudonym(b, "research")
    assert pa == pseudonymizer.pseudonym(a, "research")
    assert (pa == pb) == (a == b)
    assert str(a) not in pa
    assert a.hex not in pa


# -- date shift ---------------------------------------------------------------------


def test_shift_is_stable_and_whole_weeks(store: FileKeyStore) -> None:
    shifter = DateShifter(store)
    weeks = shifter.shift_weeks(SUBJECT)
    assert 1 <= abs(weeks) <= MAX_SHIFT_WEEKS
    assert shifter.shift_ns(SUBJECT) == weeks * WEEK_NS
    assert shifter.shift_weeks(SUBJECT) == weeks
    assert DateShifter(store).shift_weeks(SUBJECT) == weeks


def test_shift_preserves_intervals_and_time_of_day(store: FileKeyStore) -> None:
    shifter = DateShifter(store)
    t0 = 1_763_780_000_123_456_789
    t1 = t0 + 3_600_000_000_017
    s0, s1 = shifter.apply(SUBJECT, t0), shifter.apply(SUBJECT, t1)
    day_ns = 86_400 * 1_000_000_000
    assert s1 - s0 == t1 - t0
    assert s0 % day_ns == t0 % day_ns
    assert (s0 - t0) % WEEK_NS == 0
    assert s0 != t0


def test_shift_is_kept_in_the_key_store_only(store: FileKeyStore) -> None:
    weeks = DateShifter(store).shift_weeks(SUBJECT)
    stored = store.get(KeyId("dateshift", str(SUBJECT), 1))
    assert int.from_bytes(stored, "big", signed=True) == weeks


def test_shifts_vary_between_subjects(store: FileKeyStore) -> None:
    shifter = DateShifter(store)
    shifts = {shifter.shift_weeks(uuid.UUID(int=n + 1)) for n in range(60)}
    # 60 draws from 52 values: the chance of at most 3 distinct values is negligible.
    assert len(shifts) > 3
    assert 0 not in shifts
    assert all(abs(w) <= MAX_SHIFT_WEEKS for w in shifts)


def test_forgotten_shift_is_gone_for_good(store: FileKeyStore) -> None:
    shifter = DateShifter(store)
    shifter.shift_weeks(SUBJECT)
    shifter.forget(SUBJECT)
    with pytest.raises(KeyDestroyedError):
        shifter.shift_weeks(SUBJECT)
    with pytest.raises(KeyDestroyedError):
        DateShifter(store).shift_weeks(SUBJECT)


@pytest.mark.parametrize("material", [b"\x00", b"\x1b", b"\xe5", b"\x01\x02"])
def test_corrupt_stored_shift_is_refused(store: FileKeyStore, material: bytes) -> None:
    store.put(KeyId("dateshift", str(SUBJECT), 1), material)
    with pytest.raises(KeyIntegrityError):
        DateShifter(store).shift_weeks(SUBJECT)


@FIXTURE_OK
@given(subject=st.uuids(), t_ns=st.integers(min_value=0, max_value=2**62))
def test_any_subject_gets_a_valid_stable_shift(
    store: FileKeyStore, subject: uuid.UUID, t_ns: int
) -> None:
    shifter = DateShifter(store)
    shifted = shifter.apply(subject, t_ns)
    weeks, rest = divmod(shifted - t_ns, WEEK_NS)
    assert rest == 0
    assert 1 <= abs(weeks) <= MAX_SHIFT_WEEKS
    assert DateShifter(store).apply(subject, t_ns) == shifted
