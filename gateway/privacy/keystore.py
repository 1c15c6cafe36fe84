"""Key store: processing keys and small secrets, kept outside every database.

Owns the ``KeyStore`` seam (a Vault or KMS backend implements the same Protocol), the
default ``FileKeyStore`` and the ``KeyStoreError`` subtree. It must not talk to a
database, read the environment, or log key material, key names or subject ids above
DEBUG: the caller (``main``) reads the master key from its configured source and passes
the bytes in.

``FileKeyStore`` layout: one directory (mode 0700) holding one file per key version
(mode 0600) and a ``keystore.check`` file that proves the master key. Each file is
AES-256-GCM encrypted under a key derived from the 32-byte master key (HKDF-SHA256), with
the full key id as associated data, so a file renamed onto another id fails to decrypt.
File names carry the purpose in clear and a keyed hash of the name (names can be subject
ids; a directory listing must not reveal them). Writes are atomic (temporary file, fsync,
then ``link`` for an exclusive create), and destroying a version overwrites the file,
removes it and leaves a tombstone so the version number is never reused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from devices.errors import BiogwError

__all__ = [
    "MASTER_KEY_BYTES",
    "FileKeyStore",
    "KeyDestroyedError",
    "KeyExistsError",
    "KeyId",
    "KeyIntegrityError",
    "KeyNotFoundError",
    "KeyStore",
    "KeyStoreError",
    "MasterKeyError",
    "get_or_create",
]

MASTER_KEY_BYTES: Final = 32
KEY_BYTES: Final = 32
MAX_SECRET_BYTES: Final = 4096

_PURPOSE_RE: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_MAX_NAME_CHARS: Final = 256
_MAGIC: Final = b"BGWK\x01"
_NONCE_BYTES: Final = 12
_CHECK_FILE: Final = "keystore.check"
_CHECK_PLAINTEXT: Final = b"biogw keystore v1"
_MAX_FILE_BYTES: Final = len(_MAGIC) + _NONCE_BYTES + MAX_SECRET_BYTES + 16


# --------------------------------------------------------------------------- errors


class KeyStoreError(BiogwError):
    """A key store operation failed. ``key_id`` names the key (``None`` for store-wide
    problems) and ``reason`` is a short machine-friendly tag. Key material is never kept."""

    def __init__(self, reason: str, key_id: KeyId | None = None, detail: str = "") -> None:
        self.reason = reason
        self.key_id = key_id
        self.detail = detail
        where = f"{key_id.purpose}/v{key_id.version}" if key_id is not None else "keystore"
        text = f"{where}: {reason}"
        super().__init__(f"{text} ({detail})" if detail else text)


class MasterKeyError(KeyStoreError):
    """The master key is malformed, or does not open this key store (``wrong_master_key``)."""


class KeyNotFoundError(KeyStoreError):
    """No key is stored under this id."""


class KeyDestroyedError(KeyNotFoundError):
    """The key was destroyed: it can neither be read nor created again."""


class KeyExistsError(KeyStoreError):
    """A key already exists under this id (keys are written once)."""


class KeyIntegrityError(KeyStoreError):
    """A key file failed authentication: tampered, truncated, or swapped with another."""


# --------------------------------------------------------------------------- key ids


@dataclass(frozen=True, slots=True)
class KeyId:
    """Identifies one key version. ``purpose`` is a short tag kept in clear in file names
    (``pseudonym``, ``dateshift``, ``data``); ``name`` may be sensitive (a subject id) and
    is only ever stored hashed; ``version`` counts from 1."""

    purpose: str
    name: str
    version: int

    def __post_init__(self) -> None:
        if _PURPOSE_RE.fullmatch(self.purpose) is None:
            raise KeyStoreError("bad_purpose", None, "purpose must match [a-z][a-z0-9_-]{0,31}")
        if not self.name or len(self.name) > _MAX_NAME_CHARS or "\x00" in self.name:
            raise KeyStoreError("bad_name", None, "name must be 1-256 characters without NUL")
        if isinstance(self.version, bool) or not isinstance(self.version, int):
            raise KeyStoreError("bad_version", None, "version must be an int")
        if self.version < 1:
            raise KeyStoreError("bad_version", None, "version must be >= 1")

    def associated_data(self) -> bytes:
        """The bytes bound into the ciphertext, so a file only opens under its own id."""
        parts = ("biogw.keystore.v1", self.purpose, self.name, str(self.version))
        return "\x00".join(parts).encode()


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class KeyStore(Protocol):
    """Where keys and small secrets live. Every method is synchronous and cheap for the
    file store; a networked backend should cache, and async callers may wrap calls in
    ``asyncio.to_thread``. Keys are written once and never modified."""

    def get(self, key_id: KeyId) -> bytes:
        """Return the material stored under ``key_id``.

        Raises ``KeyNotFoundError`` (``KeyDestroyedError`` if it was destroyed) or
        ``KeyIntegrityError``."""
        ...

    def create(self, key_id: KeyId, *, size: int = KEY_BYTES) -> bytes:
        """Create and return a fresh random key; ``KeyExistsError`` if one is there."""
        ...

    def put(self, key_id: KeyId, material: bytes) -> None:
        """Store a small caller-made secret (at most ``MAX_SECRET_BYTES``), write-once."""
        ...

    def versions(self, purpose: str, name: str) -> tuple[int, ...]:
        """Live versions for ``(purpose, name)``, ascending."""
        ...

    def destroyed_versions(self, purpose: str, name: str) -> tuple[int, ...]:
        """Versions that were destroyed (never reusable), ascending."""
        ...

    def destroy(self, key_id: KeyId) -> None:
        """Destroy a version unrecoverably; ``KeyNotFoundError`` if it is not live."""
        ...


def get_or_create(store: KeyStore, key_id: KeyId, *, size: int = KEY_BYTES) -> bytes:
    """Return the key under ``key_id``, creating it first if absent (race-safe: when two
    writers create at once, one wins and both return the winner's key)."""
    try:
        return store.get(key_id)
    except KeyDestroyedError:
        raise
    except KeyNotFoundError:
        pass
    try:
        return store.create(key_id, size=size)
    except KeyExistsError:
        return store.get(key_id)


# --------------------------------------------------------------------------- file store


def _derive(master_key: bytes, info: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info)
    return hkdf.derive(master_key)


class FileKeyStore:
    """The default key store: one directory, one encrypted 0600 file per key version.

    Construction creates the directory (0700) if needed, refuses one that group or others
    can access, and proves the master key against ``keystore.check`` (creating it in an
    empty store), so a wrong master key fails here with ``MasterKeyError``."""

    def __init__(self, directory: Path, master_key: bytes) -> None:
        if not isinstance(master_key, bytes) or len(master_key) != MASTER_KEY_BYTES:
            raise MasterKeyError("master_key_length", None, "need 32 bytes")
        self._dir = Path(directory)
        self._aead = AESGCM(_derive(master_key, b"biogw.keystore.v1 file encryption"))
        self._name_key = _derive(master_key, b"biogw.keystore.v1 file names")
        self._prepare_directory()
        self._verify_master_key()

    @property
    def directory(self) -> Path:
        return self._dir

    # -- public API (KeyStore) --------------------------------------------------

    def get(self, key_id: KeyId) -> bytes:
        path = self._path(key_id)
        try:
            blob = self._read(path)
        except FileNotFoundError:
            if self._tombstone(key_id).exists():
                raise KeyDestroyedError("destroyed", key_id) from None
            raise KeyNotFoundError("not_found", key_id) from None
        return self._open(blob, key_id.associated_data(), key_id)

    def create(self, key_id: KeyId, *, size: int = KEY_BYTES) -> bytes:
        if not 16 <= size <= MAX_SECRET_BYTES:
            raise KeyStoreError("bad_size", key_id, "key size must be 16..4096 bytes")
        material = secrets.token_bytes(size)
        self.put(key_id, material)
        return material

    def put(self, key_id: KeyId, material: bytes) -> None:
        if not 1 <= len(material) <= MAX_SECRET_BYTES:
            raise KeyStoreError("bad_size", key_id, "secret must be 1..4096 bytes")
        if self._tombstone(key_id).exists():
            raise KeyDestroyedError("destroyed", key_id)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        blob = _MAGIC + nonce + self._aead.encrypt(nonce, material, key_id.associated_data())
        if not self._write_exclusive(self._path(key_id), blob):
            raise KeyExistsError("exists", key_id)

    def versions(self, purpose: str, name: str) -> tuple[int, ...]:
        return self._scan(purpose, name, ".key")

    def destroyed_versions(self, purpose: str, name: str) -> tuple[int, ...]:
        return self._scan(purpose, name, ".destroyed")

    def destroy(self, key_id: KeyId) -> None:
        path = self._path(key_id)
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            if self._tombstone(key_id).exists():
                raise KeyDestroyedError("destroyed", key_id) from None
            raise KeyNotFoundError("not_found", key_id) from None
        except OSError as exc:
            raise KeyStoreError("io_error", key_id, type(exc).__name__) from exc
        try:
            # The tombstone goes first: from here on the version can never be recreated.
            self._write_exclusive(self._tombstone(key_id), b"")
            length = os.fstat(fd).st_size
            os.pwrite(fd, secrets.token_bytes(length), 0)
            os.fsync(fd)
            path.unlink()
        except OSError as exc:
            raise KeyStoreError("io_error", key_id, type(exc).__name__) from exc
        finally:
            os.close(fd)
        self._fsync_dir()

    # -- internals -----------------------------------------------------------------

    def _stem(self, purpose: str, name: str) -> str:
        KeyId(purpose, name, 1)  # validates purpose and name
        digest = hmac.new(self._name_key, f"{purpose}\x00{name}".encode(), hashlib.sha256)
        return f"{purpose}.{digest.hexdigest()[:32]}"

    def _path(self, key_id: KeyId) -> Path:
        return self._dir / f"{self._stem(key_id.purpose, key_id.name)}.v{key_id.version}.key"

    def _tombstone(self, key_id: KeyId) -> Path:
        stem = self._stem(key_id.purpose, key_id.name)
        return self._dir / f"{stem}.v{key_id.version}.destroyed"

    def _scan(self, purpose: str, name: str, suffix: str) -> tuple[int, ...]:
        pattern = re.compile(re.escape(self._stem(purpose, name)) + r"\.v([1-9][0-9]*)" + suffix)
        found = []
        for entry in os.listdir(self._dir):
            match = pattern.fullmatch(entry)
            if match is not None:
                found.append(int(match.group(1)))
        return tuple(sorted(found))

    def _open(self, blob: bytes, aad: bytes, key_id: KeyId | None) -> bytes:
        head = len(_MAGIC) + _NONCE_BYTES
        if len(blob) < head + 16 or not blob.startswith(_MAGIC):
            raise KeyIntegrityError("malformed", key_id)
        try:
            return self._aead.decrypt(blob[len(_MAGIC) : head], blob[head:], aad)
        except InvalidTag:
            raise KeyIntegrityError("authentication_failed", key_id) from None

    def _prepare_directory(self) -> None:
        try:
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self._dir.stat()
        except OSError as exc:
            raise KeyStoreError("io_error", None, type(exc).__name__) from exc
        if not stat.S_ISDIR(info.st_mode):
            raise KeyStoreError("not_a_directory")
        if info.st_mode & 0o077:
            raise KeyStoreError("insecure_permissions", None, "directory must be 0700")
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise KeyStoreError("insecure_permissions", None, "directory owned by another user")

    def _verify_master_key(self) -> None:
        check = self._dir / _CHECK_FILE
        aad = b"biogw.keystore.v1\x00check"
        try:
            blob = self._read(check)
        except FileNotFoundError:
            if any(entry.endswith(".key") for entry in os.listdir(self._dir)):
                raise KeyStoreError(
                    "check_missing", None, "keys present without check file"
                ) from None
            nonce = secrets.token_bytes(_NONCE_BYTES)
            body = self._aead.encrypt(nonce, _CHECK_PLAINTEXT, aad)
            self._write_exclusive(check, _MAGIC + nonce + body)
            blob = self._read(check)
        try:
            opened = self._open(blob, aad, None)
        except KeyIntegrityError:
            raise MasterKeyError("wrong_master_key") from None
        if opened != _CHECK_PLAINTEXT:
            raise MasterKeyError("wrong_master_key")

    def _read(self, path: Path) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise KeyStoreError("io_error", None, type(exc).__name__) from exc
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(_MAX_FILE_BYTES + 1)
        if len(data) > _MAX_FILE_BYTES:
            raise KeyIntegrityError("oversized")
        return data

    def _write_exclusive(self, path: Path, data: bytes) -> bool:
        """Write ``data`` to ``path`` atomically unless it exists. True if written."""
        tmp = self._dir / f".{path.name}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                tmp.unlink()
        except OSError as exc:
            raise KeyStoreError("io_error", None, type(exc).__name__) from exc
        self._fsync_dir()
        return True

    def _fsync_dir(self) -> None:
        fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
