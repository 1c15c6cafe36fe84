"""File key store: round trips, permissions, master key, tampering, swaps, destruction."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.privacy.keystore import (
    FileKeyStore,
    KeyDestroyedError,
    KeyExistsError,
    KeyId,
    KeyIntegrityError,
    KeyNotFoundError,
    KeyStore,
    KeyStoreError,
    MasterKeyError,
    get_or_create,
)
from gateway.privacy.master_key import (
    generate_master_key,
    master_key_from_env,
    master_key_from_file,
)

MASTER = bytes(range(32))
OTHER_MASTER = bytes(range(1, 33))


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def store(key_dir: Path) -> FileKeyStore:
    return FileKeyStore(key_dir, MASTER)


def _key_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.key"))


def test_file_store_satisfies_protocol(store: FileKeyStore) -> None:
    assert isinstance(store, KeyStore)


def test_create_then_get_round_trip_across_instances(store: FileKeyStore, key_dir: Path) -> None:
    key_id = KeyId("pseudonym", "research", 1)
    created = store.create(key_id)
    assert len(created) == 32
    assert store.get(key_id) == created
    assert FileKeyStore(key_dir, MASTER).get(key_id) == created


def test_put_small_secret_round_trip(store: FileKeyStore) -> None:
    key_id = KeyId("dateshift", "2f1c0a5e-0000-4000-8000-000000000001", 1)
    store.put(key_id, b"\xfe")
    assert store.get(key_id) == b"\xfe"


def test_keys_are_write_once(store: FileKeyStore) -> None:
    key_id = KeyId("pseudonym", "research", 1)
    first = store.create(key_id)
    with pytest.raises(KeyExistsError) as info:
        store.create(key_id)
    assert info.value.key_id == key_id
    assert info.value.reason == "exists"
    assert get_or_create(store, key_id) == first


class _RacingStore(FileKeyStore):
    """A real file store whose ``get`` lets another writer create the key just after a miss."""

    def __init__(self, directory: Path, master_key: bytes) -> None:
        super().__init__(directory, master_key)
        self.rival: bytes | None = None

    def get(self, key_id: KeyId) -> bytes:
        try:
            return super().get(key_id)
        except KeyNotFoundError:
            if self.rival is None:
                self.rival = FileKeyStore(self.directory, MASTER).create(key_id)
            raise


def test_get_or_create_returns_the_winner_of_a_race(key_dir: Path) -> None:
    store = _RacingStore(key_dir, MASTER)
    key_id = KeyId("pseudonym", "research", 1)
    assert get_or_create(store, key_id) == store.rival


def test_missing_key_raises_not_found(store: FileKeyStore) -> None:
    with pytest.raises(KeyNotFoundError) as info:
        store.get(KeyId("pseudonym", "nowhere", 3))
    assert info.value.reason == "not_found"


def test_versions_are_listed_per_purpose_and_name(store: FileKeyStore) -> None:
    for version in (1, 2, 5):
        store.create(KeyId("pseudonym", "research", version))
    store.create(KeyId("pseudonym", "release", 1))
    store.create(KeyId("data", "research", 7))
    assert store.versions("pseudonym", "research") == (1, 2, 5)
    assert store.versions("pseudonym", "release") == (1,)
    assert store.versions("data", "research") == (7,)
    assert store.versions("data", "absent") == ()


def test_permissions_are_0700_and_0600(store: FileKeyStore, key_dir: Path) -> None:
    store.create(KeyId("pseudonym", "research", 1))
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    files = list(key_dir.iterdir())
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_permissions_hold_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = FileKeyStore(tmp_path / "keys", MASTER)
        store.create(KeyId("pseudonym", "research", 1))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    for path in (tmp_path / "keys").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_group_readable_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o750)
    directory.chmod(0o750)
    with pytest.raises(KeyStoreError) as info:
        FileKeyStore(directory, MASTER)
    assert info.value.reason == "insecure_permissions"


def test_file_names_do_not_reveal_key_names(store: FileKeyStore, key_dir: Path) -> None:
    subject = "8d3c2b9e-6f4a-4c1e-9b7d-1234567890ab"
    store.put(KeyId("dateshift", subject, 1), b"\x03")
    for path in key_dir.iterdir():
        assert subject not in path.name
        assert subject.encode() not in path.read_bytes()


def test_material_is_encrypted_at_rest(store: FileKeyStore, key_dir: Path) -> None:
    material = store.create(KeyId("pseudonym", "research", 1))
    (path,) = _key_files(key_dir)
    assert material not in path.read_bytes()


def test_wrong_master_key_is_a_clear_error(store: FileKeyStore, key_dir: Path) -> None:
    store.create(KeyId("pseudonym", "research", 1))
    with pytest.raises(MasterKeyError) as info:
        FileKeyStore(key_dir, OTHER_MASTER)
    assert info.value.reason == "wrong_master_key"
    assert isinstance(info.value, KeyStoreError)
    assert info.value.__cause__ is None


def test_check_file_removed_with_keys_present_is_refused(
    store: FileKeyStore, key_dir: Path
) -> None:
    store.create(KeyId("pseudonym", "research", 1))
    (key_dir / "keystore.check").unlink()
    with pytest.raises(KeyStoreError) as info:
        FileKeyStore(key_dir, OTHER_MASTER)
    assert info.value.reason == "check_missing"


def test_master_key_of_wrong_length_is_refused(key_dir: Path) -> None:
    with pytest.raises(MasterKeyError):
        FileKeyStore(key_dir, b"short")


@pytest.mark.parametrize("offset", [0, 6, 20, -1])
def test_tampered_file_is_detected(store: FileKeyStore, key_dir: Path, offset: int) -> None:
    key_id = KeyId("pseudonym", "research", 1)
    store.create(key_id)
    (path,) = _key_files(key_dir)
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(KeyIntegrityError) as info:
        store.get(key_id)
    assert info.value.key_id == key_id
    assert info.value.__cause__ is None


def test_truncated_file_is_detected(store: FileKeyStore, key_dir: Path) -> None:
    key_id = KeyId("pseudonym", "research", 1)
    store.create(key_id)
    (path,) = _key_files(key_dir)
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(KeyIntegrityError):
        store.get(key_id)


def test_swapped_key_files_are_detected(store: FileKeyStore, key_dir: Path) -> None:
    first, second = KeyId("pseudonym", "research", 1), KeyId("pseudonym", "research", 2)
    store.create(first)
    store.create(second)
    path_1, path_2 = sorted(_key_files(key_dir), key=lambda p: p.name.rsplit(".v", 1)[1])
    blob_1, blob_2 = path_1.read_bytes(), path_2.read_bytes()
    path_1.write_bytes(blob_2)
    path_2.write_bytes(blob_1)
    for key_id in (first, second):
        with pytest.raises(KeyIntegrityError):
            store.get(key_id)


def test_destroyed_key_is_unrecoverable(store: FileKeyStore, key_dir: Path) -> None:
    key_id = KeyId("pseudonym", "research", 1)
    material = store.create(key_id)
    (path,) = _key_files(key_dir)
    store.destroy(key_id)
    assert not path.exists()
    assert _key_files(key_dir) == []
    for leftover in key_dir.iterdir():
        assert material not in leftover.read_bytes()
    with pytest.raises(KeyDestroyedError):
        store.get(key_id)
    with pytest.raises(KeyDestroyedError):
        store.create(key_id)
    with pytest.raises(KeyDestroyedError):
        get_or_create(store, key_id)
    with pytest.raises(KeyDestroyedError):
        store.destroy(key_id)
    assert store.versions("pseudonym", "research") == ()
    assert store.destroyed_versions("pseudonym", "research") == (1,)


def test_destroy_of_absent_key_raises_not_found(store: FileKeyStore) -> None:
    with pytest.raises(KeyNotFoundError) as info:
        store.destroy(KeyId("pseudonym", "research", 9))
    assert not isinstance(info.value, KeyDestroyedError)


def test_no_temporary_files_are_left(store: FileKeyStore, key_dir: Path) -> None:
    key_id = KeyId("pseudonym", "research", 1)
    store.create(key_id)
    with pytest.raises(KeyExistsError):
        store.create(key_id)
    store.destroy(key_id)
    assert not [p for p in key_dir.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("purpose", "name", "version"),
    [("Bad", "x", 1), ("a/b", "x", 1), ("ok", "", 1), ("ok", "a\x00b", 1), ("ok", "x", 0)],
)
def test_invalid_key_ids_are_refused(purpose: str, name: str, version: int) -> None:
    with pytest.raises(KeyStoreError):
        KeyId(purpose, name, version)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s),
    material=st.binary(min_size=1, max_size=256),
    version=st.integers(min_value=1, max_value=10**6),
)
def test_any_secret_round_trips(
    store: FileKeyStore, name: str, material: bytes, version: int
) -> None:
    key_id = KeyId("secret", name, version)
    try:
        store.put(key_id, material)
    except KeyExistsError:
        return
    assert store.get(key_id) == material


# -- master key parsing ------------------------------------------------------------


def test_master_key_from_hex_and_base64() -> None:
    key = os.urandom(32)
    assert master_key_from_env(key.hex()) == key
    assert master_key_from_env(key.hex().upper()) == key
    assert master_key_from_env(base64.b64encode(key).decode()) == key
    assert master_key_from_env(base64.urlsafe_b64encode(key).decode().rstrip("=")) == key
    assert master_key_from_env(f"  {key.hex()}\n") == key
    assert len(master_key_from_env(generate_master_key())) == 32


@pytest.mark.parametrize("text", ["", "zz", "00" * 31, base64.b64encode(b"x" * 16).decode()])
def test_malformed_master_keys_are_refused(text: str) -> None:
    with pytest.raises(MasterKeyError) as info:
        master_key_from_env(text)
    assert text.strip() == "" or text not in str(info.value)


def test_master_key_from_file(tmp_path: Path) -> None:
    key = os.urandom(32)
    raw, text = tmp_path / "raw", tmp_path / "text"
    raw.write_bytes(key)
    text.write_text(key.hex() + "\n")
    assert master_key_from_file(raw) == key
    assert master_key_from_file(text) == key
    with pytest.raises(MasterKeyError) as info:
        master_key_from_file(tmp_path / "absent")
    assert info.value.reason == "master_key_unreadable"
