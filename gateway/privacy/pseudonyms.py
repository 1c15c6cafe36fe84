"""Pseudonyms and per-subject date shifts for the research path.

Owns ``Pseudonymizer`` (keyed HMAC-SHA256 of a subject's random UUID, one key per
pseudonymization domain and epoch) and ``DateShifter`` (a secret whole-week shift per
subject). Both keep their keys in a ``KeyStore``; neither touches a database, reads the
environment, or logs subject ids, pseudonym keys or shifts above DEBUG.

Pseudonym format ``ps1.<domain>.e<epoch>.<digest>``: ``digest`` is the first 160 bits of
HMAC-SHA256(key[domain, epoch], "biogw.ps1" NUL domain NUL subject-uuid-bytes), in
lower-case base32 without padding (32 characters). The domain label in the message is
defence in depth; the separate keys are what make two domains unlinkable.

Date shift: a whole number of weeks drawn uniformly with ``secrets`` from [-26, -1] and
[1, 26]. Zero is excluded on purpose, so no research record ever carries a subject's true
calendar dates (Invariant 2); whole weeks keep the weekday, the time of day and every
interval.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Final

from gateway.privacy.keystore import (
    KeyDestroyedError,
    KeyExistsError,
    KeyId,
    KeyIntegrityError,
    KeyNotFoundError,
    KeyStore,
    KeyStoreError,
    get_or_create,
)

__all__ = [
    "DIGEST_BITS",
    "MAX_SHIFT_WEEKS",
    "WEEK_NS",
    "DateShifter",
    "Pseudonym",
    "Pseudonymizer",
    "parse_pseudonym",
]

_log = logging.getLogger(__name__)

DIGEST_BITS: Final = 160
MAX_SHIFT_WEEKS: Final = 26
WEEK_NS: Final = 7 * 24 * 3600 * 1_000_000_000

PSEUDONYM_PURPOSE: Final = "pseudonym"
DATESHIFT_PURPOSE: Final = "dateshift"

_DOMAIN_RE: Final = re.compile(r"[a-z][a-z0-9-]{0,31}")
_PSEUDONYM_RE: Final = re.compile(r"ps1\.([a-z][a-z0-9-]{0,31})\.e([1-9][0-9]*)\.([a-z2-7]{32})")
_TEXT_CACHE_MAX: Final = 100_000
_SHIFT_CHOICES: Final = tuple(w for w in range(-MAX_SHIFT_WEEKS, MAX_SHIFT_WEEKS + 1) if w)


@dataclass(frozen=True, slots=True)
class Pseudonym:
    """A parsed pseudonym: its domain, key epoch and the 160-bit digest."""

    domain: str
    epoch: int
    digest: bytes

    def __str__(self) -> str:
        text = base64.b32encode(self.digest).decode("ascii").rstrip("=").lower()
        return f"ps1.{self.domain}.e{self.epoch}.{text}"


def parse_pseudonym(text: str) -> Pseudonym:
    """Parse ``ps1.<domain>.e<epoch>.<digest>``; ``KeyStoreError('bad_pseudonym')``
    otherwise. Parsing reveals nothing about the subject."""
    match = _PSEUDONYM_RE.fullmatch(text)
    if match is None:
        raise KeyStoreError("bad_pseudonym")
    digest = base64.b32decode(match.group(3).upper())
    return Pseudonym(match.group(1), int(match.group(2)), digest)


def _check_domain(domain: str) -> None:
    if _DOMAIN_RE.fullmatch(domain) is None:
        raise KeyStoreError("bad_domain", None, "domain must match [a-z][a-z0-9-]{0,31}")


def _check_subject(subject_id: uuid.UUID) -> None:
    if not isinstance(subject_id, uuid.UUID):
        raise KeyStoreError("bad_subject", None, "subject id must be a uuid.UUID")


class Pseudonymizer:
    """Pseudonyms per domain, under the domain's current key epoch.

    The first use of a domain creates epoch 1. ``rotate`` makes a new epoch current;
    ``destroy_epoch`` destroys an old one (never the current: rotate first), after which
    its pseudonyms can no longer be recomputed from subject ids. Keys and the current
    epoch are cached in memory; call ``refresh`` after another process rotated or destroyed
    an epoch."""

    def __init__(self, keystore: KeyStore) -> None:
        self._store = keystore
        self._keys: dict[tuple[str, int], bytes] = {}
        self._current: dict[str, int] = {}
        self._texts: dict[tuple[uuid.UUID, str, int], str] = {}
        """Pseudonyms already computed (the router asks for one per research frame);
        cleared with the keys they came from."""

    def pseudonym(self, subject_id: uuid.UUID, domain: str, *, epoch: int | None = None) -> str:
        """The subject's pseudonym in ``domain`` (current epoch unless one is given)."""
        use = self._current.get(domain) if epoch is None else epoch
        if use is not None:
            text = self._texts.get((subject_id, domain, use))
            if text is not None:
                return text
        value = self.pseudonym_of(subject_id, domain, epoch=epoch)
        if len(self._texts) >= _TEXT_CACHE_MAX:
            self._texts.clear()
        text = self._texts[(subject_id, domain, value.epoch)] = str(value)
        return text

    def pseudonym_of(
        self, subject_id: uuid.UUID, domain: str, *, epoch: int | None = None
    ) -> Pseudonym:
        """As ``pseudonym`` but returns the parsed value."""
        _check_domain(domain)
        _check_subject(subject_id)
        use = self.current_epoch(domain) if epoch is None else epoch
        key = self._key(domain, use)
        message = b"biogw.ps1\x00" + domain.encode() + b"\x00" + subject_id.bytes
        digest = hmac.new(key, message, hashlib.sha256).digest()[: DIGEST_BITS // 8]
        return Pseudonym(domain, use, digest)

    def current_epoch(self, domain: str) -> int:
        """The newest live epoch of ``domain``, creating epoch 1 on first use."""
        _check_domain(domain)
        cached = self._current.get(domain)
        if cached is not None:
            return cached
        live = self._store.versions(PSEUDONYM_PURPOSE, domain)
        if live:
            epoch = live[-1]
        elif self._store.destroyed_versions(PSEUDONYM_PURPOSE, domain):
            raise KeyStoreError("no_live_epoch", None, "every epoch was destroyed; rotate")
        else:
            epoch = 1
            self._key(domain, epoch)
        self._current[domain] = epoch
        return epoch

    def epochs(self, domain: str) -> tuple[int, ...]:
        """Live epochs of ``domain``, ascending."""
        _check_domain(domain)
        return self._store.versions(PSEUDONYM_PURPOSE, domain)

    def rotate(self, domain: str) -> int:
        """Create a new epoch (a new key) for ``domain``, make it current, return it."""
        _check_domain(domain)
        used = self._store.versions(PSEUDONYM_PURPOSE, domain) + self._store.destroyed_versions(
            PSEUDONYM_PURPOSE, domain
        )
        epoch = max(used, default=0) + 1
        self._keys[(domain, epoch)] = self._store.create(KeyId(PSEUDONYM_PURPOSE, domain, epoch))
        self._current[domain] = epoch
        _log.info("pseudonym domain %s rotated to epoch %d", domain, epoch)
        return epoch

    def destroy_epoch(self, domain: str, epoch: int) -> None:
        """Destroy an old epoch's key unrecoverably. The current epoch is refused."""
        _check_domain(domain)
        self.refresh()
        key_id = KeyId(PSEUDONYM_PURPOSE, domain, epoch)
        if epoch == self.current_epoch(domain):
            raise KeyStoreError("current_epoch", key_id, "rotate before destroying")
        self._store.destroy(key_id)
        self._keys.pop((domain, epoch), None)
        self._texts.clear()
        _log.info("pseudonym domain %s epoch %d destroyed", domain, epoch)

    def refresh(self) -> None:
        """Forget cached epochs and keys, to see rotations and destructions made by
        another process sharing the key store."""
        self._current.clear()
        self._keys.clear()
        self._texts.clear()

    def _key(self, domain: str, epoch: int) -> bytes:
        key = self._keys.get((domain, epoch))
        if key is None:
            key_id = KeyId(PSEUDONYM_PURPOSE, domain, epoch)
            key = get_or_create(self._store, key_id) if epoch == 1 else self._store.get(key_id)
            self._keys[(domain, epoch)] = key
        return key


class DateShifter:
    """A secret, stable, per-subject time shift of a whole number of weeks.

    The shift is drawn on first use and written once to the key store (never to a
    database); later calls, in this or any process sharing the store, return the same
    value. ``forget`` destroys it (erasure): the subject's research times can then no
    longer be mapped back to calendar time."""

    def __init__(self, keystore: KeyStore) -> None:
        self._store = keystore
        self._weeks: dict[uuid.UUID, int] = {}

    def shift_weeks(self, subject_id: uuid.UUID) -> int:
        """The subject's shift in weeks, in [-26, -1] or [1, 26]."""
        _check_subject(subject_id)
        weeks = self._weeks.get(subject_id)
        if weeks is None:
            weeks = self._load_or_draw(subject_id)
            self._weeks[subject_id] = weeks
        return weeks

    def shift_ns(self, subject_id: uuid.UUID) -> int:
        """The subject's shift in nanoseconds (a whole number of weeks)."""
        return self.shift_weeks(subject_id) * WEEK_NS

    def apply(self, subject_id: uuid.UUID, t_ns: int) -> int:
        """``t_ns`` (UTC ns) moved by the subject's shift."""
        return t_ns + self.shift_ns(subject_id)

    def forget(self, subject_id: uuid.UUID) -> None:
        """Destroy the subject's shift (``KeyNotFoundError`` if none was ever drawn)."""
        _check_subject(subject_id)
        self._weeks.pop(subject_id, None)
        self._store.destroy(self._key_id(subject_id))

    @staticmethod
    def _key_id(subject_id: uuid.UUID) -> KeyId:
        return KeyId(DATESHIFT_PURPOSE, str(subject_id), 1)

    def _load_or_draw(self, subject_id: uuid.UUID) -> int:
        key_id = self._key_id(subject_id)
        try:
            return _decode_weeks(self._store.get(key_id), key_id)
        except KeyDestroyedError:
            raise
        except KeyNotFoundError:
            pass
        # Another process may draw at the same time: the first write wins, ours is dropped.
        with contextlib.suppress(KeyExistsError):
            self._store.put(key_id, _encode_weeks(secrets.choice(_SHIFT_CHOICES)))
        return _decode_weeks(self._store.get(key_id), key_id)


def _encode_weeks(weeks: int) -> bytes:
    return weeks.to_bytes(1, "big", signed=True)


def _decode_weeks(material: bytes, key_id: KeyId) -> int:
    if len(material) != 1:
        raise KeyIntegrityError("bad_dateshift", key_id)
    weeks = int.from_bytes(material, "big", signed=True)
    if weeks == 0 or abs(weeks) > MAX_SHIFT_WEEKS:
        raise KeyIntegrityError("bad_dateshift", key_id)
    return weeks
